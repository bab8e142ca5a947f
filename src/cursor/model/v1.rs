//! The JSON shapes of the Cursor Cloud Agents API v1, as Cursor's OpenAPI file
//! (`cursor-openapi-v1.yaml`) publishes them; the simulator answers with the same types.
//!
//! v1 splits v0's agent in two: a durable agent, and one run per prompt. The outcome of a
//! prompt lives on its run. Parsing is lenient as in v0: unknown fields are ignored, unknown
//! statuses kept.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{AgentId, AgentStatus, Prompt, Secret};

/// A run id, like `run-<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentRunId(pub String);

impl fmt::Display for AgentRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A v1 agent: metadata only; its work is in its runs. Lists give the summary of one
/// (`AgentSummary`: no `repos`); `GET /v1/agents/{id}` and a create give all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// `bc-<uuid>`.
    pub id: AgentId,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ACTIVE or ARCHIVED; IDLE is seen live too. Kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Where it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<AgentEnv>,
    /// The repositories it works on (not in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<RepoSpec>,
    /// Its newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_run_id: Option<AgentRunId>,
    /// Its page in Cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339. Nothing says it moves when a run's status does: never read as a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Where an agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEnv {
    /// `cloud`, `pool` or `machine`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The pool or machine's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Agent {
    /// When it was created, if the API said and it parses.
    pub fn created(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(self.created_at.as_deref()?).ok()
    }
}

/// One prompt's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// `run-<uuid>`.
    pub id: AgentRunId,
    /// Its agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// CREATING, RUNNING, then FINISHED, ERROR, CANCELLED or EXPIRED.
    pub status: AgentStatus,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// How long it took, once ended (not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The final text, once ended (not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The branches and pull requests it pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<Git>,
}

impl Run {
    /// A run known only by its id, not yet read.
    pub fn of(id: AgentRunId) -> Self {
        Self {
            id,
            agent_id: None,
            status: AgentStatus::Creating,
            created_at: None,
            updated_at: None,
            duration_ms: None,
            result: None,
            git: None,
        }
    }
}

/// What a run pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    /// One per repository.
    #[serde(default)]
    pub branches: Vec<GitBranch>,
}

/// A branch a run pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitBranch {
    /// The repository, without a scheme (`github.com/acme/api`).
    pub repo_url: String,
    /// The branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Its pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
}

/// A repository of a create request or an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSpec {
    /// `https://github.com/owner/name` (always sent).
    pub url: String,
    /// The ref to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_ref: Option<String>,
    /// An existing pull request to work on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
}

/// A model and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The model id.
    pub id: String,
    /// Its parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ModelParam>,
}

/// One model parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelParam {
    /// Its id.
    pub id: String,
    /// Its value, as text (non-empty).
    pub value: String,
}

/// `POST /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRequest {
    /// The first prompt.
    pub prompt: Prompt,
    /// Omitted: the default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// At most 100 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most 20; may be empty.
    #[serde(default)]
    pub repos: Vec<RepoSpec>,
    /// Work on the starting ref instead of a new branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_on_current_branch: Option<bool>,
    /// Open a pull request at the end (capital PR, unlike v0).
    #[serde(
        default,
        rename = "autoCreatePR",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_create_pr: Option<bool>,
    /// Do not request the key's user as reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reviewer_request: Option<bool>,
    /// Environment of the agent (names may not start with `CURSOR_`); values are secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<BTreeMap<String, Secret>>,
    /// MCP servers (at most 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<Vec<crate::spec::McpServer>>,
    /// `agent` or `plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// A client-chosen id (`bc-<uuid>`): sending it twice answers 409 `agent_id_conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// The answer of `POST /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// The agent.
    pub agent: Agent,
    /// Its first run.
    pub run: Run,
}

/// `POST /v1/agents/{id}/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRunRequest {
    /// The follow-up.
    pub prompt: Prompt,
}

/// The answer of creating a run (reading one answers the bare [`Run`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResponse {
    /// The run.
    pub run: Run,
}

/// What a run's event stream (`GET /v1/agents/{id}/runs/{runId}/stream`) tells, in the
/// simplified events the published file describes; the others (`assistant`, `thinking`,
/// `tool_call`, `interaction_update`) carry nothing orchestrate reads.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// `status`: `{runId, status}`; replayed, without an id, at the top of every connection.
    Status(AgentStatus),
    /// `result`: `{runId, status, text?, durationMs?, git?}`, the run's end and outputs.
    Result(RunResult),
    /// `error`: the run failed; its message, if it gave one.
    Error(Option<String>),
    /// `done`: nothing more will come.
    Done,
    /// `heartbeat`, or an event orchestrate does not read.
    Other,
}

#[derive(Deserialize)]
struct StatusData {
    status: AgentStatus,
}

/// The data of a run's `result` event: what a read of the ended run would say.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// FINISHED, ERROR, CANCELLED or EXPIRED.
    pub status: AgentStatus,
    /// The final reply.
    #[serde(default)]
    pub text: Option<String>,
    /// How long the run took.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The agent's branches and pull requests.
    #[serde(default)]
    pub git: Option<Git>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// A run stream's event whose data does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{kind}` event: {source}")]
pub struct BadEvent {
    /// The event's type.
    pub kind: String,
    /// Why its data does not parse.
    pub source: serde_json::Error,
}

impl RunEvent {
    /// The event of a type and its data; data that does not parse is an error.
    pub fn parse(kind: &str, data: &str) -> Result<Self, BadEvent> {
        let invalid = |source| BadEvent {
            kind: kind.to_owned(),
            source,
        };
        Ok(match kind {
            "status" => Self::Status(
                serde_json::from_str::<StatusData>(data)
                    .map_err(invalid)?
                    .status,
            ),
            "result" => Self::Result(serde_json::from_str(data).map_err(invalid)?),
            "error" => {
                let parsed: Option<ErrorData> = serde_json::from_str(data).ok();
                Self::Error(parsed.and_then(|d| {
                    d.message.or_else(|| {
                        d.error.and_then(|e| {
                            e.get("message")
                                .and_then(|m| m.as_str())
                                .map(str::to_owned)
                                .or_else(|| e.as_str().map(str::to_owned))
                        })
                    })
                }))
            }
            "done" => Self::Done,
            _ => Self::Other,
        })
    }
}

/// A page of a v1 list: `items` and the cursor of the next page (absent or null at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page.
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    /// The next page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Token usage of an agent (`GET /v1/agents/{id}/usage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Over every run.
    pub total_usage: Tokens,
    /// Per run.
    #[serde(default)]
    pub runs: Vec<RunUsage>,
}

/// Tokens used, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    /// Read by the model.
    #[serde(default)]
    pub input_tokens: u64,
    /// Written by the model.
    #[serde(default)]
    pub output_tokens: u64,
    /// Written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// All of them.
    #[serde(default)]
    pub total_tokens: u64,
}

/// Token usage of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunUsage {
    /// The run.
    pub id: AgentRunId,
    /// Its tokens.
    pub usage: Tokens,
}

/// A file an agent produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Its path, relative to the agent's artifact root.
    pub path: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size_bytes: u64,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A presigned download link (valid 15 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    /// Where to fetch the file, without credentials.
    pub url: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One repository of `GET /v1/repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryItem {
    /// `https://github.com/owner/name`.
    pub url: String,
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelItem {
    /// Its id, as sent in `model.id`.
    pub id: String,
    /// Its name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A deterministic agent id for one launch: an attempt of an instance of a run, with the
/// hash of the instance's resolved spec. A resend of the same launch (a retry, a resume, a
/// lost state) sends the same id, and the API answers `agent_id_conflict` instead of making a
/// second agent; a changed prompt is another launch, with another id.
pub fn agent_id_for(run: &str, instance: &str, attempt: u32, spec_hash: &str) -> AgentId {
    // A fixed namespace of orchestrate's own, so ids never collide with another tool's v5 ids.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f72_6368_6573_7472_6174_6500_0000_0001);
    let name = format!("{run}\n{instance}\n{attempt}\n{spec_hash}");
    AgentId(format!(
        "bc-{}",
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_deterministic_and_distinct_per_attempt_and_spec() {
        let first = agent_id_for("nightly/2026-11-23", "bump[acme/api]", 1, "a1");
        assert_eq!(
            first,
            agent_id_for("nightly/2026-11-23", "bump[acme/api]", 1, "a1")
        );
        assert_ne!(
            first,
            agent_id_for("nightly/2026-11-23", "bump[acme/api]", 2, "a1")
        );
        assert_ne!(
            first,
            agent_id_for("nightly/2026-11-24", "bump[acme/api]", 1, "a1")
        );
        assert_ne!(
            first,
            agent_id_for("nightly/2026-11-23", "bump[acme/api]", 1, "b2"),
            "an edited prompt is another launch"
        );
        let uuid = first.0.strip_prefix("bc-").unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 5);
    }

    #[test]
    fn create_request_uses_the_documented_names() {
        let request = CreateAgentRequest {
            prompt: Prompt::text("Fix it"),
            model: Some(ModelSpec {
                id: "gpt-5".into(),
                params: vec![ModelParam {
                    id: "reasoning".into(),
                    value: "high".into(),
                }],
            }),
            name: Some("n".into()),
            repos: vec![RepoSpec {
                url: "https://github.com/acme/api".into(),
                starting_ref: Some("main".into()),
                pr_url: None,
            }],
            work_on_current_branch: Some(false),
            auto_create_pr: Some(true),
            skip_reviewer_request: None,
            env_vars: None,
            mcp_servers: None,
            mode: Some("agent".into()),
            agent_id: Some(AgentId("bc-1".into())),
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "prompt": {"text": "Fix it"},
                "model": {"id": "gpt-5", "params": [{"id": "reasoning", "value": "high"}]},
                "name": "n",
                "repos": [{"url": "https://github.com/acme/api", "startingRef": "main"}],
                "workOnCurrentBranch": false,
                "autoCreatePR": true,
                "mode": "agent",
                "agentId": "bc-1"
            })
        );
    }

    #[test]
    fn lists_end_with_an_absent_or_null_cursor_and_runs_keep_unknown_statuses() {
        let absent: Page<Agent> = serde_json::from_str(r#"{"items": []}"#).unwrap();
        let null: Page<Agent> =
            serde_json::from_str(r#"{"items": [], "nextCursor": null}"#).unwrap();
        assert_eq!(absent.next_cursor, None);
        assert_eq!(null.next_cursor, None);
        let run: Run = serde_json::from_str(
            r#"{"id": "run-1", "status": "PAUSED", "git": {"branches": [{"repoUrl": "github.com/acme/api", "branch": "cursor/x", "prUrl": null}]}, "new": 1}"#,
        )
        .unwrap();
        assert_eq!(run.status, AgentStatus::Unknown("PAUSED".into()));
        assert_eq!(
            run.git.unwrap().branches[0].branch.as_deref(),
            Some("cursor/x")
        );
    }
}
