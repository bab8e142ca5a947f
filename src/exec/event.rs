//! What happens to instances and runs, as one typed stream: the store's log, the live view and
//! the reports are all fed from these, so they cannot tell different stories.

use std::time::Duration;

use crate::cursor::AgentId;
use crate::plan::RelaunchReason;
use crate::state::{Event, InstanceState, RunState};

/// Something that happened to one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEvent {
    /// `apply` queued it to be launched again, before anything ran.
    Requeued(RelaunchReason),
    /// A launch is about to be sent; its intent is flushed first.
    LaunchIntent {
        /// The attempt (1-based, over the instance's life).
        attempt: u32,
        /// The branch it pushes to (empty where the agent names its own).
        branch: String,
    },
    /// A launch's answer may have been lost: the agent is looked for before launching again.
    LaunchUncertain {
        /// What the call ended with.
        error: String,
    },
    /// A launch did not reach the API (no connection, a 5xx): nothing was made, and it goes
    /// out again after `after`.
    LaunchDeferred {
        /// What the call ended with.
        error: String,
        /// The wait before the next try.
        after: Duration,
    },
    /// The attempt has its agent.
    Launched {
        /// The agent.
        agent: AgentId,
        /// Whether it was found from an earlier launch instead of launched now.
        found: bool,
    },
    /// An earlier apply launched this attempt with another spec (its records were lost): the
    /// next attempt is a new agent.
    Superseded {
        /// The earlier attempt's agent.
        agent: AgentId,
        /// Its attempt.
        attempt: u32,
    },
    /// A follow-up is about to be sent; its intent is flushed first.
    FollowUpIntent {
        /// Which (1-based).
        number: u32,
    },
    /// A follow-up reached the agent.
    FollowUpSent {
        /// Which (1-based).
        number: u32,
    },
    /// A follow-up is not sent: its `if` is false, or its text cannot be rendered.
    FollowUpSkipped {
        /// Which (1-based).
        number: u32,
        /// Why.
        why: String,
    },
    /// The attempt ran out of time: its agent is being stopped.
    Stopping,
    /// The attempt ended badly and another comes after a pause.
    Retrying {
        /// Why the attempt ended.
        reason: String,
        /// This retry's number, and how many the task allows.
        retry: (u32, u32),
        /// The pause before it.
        after: Duration,
    },
    /// This runner took the instance over from another runner of a shared run, whose lease
    /// ran out (it was killed, stopped or cut off): it continues from the record.
    TakenOver {
        /// The runner it was taken from.
        from: String,
    },
    /// The instance settled.
    Settled {
        /// How.
        state: InstanceState,
        /// The pull request, the error or the reason.
        detail: String,
    },
}

impl InstanceEvent {
    /// The word the log keeps it under.
    pub fn kind(&self) -> &'static str {
        match self {
            InstanceEvent::Requeued(_) | InstanceEvent::Retrying { .. } => "relaunch",
            InstanceEvent::LaunchIntent { .. } => "launch_intent",
            InstanceEvent::LaunchUncertain { .. } => "launch_uncertain",
            InstanceEvent::LaunchDeferred { .. } => "launch_deferred",
            InstanceEvent::Launched { .. } => "launched",
            InstanceEvent::Superseded { .. } => "superseded",
            InstanceEvent::FollowUpIntent { .. } => "follow_up_intent",
            InstanceEvent::FollowUpSent { .. } => "follow_up_sent",
            InstanceEvent::FollowUpSkipped { .. } => "follow_up_skipped",
            InstanceEvent::Stopping => "stop",
            InstanceEvent::TakenOver { .. } => "taken_over",
            InstanceEvent::Settled { state, .. } => state.as_str(),
        }
    }

    /// The log's details.
    pub fn detail(&self) -> String {
        match self {
            InstanceEvent::Requeued(reason) => reason.to_string(),
            InstanceEvent::LaunchIntent { attempt, branch } => {
                format!("attempt {attempt} on branch {branch}")
            }
            InstanceEvent::LaunchUncertain { error }
            | InstanceEvent::LaunchDeferred { error, .. } => error.clone(),
            InstanceEvent::Launched { agent, found } => {
                let how = if *found {
                    "adopted the agent of an earlier send of this launch"
                } else {
                    "launched"
                };
                format!("{how}: {agent}")
            }
            InstanceEvent::Superseded { agent, attempt } => {
                format!("attempt {attempt} ({agent}) was launched with another spec")
            }
            InstanceEvent::FollowUpIntent { number } | InstanceEvent::FollowUpSent { number } => {
                format!("follow-up {number}")
            }
            InstanceEvent::FollowUpSkipped { number, why } => format!("follow-up {number}: {why}"),
            InstanceEvent::Stopping => "timeout: stopping the agent".to_owned(),
            InstanceEvent::TakenOver { from } => format!("from {from}, whose lease ran out"),
            InstanceEvent::Retrying {
                reason,
                retry: (n, of),
                after,
            } => format!("{reason}; retry {n} of {of} in {after:.1?}"),
            InstanceEvent::Settled { detail, .. } => detail.clone(),
        }
    }

    /// The line the live view shows, for the events a person follows; `None` for the steps
    /// in between, which only the log keeps.
    pub fn line(&self, key: &str) -> Option<String> {
        match self {
            InstanceEvent::Launched {
                agent,
                found: false,
            } => Some(format!("launched  {key} ({agent})")),
            InstanceEvent::Launched { agent, found: true } => Some(format!(
                "adopted   {key} ({agent}): launched before, not again"
            )),
            InstanceEvent::Superseded { agent, attempt } => Some(format!(
                "found     {key} ({agent}): attempt {attempt} has another spec; attempt {} is a new agent",
                attempt + 1
            )),
            InstanceEvent::LaunchDeferred { error, after } => Some(format!(
                "deferred  {key}: {error}; launching again in {}",
                humantime::format_duration(Duration::from_secs(after.as_secs().max(1)))
            )),
            InstanceEvent::LaunchUncertain { error } => Some(format!(
                "uncertain {key}: {error}; looking for its agent before launching again"
            )),
            InstanceEvent::FollowUpSent { number } => {
                Some(format!("follow-up {key} #{number} sent"))
            }
            InstanceEvent::Retrying { reason, after, .. } => Some(format!(
                "retrying  {key}: {reason}; relaunch in {}",
                humantime::format_duration(Duration::from_secs(after.as_secs().max(1)))
            )),
            InstanceEvent::TakenOver { from } => {
                Some(format!("took over {key} from {from}: its lease ran out"))
            }
            InstanceEvent::Settled { state, detail } => {
                Some(format!("{:<9} {key}: {detail}", state.as_str()))
            }
            _ => None,
        }
    }

    /// The log line of this event about `key`.
    pub fn log(&self, key: &str) -> Event {
        Event::instance(key, self.kind(), self.detail())
    }
}

/// Something that happened to a whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// An apply started on it, with what it would do.
    Applied {
        /// Instances to launch, relaunch, adopt, continue and keep.
        actions: [usize; 5],
    },
    /// The user cancelled it.
    Cancelled {
        /// Agents stopped.
        stopped: usize,
    },
    /// An apply ended with the run in this state.
    Ended(RunState),
}

impl RunEvent {
    /// The log line of this event.
    pub fn log(&self) -> Event {
        match self {
            RunEvent::Applied {
                actions: [launch, relaunch, adopt, resume, keep],
            } => Event::run(
                "apply",
                format!(
                    "{launch} launch, {relaunch} relaunch, {adopt} adopt, {resume} continue, {keep} keep"
                ),
            ),
            RunEvent::Cancelled { stopped } => {
                Event::run("cancelled", format!("{stopped} agents stopped"))
            }
            RunEvent::Ended(state) => Event::run(state.as_str(), ""),
        }
    }
}

/// What an execution tells whoever shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// An instance's event, as it was logged.
    Instance {
        /// The instance.
        key: String,
        /// What happened.
        event: InstanceEvent,
    },
    /// Something the user should know, said once per run (an output the API does not give).
    Notice(String),
}

impl Progress {
    /// The line the live view shows, if this is worth one.
    pub fn line(&self) -> Option<String> {
        match self {
            Progress::Instance { key, event } => event.line(key),
            Progress::Notice(message) => Some(format!("note      {message}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_words_earlier_releases_wrote() {
        let key = "bump[acme/api]";
        let cases = [
            (
                InstanceEvent::Requeued(RelaunchReason::SpecChanged),
                "relaunch",
                "its spec changed",
            ),
            (
                InstanceEvent::LaunchIntent {
                    attempt: 2,
                    branch: "b-attempt-2".into(),
                },
                "launch_intent",
                "attempt 2 on branch b-attempt-2",
            ),
            (
                InstanceEvent::Launched {
                    agent: AgentId("bc-1".into()),
                    found: true,
                },
                "launched",
                "adopted the agent of an earlier send of this launch: bc-1",
            ),
            (
                InstanceEvent::FollowUpSkipped {
                    number: 1,
                    why: "`if` is false".into(),
                },
                "follow_up_skipped",
                "follow-up 1: `if` is false",
            ),
            (
                InstanceEvent::Settled {
                    state: InstanceState::TimedOut,
                    detail: "timed out after 1m".into(),
                },
                "timed_out",
                "timed out after 1m",
            ),
        ];
        for (event, kind, detail) in cases {
            let logged = event.log(key);
            assert_eq!(
                (logged.kind.as_str(), logged.detail.as_str()),
                (kind, detail)
            );
            assert_eq!(logged.instance.as_deref(), Some(key));
        }
    }

    #[test]
    fn the_live_view_shows_launches_and_endings_not_the_steps_between() {
        let launched = Progress::Instance {
            key: "k".into(),
            event: InstanceEvent::Launched {
                agent: AgentId("bc-1".into()),
                found: false,
            },
        };
        assert_eq!(launched.line().as_deref(), Some("launched  k (bc-1)"));
        let intent = Progress::Instance {
            key: "k".into(),
            event: InstanceEvent::FollowUpIntent { number: 1 },
        };
        assert_eq!(intent.line(), None);
        let retry = InstanceEvent::Retrying {
            reason: "the agent EXPIRED".into(),
            retry: (1, 2),
            after: Duration::from_millis(300),
        };
        assert_eq!(
            retry.line("k").as_deref(),
            Some("retrying  k: the agent EXPIRED; relaunch in 1s")
        );
    }
}
