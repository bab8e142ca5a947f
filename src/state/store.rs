//! The store's interface: the same records, writes and errors whether the state is the
//! embedded sled database in a directory or a PostgreSQL database that several runners share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::location::Location;
use super::postgres::PgStore;
use super::record::{
    Event, InstanceRecord, LearnedLimit, RECORD_VERSION, RepositoryCache, RunRecord, RunState,
    Timestamp,
};
use super::sled::SledStore;

/// Why the state cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// Another process holds the state.
    #[error(
        "the state in {at} is in use by another orchestrate ({holder}); wait for it to finish, or use another --state directory"
    )]
    Locked {
        /// Where the state is.
        at: String,
        /// Who holds it, as it wrote in the lock file.
        holder: String,
    },
    /// Another process applies this run (a shared store locks runs, not the store).
    #[error(
        "run {run} is being applied by another orchestrate ({holder}); wait for it to finish, or `orchestrate cancel {run}` it"
    )]
    RunLocked {
        /// The run.
        run: String,
        /// Who holds it: host, pid, since when, and its command.
        holder: String,
    },
    /// The run's lock went with the connection, and another process took it meanwhile.
    #[error(
        "lost the lock of run {run} while the database was out of reach, and another orchestrate took it ({holder}); this apply stops so that no instance is launched twice"
    )]
    LockLost {
        /// The run.
        run: String,
        /// Who holds it now.
        holder: String,
    },
    /// This runner's lease of an instance ran out (it was cut off from the database for
    /// longer than half the lease): another runner may continue it, so this one stops.
    #[error(
        "the lease of {key} in run {run} ran out while this runner could not renew it; another runner continues it"
    )]
    LeaseLost {
        /// The run.
        run: String,
        /// The instance.
        key: String,
    },
    /// Several runners on one run need a database they share.
    #[error(
        "several runners can share a run only through a database: {at} is a directory of this machine; use --state postgres://..."
    )]
    NotShared {
        /// Where the state is.
        at: String,
    },
    /// The directory or database cannot be opened or written.
    #[error("cannot use the state in {at}: {message}")]
    Io {
        /// Where the state is.
        at: String,
        /// What failed.
        message: String,
    },
    /// The database cannot be opened: sled finds its own files corrupt.
    #[error(
        "the state in {at} cannot be opened ({message}); `orchestrate apply` moves it aside, never deleting it, and rebuilds its runs from the API"
    )]
    Broken {
        /// Where the state is.
        at: String,
        /// What sled said.
        message: String,
    },
    /// A record cannot be read; it is left as it is.
    #[error(
        "the state in {at} holds a record that cannot be read ({key}): {message}; it was left untouched"
    )]
    Unreadable {
        /// Where the state is.
        at: String,
        /// The record's key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A record was written by a newer release.
    #[error(
        "the state in {at} was written by a newer orchestrate (record format {found}, this release reads up to {RECORD_VERSION}); upgrade orchestrate, or use another --state"
    )]
    Newer {
        /// Where the state is.
        at: String,
        /// The version found.
        found: u32,
    },
    /// The database's schema was migrated by a newer release.
    #[error(
        "the database {at} has schema version {found}, and this orchestrate knows up to {known}; upgrade orchestrate (it never downgrades a schema)"
    )]
    NewerSchema {
        /// Where the state is.
        at: String,
        /// The version found.
        found: i32,
        /// The newest this release knows.
        known: i32,
    },
}

/// A write that belongs in a batch.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived, moved straight into the store
pub enum Write {
    /// Create or replace a run.
    Run(RunRecord),
    /// Create or replace an instance of a run.
    Instance(String, InstanceRecord),
    /// Append an event to a run's log.
    Event(String, Event),
    /// Replace the repository cache.
    Repositories(RepositoryCache),
    /// Remember when `GET /v0/repositories` was last called.
    LastRepositoriesCall(Timestamp),
    /// Remember the calls quota an API named.
    LearnedLimit(LearnedLimit),
    /// Remove an instance (a simulated run that starts over).
    RemoveInstance(String, String),
    /// Remove a run with its instances and its log.
    RemoveRun(String),
    /// Refuse the whole batch unless this runner holds the lease of instance `.1` of run
    /// `.0` with at least half of it left, checked in the transaction of the writes it
    /// guards: a runner cut off past that point can no longer overwrite what the runner
    /// that took over records. Ignored by a store no other runner shares.
    Fence(String, String),
    /// Give back the lease of instance `.1` of run `.0`, which the batch settles: its place
    /// under the run's cap is free from the batch's commit on. Only in a batch fenced by
    /// the same lease; ignored by a store no other runner shares.
    Release(String, String),
}

/// One instance of a joined run, as a runner following the run reads it.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The instance.
    pub key: String,
    /// Whether its agent works (it counts under the cap).
    pub working: bool,
    /// Who holds its lease unexpired: `Some(true)` this runner, `Some(false)` another.
    pub holder: Option<bool>,
    /// Its record, where its state is not the one the reader knew.
    pub changed: Option<InstanceRecord>,
}

/// What a runner's claim of an instance of a shared run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This runner holds its lease, with a place under the run's concurrency cap; `from`
    /// the runner whose lease of it had run out, if one had.
    Mine {
        /// The runner it is taken over from.
        from: Option<String>,
    },
    /// Another runner's lease holds it, unexpired: this one follows the record.
    Held(String),
    /// Free, but the run's cap is reached across its runners: try again later.
    Full,
}

/// When the repositories endpoint was last called: a record of its own, so that it carries
/// a version like every other.
#[derive(Serialize, serde::Deserialize)]
pub(super) struct LastCall {
    pub(super) at: Timestamp,
}

/// A record is a JSON object, so that its version can sit beside its fields.
#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    data: T,
}

/// A record as JSON, with the format version beside its fields.
pub(super) fn encode_value<T: Serialize>(data: &T) -> serde_json::Value {
    serde_json::to_value(Envelope {
        v: RECORD_VERSION,
        data,
    })
    .expect("records are plain data")
}

/// A record as JSON text.
pub(super) fn encode<T: Serialize>(data: &T) -> Vec<u8> {
    serde_json::to_vec(&encode_value(data)).expect("records are plain data")
}

/// A record from its JSON text, refused when a newer release wrote it.
pub(super) fn decode<T: DeserializeOwned>(
    at: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StateError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| unreadable(at, key, e.to_string()))?;
    decode_value(at, key, value)
}

/// A record from its JSON, refused when a newer release wrote it.
pub(super) fn decode_value<T: DeserializeOwned>(
    at: &str,
    key: &str,
    value: serde_json::Value,
) -> Result<T, StateError> {
    let version = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| unreadable(at, key, "no format version".into()))?;
    let version = u32::try_from(version).unwrap_or(u32::MAX);
    if version > RECORD_VERSION {
        return Err(StateError::Newer {
            at: at.to_owned(),
            found: version,
        });
    }
    serde_json::from_value::<Envelope<T>>(value)
        .map(|e| e.data)
        .map_err(|e| unreadable(at, key, e.to_string()))
}

fn unreadable(at: &str, key: &str, message: String) -> StateError {
    StateError::Unreadable {
        at: at.to_owned(),
        key: key.to_owned(),
        message,
    }
}

/// The store, whichever it is. Its calls block: use it from the store thread
/// ([`super::StoreHandle`]).
#[derive(Debug)]
pub enum Store {
    /// The embedded sled database in a directory, held by one process.
    Sled(SledStore),
    /// A PostgreSQL database, shared; runs are locked one by one.
    Postgres(Box<PgStore>),
}

impl Store {
    /// Opens (or creates) the state at `location`.
    pub fn open(location: &Location) -> Result<Self, StateError> {
        Ok(match location {
            Location::Dir(dir) => Store::Sled(SledStore::open(dir)?),
            Location::Postgres(url) => Store::Postgres(Box::new(PgStore::open(url)?)),
        })
    }

    /// Opens the state as [`Store::open`] does, except that a sled database that cannot be
    /// opened is moved aside (to the path returned) and a new one started in its place.
    pub fn open_setting_aside(location: &Location) -> Result<(Self, Option<PathBuf>), StateError> {
        Ok(match location {
            Location::Dir(dir) => {
                let (store, aside) = SledStore::open_setting_aside(dir)?;
                (Store::Sled(store), aside)
            }
            Location::Postgres(url) => (Store::Postgres(Box::new(PgStore::open(url)?)), None),
        })
    }

    /// A directory of this machine for what stays on it: live snapshots (sled only, whose
    /// readers cannot open the store while an apply holds it) and webhook secrets.
    pub fn local_dir(&self) -> &Path {
        match self {
            Store::Sled(store) => store.dir(),
            Store::Postgres(store) => store.local_dir(),
        }
    }

    /// Whether readers in other processes see this store only through live snapshots.
    pub fn needs_snapshots(&self) -> bool {
        matches!(self, Store::Sled(_))
    }

    /// Where the state is, for messages (a database URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Store::Sled(store) => store.dir().display().to_string(),
            Store::Postgres(store) => store.describe(),
        }
    }

    /// Time spent writing and committing so far.
    pub fn busy(&self) -> Duration {
        match self {
            Store::Sled(store) => store.busy(),
            Store::Postgres(store) => store.busy(),
        }
    }

    /// A run.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        match self {
            Store::Sled(store) => store.run(id),
            Store::Postgres(store) => store.run(id),
        }
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let mut runs = match self {
            Store::Sled(store) => store.runs()?,
            Store::Postgres(store) => store.runs()?,
        };
        runs.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(runs)
    }

    /// The instances of a run, in key order.
    pub fn instances(&self, run: &str) -> Result<Vec<InstanceRecord>, StateError> {
        match self {
            Store::Sled(store) => store.instances(run),
            Store::Postgres(store) => store.instances(run),
        }
    }

    /// A run's log, oldest first.
    pub fn events(&self, run: &str) -> Result<Vec<Event>, StateError> {
        match self {
            Store::Sled(store) => store.events(run),
            Store::Postgres(store) => store.events(run),
        }
    }

    /// The cached repository list.
    pub fn repositories(&self) -> Result<Option<RepositoryCache>, StateError> {
        match self {
            Store::Sled(store) => store.repositories(),
            Store::Postgres(store) => store.repositories(),
        }
    }

    /// When `GET /v0/repositories` was last called, by any process on this state.
    pub fn last_repositories_call(&self) -> Result<Option<Timestamp>, StateError> {
        match self {
            Store::Sled(store) => store.last_repositories_call(),
            Store::Postgres(store) => store.last_repositories_call(),
        }
    }

    /// The calls quota an API last named, by any process on this state.
    pub fn learned_limit(&self) -> Result<Option<LearnedLimit>, StateError> {
        match self {
            Store::Sled(store) => store.learned_limit(),
            Store::Postgres(store) => store.learned_limit(),
        }
    }

    /// Applies writes atomically, and returns once they are durable.
    pub fn write(&mut self, writes: &[Write]) -> Result<(), StateError> {
        match self {
            Store::Sled(store) => store.write(writes),
            Store::Postgres(store) => store.write(writes),
        }
    }

    /// Takes `run` for this process until it ends. A directory is taken whole when opened;
    /// a shared database locks each run, and refuses one another process holds.
    pub fn lock_run(&self, run: &str) -> Result<(), StateError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(store) => store.lock_run(run),
        }
    }

    /// The database several runners share; a directory is of one machine.
    fn shared(&self) -> Result<&PgStore, StateError> {
        match self {
            Store::Sled(store) => Err(StateError::NotShared {
                at: store.dir().display().to_string(),
            }),
            Store::Postgres(store) => Ok(store),
        }
    }

    /// Joins `run` as one of its runners (see [`PgStore::join_run`]); a directory cannot.
    pub fn join_run(&self, run: &str, lease: Duration) -> Result<(), StateError> {
        self.shared()?.join_run(run, lease)
    }

    /// Claims instances `keys` of a joined run for this runner, in order and in one
    /// transaction, within `cap` agents at once across its runners; each with its record as
    /// the database has it now.
    pub fn claim(
        &self,
        run: &str,
        keys: &[String],
        cap: u32,
    ) -> Result<Vec<(Claim, Option<InstanceRecord>)>, StateError> {
        self.shared()?.claim(run, keys, cap)
    }

    /// Every instance of a joined run as [`Followed`] says, its record where its state is
    /// not the one in `known`.
    pub fn followed(
        &self,
        run: &str,
        known: &[(String, String)],
    ) -> Result<Vec<Followed>, StateError> {
        self.shared()?.followed(run, known)
    }

    /// Renews every lease this runner holds; how many it holds.
    pub fn renew_leases(&self) -> Result<u64, StateError> {
        match self {
            Store::Sled(_) => Ok(0),
            Store::Postgres(store) => store.renew_leases(),
        }
    }

    /// Lets go of this runner's lease of an instance it stops driving unsettled: the lease
    /// expires now, so that another runner takes the instance over at once, while its live
    /// agent keeps its place under the cap through its record.
    pub fn let_go(&self, run: &str, key: &str) -> Result<(), StateError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(store) => store.let_go(run, key),
        }
    }

    /// Takes one call from a token bucket every process on the state shares (see
    /// [`PgStore::take_token`]); a directory has one process, whose own limiters suffice.
    pub fn take_token(
        &self,
        name: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Result<(), Duration>, StateError> {
        match self {
            Store::Sled(_) => Ok(Ok(())),
            Store::Postgres(store) => store.take_token(name, per_second, burst),
        }
    }

    /// Takes this process's turn at the repositories endpoint, if no other process on the
    /// state has it (a directory has one process: its turn is always free).
    pub fn take_repositories_turn(&self) -> Result<bool, StateError> {
        match self {
            Store::Sled(_) => Ok(true),
            Store::Postgres(store) => store.take_repositories_turn(),
        }
    }

    /// Ends this process's turn at the repositories endpoint.
    pub fn end_repositories_turn(&self) -> Result<(), StateError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(store) => store.end_repositories_turn(),
        }
    }

    /// Who else applies `run` now, if anyone.
    pub fn holder(&self, run: &str) -> Result<Option<String>, StateError> {
        match self {
            // Opening the directory took it: no other process can be applying.
            Store::Sled(_) => Ok(None),
            Store::Postgres(store) => store.holder(run),
        }
    }

    /// A run as found: one recorded `running` that no process applies is interrupted.
    pub fn as_found(&self, mut run: RunRecord) -> Result<RunRecord, StateError> {
        if run.state == RunState::Running && self.holder(&run.id)?.is_none() {
            run.state = RunState::Interrupted;
        }
        Ok(run)
    }

    /// Asks the process applying `run` to cancel it.
    pub fn request_cancel(&self, run: &str) -> Result<(), StateError> {
        match self {
            Store::Sled(store) => {
                super::live::request_cancel(store.dir(), run).map_err(|e| StateError::Io {
                    at: store.dir().display().to_string(),
                    message: format!("cannot ask the running apply to cancel: {e}"),
                })
            }
            Store::Postgres(store) => store.request_cancel(run),
        }
    }

    /// Whether a `cancel` asked for `run`; the request is taken (removed) when it did.
    pub fn take_cancel_request(&self, run: &str) -> Result<bool, StateError> {
        match self {
            Store::Sled(store) => Ok(super::live::take_cancel_request(store.dir(), run)),
            Store::Postgres(store) => store.take_cancel_request(run),
        }
    }
}
