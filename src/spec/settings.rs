//! Settings a task inherits from `defaults:` and may override.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// Settings shared by `defaults:` and every task; a task's own value wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
        }
    }
}
