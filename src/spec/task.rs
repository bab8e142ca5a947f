//! Tasks: the agent work a workflow asks for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FleetName, RepoUrl, Settings, TaskId};

/// One agent task: on a single repository, or on every repository of a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Task {
    /// The repository this task runs on (exactly one of `repo` and `fleet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoUrl>,
    /// The fleet this task fans out over, one agent per repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetName>,
    /// What the agent is asked to do (a template).
    pub prompt: String,
    /// Tasks that must settle first; their outputs are `needs.<task>` in templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<TaskId>,
    /// When to run, given the outcome of `needs` (default `all_succeeded`).
    #[serde(default, rename = "if", skip_serializing_if = "Condition::is_default")]
    pub condition: Condition,
    /// Prompts sent in order to the same agent after it finishes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<FollowUp>,
    /// Staged rollout over the fleet: canaries first, the rest only if they all succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Overrides of `defaults:`.
    #[serde(flatten)]
    pub settings: Settings,
}

/// When a task with `needs` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every needed instance succeeded.
    #[default]
    AllSucceeded,
    /// At least one needed instance succeeded.
    AnySucceeded,
    /// Once every needed instance settled, whatever the outcome.
    Always,
}

impl Condition {
    /// The word a workflow writes for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::AllSucceeded => "all_succeeded",
            Condition::AnySucceeded => "any_succeeded",
            Condition::Always => "always",
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
    fn is_default(&self) -> bool {
        *self == Condition::AllSucceeded
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A prompt sent to the same agent after it finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    /// The follow-up text (a template that also sees `agent.*`).
    pub prompt: String,
    /// An expression over `agent.*`; the follow-up is sent only when it is true.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A staged rollout of a fleet task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// How many instances (the first of the fleet) run first; the others launch only once
    /// every canary succeeded, and are blocked if one did not.
    #[schemars(range(min = 1))]
    pub canary: u32,
}
