//! What `apply` shows while it runs: in a terminal, a live line (counts per state, agents
//! running, time waited on quotas, time left) under the events; elsewhere (CI), one plain
//! line per event.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Output;
use tokio::sync::watch;

use crate::state::Counts;
#[cfg(test)]
use crate::state::{InstanceRecord, InstanceState};

/// The progress display of one apply.
#[derive(Clone)]
pub struct LiveView {
    bar: Option<ProgressBar>,
    out: Output,
}

impl LiveView {
    /// A live view over `total` instances when stderr is a terminal (and not `-q`), else
    /// plain lines.
    pub fn new(out: &Output, total: usize) -> Self {
        let interactive = std::io::stderr().is_terminal() && !out.is_quiet();
        let bar = interactive.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:24}] {pos}/{len} settled  {msg}  ~{eta} left",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            out: out.clone(),
        }
    }

    /// Shows one event.
    pub fn event(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => self.out.status(line),
        }
    }

    /// Keeps the live line current: on each change of `counts`, and every second for the
    /// time `waited` on quotas. Abort the task it returns when the run ends.
    pub fn follow(
        &self,
        mut counts: watch::Receiver<Counts>,
        waited: impl Fn() -> Duration + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        tokio::spawn(async move {
            let Some(bar) = bar else { return };
            loop {
                let now = *counts.borrow_and_update();
                bar.set_position(now.settled() as u64);
                bar.set_message(status_line(&now, waited()));
                tokio::select! {
                    changed = counts.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    /// Removes the live line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `3 running, 1 following_up, 4 pending, 2 succeeded; 12s waited on quotas`.
pub fn status_line(counts: &Counts, waited: Duration) -> String {
    let line = counts.to_string();
    if waited < Duration::from_secs(1) {
        return line;
    }
    let waited = humantime::format_duration(Duration::from_secs(waited.as_secs()));
    format!("{line}; {waited} waited on quotas")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_states_and_quota_waits() {
        let mut records: Vec<InstanceRecord> = (0..4)
            .map(|n| InstanceRecord::pending(&format!("t[a/{n}]"), "t", "r", "b", "h"))
            .collect();
        records[0].state = InstanceState::Running;
        records[1].state = InstanceState::Succeeded;
        let records = Counts::of(&records);
        assert_eq!(
            status_line(&records, Duration::ZERO),
            "2 pending, 1 running, 1 succeeded"
        );
        assert_eq!(
            status_line(&records, Duration::from_millis(12_400)),
            "2 pending, 1 running, 1 succeeded; 12s waited on quotas"
        );
    }
}
