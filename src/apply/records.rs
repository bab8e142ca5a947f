//! From a plan and what an earlier apply recorded to the records this apply starts from.

use std::collections::HashMap;

use crate::exec::InstanceEvent;
use crate::plan::{Action, End, Plan, Recorded};
use crate::state::{InstanceRecord, InstanceState};

/// What the diff needs of each recorded instance; instances in a state of `retry` are
/// relaunched on request.
pub fn recorded_map(
    records: &[InstanceRecord],
    retry: &[InstanceState],
) -> HashMap<String, Recorded> {
    records
        .iter()
        .map(|r| {
            let end = match r.state {
                InstanceState::Succeeded => End::Succeeded,
                InstanceState::Failed | InstanceState::TimedOut => End::Unsuccessful,
                InstanceState::Cancelled => End::Cancelled,
                _ => End::Unfinished,
            };
            let recorded = Recorded {
                spec_hash: r.spec_hash.clone(),
                end,
                relaunch_requested: retry.contains(&r.state),
                launched: r.attempt > 0 || r.agent_id.is_some() || r.launch.is_some(),
            };
            (r.key.clone(), recorded)
        })
        .collect()
}

/// The records an apply starts from, and what changed in them.
#[derive(Debug, PartialEq, Eq)]
pub struct Merged {
    /// One per plan instance, in plan order.
    pub records: Vec<InstanceRecord>,
    /// The records to write (all but the kept ones).
    pub changed: Vec<InstanceRecord>,
    /// The instances queued to be launched again, with why.
    pub requeued: Vec<(String, InstanceEvent)>,
}

/// The records of `plan` (diffed) over `recorded`: new and relaunched instances start
/// pending; continued ones pick up where they were (blocked and skipped ones are looked at
/// again); kept ones stay. A relaunch keeps the attempt count, so its branch is new.
pub fn merge(plan: &Plan, recorded: &[InstanceRecord]) -> Merged {
    let recorded: HashMap<&str, &InstanceRecord> =
        recorded.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut merged = Merged {
        records: Vec::with_capacity(plan.instances.len()),
        changed: Vec::new(),
        requeued: Vec::new(),
    };
    for instance in &plan.instances {
        let repository = instance
            .repo
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let fresh = || {
            InstanceRecord::pending(
                instance.key.as_str(),
                instance.task.as_str(),
                &repository,
                &instance.branch,
                &instance.spec_hash(),
            )
        };
        let previous = recorded.get(instance.key.as_str()).copied();
        let record = match (instance.action, previous) {
            (Action::Keep, Some(previous)) => {
                merged.records.push(previous.clone());
                continue;
            }
            (Action::Continue, Some(previous)) => {
                let mut record = previous.clone();
                if !matches!(
                    record.state,
                    InstanceState::Blocked | InstanceState::Skipped
                ) {
                    // Not written again: a runner sharing the run may be moving it on.
                    merged.records.push(record);
                    continue;
                }
                record.state = InstanceState::Pending;
                record
            }
            (Action::Relaunch, Some(previous)) => {
                if let Some(reason) = instance.relaunch {
                    let event = InstanceEvent::Requeued(reason);
                    merged.requeued.push((previous.key.clone(), event));
                }
                let mut record = fresh();
                record.attempt = previous.attempt;
                record.attempts.clone_from(&previous.attempts);
                record
            }
            _ => fresh(),
        };
        merged.changed.push(record.clone());
        merged.records.push(record);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Options, RelaunchReason};
    use crate::spec::{self, SourceFile};

    fn plan(prompt: &str, recorded: &[InstanceRecord], retry: &[InstanceState]) -> Plan {
        let yaml = format!(
            "version: 1\nname: p\nfleets:\n  f:\n    - https://github.com/a/x\n    - https://github.com/a/y\n\
             tasks:\n  bump:\n    fleet: f\n    prompt: {prompt}\n"
        );
        let workflow = spec::parse(&SourceFile::new("p.yaml", yaml)).unwrap();
        let mut plan = Plan::build(&workflow, &Options::default()).unwrap();
        plan.diff(&recorded_map(recorded, retry));
        plan
    }

    fn states(merged: &Merged) -> Vec<(&str, InstanceState, u32)> {
        merged
            .records
            .iter()
            .map(|r| (r.key.as_str(), r.state, r.attempt))
            .collect()
    }

    #[test]
    fn a_first_apply_starts_every_instance_pending() {
        let merged = merge(&plan("bump", &[], &[]), &[]);
        assert_eq!(
            states(&merged),
            [
                ("bump[a/x]", InstanceState::Pending, 0),
                ("bump[a/y]", InstanceState::Pending, 0)
            ]
        );
        assert_eq!(merged.changed, merged.records);
        assert!(merged.requeued.is_empty());
    }

    #[test]
    fn kept_instances_are_not_written_and_failed_ones_relaunch_when_retried() {
        let first = merge(&plan("bump", &[], &[]), &[]).records;
        let mut recorded = first.clone();
        recorded[0].state = InstanceState::Succeeded;
        recorded[1].attempt = 2;
        recorded[1].end_attempt("the agent ended in ERROR");
        recorded[1].fail(InstanceState::Failed, "the agent ended in ERROR");
        let merged = merge(
            &plan("bump", &recorded, &[InstanceState::Failed]),
            &recorded,
        );
        assert_eq!(
            states(&merged),
            [
                ("bump[a/x]", InstanceState::Succeeded, 0),
                ("bump[a/y]", InstanceState::Pending, 2)
            ]
        );
        assert_eq!(merged.changed.len(), 1, "the kept one is not written");
        assert_eq!(merged.changed[0].attempts.len(), 1, "the history stays");
        assert_eq!(
            merged.requeued,
            [(
                "bump[a/y]".to_owned(),
                InstanceEvent::Requeued(RelaunchReason::RetryRequested)
            )]
        );
    }

    #[test]
    fn continued_instances_keep_their_place_and_blocked_ones_are_looked_at_again() {
        let mut recorded = merge(&plan("bump", &[], &[]), &[]).records;
        recorded[0].state = InstanceState::Running;
        recorded[0].agent_id = Some("bc-1".into());
        recorded[1].state = InstanceState::Blocked;
        let merged = merge(&plan("bump", &recorded, &[]), &recorded);
        assert_eq!(merged.records[0], recorded[0]);
        assert_eq!(merged.records[1].state, InstanceState::Pending);
    }

    #[test]
    fn an_edited_prompt_relaunches_and_says_why() {
        let mut recorded = merge(&plan("bump", &[], &[]), &[]).records;
        for record in &mut recorded {
            record.state = InstanceState::Succeeded;
        }
        let merged = merge(&plan("bump harder", &recorded, &[]), &recorded);
        assert!(
            merged
                .records
                .iter()
                .all(|r| r.state == InstanceState::Pending)
        );
        assert_eq!(merged.requeued.len(), 2);
        assert_eq!(
            merged.requeued[0].1,
            InstanceEvent::Requeued(RelaunchReason::SpecChanged)
        );
    }
}
