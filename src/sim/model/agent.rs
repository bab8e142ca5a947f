//! One simulated agent: its runs, and what every API view shares of it.

use std::time::SystemTime;

use super::timeline::SimRun;
use crate::cursor::model::v1::AgentRunId as RunId;
use crate::cursor::model::{AgentId, AgentStatus, AgentTarget, Source, Webhook};

/// One simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    pub(in crate::sim) id: AgentId,
    pub(in crate::sim) name: String,
    pub(in crate::sim) source: Source,
    pub(in crate::sim) target: AgentTarget,
    /// v1: the pull request it was asked to work on.
    pub(in crate::sim) existing_pr: Option<String>,
    pub(in crate::sim) created: SystemTime,
    pub(in crate::sim) pr_number: u64,
    pub(in crate::sim) runs: Vec<SimRun>,
    pub(in crate::sim) archived: bool,
    /// What v0 shows once it is stopped.
    pub(in crate::sim) stopped_status: AgentStatus,
    /// The webhook to notify.
    pub webhook: Option<Webhook>,
    /// The last status the webhook was told about, and how many runs the agent had then
    /// (a follow-up ends in FINISHED again, and that is news).
    pub(in crate::sim) notified: Option<(AgentStatus, usize)>,
}

impl SimAgent {
    /// Its latest run.
    pub fn latest(&self) -> &SimRun {
        self.runs.last().expect("an agent has a run")
    }

    /// Its run `id`.
    pub fn run(&self, id: &RunId) -> Option<&SimRun> {
        self.runs.iter().find(|r| r.id() == id)
    }

    /// The v0 status at `now`: its latest run's; after a stop, what the simulator was told
    /// to show (what v0 shows then is not documented).
    pub fn status(&self, now: SystemTime) -> AgentStatus {
        match self.latest().status(now) {
            AgentStatus::Cancelled => self.stopped_status.clone(),
            status => status,
        }
    }

    /// Its pull request, once `finished` (or the one it was asked to work on).
    pub fn pr_url(&self, finished: bool) -> Option<String> {
        self.existing_pr.clone().or_else(|| {
            (finished && self.target.auto_create_pr == Some(true))
                .then(|| format!("{}/pull/{}", self.source.repository, self.pr_number))
        })
    }

    /// Whether the agent works on a prompt at `now` (a platform session is `running`).
    pub fn is_busy(&self, now: SystemTime) -> bool {
        !self.latest().status(now).is_terminal()
    }
}

/// A time as the APIs write it.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// What an agent says it did for `prompt`.
pub fn result_of(prompt: &str) -> String {
    format!("Done: {}", first_line(prompt))
}

/// The first non-empty line of `text`, at most 80 characters.
pub fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(80).collect()
}
