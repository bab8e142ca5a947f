//! One loop reads the statuses of every agent being waited on, and tells each waiter.
//!
//! The interval adapts: it starts short, grows while nothing changes, falls back when
//! something does, and is jittered so that many runs do not poll in step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::backend::{AgentView, Backend};
use crate::cursor::{AgentId, ApiError};

/// The longest wait after a backend's news before the sweep that reads it.
const NEWS_GATHER: Duration = Duration::from_millis(50);

/// A status as read, and when.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What the API said (or that the agent is gone).
    pub agent: Result<AgentView, ApiError>,
    /// When it was read.
    pub at: SystemTime,
}

/// How often to poll.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// The shortest interval.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
}

struct Watched {
    sender: watch::Sender<Option<Snapshot>>,
    since: SystemTime,
    last: Option<crate::cursor::AgentStatus>,
}

/// The shared poller.
#[derive(Clone)]
pub struct Poller {
    watched: Arc<Mutex<HashMap<AgentId, Watched>>>,
    /// A first agent to watch: ends the idle wait.
    idle: Arc<Notify>,
    /// A webhook: ends the wait between two sweeps.
    wake: Arc<Notify>,
}

impl Poller {
    /// Starts polling with `backend` until `stop`.
    pub fn start<B: Backend>(backend: Arc<B>, config: PollConfig, stop: CancellationToken) -> Self {
        let poller = Self {
            watched: Arc::default(),
            idle: Arc::new(Notify::new()),
            wake: Arc::new(Notify::new()),
        };
        let running = poller.clone();
        tokio::spawn(async move { running.run(backend, config, stop).await });
        poller
    }

    /// Watches `id` (launched around `since`); the receiver sees each new snapshot.
    pub fn watch(&self, id: &AgentId, since: SystemTime) -> watch::Receiver<Option<Snapshot>> {
        let mut watched = self.watched.lock().expect("not poisoned");
        let entry = watched.entry(id.clone()).or_insert_with(|| Watched {
            sender: watch::channel(None).0,
            since,
            last: None,
        });
        let receiver = entry.sender.subscribe();
        drop(watched);
        // Only an idle poller needs waking: a busy one reads the new agent at its next sweep,
        // and waking it for every launch would multiply the sweeps.
        self.idle.notify_one();
        receiver
    }

    /// Reads statuses now instead of at the next interval (a webhook said something changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether `id` is being waited on.
    pub fn watches(&self, id: &AgentId) -> bool {
        self.watched.lock().expect("not poisoned").contains_key(id)
    }

    /// Stops watching `id`.
    pub fn forget(&self, id: &AgentId) {
        self.watched.lock().expect("not poisoned").remove(id);
    }

    async fn run<B: Backend>(&self, backend: Arc<B>, config: PollConfig, stop: CancellationToken) {
        let mut interval = config.min;
        // A backend that hears of changes (v1 run streams) ends the wait as a webhook does.
        let news = backend.news().unwrap_or_default();
        loop {
            let (ids, oldest) = {
                let watched = self.watched.lock().expect("not poisoned");
                let ids: Vec<AgentId> = watched.keys().cloned().collect();
                let oldest = watched
                    .values()
                    .map(|w| w.since)
                    .min()
                    .unwrap_or_else(SystemTime::now);
                (ids, oldest)
            };
            if ids.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.idle.notified() => continue,
                }
            }
            let changed = match backend.statuses(&ids, oldest).await {
                Ok(statuses) => self.publish(statuses),
                Err(error) => {
                    debug!(%error, "polling failed; trying again");
                    false
                }
            };
            interval = if changed {
                config.min
            } else {
                interval.mul_f64(1.5).min(config.max)
            };
            let jittered = interval.mul_f64(rand::rng().random_range(0.8..1.2));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(jittered) => {}
                () = self.wake.notified() => {}
                // News comes one run at a time: a short wait gathers what comes with it, so
                // that one sweep (and one group commit of the store) serves them all.
                () = news.notified() => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(config.min.min(NEWS_GATHER)) => {}
                    }
                }
            }
        }
    }

    /// Sends each snapshot to its waiter; whether any status changed.
    fn publish(&self, statuses: super::backend::Statuses) -> bool {
        let at = SystemTime::now();
        let mut changed = false;
        let mut watched = self.watched.lock().expect("not poisoned");
        for (id, agent) in statuses {
            let Some(entry) = watched.get_mut(&id) else {
                continue;
            };
            let status = agent.as_ref().ok().map(|a| a.status.clone());
            changed |= status != entry.last;
            entry.last = status;
            entry.sender.send_replace(Some(Snapshot { agent, at }));
        }
        changed
    }
}
