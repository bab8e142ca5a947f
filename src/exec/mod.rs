//! Executing plans: the agent backend, the shared poller, the scheduler and each instance's
//! life.

mod backend;
mod cancel;
mod pace;
mod poller;
mod run;
mod webhook;

pub use backend::{
    AgentView, AnyBackend, Backend, LaunchSpec, Platform, Statuses, V0, V1, agent_name,
};
pub use cancel::{Cancelled, cancel_run};
pub use poller::{PollConfig, Poller, Snapshot};
pub use run::{ExecConfig, Execution, Halt, Progress, Reporter};
pub use webhook::{Deliveries, MAX_BODY, WebhookListener};
