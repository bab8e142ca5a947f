//! The sled store: one directory, one process at a time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs2::FileExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;

use super::record::{Event, InstanceRecord, LearnedLimit, RepositoryCache, RunRecord, Timestamp};
use super::store::{LastCall, StateError, Write, decode, encode};

/// The sled store. Its calls block: use it from the store thread ([`super::StoreHandle`]).
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    instances: sled::Tree,
    events: sled::Tree,
    cache: sled::Tree,
    _lock: File,
    busy: Duration,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const LAST_REPOSITORIES_CALL: &[u8] = b"last_repositories_call";
const LEARNED_LIMIT: &[u8] = b"learned_limit";
const REPOSITORIES: &[u8] = b"repositories";

fn instance_key(run: &str, instance: &str) -> Vec<u8> {
    [run.as_bytes(), &[0], instance.as_bytes()].concat()
}

fn run_prefix(run: &str) -> Vec<u8> {
    [run.as_bytes(), &[0]].concat()
}

impl SledStore {
    /// Opens (or creates) the state in `dir`, taking it for this process.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let lock = take(dir)?;
        let db = open_db(dir)?;
        Self::with(dir, db, lock)
    }

    /// Opens the state in `dir` as [`Store::open`] does, except that a database sled cannot
    /// open is moved aside (to the path returned) and a new one started in its place.
    ///
    /// sled can leave files it refuses to reopen after a kill (spacejam/sled#1509, #1527):
    /// the runs they held are found again in the API by recall, so an empty state is a way
    /// on where the broken one is a dead end. It is kept for a post-mortem, never deleted.
    pub fn open_setting_aside(dir: &Path) -> Result<(Self, Option<PathBuf>), StateError> {
        let lock = take(dir)?;
        let (db, aside) = match open_db(dir) {
            Err(StateError::Broken { .. }) => {
                let aside = set_aside(dir)?;
                (open_db(dir)?, Some(aside))
            }
            opened => (opened?, None),
        };
        Ok((Self::with(dir, db, lock)?, aside))
    }

    fn with(dir: &Path, db: sled::Db, lock: File) -> Result<Self, StateError> {
        let tree = |name: &str| db.open_tree(name).map_err(|e| io_error(dir, e));
        Ok(Self {
            runs: tree("runs")?,
            instances: tree("instances")?,
            events: tree("events")?,
            cache: tree("cache")?,
            db,
            dir: dir.to_owned(),
            _lock: lock,
            busy: Duration::ZERO,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Time spent writing and flushing so far.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    fn decode<T: DeserializeOwned>(&self, key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
        decode(
            &self.dir.display().to_string(),
            &String::from_utf8_lossy(key).replace('\0', "/"),
            bytes,
        )
    }

    fn encode<T: Serialize>(data: &T) -> Vec<u8> {
        encode(data)
    }

    fn io(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Io {
            at: self.dir.display().to_string(),
            message: error.to_string(),
        }
    }

    /// A run.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        match self.runs.get(id.as_bytes()).map_err(|e| self.io(e))? {
            Some(bytes) => self.decode(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every run, in key order ([`super::Store::runs`] puts the newest first).
    pub fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let mut runs = Vec::new();
        for entry in &self.runs {
            let (key, bytes) = entry.map_err(|e| self.io(e))?;
            runs.push(self.decode::<RunRecord>(&key, &bytes)?);
        }
        Ok(runs)
    }

    /// The instances of a run, in key order.
    pub fn instances(&self, run: &str) -> Result<Vec<InstanceRecord>, StateError> {
        let mut instances = Vec::new();
        for entry in self.instances.scan_prefix(run_prefix(run)) {
            let (key, bytes) = entry.map_err(|e| self.io(e))?;
            instances.push(self.decode(&key, &bytes)?);
        }
        Ok(instances)
    }

    /// A run's log, oldest first.
    pub fn events(&self, run: &str) -> Result<Vec<Event>, StateError> {
        let mut events = Vec::new();
        for entry in self.events.scan_prefix(run_prefix(run)) {
            let (key, bytes) = entry.map_err(|e| self.io(e))?;
            events.push(self.decode(&key, &bytes)?);
        }
        Ok(events)
    }

    /// The cached repository list.
    pub fn repositories(&self) -> Result<Option<RepositoryCache>, StateError> {
        match self.cache.get(REPOSITORIES).map_err(|e| self.io(e))? {
            Some(bytes) => self.decode(REPOSITORIES, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// When `GET /v0/repositories` was last called, by any process on this state.
    pub fn last_repositories_call(&self) -> Result<Option<Timestamp>, StateError> {
        match self
            .cache
            .get(LAST_REPOSITORIES_CALL)
            .map_err(|e| self.io(e))?
        {
            Some(bytes) => self
                .decode::<LastCall>(LAST_REPOSITORIES_CALL, &bytes)
                .map(|c| Some(c.at)),
            None => Ok(None),
        }
    }

    /// The calls quota an API last named, by any process on this state.
    pub fn learned_limit(&self) -> Result<Option<LearnedLimit>, StateError> {
        match self.cache.get(LEARNED_LIMIT).map_err(|e| self.io(e))? {
            Some(bytes) => self.decode(LEARNED_LIMIT, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Applies writes atomically, then flushes them to disk before returning.
    pub fn write(&mut self, writes: &[Write]) -> Result<(), StateError> {
        let start = Instant::now();
        let mut removed: Vec<(u8, sled::IVec)> = Vec::new();
        for write in writes {
            if let Write::RemoveRun(run) = write {
                for (tree, which) in [(&self.instances, 0u8), (&self.events, 1u8)] {
                    for key in tree.scan_prefix(run_prefix(run)).keys() {
                        removed.push((which, key.map_err(|e| self.io(e))?));
                    }
                }
            }
        }
        let mut events = Vec::new();
        for write in writes {
            if let Write::Event(run, event) = write {
                let id = self.db.generate_id().map_err(|e| self.io(e))?;
                events.push((
                    [run_prefix(run), id.to_be_bytes().to_vec()].concat(),
                    Self::encode(event),
                ));
            }
        }
        let result: sled::transaction::TransactionResult<(), ()> =
            (&self.runs, &self.instances, &self.events, &self.cache).transaction(
                |(runs, instances, log, cache)| {
                    for write in writes {
                        match write {
                            Write::Run(run) => {
                                runs.insert(run.id.as_bytes(), Self::encode(run))?;
                            }
                            Write::Instance(run, instance) => {
                                instances.insert(
                                    instance_key(run, &instance.key),
                                    Self::encode(instance),
                                )?;
                            }
                            Write::RemoveInstance(run, key) => {
                                instances.remove(instance_key(run, key))?;
                            }
                            Write::RemoveRun(run) => {
                                runs.remove(run.as_bytes())?;
                            }
                            Write::Repositories(list) => {
                                cache.insert(REPOSITORIES, Self::encode(list))?;
                            }
                            Write::LastRepositoriesCall(at) => {
                                cache.insert(
                                    LAST_REPOSITORIES_CALL,
                                    Self::encode(&LastCall { at: *at }),
                                )?;
                            }
                            Write::LearnedLimit(limit) => {
                                cache.insert(LEARNED_LIMIT, Self::encode(limit))?;
                            }
                            Write::Event(..) | Write::Fence(..) | Write::Release(..) => {}
                        }
                    }
                    for (key, value) in &events {
                        log.insert(key.as_slice(), value.as_slice())?;
                    }
                    for (which, key) in &removed {
                        if *which == 0 {
                            instances.remove(key)?;
                        } else {
                            log.remove(key)?;
                        }
                    }
                    Ok(())
                },
            );
        result.map_err(|e| self.io(format!("{e:?}")))?;
        self.db.flush().map_err(|e| self.io(e))?;
        self.busy += start.elapsed();
        Ok(())
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

fn io_error(dir: &Path, error: impl std::fmt::Display) -> StateError {
    StateError::Io {
        at: dir.display().to_string(),
        message: error.to_string(),
    }
}

/// Creates `dir` if need be and takes its lock, writing who holds it for others to read.
fn take(dir: &Path) -> Result<File, StateError> {
    let io = |error: std::io::Error| io_error(dir, error);
    std::fs::create_dir_all(dir).map_err(io)?;
    restrict(dir, 0o700).map_err(io)?;
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("lock"))
        .map_err(io)?;
    if lock.try_lock_exclusive().is_err() {
        let mut holder = String::new();
        let _ = lock.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(StateError::Locked {
            at: dir.display().to_string(),
            holder: if holder.is_empty() {
                "unknown process".to_owned()
            } else {
                holder.to_owned()
            },
        });
    }
    let command: Vec<String> = std::env::args().take(3).collect();
    let holder = format!(
        "pid {} since {}: {}",
        std::process::id(),
        Timestamp::now().rfc3339(),
        command.join(" ")
    );
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(holder.as_bytes()))
        .map_err(io)?;
    Ok(lock)
}

/// How long an open waits for sled's own lock after ours is taken.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the database in `dir/db`; files sled finds corrupt make it [`StateError::Broken`].
///
/// Our lock is taken first, so sled's lock can only be held by a store being closed: sled
/// releases it when its last background thread ends, a moment after the `Db` is dropped.
/// Opening again at once (a test, or `apply` after a read) waits for that instead of failing.
fn open_db(dir: &Path) -> Result<sled::Db, StateError> {
    let started = Instant::now();
    let opened = loop {
        match sled::Config::new().path(dir.join("db")).open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && started.elapsed() < SLED_LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => break opened,
        }
    };
    opened.map_err(|error| match error {
        sled::Error::Io(_) => io_error(dir, error),
        _ => StateError::Broken {
            at: dir.display().to_string(),
            // sled prints an empty backtrace after the cause: noise to a user.
            message: error
                .to_string()
                .split(" backtrace")
                .next()
                .unwrap_or_default()
                .to_owned(),
        },
    })
}

/// Renames `dir/db` to a `db.broken-TIME` beside it, which no later open touches.
fn set_aside(dir: &Path) -> Result<PathBuf, StateError> {
    let stamp = Timestamp::now().rfc3339().replace(':', "-");
    let mut aside = dir.join(format!("db.broken-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.join(format!("db.broken-{stamp}-{n}"));
    }
    std::fs::rename(dir.join("db"), &aside).map_err(|error| io_error(dir, error))?;
    Ok(aside)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::state::record::{InstanceState, RunState};

    /// A run record for tests of the store.
    pub(in crate::state) fn run(id: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            workflow: "w".into(),
            key: "default".into(),
            file: "w.yaml".into(),
            source: String::new(),
            state: RunState::Running,
            simulated: false,
            api: crate::spec::Api::Cursor(crate::spec::ApiVersion::V0),
            started_at: Timestamp(1),
            finished_at: None,
        }
    }

    #[test]
    fn reopening_at_once_waits_for_sled_to_let_go() {
        // sled lets go of its lock when its background threads end, after the drop: a
        // reopen in the same instant once failed with "could not acquire lock".
        let dir = tempfile::tempdir().unwrap();
        for n in 0..100 {
            let mut store = SledStore::open(dir.path()).unwrap();
            store
                .write(&[Write::LastRepositoriesCall(Timestamp(n))])
                .unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.last_repositories_call().unwrap(), Some(Timestamp(99)));
    }

    #[test]
    fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = SledStore::open(dir.path()).unwrap();
            let instance =
                InstanceRecord::pending("t[a/b]", "t", "https://github.com/a/b", "br", "h");
            store
                .write(&[
                    Write::Run(run("w/default")),
                    Write::Instance("w/default".into(), instance),
                    Write::Event("w/default".into(), Event::run("start", "")),
                    Write::Event("w/default".into(), Event::run("end", "")),
                ])
                .unwrap();
        }
        {
            let mut store = SledStore::open(dir.path()).unwrap();
            store
                .write(&[Write::LastRepositoriesCall(Timestamp(42))])
                .unwrap();
            assert_eq!(store.last_repositories_call().unwrap(), Some(Timestamp(42)));
            let limit = LearnedLimit {
                api: "https://api.cursor.com/".into(),
                calls_per_minute: 30,
                at: Timestamp(43),
            };
            store.write(&[Write::LearnedLimit(limit.clone())]).unwrap();
            assert_eq!(store.learned_limit().unwrap(), Some(limit));
        }
        let mut store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.run("w/default").unwrap().unwrap().key, "default");
        let instances = store.instances("w/default").unwrap();
        assert_eq!(instances[0].state, InstanceState::Pending);
        let kinds: Vec<String> = store
            .events("w/default")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["start", "end"]);
        store
            .write(&[Write::RemoveRun("w/default".into())])
            .unwrap();
        assert!(store.run("w/default").unwrap().is_none());
        assert!(
            store.instances("w/default").unwrap().is_empty()
                && store.events("w/default").unwrap().is_empty()
        );
    }

    #[test]
    fn a_second_open_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let second = SledStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            second.contains("is in use by another orchestrate (pid "),
            "{second}"
        );
        assert!(second.contains(&dir.path().display().to_string()));
    }

    #[test]
    fn newer_or_broken_records_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .runs
                .insert("new/x", br#"{"v": 99, "id": "new/x"}"#.to_vec())
                .unwrap();
            store.runs.insert("bad/x", b"not json".to_vec()).unwrap();
            store.db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.run("new/x"),
            Err(StateError::Newer { found: 99, .. })
        ));
        assert!(matches!(
            store.run("bad/x"),
            Err(StateError::Unreadable { .. })
        ));
        assert!(store.runs.get("bad/x").unwrap().is_some(), "left untouched");
    }

    #[test]
    fn a_database_sled_cannot_open_is_refused_or_moved_aside_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = SledStore::open(dir.path()).unwrap();
            store.write(&[Write::Run(run("w/default"))]).unwrap();
        }
        drop(SledStore::open(dir.path()).unwrap()); // recovery writes a snapshot
        let db = dir.path().join("db");
        let mut torn = 0;
        for entry in std::fs::read_dir(&db).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
            {
                std::fs::write(&path, b"torn").unwrap();
                torn += 1;
            }
        }
        assert!(torn > 0, "sled wrote no snapshot to tear");
        let refused = SledStore::open(dir.path()).unwrap_err();
        assert!(matches!(refused, StateError::Broken { .. }), "{refused}");
        assert!(db.exists(), "a plain open changes nothing");

        let (store, aside) = SledStore::open_setting_aside(dir.path()).unwrap();
        let aside = aside.expect("moved aside");
        assert!(
            aside.join("conf").exists(),
            "kept whole: {}",
            aside.display()
        );
        assert!(store.run("w/default").unwrap().is_none(), "a new database");
        drop(store);
        let (_, again) = SledStore::open_setting_aside(dir.path()).unwrap();
        assert_eq!(again, None, "a state that opens stays where it is");
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let _store = SledStore::open(&state).unwrap();
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
