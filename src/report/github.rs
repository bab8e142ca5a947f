//! GitHub Actions: the step summary, error annotations, and step outputs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use super::{Report, ReportFormat};
use crate::state::InstanceState;

/// Where a GitHub Actions job wants its summary and outputs, when running under one.
#[derive(Debug, Clone)]
pub struct GithubActions {
    summary: Option<PathBuf>,
    output: Option<PathBuf>,
}

impl GithubActions {
    /// The integration, when `GITHUB_ACTIONS=true`.
    pub fn from_env() -> Option<Self> {
        (std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")).then(|| Self {
            summary: std::env::var_os("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            output: std::env::var_os("GITHUB_OUTPUT").map(PathBuf::from),
        })
    }

    /// Appends the Markdown report to the step summary, writes outputs, and returns the
    /// `::error::` annotations to print on stdout (one per failed or timed-out instance).
    pub fn publish(&self, report: &Report) -> std::io::Result<String> {
        if let Some(path) = &self.summary {
            append(path, &report.render(ReportFormat::Markdown))?;
        }
        if let Some(path) = &self.output {
            append(path, &write_github_outputs(report))?;
        }
        let mut annotations = String::new();
        for i in report
            .instances
            .iter()
            .filter(|i| matches!(i.state, InstanceState::Failed | InstanceState::TimedOut))
        {
            let detail = i.error.as_deref().unwrap_or(i.state.as_str());
            let _ = writeln!(
                annotations,
                "::error title=orchestrate {}::{} {}: {}",
                command_escape(&i.key),
                command_escape(&i.key),
                i.state.as_str(),
                command_escape(detail)
            );
        }
        Ok(annotations)
    }
}

fn append(path: &PathBuf, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Workflow-command data escaping (`%`, CR, LF; and `:` `,` in properties).
fn command_escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
        .replace(':', "%3A")
        .replace(',', "%2C")
}

/// The `$GITHUB_OUTPUT` lines: `run`, `state`, a count per state, and `pr_urls` (one per
/// line, as a multi-line value).
pub fn write_github_outputs(report: &Report) -> String {
    let mut out = format!(
        "run={}\nstate={}\n",
        report.run.id,
        report.run.state.as_str()
    );
    for state in InstanceState::ALL {
        let n = report.instances.iter().filter(|i| i.state == state).count();
        let _ = writeln!(out, "{}={n}", state.as_str());
    }
    // A delimiter that no URL can contain.
    let _ = writeln!(
        out,
        "pr_urls<<ORCHESTRATE_EOF\n{}\nORCHESTRATE_EOF",
        report.pr_urls().join("\n")
    );
    out
}
