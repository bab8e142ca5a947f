//! The PostgreSQL store: one database shared by every runner that names it.
//!
//! Records are the same versioned JSON as in sled, in `jsonb` columns of tables in an
//! `orchestrate` schema that versioned migrations create on first use. Runs are locked one
//! by one with session-level advisory locks, so that a holder that dies (killed, or cut off)
//! lets go by itself when its connection ends. A connection that drops (the server
//! restarted) is made again, its locks taken back, and the work retried, for up to
//! [`RECONNECT_FOR`]; a lock another process took meanwhile stops the apply.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, Config};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::location::PgUrl;
use super::record::{Event, InstanceRecord, LearnedLimit, RepositoryCache, RunRecord, Timestamp};
use super::store::{LastCall, StateError, Write, decode_value, encode_value};

/// The schema, one migration per version, applied in order and never edited once released.
const MIGRATIONS: &[&str] = &[
    // 1: the records, the run log, the shared cache, who holds which run, cancel requests.
    "CREATE TABLE orchestrate.runs (
         id text PRIMARY KEY,
         record jsonb NOT NULL
     );
     CREATE TABLE orchestrate.instances (
         run text NOT NULL,
         key text NOT NULL,
         record jsonb NOT NULL,
         PRIMARY KEY (run, key)
     );
     CREATE TABLE orchestrate.events (
         run text NOT NULL,
         seq bigserial NOT NULL,
         record jsonb NOT NULL,
         PRIMARY KEY (run, seq)
     );
     CREATE TABLE orchestrate.cache (
         name text PRIMARY KEY,
         record jsonb NOT NULL
     );
     CREATE TABLE orchestrate.holders (
         run text PRIMARY KEY,
         holder text NOT NULL
     );
     CREATE TABLE orchestrate.cancel_requests (
         run text PRIMARY KEY
     );",
    // 2: several runners on one run, each instance claimed by one through a lease; the
    // configured call ceilings, as token buckets every process on the database shares.
    "CREATE TABLE orchestrate.leases (
         run text NOT NULL,
         key text NOT NULL,
         runner text NOT NULL,
         expires_at timestamptz NOT NULL,
         PRIMARY KEY (run, key)
     );
     CREATE INDEX leases_by_runner ON orchestrate.leases (runner);
     CREATE INDEX instances_working ON orchestrate.instances (run)
         WHERE record->>'state' IN ('launching', 'running', 'following_up');
     CREATE TABLE orchestrate.buckets (
         name text PRIMARY KEY,
         tokens double precision NOT NULL,
         at timestamptz NOT NULL
     );",
];

/// The newest schema version this release knows.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // a handful
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Serialises migrations of processes that open a new database at once.
const MIGRATION_LOCK: i64 = 0x6f72_6368_6d69_6772; // "orchmigr"

/// Serialises the calls of the repositories endpoint of every process on the database.
const REPOSITORIES_TURN: i64 = 0x6f72_6368_7265_706f; // "orchrepo"

/// How long a dropped connection is tried again before the store gives up.
pub const RECONNECT_FOR: Duration = Duration::from_secs(120);

const REPOSITORIES: &str = "repositories";
const LAST_REPOSITORIES_CALL: &str = "last_repositories_call";
const LEARNED_LIMIT: &str = "learned_limit";

/// The PostgreSQL store. Its calls block: use it from the store thread.
pub struct PgStore {
    url: PgUrl,
    config: Config,
    client: RefCell<Option<Client>>,
    /// The runs this process locked: taken back after a reconnect.
    held: RefCell<BTreeMap<String, RunLock>>,
    /// What this process writes as the holder of the runs it locks.
    holder: String,
    /// Its name as the runner of a joined run's leases: the holder's, and a tag of this
    /// store's own (two stores of one process are two runners).
    runner: String,
    /// The lease of a joined run's instances ([`PgStore::join_run`]).
    lease: Cell<Option<Duration>>,
    local: PathBuf,
    busy: Cell<Duration>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url`, migrating its schema to this release's first.
    pub fn open(url: &PgUrl) -> Result<Self, StateError> {
        let at = url.redacted();
        let mut config: Config = url.expose().parse().map_err(|e| StateError::Io {
            at: at.clone(),
            message: format!("not a PostgreSQL connection URL: {e}"),
        })?;
        if config.get_password().is_none() {
            if let Some(password) = std::env::var_os("PGPASSWORD") {
                config.password(password.to_string_lossy().as_bytes());
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("orchestrate");
        }
        // A cut-off server is noticed within seconds, not after the kernel's many minutes.
        config
            .connect_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(20));
        let store = PgStore {
            url: url.clone(),
            config,
            client: RefCell::new(None),
            held: RefCell::new(BTreeMap::new()),
            holder: holder_text(),
            runner: format!("{} #{:06x}", holder_text(), rand::random::<u32>() >> 8),
            lease: Cell::new(None),
            local: local_dir(),
            busy: Cell::new(Duration::ZERO),
        };
        // The first connection is not waited for: a wrong URL is said at once.
        let client = store.connect()?;
        *store.client.borrow_mut() = Some(client);
        store.with(|client| migrate(client, &at))?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn describe(&self) -> String {
        self.url.redacted()
    }

    /// Where this machine keeps what never goes in a shared database: webhook secrets.
    pub fn local_dir(&self) -> &Path {
        &self.local
    }

    /// Time spent writing and committing so far.
    pub fn busy(&self) -> Duration {
        self.busy.get()
    }

    fn io(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Io {
            at: self.describe(),
            message: message.to_string(),
        }
    }

    fn connect(&self) -> Result<Client, StateError> {
        self.config.connect(tls()).map_err(|e| self.io(cause(&e)))
    }

    /// Runs `op` on the connection, made again (and the run locks taken back) when it
    /// dropped, until it succeeds, fails for a reason of its own, or [`RECONNECT_FOR`] ends.
    fn with<R>(
        &self,
        mut op: impl FnMut(&mut Client) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let deadline = Instant::now() + RECONNECT_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            let mut slot = self.client.borrow_mut();
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = None;
                match self.connect() {
                    Ok(mut client) => {
                        self.take_back_locks(&mut client)?;
                        *slot = Some(client);
                    }
                    Err(error) if Instant::now() >= deadline => return Err(error),
                    Err(_) => {
                        drop(slot);
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let client = slot.as_mut().expect("connected");
            match op(client) {
                Err(StateError::Io { message, .. })
                    if client.is_closed() || message.starts_with(DROPPED) =>
                {
                    *slot = None;
                    if Instant::now() >= deadline {
                        return Err(self.io(format!(
                            "the database stayed out of reach for {}s: {message}",
                            RECONNECT_FOR.as_secs()
                        )));
                    }
                    tracing::warn!(
                        "the state database dropped the connection ({message}); connecting again"
                    );
                }
                done => return done,
            }
        }
    }

    /// After a reconnect, the advisory locks are gone with the old session: take them back,
    /// unless another process took one meanwhile.
    fn take_back_locks(&self, client: &mut Client) -> Result<(), StateError> {
        for (run, lock) in self.held.borrow().iter() {
            if !try_lock(client, *lock).map_err(|e| self.io(cause(&e)))? {
                let holder = holder_of(client, run)
                    .map_err(|e| self.io(cause(&e)))?
                    .unwrap_or_else(|| "unknown process".into());
                return Err(StateError::LockLost {
                    run: run.clone(),
                    holder,
                });
            }
        }
        Ok(())
    }

    fn decode<T: DeserializeOwned>(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<T, StateError> {
        decode_value(&self.describe(), key, value)
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StateError> {
        self.with(|client| client.query(sql, params).map_err(|e| self.pg(&e)))
    }

    /// A failure as the store's error; a dropped connection is marked for [`PgStore::with`].
    fn pg(&self, error: &postgres::Error) -> StateError {
        if dropped(error) {
            self.io(format!("{DROPPED}{}", cause(error)))
        } else {
            self.io(cause(error))
        }
    }

    /// A run.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        let rows = self.query("SELECT record FROM orchestrate.runs WHERE id = $1", &[&id])?;
        rows.into_iter()
            .next()
            .map(|row| self.decode(id, row.get(0)))
            .transpose()
    }

    /// Every run, in no particular order.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let rows = self.query("SELECT id, record FROM orchestrate.runs", &[])?;
        rows.into_iter()
            .map(|row| self.decode(row.get::<_, &str>(0), row.get(1)))
            .collect()
    }

    /// The instances of a run, in key order (bytewise, as in sled).
    pub fn instances(&self, run: &str) -> Result<Vec<InstanceRecord>, StateError> {
        let rows = self.query(
            "SELECT key, record FROM orchestrate.instances WHERE run = $1 ORDER BY key COLLATE \"C\"",
            &[&run],
        )?;
        rows.into_iter()
            .map(|row| self.decode(&format!("{run}/{}", row.get::<_, &str>(0)), row.get(1)))
            .collect()
    }

    /// A run's log, oldest first.
    pub fn events(&self, run: &str) -> Result<Vec<Event>, StateError> {
        let rows = self.query(
            "SELECT record FROM orchestrate.events WHERE run = $1 ORDER BY seq",
            &[&run],
        )?;
        rows.into_iter()
            .map(|row| self.decode(run, row.get(0)))
            .collect()
    }

    fn cached<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let rows = self.query(
            "SELECT record FROM orchestrate.cache WHERE name = $1",
            &[&name],
        )?;
        rows.into_iter()
            .next()
            .map(|row| self.decode(name, row.get(0)))
            .transpose()
    }

    /// The cached repository list.
    pub fn repositories(&self) -> Result<Option<RepositoryCache>, StateError> {
        self.cached(REPOSITORIES)
    }

    /// When `GET /v0/repositories` was last called, by any runner on this database.
    pub fn last_repositories_call(&self) -> Result<Option<Timestamp>, StateError> {
        Ok(self
            .cached::<LastCall>(LAST_REPOSITORIES_CALL)?
            .map(|c| c.at))
    }

    /// The calls quota an API last named, by any runner on this database.
    pub fn learned_limit(&self) -> Result<Option<LearnedLimit>, StateError> {
        self.cached(LEARNED_LIMIT)
    }

    /// Applies writes in one transaction, in their order; returns once it is committed.
    pub fn write(&self, writes: &[Write]) -> Result<(), StateError> {
        let start = Instant::now();
        self.with(|client| {
            let mut tx = client.transaction().map_err(|e| self.pg(&e))?;
            self.check_fences(&mut tx, writes)?;
            apply(&mut tx, writes).map_err(|e| self.pg(&e))?;
            tx.commit().map_err(|e| self.pg(&e))
        })?;
        self.busy.set(self.busy.get() + start.elapsed());
        Ok(())
    }

    /// Takes `run` for this process until its connection ends, or refuses with who has it.
    pub fn lock_run(&self, run: &str) -> Result<(), StateError> {
        self.take_run(run, false, |_| Ok(()))
    }

    /// Takes `run`'s lock, `shared` with other runners or not, and names this process its
    /// holder; `then` runs on the connection once it is taken.
    fn take_run(
        &self,
        run: &str,
        shared: bool,
        mut then: impl FnMut(&mut Client) -> Result<(), postgres::Error>,
    ) -> Result<(), StateError> {
        if self.held.borrow().contains_key(run) {
            return Ok(());
        }
        let lock = RunLock {
            key: lock_key(run),
            shared,
        };
        let refused = self.with(|client| {
            if !take_lock(client, lock).map_err(|e| self.pg(&e))? {
                return Ok(Some(holder_of(client, run).map_err(|e| self.pg(&e))?));
            }
            client
                .execute(
                    "INSERT INTO orchestrate.holders (run, holder) VALUES ($1, $2)
                     ON CONFLICT (run) DO UPDATE SET holder = excluded.holder",
                    &[&run, &self.holder],
                )
                .map_err(|e| self.pg(&e))?;
            then(client).map_err(|e| self.pg(&e))?;
            Ok(None)
        })?;
        if let Some(holder) = refused {
            return Err(StateError::RunLocked {
                run: run.to_owned(),
                holder: holder.unwrap_or_else(|| "unknown process".into()),
            });
        }
        self.held.borrow_mut().insert(run.to_owned(), lock);
        Ok(())
    }

    /// Who else holds `run`'s lock now, if anyone: a holder that died holds nothing.
    pub fn holder(&self, run: &str) -> Result<Option<String>, StateError> {
        if self.held.borrow().contains_key(run) {
            return Ok(None);
        }
        let lock = RunLock {
            key: lock_key(run),
            shared: false,
        };
        self.with(|client| {
            if try_lock(client, lock).map_err(|e| self.pg(&e))? {
                client
                    .execute("SELECT pg_advisory_unlock($1)", &[&lock.key])
                    .map_err(|e| self.pg(&e))?;
                return Ok(None);
            }
            Ok(Some(
                holder_of(client, run)
                    .map_err(|e| self.pg(&e))?
                    .unwrap_or_else(|| "unknown process".into()),
            ))
        })
    }

    /// Takes the turn at the repositories endpoint, unless another process has it: a
    /// session lock, so that a process that dies lets go of it.
    pub fn take_repositories_turn(&self) -> Result<bool, StateError> {
        self.with(|client| {
            let lock = RunLock {
                key: REPOSITORIES_TURN,
                shared: false,
            };
            try_lock(client, lock).map_err(|e| self.pg(&e))
        })
    }

    /// Ends this process's turn at the repositories endpoint.
    pub fn end_repositories_turn(&self) -> Result<(), StateError> {
        self.with(|client| {
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&REPOSITORIES_TURN])
                .map_err(|e| self.pg(&e))
        })
        .map(drop)
    }

    /// Asks the process holding `run` to cancel it.
    pub fn request_cancel(&self, run: &str) -> Result<(), StateError> {
        self.with(|client| {
            client
                .execute(
                    "INSERT INTO orchestrate.cancel_requests (run) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&run],
                )
                .map_err(|e| self.pg(&e))
        })
        .map(drop)
    }

    /// Whether a `cancel` asked for `run`; the request is taken when it did.
    /// A run joined by several runners keeps its request, so that every one of them sees
    /// it; the first runner of its next apply clears it ([`PgStore::join_run`]).
    pub fn take_cancel_request(&self, run: &str) -> Result<bool, StateError> {
        let joined = self.held.borrow().get(run).is_some_and(|lock| lock.shared);
        let sql = if joined {
            "SELECT 1 FROM orchestrate.cancel_requests WHERE run = $1"
        } else {
            "DELETE FROM orchestrate.cancel_requests WHERE run = $1"
        };
        self.with(|client| client.execute(sql, &[&run]).map_err(|e| self.pg(&e)))
            .map(|found| found > 0)
    }
}

mod runners;

/// Marks an error message as a dropped connection, to be retried on a new one.
const DROPPED: &str = "connection lost: ";

/// Whether `error` means the connection is gone rather than that the statement failed.
fn dropped(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        // 08: connection exceptions; 57P: the server shutting down or starting up.
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    std::error::Error::source(error).is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
}

/// The error with the cause PostgreSQL gave, which `Display` alone leaves out.
fn cause(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// A run's session-level advisory lock: exclusive for a lone apply, shared by the runners
/// that joined it.
#[derive(Debug, Clone, Copy)]
struct RunLock {
    key: i64,
    shared: bool,
}

fn try_lock(client: &mut Client, lock: RunLock) -> Result<bool, postgres::Error> {
    let sql = if lock.shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    Ok(client.query_one(sql, &[&lock.key])?.get(0))
}

/// Takes a run's lock to apply it: tried for up to a second, since `status`, `runs` and a
/// joining runner probe it for an instant (try, then let go) and must not be mistaken for
/// a holder.
fn take_lock(client: &mut Client, lock: RunLock) -> Result<bool, postgres::Error> {
    for _ in 0..20 {
        if try_lock(client, lock)? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

fn holder_of(client: &mut Client, run: &str) -> Result<Option<String>, postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT holder FROM orchestrate.holders WHERE run = $1",
            &[&run],
        )?
        .map(|row| row.get(0)))
}

/// A run's advisory lock: 64 bits of a digest of its id, apart from other users' locks.
fn lock_key(run: &str) -> i64 {
    let digest = Sha256::digest(format!("orchestrate run {run}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Brings the schema to [`SCHEMA_VERSION`], one transaction for all; refuses a newer one.
fn migrate(client: &mut Client, at: &str) -> Result<(), StateError> {
    let io = |e: postgres::Error| StateError::Io {
        at: at.to_owned(),
        message: cause(&e),
    };
    let mut tx = client.transaction().map_err(io)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(io)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS orchestrate;
         CREATE TABLE IF NOT EXISTS orchestrate.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now(),
             release text NOT NULL
         );",
    )
    .map_err(io)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM orchestrate.schema_migrations",
            &[],
        )
        .map_err(io)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            at: at.to_owned(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.batch_execute(sql).map_err(io)?;
        tx.execute(
            "INSERT INTO orchestrate.schema_migrations (version, release) VALUES ($1, $2)",
            &[&version, &env!("CARGO_PKG_VERSION")],
        )
        .map_err(io)?;
    }
    tx.commit().map_err(io)
}

/// Writes as if one by one in their order, in as few statements as that allows: every
/// instance upsert (the last of each key wins) and every event (in order) of a batch go in
/// one statement each, flushed before a removal, the only writes whose order against them
/// matters. A transition writes an instance and an event: a batch of a hundred is two
/// statements, not two hundred.
fn apply(tx: &mut postgres::Transaction<'_>, writes: &[Write]) -> Result<(), postgres::Error> {
    let mut pending = Pending::default();
    for write in writes {
        match write {
            Write::Instance(run, instance) => {
                pending
                    .instances
                    .insert((run, &instance.key), encode_value(instance));
            }
            Write::Event(run, event) => pending.events.push((run, encode_value(event))),
            Write::RemoveInstance(..) | Write::RemoveRun(_) => {
                std::mem::take(&mut pending).flush(tx)?;
                one(tx, write)?;
            }
            Write::Fence(..) => {}
            Write::Release(run, key) => pending.released.push((run, key)),
            _ => one(tx, write)?,
        }
    }
    pending.flush(tx)
}

/// Instance and event writes not yet sent.
#[derive(Default)]
struct Pending<'a> {
    instances: BTreeMap<(&'a str, &'a str), serde_json::Value>,
    events: Vec<(&'a str, serde_json::Value)>,
    /// Leases given back; the batch's fences checked that this runner holds them.
    released: Vec<(&'a str, &'a str)>,
}

impl Pending<'_> {
    fn flush(self, tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
        if !self.instances.is_empty() {
            let (runs, keys, records) = columns(self.instances);
            tx.execute(
                "INSERT INTO orchestrate.instances (run, key, record)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
                 ON CONFLICT (run, key) DO UPDATE SET record = excluded.record",
                &[&runs, &keys, &records],
            )?;
        }
        if !self.events.is_empty() {
            let (runs, records): (Vec<&str>, Vec<serde_json::Value>) =
                self.events.into_iter().unzip();
            tx.execute(
                "INSERT INTO orchestrate.events (run, record)
                 SELECT run, record FROM unnest($1::text[], $2::jsonb[])
                     WITH ORDINALITY AS e(run, record, n) ORDER BY n",
                &[&runs, &records],
            )?;
        }
        if !self.released.is_empty() {
            let (runs, keys): (Vec<&str>, Vec<&str>) = self.released.into_iter().unzip();
            tx.execute(
                "DELETE FROM orchestrate.leases l
                 USING unnest($1::text[], $2::text[]) AS r(run, key)
                 WHERE l.run = r.run AND l.key = r.key",
                &[&runs, &keys],
            )?;
        }
        Ok(())
    }
}

fn columns<'a>(
    rows: BTreeMap<(&'a str, &'a str), serde_json::Value>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<serde_json::Value>) {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for ((run, key), record) in rows {
        columns.0.push(run);
        columns.1.push(key);
        columns.2.push(record);
    }
    columns
}

fn one(tx: &mut postgres::Transaction<'_>, write: &Write) -> Result<(), postgres::Error> {
    let cache = |tx: &mut postgres::Transaction<'_>, name: &str, record: serde_json::Value| {
        tx.execute(
            "INSERT INTO orchestrate.cache (name, record) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            &[&name, &record],
        )
    };
    match write {
        Write::Run(run) => {
            tx.execute(
                "INSERT INTO orchestrate.runs (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&run.id, &encode_value(run)],
            )?;
        }
        Write::Instance(..) | Write::Event(..) | Write::Fence(..) | Write::Release(..) => {
            unreachable!("batched or checked by `apply`")
        }
        Write::Repositories(list) => {
            cache(tx, REPOSITORIES, encode_value(list))?;
        }
        Write::LastRepositoriesCall(at) => {
            cache(
                tx,
                LAST_REPOSITORIES_CALL,
                encode_value(&LastCall { at: *at }),
            )?;
        }
        Write::LearnedLimit(limit) => {
            cache(tx, LEARNED_LIMIT, encode_value(limit))?;
        }
        Write::RemoveInstance(run, key) => {
            tx.execute(
                "DELETE FROM orchestrate.instances WHERE run = $1 AND key = $2",
                &[run, key],
            )?;
        }
        Write::RemoveRun(run) => {
            for table in ["events", "instances", "leases", "cancel_requests", "runs"] {
                let column = if table == "runs" { "id" } else { "run" };
                tx.execute(
                    &format!("DELETE FROM orchestrate.{table} WHERE {column} = $1"),
                    &[run],
                )?;
            }
        }
    }
    Ok(())
}

/// TLS with the system's roots, tried when the server offers it (`sslmode=prefer`, the
/// default) and required with `sslmode=require`.
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the provider's defaults")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// `host H, pid P, since T: orchestrate apply FILE`, as another runner is told.
fn holder_text() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map_or_else(|| "unknown host".to_owned(), |h| h.trim().to_owned());
    let command: Vec<String> = std::env::args().take(3).collect();
    format!(
        "host {host}, pid {}, since {}: {}",
        std::process::id(),
        Timestamp::now().rfc3339(),
        command.join(" ")
    )
}

/// This machine's directory for what a shared database must not hold (webhook secrets):
/// `$XDG_STATE_HOME/orchestrate`, else `~/.local/state/orchestrate`, else the temp dir's.
fn local_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_STATE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("orchestrate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lock_keys_are_stable_and_apart() {
        assert_eq!(lock_key("fix/nightly"), lock_key("fix/nightly"));
        assert_ne!(lock_key("fix/nightly"), lock_key("fix/nightlz"));
        assert_ne!(lock_key("fix/nightly"), MIGRATION_LOCK);
    }
}
