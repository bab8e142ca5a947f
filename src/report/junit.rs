//! The JUnit XML report: one test case per instance, so CI systems list agents like tests.

use std::fmt::Write as _;

use super::Report;
use crate::state::{InstanceRecord, InstanceState};

/// Text made safe for XML attributes and content.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The report as JUnit XML.
pub fn render(report: &Report) -> String {
    let failed = |s: InstanceState| matches!(s, InstanceState::Failed | InstanceState::TimedOut);
    let skipped = |s: InstanceState| {
        matches!(
            s,
            InstanceState::Blocked | InstanceState::Skipped | InstanceState::Cancelled
        )
    };
    let failures = report.instances.iter().filter(|i| failed(i.state)).count();
    let skips = report.instances.iter().filter(|i| skipped(i.state)).count();
    let total: u64 = report
        .instances
        .iter()
        .filter_map(InstanceRecord::elapsed)
        .map(|d| d.as_secs())
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"orchestrate\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skips}\" time=\"{total}\">",
        report.instances.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skips}\" time=\"{total}\" timestamp=\"{}\">",
        escape(&report.run.id),
        report.instances.len(),
        report.run.started_at.rfc3339()
    );
    for i in &report.instances {
        let time = i.elapsed().map_or(0, |d| d.as_secs());
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time}\"",
            escape(&i.task),
            escape(&i.key)
        );
        let detail = escape(i.error.as_deref().unwrap_or(i.state.as_str()));
        if failed(i.state) {
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{detail}\" type=\"{}\"/>\n    </testcase>",
                i.state.as_str()
            );
        } else if skipped(i.state) {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                i.state.as_str()
            );
        } else if i.state == InstanceState::Succeeded {
            let pr = i
                .pr_url
                .as_deref()
                .map(|u| format!("pull request: {u}\n"))
                .unwrap_or_default();
            let summary = i.summary.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                ">\n      <system-out>{}</system-out>\n    </testcase>",
                escape(&format!("{pr}{summary}"))
            );
        } else {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"still {}\"/>\n    </testcase>",
                i.state.as_str()
            );
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_what_xml_needs() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt; "
        );
    }
}
