//! What `apply` shows while it runs. In a terminal: a live line (settled of total, counts
//! per state, elapsed time, an estimate once there is a rate to go by, the longest-running
//! agents) under the events. Elsewhere (CI, nightly logs): one timestamped line per event,
//! and a heartbeat every `--heartbeat` with the counts and the agents still running, so
//! that an hour of agents' work is not an hour of silence.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::Output;
use crate::state::{Counts, Timestamp};
#[cfg(test)]
use crate::state::{InstanceRecord, InstanceState};

/// How often a run without a terminal says where it is, unless `--heartbeat` says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// What the progress display knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Moment {
    /// Instances per state.
    pub counts: Counts,
    /// Instances already settled when this apply started (kept ones, an earlier run's).
    pub settled_at_start: usize,
    /// Since this apply started.
    pub elapsed: Duration,
    /// Time calls waited on the API's quotas.
    pub waited: Duration,
    /// The instances whose agents work, with how long they have, longest first.
    pub running: Vec<(String, Duration)>,
}

impl Moment {
    /// The time left, from the pace of this apply's own settlements; none before the first.
    pub fn estimate(&self) -> Option<Duration> {
        let settled = self.counts.settled();
        let done_here = settled.saturating_sub(self.settled_at_start);
        let left = self.counts.total().saturating_sub(settled);
        if done_here == 0 || left == 0 {
            return None;
        }
        let (done_here, left) = (
            u32::try_from(done_here).unwrap_or(u32::MAX),
            u32::try_from(left).unwrap_or(u32::MAX),
        );
        Some((self.elapsed / done_here).saturating_mul(left))
    }
}

/// `12m 3s`: whole seconds, as people read a duration.
fn short(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// The live line: `4/7 settled · 2 running, 1 pending · 3m 12s elapsed · ~2m left ·
/// longest: fix-tests[acme/api] 2m 3s`.
pub fn live_line(moment: &Moment) -> String {
    let counts = &moment.counts;
    let mut parts = vec![
        format!("{}/{} settled", counts.settled(), counts.total()),
        counts.to_string(),
        format!("{} elapsed", short(moment.elapsed)),
    ];
    if let Some(left) = moment.estimate() {
        parts.push(format!("~{} left", short(left)));
    }
    if moment.waited >= Duration::from_secs(1) {
        parts.push(format!("{} waited on quotas", short(moment.waited)));
    }
    if let Some((key, running)) = moment.running.first() {
        parts.push(format!("longest: {key} {}", short(*running)));
    }
    parts.join(" · ")
}

/// The heartbeat without a terminal: `4/7 settled (2 running, ...); 3m elapsed; still
/// running: a [12m elapsed], b [9m elapsed] and 3 more`.
pub fn heartbeat_line(moment: &Moment) -> String {
    const SHOWN: usize = 3;
    let counts = &moment.counts;
    let mut line = format!(
        "{}/{} settled ({}); {} elapsed",
        counts.settled(),
        counts.total(),
        counts,
        short(moment.elapsed)
    );
    if let Some(left) = moment.estimate() {
        let _ = write!(line, ", ~{} left", short(left));
    }
    if moment.waited >= Duration::from_secs(1) {
        let _ = write!(line, "; {} waited on quotas", short(moment.waited));
    }
    if !moment.running.is_empty() {
        let named: Vec<String> = moment
            .running
            .iter()
            .take(SHOWN)
            .map(|(key, running)| format!("{key} [{} elapsed]", short(*running)))
            .collect();
        let _ = write!(line, "; still running: {}", named.join(", "));
        if moment.running.len() > SHOWN {
            let _ = write!(line, " and {} more", moment.running.len() - SHOWN);
        }
    }
    line
}

/// An event line with its first word coloured by what it says: green for success, red for
/// failure, yellow for a retry or a wait, cyan for a launch.
pub fn painted(line: &str, color: bool) -> String {
    let word = line.split_whitespace().next().unwrap_or_default();
    let sgr = match word {
        "succeeded" => "32",
        "failed" | "timed_out" | "cancelled" | "blocked" => "31",
        "retrying" | "waiting" | "warning:" => "33",
        "launched" | "adopted" | "found" => "36",
        _ => return line.to_owned(),
    };
    if !color {
        return line.to_owned();
    }
    format!("\x1b[{sgr}m{word}\x1b[0m{}", &line[word.len()..])
}

/// `[07:12:03]`: the time an unattended log line was written (UTC).
fn stamp() -> String {
    let now = Timestamp::now().rfc3339();
    let time = now.get(11..19).unwrap_or(&now);
    format!("[{time}]")
}

/// The sources a live view reads at each moment.
pub struct Sources {
    /// Instances per state, as they change.
    pub counts: watch::Receiver<Counts>,
    /// Time waited on quotas so far.
    pub waited: Box<dyn Fn() -> Duration + Send + Sync>,
    /// The instances whose agents work, with how long they have, longest first.
    pub running: Box<dyn Fn() -> Vec<(String, Duration)> + Send + Sync>,
}

/// The progress display of one apply.
#[derive(Clone)]
pub struct LiveView {
    bar: Option<ProgressBar>,
    out: Output,
    heartbeat: Duration,
    started: Instant,
}

impl LiveView {
    /// A live view when stderr is a terminal (and not `-q`), else timestamped lines with a
    /// heartbeat every `heartbeat` (never when zero).
    pub fn new(out: &Output, total: usize, heartbeat: Duration) -> Self {
        let interactive = std::io::stderr().is_terminal() && !out.is_quiet();
        let bar = interactive.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:24}] {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            out: out.clone(),
            heartbeat,
            started: Instant::now(),
        }
    }

    /// Shows one event.
    pub fn event(&self, line: &str) {
        let line = painted(line, self.out.is_colored());
        match &self.bar {
            Some(bar) => bar.println(line),
            None => self.out.status(&format!("{} {line}", stamp())),
        }
    }

    /// Keeps the display current: the live line on each change and every second, or the
    /// heartbeat. Abort the task it returns when the run ends.
    pub fn follow(&self, sources: Sources) -> tokio::task::JoinHandle<()> {
        let view = self.clone();
        tokio::spawn(async move {
            let Sources {
                mut counts,
                waited,
                running,
            } = sources;
            let settled_at_start = counts.borrow().settled();
            let moment = |counts: Counts| Moment {
                counts,
                settled_at_start,
                elapsed: view.started.elapsed(),
                waited: waited(),
                running: running(),
            };
            match &view.bar {
                Some(bar) => loop {
                    // Copied out first: `running` locks the records, which `emit` holds
                    // while it moves the counts, so a borrow held across it deadlocks.
                    let latest = *counts.borrow_and_update();
                    let now = moment(latest);
                    // The length follows the counts: a resumed or retried run never shows
                    // more settled than it has.
                    bar.set_length(now.counts.total() as u64);
                    bar.set_position(now.counts.settled() as u64);
                    bar.set_message(live_line(&now));
                    tokio::select! {
                        changed = counts.changed() => if changed.is_err() { return },
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                },
                None if view.heartbeat.is_zero() || view.out.is_quiet() => {}
                None => loop {
                    tokio::time::sleep(view.heartbeat).await;
                    let latest = *counts.borrow();
                    let now = moment(latest);
                    view.out
                        .status(&format!("{} {}", stamp(), heartbeat_line(&now)));
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(states: &[InstanceState]) -> Counts {
        let records: Vec<InstanceRecord> = states
            .iter()
            .enumerate()
            .map(|(n, state)| {
                let mut record = InstanceRecord::pending(&format!("t[a/{n}]"), "t", "r", "b", "h");
                record.state = *state;
                record
            })
            .collect();
        Counts::of(&records)
    }

    #[test]
    fn a_resumed_run_counts_what_it_has_and_estimates_from_its_own_pace() {
        use InstanceState::*;
        let mut moment = Moment {
            // Resumed: 2 were kept, 1 settled since, 2 run, 1 waits.
            counts: counts(&[Succeeded, Succeeded, Succeeded, Running, Running, Pending]),
            settled_at_start: 2,
            elapsed: Duration::from_secs(150),
            waited: Duration::ZERO,
            running: vec![
                ("fix[a/1]".into(), Duration::from_secs(130)),
                ("fix[a/2]".into(), Duration::from_secs(20)),
            ],
        };
        insta::assert_snapshot!(live_line(&moment), @"3/6 settled · 1 pending, 2 running, 3 succeeded · 2m 30s elapsed · ~7m 30s left · longest: fix[a/1] 2m 10s");
        // Before its first settlement there is no pace to go by: no estimate, not `~0s`.
        moment.settled_at_start = 3;
        moment.waited = Duration::from_millis(12_400);
        insta::assert_snapshot!(live_line(&moment), @"3/6 settled · 1 pending, 2 running, 3 succeeded · 2m 30s elapsed · 12s waited on quotas · longest: fix[a/1] 2m 10s");
    }

    #[test]
    fn event_lines_are_coloured_by_their_first_word_only_when_asked() {
        assert_eq!(
            painted("failed    fix[a/b]: ERROR", false),
            "failed    fix[a/b]: ERROR"
        );
        assert_eq!(
            painted("failed    fix[a/b]: ERROR", true),
            "\x1b[31mfailed\x1b[0m    fix[a/b]: ERROR"
        );
        assert_eq!(painted("note      x", true), "note      x");
    }

    #[test]
    fn the_heartbeat_names_the_agents_still_running() {
        use InstanceState::*;
        let moment = Moment {
            counts: counts(&[Running, Running, Running, Running, Pending, Failed]),
            settled_at_start: 0,
            elapsed: Duration::from_secs(754),
            waited: Duration::ZERO,
            running: (1..=4)
                .map(|n| (format!("bump[a/{n}]"), Duration::from_secs(800 - n * 60)))
                .collect(),
        };
        insta::assert_snapshot!(heartbeat_line(&moment), @"1/6 settled (1 pending, 4 running, 1 failed); 12m 34s elapsed, ~1h 2m 50s left; still running: bump[a/1] [12m 20s elapsed], bump[a/2] [11m 20s elapsed], bump[a/3] [10m 20s elapsed] and 1 more");
        let idle = Moment::default();
        assert_eq!(heartbeat_line(&idle), "0/0 settled (); 0s elapsed");
        assert_eq!(idle.estimate(), None);
    }
}
