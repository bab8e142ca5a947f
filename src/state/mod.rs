//! The state of runs: a sled store in `--state DIR`, or a PostgreSQL database that several
//! runners share (`--state postgres://...`), used through a store thread.

mod export;
mod handle;
mod live;
mod location;
mod postgres;
mod record;
mod secrets;
mod sled;
mod store;

pub use export::{ImportError, Imported, RunExport, export, read as read_export};
pub use handle::StoreHandle;
pub use live::{
    Snapshot, read_snapshot, remove_snapshot, request_cancel, take_cancel_request, write_snapshot,
};
pub use location::{Location, PgUrl};
pub use postgres::{RECONNECT_FOR, SCHEMA_VERSION};
pub use record::{
    Attempt, BranchOutput, Counts, Event, FollowUpIntent, InstanceRecord, InstanceState,
    LaunchIntent, LearnedLimit, RECORD_VERSION, RepositoryCache, RunRecord, RunState, Timestamp,
};
pub use secrets::webhook_secret;
/// A run id made safe as a file name (`sweep/2026-11-22` -> `sweep_2026-11-22`).
fn file_name(run: &str) -> String {
    run.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub use store::{Claim, Followed, StateError, Store, Write};
