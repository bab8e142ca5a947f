//! The Markdown report, as GitHub step summaries and pull request comments show it.

use std::fmt::Write as _;

use super::{Report, slug};
use crate::state::InstanceState;

fn icon(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Succeeded => "✅",
        InstanceState::Failed | InstanceState::TimedOut => "❌",
        InstanceState::Blocked | InstanceState::Skipped | InstanceState::Cancelled => "⏭️",
        _ => "⏳",
    }
}

/// A table cell: one line, pipes escaped, at most 120 characters.
fn cell(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let short: String = line.chars().take(120).collect();
    let short = if line.chars().count() > 120 {
        format!("{short}…")
    } else {
        short
    };
    short.replace('|', "\\|")
}

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let run = &report.run;
    let mut out = format!("## orchestrate: `{}` {}\n\n", run.id, run.state.as_str());
    let _ = writeln!(
        out,
        "{} instances: {}. Started {}.\n",
        report.instances.len(),
        report.counts(),
        run.started_at.rfc3339()
    );
    out.push_str(
        "| Instance | Repository | State | Branch | Pull request | Duration | Tokens | Summary |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for i in &report.instances {
        let pr = i.pr_url.as_deref().map_or_else(
            || "-".to_owned(),
            |url| format!("[#{}]({url})", url.rsplit('/').next().unwrap_or("PR")),
        );
        let took = i.elapsed().map_or_else(
            || "-".to_owned(),
            |d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string(),
        );
        let summary = i
            .error
            .as_deref()
            .or(i.summary.as_deref())
            .map_or_else(|| "-".to_owned(), cell);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} {} | `{}` | {pr} | {took} | {} | {summary} |",
            i.key,
            slug(i),
            icon(i.state),
            i.state.as_str(),
            i.branch,
            i.tokens_text(),
        );
    }
    out
}
