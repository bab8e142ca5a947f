//! The store on its own thread: async callers send work, writes are committed in groups.
//!
//! Every write returns once it is flushed, so a transition is durable before the caller acts
//! on it; writes that arrive while a flush runs are committed together by the next one, so a
//! thousand agents changing state at once cost a handful of flushes, not a thousand. Claims
//! of a shared run's instances are grouped the same way: one transaction for all those
//! queued.

use std::path::{Path, PathBuf};

use super::location::Location;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::record::InstanceRecord;
use super::store::{Claim, Followed, StateError, Store, Write};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

type Claimed = Result<(Claim, Option<InstanceRecord>), StateError>;

/// A claim of one instance of a shared run, waiting for its group.
struct ClaimRequest {
    run: String,
    key: String,
    cap: u32,
    /// Where it comes in its group: room under the cap goes to the lowest first.
    rank: u64,
    done: oneshot::Sender<Claimed>,
}

enum Message {
    Write(Vec<Write>, oneshot::Sender<Result<(), StateError>>),
    Claim(ClaimRequest),
    Read(Job),
    Close(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    sender: mpsc::Sender<Message>,
    /// The store's directory on this machine (see [`Store::local_dir`]).
    dir: PathBuf,
    /// Where the state is, for messages.
    at: String,
    snapshots: bool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Write(..) => "Write",
            Message::Claim(_) => "Claim",
            Message::Read(_) => "Read",
            Message::Close(_) => "Close",
        })
    }
}

impl StoreHandle {
    /// Opens the store at `location` on a new thread.
    pub fn open(location: &Location) -> Result<Self, StateError> {
        let location = location.clone();
        Self::serving(move || Ok((Store::open(&location)?, ()))).map(|(handle, ())| handle)
    }

    /// Opens the store as [`Store::open_setting_aside`] does: a database sled cannot open
    /// is moved aside (to the path returned) and a new one started.
    pub fn open_setting_aside(location: &Location) -> Result<(Self, Option<PathBuf>), StateError> {
        let location = location.clone();
        Self::serving(move || Store::open_setting_aside(&location))
    }

    /// Opens the store on its thread: a database client blocks on a runtime of its own,
    /// which cannot start on a thread of the caller's.
    fn serving<R: Send + 'static>(
        open: impl FnOnce() -> Result<(Store, R), StateError> + Send + 'static,
    ) -> Result<(Self, R), StateError> {
        let (opened, receive) = std::sync::mpsc::sync_channel(1);
        let (sender, receiver) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("orchestrate-store".into())
            .spawn(move || match open() {
                Ok((store, extra)) => {
                    let about = (
                        store.local_dir().to_owned(),
                        store.describe(),
                        store.needs_snapshots(),
                    );
                    let _ = opened.send(Ok((about, extra)));
                    serve(store, &receiver);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(|e| StateError::Io {
                at: "the store thread".into(),
                message: e.to_string(),
            })?;
        let ((dir, at, snapshots), extra) = receive.recv().map_err(|_| StateError::Io {
            at: "the store thread".into(),
            message: "it stopped while opening the store".into(),
        })??;
        Ok((
            Self {
                sender,
                dir,
                at,
                snapshots,
            },
            extra,
        ))
    }

    /// The store's directory on this machine: the state itself for sled, and for a shared
    /// database the place of what must stay local (webhook secrets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the state is, for messages (a database URL without its password).
    pub fn describe(&self) -> &str {
        &self.at
    }

    /// Whether other processes read this store only through live snapshots (sled).
    pub fn needs_snapshots(&self) -> bool {
        self.snapshots
    }

    /// Takes `run` for this process (see [`Store::lock_run`]).
    pub async fn lock_run(&self, run: &str) -> Result<(), StateError> {
        let run = run.to_owned();
        self.read(move |store| store.lock_run(&run)).await
    }

    /// Joins `run` as one of its runners, with leases of `lease` (see [`Store::join_run`]).
    pub async fn join_run(&self, run: &str, lease: Duration) -> Result<(), StateError> {
        let run = run.to_owned();
        self.read(move |store| store.join_run(&run, lease)).await
    }

    /// Claims an instance of a joined run (see [`Store::claim`]), in one transaction with
    /// the other claims queued meanwhile, which come before it when their `rank` is lower.
    pub async fn claim(&self, run: &str, key: &str, cap: u32, rank: u64) -> Claimed {
        let (done, result) = oneshot::channel();
        let request = ClaimRequest {
            run: run.to_owned(),
            key: key.to_owned(),
            cap,
            rank,
            done,
        };
        self.sender
            .send(Message::Claim(request))
            .map_err(|_| self.gone())?;
        result.await.map_err(|_| self.gone())?
    }

    /// Every instance of a joined run (see [`Store::followed`]).
    pub async fn followed(
        &self,
        run: &str,
        known: Vec<(String, String)>,
    ) -> Result<Vec<Followed>, StateError> {
        let run = run.to_owned();
        self.read(move |store| store.followed(&run, &known)).await
    }

    /// Renews this runner's leases; how many it holds.
    pub async fn renew_leases(&self) -> Result<u64, StateError> {
        self.read(Store::renew_leases).await
    }

    /// Lets go of this runner's lease of an instance (see [`Store::let_go`]).
    pub async fn let_go(&self, run: &str, key: &str) -> Result<(), StateError> {
        let (run, key) = (run.to_owned(), key.to_owned());
        self.read(move |store| store.let_go(&run, &key)).await
    }

    /// Takes one call from a token bucket shared by every process on the state.
    pub async fn take_token(
        &self,
        name: &'static str,
        per_second: f64,
        burst: u32,
    ) -> Result<Result<(), Duration>, StateError> {
        self.read(move |store| store.take_token(name, per_second, burst))
            .await
    }

    /// Who else applies `run` now, if anyone.
    pub async fn holder(&self, run: &str) -> Result<Option<String>, StateError> {
        let run = run.to_owned();
        self.read(move |store| store.holder(&run)).await
    }

    /// A run as found: one recorded `running` that no process applies is interrupted.
    pub async fn as_found(
        &self,
        run: crate::state::RunRecord,
    ) -> Result<crate::state::RunRecord, StateError> {
        self.read(move |store| store.as_found(run)).await
    }

    /// Asks the process applying `run` to cancel it.
    pub async fn request_cancel(&self, run: &str) -> Result<(), StateError> {
        let run = run.to_owned();
        self.read(move |store| store.request_cancel(&run)).await
    }

    /// Whether a `cancel` asked for `run`; the request is taken when it did.
    pub async fn take_cancel_request(&self, run: &str) -> Result<bool, StateError> {
        let run = run.to_owned();
        self.read(move |store| store.take_cancel_request(&run))
            .await
    }

    /// Commits `writes` together and returns once they are on disk.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StateError> {
        let (done, result) = oneshot::channel();
        self.sender
            .send(Message::Write(writes, done))
            .map_err(|_| self.gone())?;
        result.await.map_err(|_| self.gone())?
    }

    /// Runs `read` on the store thread.
    pub async fn read<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<R, StateError> + Send + 'static,
    ) -> Result<R, StateError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = done.send(read(store));
        });
        self.sender
            .send(Message::Read(job))
            .map_err(|_| self.gone())?;
        result.await.map_err(|_| self.gone())?
    }

    /// Closes the store and releases its lock, once everything queued before is done.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.sender.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    /// Time the store thread has spent writing and flushing.
    pub async fn busy(&self) -> Duration {
        self.read(|store| Ok(store.busy()))
            .await
            .unwrap_or_default()
    }

    fn gone(&self) -> StateError {
        StateError::Io {
            at: self.at.clone(),
            message: "the store thread stopped".into(),
        }
    }
}

/// Claims each run's queued instances in one transaction (in practice a runner claims in one
/// run, and with one cap).
fn claim_together(store: &Store, mut claims: Vec<ClaimRequest>) {
    while let Some(first) = claims.first() {
        let (run, cap) = (first.run.clone(), first.cap);
        let (mut group, rest): (Vec<_>, Vec<_>) = claims
            .into_iter()
            .partition(|c| c.run == run && c.cap == cap);
        claims = rest;
        group.sort_by_key(|c| c.rank);
        let keys: Vec<String> = group.iter().map(|c| c.key.clone()).collect();
        match store.claim(&run, &keys, cap) {
            Ok(claimed) => {
                for (request, claimed) in group.into_iter().zip(claimed) {
                    let _ = request.done.send(Ok(claimed));
                }
            }
            Err(error) => {
                for request in group {
                    let _ = request.done.send(Err(error.clone()));
                }
            }
        }
    }
}

fn serve(mut store: Store, receiver: &mpsc::Receiver<Message>) {
    let mut closing = None;
    while let Ok(first) = receiver.recv() {
        let mut batch: Vec<Write> = Vec::new();
        let mut parts: Vec<usize> = Vec::new();
        let mut waiting = Vec::new();
        let mut claims = Vec::new();
        let mut reads = Vec::new();
        let mut next = Some(first);
        // Take everything already queued: one commit and one flush for all its writes.
        while let Some(message) = next {
            match message {
                Message::Write(writes, done) => {
                    parts.push(writes.len());
                    batch.extend(writes);
                    waiting.push(done);
                }
                Message::Claim(request) => claims.push(request),
                Message::Read(job) => reads.push(job),
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            next = receiver.try_recv().ok();
        }
        match (!waiting.is_empty()).then(|| store.write(&batch)) {
            None => {}
            // One runner's lease ran out: the writes it did not fence go in without it.
            Some(Err(StateError::LeaseLost { .. })) if waiting.len() > 1 => {
                let mut rest = batch.as_slice();
                for (done, len) in waiting.into_iter().zip(parts) {
                    let (part, after) = rest.split_at(len);
                    rest = after;
                    let _ = done.send(store.write(part));
                }
            }
            Some(result) => {
                for done in waiting {
                    let _ = done.send(result.clone());
                }
            }
        }
        // Claims and reads run after the writes queued before them, so they see them.
        claim_together(&store, claims);
        for job in reads {
            job(&mut store);
        }
        if closing.is_some() {
            break;
        }
    }
    // Dropping the store releases the database and the lock before the closer hears back.
    drop(store);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}
