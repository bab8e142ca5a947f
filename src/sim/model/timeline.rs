//! One prompt's work on a clock: a run's status is never stored, it follows from its
//! timeline and the time of the question, so a simulator sped up a thousand times costs no
//! background work.

use std::time::{Duration, SystemTime};

use crate::cursor::model::AgentStatus;
use crate::cursor::model::v1::AgentRunId as RunId;

/// How a run's work ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// FINISHED.
    Finished,
    /// ERROR.
    Error,
    /// EXPIRED.
    Expired,
}

/// One prompt's work: the first prompt of an agent, or a follow-up.
#[derive(Debug, Clone)]
pub struct SimRun {
    id: RunId,
    prompt: String,
    started: SystemTime,
    creating_until: SystemTime,
    busy_until: SystemTime,
    outcome: Outcome,
    cancelled: Option<SystemTime>,
}

impl SimRun {
    /// A run of `prompt` started at `started`: creating for `creating`, then working for
    /// `work`, then ending as `outcome`.
    pub fn new(
        id: RunId,
        prompt: String,
        started: SystemTime,
        creating: Duration,
        work: Duration,
        outcome: Outcome,
    ) -> Self {
        Self {
            id,
            prompt,
            started,
            creating_until: started + creating,
            busy_until: started + creating + work,
            outcome,
            cancelled: None,
        }
    }

    /// Its id.
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The prompt it works on.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// When it started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// When it stops CREATING.
    pub fn creating_until(&self) -> SystemTime {
        self.creating_until
    }

    /// When its work ends, unless cancelled first.
    pub fn busy_until(&self) -> SystemTime {
        self.busy_until
    }

    /// When it was cancelled, if it was.
    pub fn cancelled(&self) -> Option<SystemTime> {
        self.cancelled
    }

    /// How its work ends, unless cancelled.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// When it stopped or will stop working: its end, or its cancel.
    pub fn end(&self) -> SystemTime {
        self.cancelled.unwrap_or(self.busy_until)
    }

    /// Cancels it at `now`.
    pub fn cancel(&mut self, now: SystemTime) {
        self.cancelled = Some(now);
    }

    /// Its status at `now`.
    pub fn status(&self, now: SystemTime) -> AgentStatus {
        if self.cancelled.is_some() {
            AgentStatus::Cancelled
        } else if now < self.creating_until {
            AgentStatus::Creating
        } else if now < self.busy_until {
            AgentStatus::Running
        } else {
            match self.outcome {
                Outcome::Finished => AgentStatus::Finished,
                Outcome::Error => AgentStatus::Error,
                Outcome::Expired => AgentStatus::Expired,
            }
        }
    }

    /// The last moment, up to `now`, at which its status changed.
    pub fn changed(&self, now: SystemTime) -> SystemTime {
        [
            Some(self.started),
            Some(self.creating_until),
            Some(self.busy_until),
            self.cancelled,
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t <= now)
        .max()
        .unwrap_or(self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome) -> (SimRun, SystemTime) {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let run = SimRun::new(
            RunId("run-1".into()),
            "go".into(),
            start,
            Duration::from_secs(5),
            Duration::from_secs(60),
            outcome,
        );
        (run, start)
    }

    #[test]
    fn a_run_creates_works_then_ends_as_drawn() {
        let (run, start) = run(Outcome::Error);
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(run.status(at(1)), AgentStatus::Creating);
        assert_eq!(run.status(at(30)), AgentStatus::Running);
        assert_eq!(run.status(at(65)), AgentStatus::Error);
        assert_eq!(run.changed(at(30)), at(5));
        assert_eq!(run.changed(at(99)), at(65));
        assert_eq!(run.end(), at(65));
    }

    #[test]
    fn a_cancelled_run_ends_at_its_cancel() {
        let (mut run, start) = run(Outcome::Finished);
        let at = |s| start + Duration::from_secs(s);
        run.cancel(at(10));
        assert_eq!(run.status(at(11)), AgentStatus::Cancelled);
        assert_eq!(run.end(), at(10));
        assert_eq!(run.changed(at(11)), at(10));
    }
}
