//! The store on its own thread: async callers send work, writes are committed in groups.
//!
//! Every write returns once it is flushed, so a transition is durable before the caller acts
//! on it; writes that arrive while a flush runs are committed together by the next one, so a
//! thousand agents changing state at once cost a handful of flushes, not a thousand.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::store::{StateError, Store, Write};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum Message {
    Write(Vec<Write>, oneshot::Sender<Result<(), StateError>>),
    Read(Job),
    Close(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    sender: mpsc::Sender<Message>,
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Write(..) => "Write",
            Message::Read(_) => "Read",
            Message::Close(_) => "Close",
        })
    }
}

impl StoreHandle {
    /// Opens the store in `dir` on a new thread.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        Self::serving(Store::open(dir)?)
    }

    /// Opens the store as [`Store::open_setting_aside`] does: a database sled cannot open
    /// is moved aside (to the path returned) and a new one started.
    pub fn open_setting_aside(dir: &Path) -> Result<(Self, Option<PathBuf>), StateError> {
        let (store, aside) = Store::open_setting_aside(dir)?;
        Ok((Self::serving(store)?, aside))
    }

    fn serving(store: Store) -> Result<Self, StateError> {
        let dir = store.dir().to_owned();
        let (sender, receiver) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("orchestrate-store".into())
            .spawn(move || serve(store, &receiver))
            .map_err(|e| StateError::Io {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { sender, dir })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
            dir: self.dir.clone(),
            message: "the store thread stopped".into(),
        }
    }
}

fn serve(mut store: Store, receiver: &mpsc::Receiver<Message>) {
    let mut closing = None;
    while let Ok(first) = receiver.recv() {
        let mut batch: Vec<Write> = Vec::new();
        let mut waiting = Vec::new();
        let mut reads = Vec::new();
        let mut next = Some(first);
        // Take everything already queued: one commit and one flush for all its writes.
        while let Some(message) = next {
            match message {
                Message::Write(writes, done) => {
                    batch.extend(writes);
                    waiting.push(done);
                }
                Message::Read(job) => reads.push(job),
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            next = receiver.try_recv().ok();
        }
        if !waiting.is_empty() {
            let result = store.write(&batch);
            for done in waiting {
                let _ = done.send(result.clone());
            }
        }
        // Reads run after the writes queued before them, so they see them.
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
