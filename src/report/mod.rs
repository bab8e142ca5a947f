//! Reports of a run: Markdown (GitHub step summaries), JSON, JUnit XML; and the GitHub
//! Actions integration that writes them where a workflow run shows them.

mod github;
mod junit;
mod markdown;

use serde_json::json;

pub use github::{GithubActions, write_github_outputs};

use crate::state::{InstanceRecord, InstanceState, RunRecord, Timestamp};

/// How `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A Markdown table (what GitHub step summaries show).
    Markdown,
    /// JSON, with the fields of `status --json` and more.
    Json,
    /// JUnit XML: one test case per instance, for CI test views.
    Junit,
}

/// A run and its instances, ready to be reported.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run.
    pub run: RunRecord,
    /// Its instances, in key order.
    pub instances: Vec<InstanceRecord>,
}

impl Report {
    /// The report in `format`.
    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Markdown => markdown::render(self),
            ReportFormat::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&self.json()).expect("plain JSON")
            ),
            ReportFormat::Junit => junit::render(self),
        }
    }

    /// Instances per state, in the order of [`InstanceState::ALL`].
    pub fn counts(&self) -> Vec<(InstanceState, usize)> {
        InstanceState::ALL
            .iter()
            .map(|&state| {
                (
                    state,
                    self.instances.iter().filter(|i| i.state == state).count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The pull requests opened, in instance order.
    pub fn pr_urls(&self) -> Vec<&str> {
        self.instances
            .iter()
            .filter_map(|i| i.pr_url.as_deref())
            .collect()
    }

    fn json(&self) -> serde_json::Value {
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts()
            .into_iter()
            .map(|(s, n)| (s.as_str().to_owned(), n.into()))
            .collect();
        json!({
            "run": self.run.id,
            "workflow": self.run.workflow,
            "api": self.run.api.as_str(),
            "key": self.run.key,
            "state": self.run.state.as_str(),
            "started_at": self.run.started_at.rfc3339(),
            "finished_at": self.run.finished_at.map(Timestamp::rfc3339),
            "counts": counts,
            "instances": self.instances.iter().map(|i| json!({
                "key": i.key,
                "task": i.task,
                "repo": i.repository,
                "state": i.state.as_str(),
                "agent_id": i.agent_id,
                "branch": i.branch,
                "pr_url": i.pr_url,
                "summary": i.summary,
                "error": i.error,
                "attempts": i.attempt,
                "duration_seconds": i.elapsed().map(|d| d.as_secs()),
                "run_duration_ms": i.duration_ms,
                "tokens": i.tokens,
                "branches": i.branches,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `owner/name` of an instance's repository.
fn slug(instance: &InstanceRecord) -> &str {
    instance
        .repository
        .trim_start_matches("https://github.com/")
}
