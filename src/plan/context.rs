//! The values templates see: `repo`, `run`, `task`, `vars`, `needs`, `agent`.

use serde::Serialize;

use super::{Instance, InstanceKey};

/// `repo.*`.
#[derive(Debug, Clone, Serialize)]
pub struct RepoContext {
    /// `https://github.com/owner/name`.
    pub url: String,
    /// Owner.
    pub owner: String,
    /// Name.
    pub name: String,
    /// The ref the agent starts from; empty for the default branch (`none` to templates).
    #[serde(rename = "ref", serialize_with = "none_if_empty")]
    pub git_ref: String,
}

/// An empty value as `none`: false in an `if`, and an error where a template would print
/// it (see [`crate::spec::template::environment`]), never an empty string in a prompt.
fn none_if_empty<S: serde::Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_empty() {
        serializer.serialize_none()
    } else {
        serializer.serialize_str(value)
    }
}

/// `run.*`.
#[derive(Debug, Clone, Serialize)]
pub struct RunContext {
    /// The run key.
    pub key: String,
    /// The workflow name.
    pub name: String,
    /// The day the run started, `YYYY-MM-DD` (UTC).
    pub date: String,
}

/// `task.*`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskContext {
    /// The task id.
    pub id: String,
}

/// What an agent produced: `agent.*` in follow-ups, and each entry of `needs.<task>`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentOutput {
    /// Agent id.
    pub id: String,
    /// Last status reported by the API.
    pub status: String,
    /// The agent's summary of its work.
    pub summary: String,
    /// Branch the agent pushed to (`none` to templates until it names one).
    #[serde(serialize_with = "none_if_empty")]
    pub branch: String,
    /// Pull request URL, empty when none was opened (`none` to templates).
    #[serde(serialize_with = "none_if_empty")]
    pub pr_url: String,
    /// Link to the agent in Cursor.
    pub url: String,
}

impl AgentOutput {
    /// Stand-ins that show, in a plan, where each output of `key` will go.
    pub fn placeholder(key: &InstanceKey, branch: &str) -> Self {
        let slot = |field: &str| format!("<{field} of {key}>");
        Self {
            id: slot("id"),
            status: slot("status"),
            summary: slot("summary"),
            branch: if branch.is_empty() {
                slot("branch")
            } else {
                branch.to_owned()
            },
            pr_url: slot("pr_url"),
            url: slot("url"),
        }
    }
}

/// One entry of `needs.<task>`: the needed instance and what its agent produced.
#[derive(Debug, Clone, Serialize)]
pub struct NeedContext {
    /// The needed instance's key.
    pub key: String,
    /// Its repository.
    pub repo: RepoContext,
    /// Its state when the dependent launched.
    pub state: String,
    /// Its agent's outputs.
    #[serde(flatten)]
    pub agent: AgentOutput,
}

impl NeedContext {
    /// The entry for `instance`, with `agent` outputs and `state`.
    pub fn new(instance: &Instance, state: &str, agent: AgentOutput) -> Self {
        Self {
            key: instance.key.to_string(),
            repo: instance.repo_context(),
            state: state.to_owned(),
            agent,
        }
    }
}
