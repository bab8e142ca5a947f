//! Settings a task inherits from `defaults:` and may override.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// Settings shared by `defaults:` and every task; a task's own value wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Git ref the agent starts from (branch, tag or commit); omitted: the default branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Model the agent uses; omitted: Cursor picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Template of the branch the agent pushes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Open a pull request when the agent finishes (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_pr: Option<bool>,
    /// Open the pull request as the Cursor GitHub App instead of as the key's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_as_cursor_github_app: Option<bool>,
    /// Do not request the key's user as a reviewer of the pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reviewer_request: Option<bool>,
    /// Longest an agent may run (for example `90m`); on expiry it is stopped and the instance
    /// is `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Relaunches after ERROR, EXPIRED or a timeout, with backoff (default 0, at most 10:
    /// each relaunch is a paid agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub retries: Option<u32>,
    /// v1: environment variables of the agent (names may not start with `CURSOR_`). Values
    /// are never printed or stored; launches that set them cannot be made idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub env_vars: Option<IndexMap<String, String>>,
    /// v1: MCP servers of the agent (at most 50), each `{name, command, args, env}` (stdio)
    /// or `{name, url, headers, auth}` (remote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub mcp_servers: Option<Vec<super::McpServer>>,
    /// v1: `agent` (make changes) or `plan` (plan only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// v1: parameters of `model`, by id (for example `reasoning: high`); each value is a
    /// string, a number or a boolean, sent as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_params: Option<IndexMap<String, serde_json::Value>>,
    /// v1: work on the starting ref itself instead of a new branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_on_current_branch: Option<bool>,
    /// v1: an existing pull request for the agent to work on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
}

/// What a v1 agent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Changes the code.
    Agent,
    /// Plans only.
    Plan,
}

impl Mode {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Agent => "agent",
            Mode::Plan => "plan",
        }
    }
}

/// Which API versions a setting works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlyOn {
    /// Only v0 has it.
    V0,
    /// Only v1 has it.
    V1,
}

impl Settings {
    /// These settings with every unset field taken from `base`.
    #[must_use]
    pub fn or(&self, base: &Settings) -> Settings {
        Settings {
            git_ref: self.git_ref.clone().or_else(|| base.git_ref.clone()),
            model: self.model.clone().or_else(|| base.model.clone()),
            branch: self.branch.clone().or_else(|| base.branch.clone()),
            auto_create_pr: self.auto_create_pr.or(base.auto_create_pr),
            open_as_cursor_github_app: self
                .open_as_cursor_github_app
                .or(base.open_as_cursor_github_app),
            skip_reviewer_request: self.skip_reviewer_request.or(base.skip_reviewer_request),
            timeout: self.timeout.or(base.timeout),
            retries: self.retries.or(base.retries),
            env_vars: self.env_vars.clone().or_else(|| base.env_vars.clone()),
            mcp_servers: self
                .mcp_servers
                .clone()
                .or_else(|| base.mcp_servers.clone()),
            mode: self.mode.or(base.mode),
            model_params: self
                .model_params
                .clone()
                .or_else(|| base.model_params.clone()),
            work_on_current_branch: self.work_on_current_branch.or(base.work_on_current_branch),
            pr_url: self.pr_url.clone().or_else(|| base.pr_url.clone()),
        }
    }

    /// The settings set here that the LiteLLM Agent Platform cannot send, by their YAML names:
    /// `POST /session` takes a prompt, a repository, a ref and `auto_create_pr`.
    pub fn not_on_platform(&self) -> Vec<&'static str> {
        let own = [
            ("model", self.model.is_some()),
            (
                "skip_reviewer_request",
                self.skip_reviewer_request.is_some(),
            ),
        ];
        own.into_iter()
            .filter(|(_, present)| *present)
            .map(|(name, _)| name)
            .chain(self.version_specific().into_iter().map(|(name, _)| name))
            .collect()
    }

    /// The settings set here that only one API version has, by their YAML names.
    pub fn version_specific(&self) -> Vec<(&'static str, OnlyOn)> {
        let set = [
            ("branch", self.branch.is_some(), OnlyOn::V0),
            (
                "open_as_cursor_github_app",
                self.open_as_cursor_github_app.is_some(),
                OnlyOn::V0,
            ),
            ("env_vars", self.env_vars.is_some(), OnlyOn::V1),
            ("mcp_servers", self.mcp_servers.is_some(), OnlyOn::V1),
            ("mode", self.mode.is_some(), OnlyOn::V1),
            ("model_params", self.model_params.is_some(), OnlyOn::V1),
            (
                "work_on_current_branch",
                self.work_on_current_branch.is_some(),
                OnlyOn::V1,
            ),
            ("pr_url", self.pr_url.is_some(), OnlyOn::V1),
        ];
        set.into_iter()
            .filter(|(_, present, _)| *present)
            .map(|(name, _, only)| (name, only))
            .collect()
    }
}

/// A model parameter's value as the API takes it (a non-empty string): strings as written,
/// numbers and booleans as their text; `None` for anything else.
pub fn param_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::param_text;
    use serde_json::json;

    #[test]
    fn model_parameters_are_sent_as_text_and_only_scalars_are_values() {
        assert_eq!(param_text(&json!("high")).as_deref(), Some("high"));
        assert_eq!(param_text(&json!(8000)).as_deref(), Some("8000"));
        assert_eq!(param_text(&json!(0.5)).as_deref(), Some("0.5"));
        assert_eq!(param_text(&json!(true)).as_deref(), Some("true"));
        for refused in [
            json!(""),
            json!(" "),
            json!(null),
            json!(["high"]),
            json!({"a": 1}),
        ] {
            assert_eq!(param_text(&refused), None, "{refused}");
        }
    }
}
