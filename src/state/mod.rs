//! The state of runs: a sled store in `--state DIR`, used through a store thread.

mod handle;
mod live;
mod record;
mod secrets;
mod store;

pub use handle::StoreHandle;
pub use live::{Snapshot, read_snapshot, remove_snapshot, write_snapshot};
pub use record::{
    Attempt, Event, FollowUpIntent, InstanceRecord, InstanceState, LaunchIntent, RECORD_VERSION,
    RepositoryCache, RunRecord, RunState, Timestamp,
};
pub use secrets::webhook_secret;
pub use store::{StateError, Store, Write};
