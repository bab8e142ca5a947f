//! Names of runs and task instances.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::TaskId;

/// The key of one task instance: `task[owner/name]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceKey(String);

impl InstanceKey {
    /// The key of `task` on the repository `owner/name` (or a discover pattern).
    pub fn new(task: &TaskId, slug: &str) -> Self {
        Self(format!("{task}[{slug}]"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key that tells one run of a workflow from another (`2026-11-22` for a nightly sweep).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunKey(String);

/// The run key of a workflow without `run_key` and without `--run`.
pub const DEFAULT_RUN_KEY: &str = "default";

/// Why a run key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "run key `{0}` may only hold letters, digits, `.`, `_` and `-` (it becomes part of branch names), and at most 64 of them"
)]
pub struct RunKeyError(pub String);

impl RunKey {
    /// Checks and wraps a run key.
    pub fn new(key: impl Into<String>) -> Result<Self, RunKeyError> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= 64
            && !key.starts_with(['.', '-'])
            && !key.contains("..")
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            Ok(Self(key))
        } else {
            Err(RunKeyError(key))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of simulated runs' ids.
const SIMULATED: &str = "sim:";

/// A run: one workflow name and one run key, shown `name/key` (`sim:name/key` when simulated).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// The run of workflow `name` with `key`.
    pub fn new(name: &str, key: &RunKey) -> Self {
        Self(format!("{name}/{key}"))
    }

    /// The same run against the in-process simulator: a namespace of its own (`sim:name/key`),
    /// so that a simulated run never blocks, shadows or passes for the real one.
    #[must_use]
    pub fn simulated(&self) -> Self {
        Self(format!("{SIMULATED}{}", self.0))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_run_has_an_id_of_its_own() {
        let real = RunId::new("upgrade", &RunKey::new("nightly").unwrap());
        assert_eq!(real.simulated().as_str(), "sim:upgrade/nightly");
        assert_ne!(real.simulated(), real);
    }

    #[test]
    fn run_keys_stay_branch_safe() {
        for ok in ["2026-11-22", "default", "v1.2_rc"] {
            assert!(RunKey::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "..", "-x", ".x", "é", &"x".repeat(65)] {
            assert!(RunKey::new(bad).is_err(), "{bad}");
        }
    }
}
