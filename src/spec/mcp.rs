//! v1: the MCP servers of an agent, as `POST /v1/agents` takes them: a list of servers, each
//! started by a command (stdio) or reached at a URL (http or sse).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One MCP server: `command` (stdio) or `url` (remote), never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Its name, unique among the agent's servers.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `stdio` for a command; `http` or `sse` for a URL (omitted: the API infers it).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub transport: Option<McpTransport>,
    /// stdio: the program to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// stdio: its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<IndexMap<String, String>>,
    /// remote: where it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// remote: headers sent with each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IndexMap<String, String>>,
    /// remote: OAuth client settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<McpAuth>,
}

/// How an MCP server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum McpTransport {
    /// A local program on stdin and stdout.
    Stdio,
    /// Streamable HTTP.
    Http,
    /// Server-sent events.
    Sse,
}

/// OAuth client settings of a remote MCP server (the API's own upper-case names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpAuth {
    /// The OAuth client id.
    #[serde(rename = "CLIENT_ID")]
    pub client_id: String,
    /// The OAuth client secret.
    #[serde(
        default,
        rename = "CLIENT_SECRET",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_secret: Option<String>,
    /// The scopes to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl McpServer {
    /// What is wrong with the server's fields together, as (field, problem, fix).
    pub fn problems(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(("name", "an MCP server needs a name".into(), "name it"));
        }
        let stdio_only = self.args.is_some() || self.env.is_some();
        let remote_only = self.headers.is_some() || self.auth.is_some();
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => problems.push((
                "url",
                format!("MCP server `{}` has both `command` and `url`", self.name),
                "keep `command` for a local server or `url` for a remote one",
            )),
            (None, None) => problems.push((
                "name",
                format!("MCP server `{}` has neither `command` nor `url`", self.name),
                "add `command` (a local server) or `url` (a remote one)",
            )),
            (Some(_), None) => {
                if remote_only
                    || matches!(self.transport, Some(McpTransport::Http | McpTransport::Sse))
                {
                    problems.push((
                        "command",
                        format!("MCP server `{}` runs a command, so `headers`, `auth` and `type: http|sse` do not apply", self.name),
                        "remove them, or give a `url` instead of `command`",
                    ));
                }
            }
            (None, Some(url)) => {
                if stdio_only || self.transport == Some(McpTransport::Stdio) {
                    problems.push((
                        "url",
                        format!("MCP server `{}` is remote, so `args`, `env` and `type: stdio` do not apply", self.name),
                        "remove them, or give a `command` instead of `url`",
                    ));
                }
                if url::Url::parse(url).is_err() {
                    problems.push((
                        "url",
                        format!("`{url}` is not a URL"),
                        "write it as https://HOST/PATH",
                    ));
                }
            }
        }
        problems
    }
}
