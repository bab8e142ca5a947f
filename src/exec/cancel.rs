//! Cancelling a run: stop its agents, mark what was left.

use super::backend::Backend;
use super::event::{InstanceEvent, RunEvent};
use crate::cursor::AgentId;
use crate::state::{InstanceState, RunState, StateError, StoreHandle, Write};

/// What a cancel did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// Agents stopped.
    pub stopped: usize,
    /// Instances that had not started.
    pub skipped: usize,
    /// Agents that could not be stopped, with why.
    pub failures: Vec<String>,
}

/// Stops every live agent of `run` (POST stop), marks those instances cancelled and the ones
/// that had not started skipped, and the run cancelled.
pub async fn cancel_run<B: Backend>(
    store: &StoreHandle,
    backend: &B,
    run: &str,
) -> Result<Cancelled, StateError> {
    let id = run.to_owned();
    let (record, instances) = store
        .read(move |s| Ok((s.run(&id)?, s.instances(&id)?)))
        .await?;
    let mut done = Cancelled::default();
    let mut writes = Vec::new();
    for mut instance in instances {
        if instance.state.has_live_agent() {
            if let Some(agent) = &instance.agent_id {
                if let Err(error) = backend.stop(&AgentId(agent.clone())).await {
                    done.failures.push(format!("{}: {error}", instance.key));
                    continue;
                }
                done.stopped += 1;
            }
            instance.settle(InstanceState::Cancelled);
        } else if matches!(instance.state, InstanceState::Pending) {
            instance.settle(InstanceState::Skipped);
            done.skipped += 1;
        } else {
            continue;
        }
        let event = InstanceEvent::Settled {
            state: instance.state,
            detail: "cancelled by the user".to_owned(),
        };
        writes.push(Write::Event(run.to_owned(), event.log(&instance.key)));
        writes.push(Write::Instance(run.to_owned(), instance));
    }
    if let Some(mut record) = record {
        record.state = RunState::Cancelled;
        record.finished_at = Some(crate::state::Timestamp::now());
        writes.push(Write::Run(record));
        let event = RunEvent::Cancelled {
            stopped: done.stopped,
        };
        writes.push(Write::Event(run.to_owned(), event.log()));
    }
    store.write(writes).await?;
    Ok(done)
}
