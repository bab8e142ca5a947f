//! One loop reads the statuses of the agents being waited on, and tells each waiter.
//!
//! Each agent is due a read when [`super::pace`] says (by its age, the durations this run has
//! seen, and the server's budget); a sweep reads the agents due, and those nearly due with
//! them, in one call where the backend can (and everyone, once reads are dear, when one call
//! reads them all). A webhook or a run stream's news reads them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::backend::{AgentView, Backend};
use super::pace::{self, Bounds, Durations, Prompt};
use crate::cursor::{AgentId, ApiError};

/// The longest wait after a backend's news before the sweep that reads it.
const NEWS_GATHER: Duration = Duration::from_millis(50);

/// A quiet this long after the last news ends that wait sooner: a lone ending is read at
/// once, a burst of them together.
const NEWS_QUIET: Duration = Duration::from_millis(5);

/// A status as read, and when.
#[derive(Debug, Clone)]
pub struct StatusRead {
    /// What the API said (or that the agent is gone).
    pub agent: Result<AgentView, ApiError>,
    /// When the read was sent: what it says was true at some moment after this.
    pub at: SystemTime,
}

/// How often an agent may be read.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// The shortest interval between two reads of one agent.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
}

struct Watched {
    sender: watch::Sender<Option<StatusRead>>,
    /// When it was launched: a listing is read back to there.
    launched: SystemTime,
    /// When its current prompt was sent.
    prompt: Instant,
    /// When this process began waiting on it.
    taken_up: Instant,
    read: Option<Instant>,
    /// The age of its prompt when it was last seen working.
    working: Option<Duration>,
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

    /// Watches `id` (launched around `launched`, its current prompt sent at `prompt`); the
    /// receiver sees each new snapshot.
    pub fn watch(
        &self,
        id: &AgentId,
        launched: SystemTime,
        prompt: SystemTime,
    ) -> watch::Receiver<Option<StatusRead>> {
        let age = SystemTime::now().duration_since(prompt).unwrap_or_default();
        let prompt = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let mut watched = self.watched.lock().expect("not poisoned");
        let entry = watched.entry(id.clone()).or_insert_with(|| Watched {
            sender: watch::channel(None).0,
            launched,
            prompt,
            taken_up: Instant::now(),
            read: None,
            working: None,
        });
        if prompt > entry.prompt + Duration::from_millis(1) {
            // A follow-up: a new prompt, paced from its own start.
            entry.prompt = prompt;
            entry.read = None;
            entry.working = None;
        }
        let receiver = entry.sender.subscribe();
        drop(watched);
        // Only an idle poller needs waking: a busy one reads the new agent when it is due,
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
        let mut durations = Durations::default();
        let mut everyone = true;
        // A backend that hears of changes (v1 run streams) ends the wait as a webhook does.
        let news = backend.news().unwrap_or_default();
        loop {
            let bounds = Bounds {
                min: config.min,
                max: config.max,
                budget: backend.pace().map(crate::cursor::Pace::interval),
            };
            let (mut ids, mut oldest, wait) = self.due(&durations, bounds, everyone);
            // When reads are dear and one page reads them all, whoever is due, everyone is
            // read for the same call. (Not otherwise: reading young agents early then costs
            // no call, but the fleet bench's no-limit run measured 1.29x with it, 1.04x
            // without.)
            if !ids.is_empty() && !everyone && bounds.budget.is_some() && backend.reads_together() {
                (ids, oldest, _) = self.due(&durations, bounds, true);
            }
            everyone = false;
            if !ids.is_empty() {
                let sent = SystemTime::now();
                match backend.statuses(&ids, oldest).await {
                    Ok(statuses) => self.publish(statuses, sent, &mut durations),
                    Err(error) => debug!(%error, "reading statuses failed; trying again"),
                }
                // Read or not, each is due again only after its interval: a failing API is
                // not asked in a loop.
                self.mark_read(&ids);
                continue;
            }
            let Some(wait) = wait else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.idle.notified() => continue,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.idle.notified() => {}
                () = self.wake.notified() => everyone = true,
                // News comes one run at a time: a short wait gathers what comes with it, so
                // that one sweep (and one group commit of the store) serves them all.
                () = news.notified() => {
                    everyone = true;
                    let gathered = tokio::time::Instant::now() + config.min.min(NEWS_GATHER);
                    loop {
                        let quiet = (tokio::time::Instant::now() + NEWS_QUIET).min(gathered);
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep_until(quiet) => break,
                            () = news.notified() => {}
                        }
                    }
                }
            }
        }
    }

    /// The agents to read now (all of them after news), the launch of the oldest, and how long
    /// until the next is due when none is.
    fn due(
        &self,
        durations: &Durations,
        bounds: Bounds,
        everyone: bool,
    ) -> (Vec<AgentId>, SystemTime, Option<Duration>) {
        let now = Instant::now();
        let watched = self.watched.lock().expect("not poisoned");
        let mut next: Option<Duration> = None;
        let mut ids = Vec::new();
        let mut oldest = SystemTime::now();
        // Those nearly due go with the ones due: on a listing they cost nothing more.
        let slack = bounds.min / 2;
        for (id, entry) in watched.iter() {
            // A resumed agent is paced from when this process took it up: how long it has
            // left is as unknown as a new one's.
            let prompt = Prompt {
                age: now.duration_since(entry.prompt.max(entry.taken_up)),
                read_ago: entry.read.map(|at| now.duration_since(at)),
            };
            let due = pace::due_in(prompt, durations, bounds);
            if everyone || due <= slack {
                ids.push(id.clone());
                oldest = oldest.min(entry.launched);
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        (ids, oldest, next)
    }

    fn mark_read(&self, ids: &[AgentId]) {
        let now = Instant::now();
        let mut watched = self.watched.lock().expect("not poisoned");
        for id in ids {
            if let Some(entry) = watched.get_mut(id) {
                entry.read = Some(now);
            }
        }
    }

    /// Sends each snapshot of a read sent `at` to its waiter, and learns the durations of
    /// the prompts it ends.
    fn publish(
        &self,
        statuses: super::backend::Statuses,
        at: SystemTime,
        durations: &mut Durations,
    ) {
        let now = Instant::now();
        let mut watched = self.watched.lock().expect("not poisoned");
        for (id, agent) in statuses {
            let Some(entry) = watched.get_mut(&id) else {
                continue;
            };
            let age = now.duration_since(entry.prompt);
            match agent.as_ref().ok().map(|a| &a.status) {
                Some(status) if status.is_terminal() => {
                    if let Some(working) = entry.working.take() {
                        durations.record(working, age);
                    }
                }
                Some(_) => entry.working = Some(age),
                None => {}
            }
            entry.read = Some(now);
            entry.sender.send_replace(Some(StatusRead { agent, at }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::model::AgentStatus;
    use crate::exec::backend::{LaunchSpec, Statuses};

    /// Answers every read with a working agent, and records which agents each read asked for.
    struct Scripted {
        together: bool,
        reads: Mutex<Vec<Vec<AgentId>>>,
    }

    fn working(id: &AgentId) -> AgentView {
        crate::exec::fake::agent(&id.0, AgentStatus::Running)
    }

    impl Backend for Scripted {
        async fn launch(&self, _: &LaunchSpec) -> Result<AgentView, ApiError> {
            unreachable!("the poller only reads")
        }
        async fn find_launched(&self, _: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
            unreachable!("the poller only reads")
        }
        async fn statuses(&self, ids: &[AgentId], _: SystemTime) -> Result<Statuses, ApiError> {
            let mut sorted = ids.to_vec();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            self.reads.lock().unwrap().push(sorted);
            Ok(ids.iter().map(|id| (id.clone(), Ok(working(id)))).collect())
        }
        async fn follow_up(&self, _: &AgentId, _: &str) -> Result<(), ApiError> {
            unreachable!("the poller only reads")
        }
        async fn follow_up_received(&self, _: &AgentId, _: &str, _: u32) -> Result<bool, ApiError> {
            unreachable!("the poller only reads")
        }
        async fn stop(&self, _: &AgentId) -> Result<(), ApiError> {
            unreachable!("the poller only reads")
        }
        async fn tokens(&self, _: &AgentId) -> Result<Option<u64>, ApiError> {
            Ok(None)
        }
        fn reads_together(&self) -> bool {
            self.together
        }
        fn pace(&self) -> Option<crate::cursor::Pace> {
            // A server's limit named, with an interval shorter than the reads' own.
            Some(crate::cursor::Pace {
                allowance: 60_000,
                window: Duration::from_secs(60),
            })
        }
    }

    /// The reads made while an old agent and a young one are waited on for a while.
    async fn reads(together: bool) -> Vec<Vec<AgentId>> {
        let backend = Arc::new(Scripted {
            together,
            reads: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let config = PollConfig {
            min: Duration::from_millis(20),
            max: Duration::from_secs(60),
        };
        let poller = Poller::start(backend.clone(), config, stop.clone());
        let (old, young) = (AgentId("old".into()), AgentId("young".into()));
        let now = SystemTime::now();
        let _old = poller.watch(&old, now, now - Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _young = poller.watch(&young, now, now);
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.cancel();
        backend.reads.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn when_reads_are_dear_a_read_that_is_due_takes_everyone_along() {
        let reads = reads(true).await;
        let young_read = reads.iter().position(|r| r.len() == 2);
        assert!(young_read.is_some(), "{reads:?}");
        assert!(
            reads[young_read.unwrap()..].iter().all(|r| r.len() == 2),
            "once both are watched, every read reads both: {reads:?}"
        );
    }

    #[tokio::test]
    async fn otherwise_only_those_due_are_read() {
        let reads = reads(false).await;
        assert!(
            reads.iter().any(|r| r.len() == 1 && r[0].0 == "young"),
            "the young agent is read on its own, at its own pace: {reads:?}"
        );
    }
}
