//! Waiting: from the status reads of an attempt's agent to how it ended.

use std::time::{Duration, SystemTime};

use super::backend::AgentView;
use super::poller::StatusRead;
use crate::cursor::{AgentStatus, ApiError};

/// Consecutive reads of the same unknown status after which it counts as the end (DESIGN.md:
/// an unknown status is not terminal until it stops changing).
pub(super) const UNKNOWN_STATUS_READS: u32 = 10;

/// How an attempt's agent ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    /// It finished its prompt (or follow-up).
    Finished(AgentView),
    /// It ended badly, for this reason.
    Failed(String),
    /// It ran past the task's timeout.
    TimedOut,
    /// The API no longer has it.
    Deleted,
}

/// What the reads of one agent have shown so far, and so whether the next one ends the wait.
#[derive(Debug)]
pub(super) struct Watching {
    /// When the last follow-up was accepted: reads from before it say nothing of it.
    follow_up_sent: Option<SystemTime>,
    /// After a follow-up, a FINISHED read this long after it counts even if RUNNING was
    /// never seen (the agent may have been quicker than the reads).
    grace: Duration,
    seen_working: bool,
    /// When the agent's conversation was seen answering the follow-up: a FINISHED read sent
    /// after that is its end.
    answered: Option<SystemTime>,
    /// Whether the last read was FINISHED too soon after the follow-up to tell it from the
    /// prompt before it.
    unsure: bool,
    /// The unknown status last read, and how many reads in a row said it.
    unknown: Option<(String, u32)>,
}

impl Watching {
    /// A wait on an agent, after a follow-up accepted at `follow_up_sent` if any.
    pub(super) fn new(follow_up_sent: Option<SystemTime>, grace: Duration) -> Self {
        Self {
            follow_up_sent,
            grace,
            seen_working: false,
            answered: None,
            unsure: false,
            unknown: None,
        }
    }

    /// Whether the last read was FINISHED too soon after the follow-up to count, and RUNNING
    /// was never seen: the agent's conversation can tell whether it answered the follow-up.
    pub(super) fn unsure(&self) -> bool {
        self.unsure
    }

    /// The agent's conversation, read at `at`, shows the follow-up answered: it worked on
    /// it, so a FINISHED read sent after `at` is its end, grace or not. (Not one sent
    /// before: an answer may show while the agent still works.)
    pub(super) fn answered(&mut self, at: SystemTime) {
        self.answered = Some(at);
    }

    /// The ending `snapshot` shows, if it shows one.
    pub(super) fn observe(&mut self, snapshot: &StatusRead) -> Option<Ending> {
        let agent = match &snapshot.agent {
            Ok(agent) => agent,
            Err(ApiError::NotFound { .. }) => return Some(Ending::Deleted),
            // A failed read says nothing; the poller reads again.
            Err(_) => return None,
        };
        self.unsure = false;
        if let Some(sent) = self.follow_up_sent {
            if snapshot.at <= sent {
                return None;
            }
            let fresh = snapshot.at.duration_since(sent).unwrap_or_default() >= self.grace;
            let answered = self.answered.is_some_and(|at| snapshot.at > at);
            if !agent.status.is_terminal() {
                self.seen_working = true;
            } else if !self.seen_working && !fresh && !answered {
                self.unsure = agent.status == AgentStatus::Finished;
                return None;
            }
        }
        let failed = |why: &str| Some(Ending::Failed(why.to_owned()));
        match &agent.status {
            AgentStatus::Finished => Some(Ending::Finished(agent.clone())),
            AgentStatus::Error => failed("the agent ended in ERROR"),
            AgentStatus::Expired => failed("the agent EXPIRED"),
            AgentStatus::Cancelled => failed("the agent's run was CANCELLED"),
            AgentStatus::Unknown(status) => self.unknown_status(agent, status),
            _ => {
                self.unknown = None;
                None
            }
        }
    }

    /// An unknown status is not terminal as far as we know, until it stops changing.
    fn unknown_status(&mut self, agent: &AgentView, status: &str) -> Option<Ending> {
        let reads = match &self.unknown {
            Some((last, n)) if last == status => n + 1,
            _ => 1,
        };
        if reads == 1 {
            tracing::warn!(agent = %agent.id, %status, "the API reports a status orchestrate does not know");
        }
        if reads >= UNKNOWN_STATUS_READS {
            return Some(Ending::Failed(format!(
                "the agent reports `{status}`, a status orchestrate does not know, and it stopped changing"
            )));
        }
        self.unknown = Some((status.to_owned(), reads));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn read(status: AgentStatus, at: SystemTime) -> StatusRead {
        StatusRead {
            agent: Ok(crate::exec::fake::agent("bc-1", status)),
            at,
        }
    }

    fn ended(ending: Option<Ending>) -> Option<String> {
        ending.map(|e| match e {
            Ending::Finished(_) => "finished".to_owned(),
            Ending::Failed(why) => why,
            Ending::TimedOut => "timed out".to_owned(),
            Ending::Deleted => "deleted".to_owned(),
        })
    }

    #[test]
    fn terminal_statuses_end_the_wait_and_working_ones_do_not() {
        let now = SystemTime::now();
        let mut watching = Watching::new(None, GRACE);
        assert_eq!(watching.observe(&read(AgentStatus::Running, now)), None);
        assert_eq!(
            ended(watching.observe(&read(AgentStatus::Finished, now))).as_deref(),
            Some("finished")
        );
        assert_eq!(
            ended(watching.observe(&read(AgentStatus::Expired, now))).as_deref(),
            Some("the agent EXPIRED")
        );
        let gone = StatusRead {
            agent: Err(ApiError::NotFound {
                message: "no such agent".into(),
            }),
            at: now,
        };
        assert_eq!(ended(watching.observe(&gone)).as_deref(), Some("deleted"));
    }

    #[test]
    fn an_unknown_status_ends_the_wait_only_once_it_stops_changing() {
        let now = SystemTime::now();
        let mut watching = Watching::new(None, GRACE);
        let unknown = |s: &str| read(AgentStatus::Unknown(s.into()), now);
        for _ in 1..UNKNOWN_STATUS_READS {
            assert_eq!(watching.observe(&unknown("PAUSED")), None);
        }
        // A different one starts the count again.
        assert_eq!(watching.observe(&unknown("THINKING")), None);
        for _ in 2..UNKNOWN_STATUS_READS {
            assert_eq!(watching.observe(&unknown("THINKING")), None);
        }
        let last = ended(watching.observe(&unknown("THINKING"))).unwrap();
        assert!(
            last.contains("`THINKING`, a status orchestrate does not know"),
            "{last}"
        );
    }

    #[test]
    fn after_a_follow_up_an_old_finished_read_is_not_its_end() {
        let sent = SystemTime::now();
        let mut watching = Watching::new(Some(sent), GRACE);
        // Read before the follow-up was accepted: about the prompt before it.
        let before = read(AgentStatus::Finished, sent - Duration::from_secs(1));
        assert_eq!(watching.observe(&before), None);
        // FINISHED soon after, RUNNING never seen: maybe still the old status.
        let soon = read(AgentStatus::Finished, sent + Duration::from_secs(1));
        assert_eq!(watching.observe(&soon), None);
        // Past the grace it counts.
        let late = read(AgentStatus::Finished, sent + GRACE);
        assert_eq!(ended(watching.observe(&late)).as_deref(), Some("finished"));
    }

    #[test]
    fn after_a_follow_up_its_answer_in_the_conversation_ends_the_wait_at_the_next_read() {
        let sent = SystemTime::now();
        let at = |ms| sent + Duration::from_millis(ms);
        let mut watching = Watching::new(Some(sent), GRACE);
        // FINISHED, RUNNING never seen, well within the grace: unsure.
        assert_eq!(
            watching.observe(&read(AgentStatus::Finished, at(900))),
            None
        );
        assert!(watching.unsure());
        // The conversation, read at 1 s, shows the answer.
        watching.answered(at(1_000));
        // A read sent before the conversation was read may still be from before the answer.
        assert_eq!(
            watching.observe(&read(AgentStatus::Finished, at(950))),
            None
        );
        assert_eq!(
            ended(watching.observe(&read(AgentStatus::Finished, at(1_100)))).as_deref(),
            Some("finished")
        );
    }

    #[test]
    fn only_a_finished_read_too_soon_after_a_follow_up_is_unsure() {
        let sent = SystemTime::now();
        let at = |s| sent + Duration::from_secs(s);
        let mut watching = Watching::new(Some(sent), GRACE);
        assert_eq!(watching.observe(&read(AgentStatus::Finished, at(1))), None);
        assert!(watching.unsure());
        assert_eq!(watching.observe(&read(AgentStatus::Running, at(2))), None);
        assert!(!watching.unsure());
        let mut before = Watching::new(Some(sent), GRACE);
        assert_eq!(
            before.observe(&read(AgentStatus::Finished, sent - GRACE)),
            None
        );
        assert!(
            !before.unsure(),
            "a read from before the follow-up says nothing of it"
        );
    }

    #[test]
    fn after_a_follow_up_finished_counts_at_once_once_it_was_seen_working() {
        let sent = SystemTime::now();
        let mut watching = Watching::new(Some(sent), GRACE);
        let at = |s| sent + Duration::from_secs(s);
        assert_eq!(watching.observe(&read(AgentStatus::Running, at(1))), None);
        assert_eq!(
            ended(watching.observe(&read(AgentStatus::Finished, at(2)))).as_deref(),
            Some("finished")
        );
    }
}
