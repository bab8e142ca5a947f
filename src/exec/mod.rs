//! Executing plans: the agent backend, the shared poller, the scheduler and each instance's
//! life. `README.md` beside this file draws the instance lifecycle and its crash invariants.

mod backend;
mod cancel;
mod crash;
mod event;
mod execution;
#[cfg(test)]
mod fake;
mod follow_up;
mod launch;
mod pace;
mod poller;
mod schedule;
mod shared;
mod wait;
mod webhook;

pub use backend::{
    AgentView, AnyBackend, Backend, LaunchSpec, Platform, Recall, Recalled, Statuses, V0, V1,
    Wanted, agent_name,
};
pub use cancel::{Cancelled, cancel_run};
pub use event::{InstanceEvent, Progress, RunEvent};
pub use execution::{ExecConfig, Execution, Halt, Reporter};
pub use poller::{PollConfig, Poller, StatusRead};
pub use webhook::{Deliveries, MAX_BODY, WebhookListener};
