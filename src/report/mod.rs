//! Reports of a run: Markdown (GitHub step summaries), JSON, JUnit XML; and the GitHub
//! Actions integration that writes them where a workflow run shows them.

mod github;
mod junit;
mod markdown;
mod table;
mod view;

pub use github::{GithubActions, write_github_outputs};
pub use table::{Table, Terminal, Tone, first_line, natural_cmp, short_id};
pub use view::{InstanceView, ListedRun, RunView};

use crate::state::{Counts, InstanceRecord, RunRecord};

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
            ReportFormat::Json => RunView::new(&self.run, &self.instances).to_json(),
            ReportFormat::Junit => junit::render(self),
        }
    }

    /// Instances per state.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.instances)
    }

    /// The pull requests opened, in instance order.
    pub fn pr_urls(&self) -> Vec<&str> {
        self.instances
            .iter()
            .filter_map(|i| i.pr_url.as_deref())
            .collect()
    }
}

/// `owner/name` of an instance's repository.
fn slug(instance: &InstanceRecord) -> &str {
    instance
        .repository
        .trim_start_matches("https://github.com/")
}
