//! Cancelling a run: stop its agents, mark what was left.

use super::backend::Backend;
use crate::cursor::AgentId;
use crate::state::{Event, InstanceState, RunState, StateError, StoreHandle, Timestamp, Write};

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
            instance.state = InstanceState::Cancelled;
        } else if matches!(instance.state, InstanceState::Pending) {
            instance.state = InstanceState::Skipped;
            done.skipped += 1;
        } else {
            continue;
        }
        instance.finished_at = Some(Timestamp::now());
        writes.push(Write::Event(
            run.to_owned(),
            Event::instance(
                &instance.key,
                instance.state.as_str(),
                "cancelled by the user",
            ),
        ));
        writes.push(Write::Instance(run.to_owned(), instance));
    }
    if let Some(mut record) = record {
        record.state = RunState::Cancelled;
        record.finished_at = Some(Timestamp::now());
        writes.push(Write::Run(record));
        writes.push(Write::Event(
            run.to_owned(),
            Event::run("cancelled", format!("{} agents stopped", done.stopped)),
        ));
    }
    store.write(writes).await?;
    Ok(done)
}
