//! How an apply ended, decided from how its execution stopped.

use crate::exec::Halt;
use crate::state::{Counts, InstanceState, RunState};

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// Every instance succeeded.
    Succeeded,
    /// Every instance settled, some not successfully.
    Failed,
    /// Ctrl-C: nothing more was launched; running agents go on, `apply` continues the run.
    Interrupted,
    /// Ctrl-C twice: the run's agents are to be stopped.
    Cancel,
    /// The API's usage limit is reached: the run waits until it is raised.
    UsageLimit(String),
    /// The API or the state cannot be used; the run continues once that is fixed.
    Fatal(String),
}

impl Conclusion {
    /// What the run record becomes; `None` for a cancel, which writes its own.
    pub fn run_state(&self) -> Option<RunState> {
        match self {
            Conclusion::Succeeded => Some(RunState::Succeeded),
            Conclusion::Failed => Some(RunState::Failed),
            Conclusion::Interrupted | Conclusion::UsageLimit(_) | Conclusion::Fatal(_) => {
                Some(RunState::Interrupted)
            }
            Conclusion::Cancel => None,
        }
    }
}

/// The conclusion of an execution that stopped with `halt` (none: every instance settled)
/// leaving `counts`, when the user did or did not ask to stop the agents.
pub fn conclude(halt: Option<&Halt>, counts: &Counts, stop_agents: bool) -> Conclusion {
    match halt {
        Some(Halt::Interrupted) if stop_agents => Conclusion::Cancel,
        Some(Halt::Interrupted) => Conclusion::Interrupted,
        Some(Halt::UsageLimit(message)) => Conclusion::UsageLimit(message.clone()),
        Some(Halt::Fatal(message) | Halt::LeaseLost(message)) => Conclusion::Fatal(message.clone()),
        None if counts.get(InstanceState::Succeeded) == counts.total() => Conclusion::Succeeded,
        None => Conclusion::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(states: &[InstanceState]) -> Counts {
        let mut counts = Counts::default();
        for state in states {
            counts.add(*state);
        }
        counts
    }

    #[test]
    fn a_run_succeeds_only_when_every_instance_did() {
        let all = counts(&[InstanceState::Succeeded; 3]);
        assert_eq!(conclude(None, &all, false), Conclusion::Succeeded);
        let some = counts(&[InstanceState::Succeeded, InstanceState::Blocked]);
        assert_eq!(conclude(None, &some, false), Conclusion::Failed);
        assert_eq!(
            conclude(None, &Counts::default(), false),
            Conclusion::Succeeded
        );
        assert_eq!(
            Conclusion::Failed.run_state(),
            Some(RunState::Failed),
            "failed, not interrupted: nothing is left to continue"
        );
    }

    #[test]
    fn a_halted_run_is_left_to_continue_unless_its_agents_are_to_be_stopped() {
        let running = counts(&[InstanceState::Running]);
        let interrupted = conclude(Some(&Halt::Interrupted), &running, false);
        assert_eq!(interrupted, Conclusion::Interrupted);
        assert_eq!(interrupted.run_state(), Some(RunState::Interrupted));
        assert_eq!(
            conclude(Some(&Halt::Interrupted), &running, true),
            Conclusion::Cancel
        );
        let spent = conclude(Some(&Halt::UsageLimit("spent".into())), &running, true);
        assert_eq!(spent, Conclusion::UsageLimit("spent".into()));
        assert_eq!(spent.run_state(), Some(RunState::Interrupted));
        assert_eq!(
            conclude(Some(&Halt::Fatal("disk".into())), &running, false),
            Conclusion::Fatal("disk".into())
        );
    }
}
