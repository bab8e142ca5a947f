//! The top level of a workflow file.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Api, ApiSettings, Fleet, FleetName, Settings, Task, TaskId};

/// The only workflow format version this release reads.
pub const FORMAT_VERSION: u32 = 1;

/// Most agents active at once when a workflow does not say.
pub const DEFAULT_CONCURRENCY: u32 = 5;

/// A workflow: fleets of repositories and the agent tasks to run on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "orchestrate workflow", extend("$id" = "https://orchestrate.dev/schema/workflow.schema.json"))]
pub struct Workflow {
    /// Format version of this file; must be 1.
    pub version: u32,
    /// Name of the workflow: lowercase letters, digits and dashes. With the run key, it names
    /// the run.
    #[schemars(extend("pattern" = "^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// Free text shown by `plan` and in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Template for the run key: one run per distinct key (for example `{{ date }}` for a
    /// nightly sweep). Without it, every apply continues the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
    /// Which API runs the workflow.
    #[serde(default, skip_serializing_if = "is_default")]
    pub api: ApiSettings,
    /// Values available to every template as `vars.<name>`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vars: IndexMap<String, serde_json::Value>,
    /// Most agents active at once (default 5).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: u32,
    /// Settings inherited by every task; a task may override each.
    #[serde(default)]
    pub defaults: Settings,
    /// Named lists of repositories, or repositories discovered through the API.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub fleets: IndexMap<FleetName, Fleet>,
    /// The agent tasks, keyed by id.
    pub tasks: IndexMap<TaskId, Task>,
}

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

fn is_default(api: &ApiSettings) -> bool {
    *api == ApiSettings::default()
}

impl Workflow {
    /// Where its agents run: its `api:` section, else the environment, else Cursor's API v1;
    /// an error when a variable holds something else or the platform lacks its URL or agent.
    pub fn api(&self) -> Result<Api, super::api::ApiChoiceError> {
        Api::resolve(&self.api)
    }
}
