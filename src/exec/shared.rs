//! One run shared by several runners (`apply --join`): each instance is claimed through a
//! lease in the database before this runner acts on it, followed through its record while
//! another runner holds it, and taken over when that runner's lease runs out.
//!
//! What keeps an agent from being launched twice: every write of an instance is fenced by
//! its lease in the same transaction ([`Write::Fence`]), a launch or follow-up is sent only
//! while this runner renewed its leases less than half a lease ago, and a runner that takes
//! an instance over continues it from its record through the launch identity (a launch in
//! flight is looked for before it is sent again).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::backend::Backend;
use super::event::InstanceEvent;
use super::execution::{Execution, Halt};
use crate::state::{Claim, StateError, Write};

/// How often the run's records and leases are read, for the instances other runners hold,
/// while this runner drives some of its own.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The same while it drives none: all it waits for is room under the cap or another
/// runner's instances to settle, which only these reads tell it.
const FOLLOW_IDLE: Duration = Duration::from_millis(200);

/// This runner's leases: how long they last, and when they were last renewed.
#[derive(Debug)]
pub(crate) struct Leases {
    lease: Duration,
    /// When the last renewal that succeeded was sent (before the answer: the lease runs
    /// from no earlier than that).
    renewed: Mutex<Instant>,
    /// Moved on whenever room may have opened under the cap (this runner gave a place back,
    /// or a read of the run found some): every claim refused for the cap tries again, and
    /// as the claims queued together go in one transaction, the room goes to the first
    /// instances that nobody else holds in this runner's order ([`Leases::rank`]), not to
    /// one claim at a time.
    room: watch::Sender<u64>,
    /// The instances other runners held when the run was last read.
    elsewhere: watch::Sender<HashSet<String>>,
    /// Where this runner starts in the plan when it claims: runners that start apart claim
    /// apart, instead of all asking for the same next instance.
    offset: usize,
    /// The instances this runner claims or drives: the reads of the run leave them alone.
    driving: Mutex<HashSet<usize>>,
    /// Told when this runner drives none any more: the run is read at once, and then more
    /// often.
    idle: tokio::sync::Notify,
}

impl Leases {
    pub(super) fn new(lease: Duration) -> Self {
        Self {
            lease,
            renewed: Mutex::new(Instant::now()),
            room: watch::Sender::new(0),
            offset: rand::random::<u32>() as usize,
            elsewhere: watch::Sender::new(HashSet::new()),
            driving: Mutex::new(HashSet::new()),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// Where instance `index` of `of` comes in this runner's claims.
    fn rank(&self, index: usize, of: usize) -> u64 {
        ((index + of - self.offset % of) % of) as u64
    }

    fn drive(&self, index: usize) {
        self.driving.lock().expect("not poisoned").insert(index);
    }

    fn done_driving(&self, index: usize) {
        let mut driving = self.driving.lock().expect("not poisoned");
        if driving.remove(&index) && driving.is_empty() {
            self.idle.notify_one();
        }
    }

    fn drives(&self, index: usize) -> bool {
        self.driving.lock().expect("not poisoned").contains(&index)
    }

    fn drives_none(&self) -> bool {
        self.driving.lock().expect("not poisoned").is_empty()
    }

    /// Whether this runner's leases have at least half their life left, as far as it
    /// knows: past that, it sends nothing that costs (a launch, a follow-up).
    pub(super) fn fresh(&self) -> bool {
        fresh(
            self.renewed.lock().expect("not poisoned").elapsed(),
            self.lease,
        )
    }

    fn renewed(&self, sent: Instant) {
        let mut renewed = self.renewed.lock().expect("not poisoned");
        *renewed = (*renewed).max(sent);
    }
}

/// Whether a runner whose leases were renewed `since` ago may still send what costs.
fn fresh(since: Duration, lease: Duration) -> bool {
    since < lease / 2
}

impl<B: Backend> Execution<B> {
    /// Refuses to send what costs (a launch, a follow-up) unless this runner's leases are
    /// fresh; a lone runner always may.
    pub(super) fn lease_held(&self, key: &str) -> Result<(), Halt> {
        match &self.shared {
            Some(leases) if !leases.fresh() => Err(Halt::LeaseLost(format!(
                "the lease of {key} was not renewed for over half its life"
            ))),
            _ => Ok(()),
        }
    }

    /// Told when this runner drives no instance any more.
    fn idle(&self) -> &tokio::sync::Notify {
        &self.shared.as_ref().expect("a shared run").idle
    }

    /// Runs `step` at once, then again after each `period` it asks for (or sooner, when
    /// `nudge` is told), until the returned guard is dropped.
    fn every<F, Fut>(
        self: &Arc<Self>,
        period: fn(&Self) -> Duration,
        nudge: Option<fn(&Self) -> &tokio::sync::Notify>,
        step: F,
    ) -> tokio_util::sync::DropGuard
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            loop {
                let nudged = async {
                    match nudge {
                        Some(nudge) => nudge(&this).notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = stopped.cancelled() => return,
                    () = tokio::time::sleep_until(next) => {}
                    () = nudged => {}
                }
                next = tokio::time::Instant::now() + period(&this);
                step(this.clone()).await;
            }
        });
        stop.drop_guard()
    }

    /// Renews this runner's leases every third of their life until the returned guard is
    /// dropped.
    pub(super) fn renew_leases(self: &Arc<Self>) -> tokio_util::sync::DropGuard {
        let period = |this: &Self| this.shared.as_ref().expect("a shared run").lease / 3;
        self.every(period, None, |this| async move {
            let leases = this.shared.as_ref().expect("a shared run");
            let sent = Instant::now();
            match this.store.renew_leases().await {
                Ok(_) => leases.renewed(sent),
                Err(error) => tracing::warn!(%error, "the leases were not renewed"),
            }
        })
    }

    /// Reads the run every [`FOLLOW_EVERY`] (or [`FOLLOW_IDLE`]) until the returned guard is
    /// dropped: the records of the instances other runners hold (or nobody does) are kept,
    /// `elsewhere` says which other runners hold, and room under the cap wakes the claims
    /// waiting for it.
    pub(super) fn follow_run(self: &Arc<Self>) -> tokio_util::sync::DropGuard {
        let period = |this: &Self| {
            let leases = this.shared.as_ref().expect("a shared run");
            if leases.drives_none() {
                FOLLOW_IDLE
            } else {
                FOLLOW_EVERY
            }
        };
        self.every(period, Some(Self::idle), |this| async move {
            let leases = this.shared.as_ref().expect("a shared run");
            let run = this.run.to_string();
            let cap = this.plan.concurrency as usize;
            let known = this.states();
            let rows = match this.store.followed(&run, known).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "the shared run was not read");
                    return;
                }
            };
            let mut elsewhere = HashSet::new();
            let mut working = 0;
            for row in rows {
                if row.working || row.holder.is_some() {
                    working += 1;
                }
                if row.holder == Some(false) {
                    elsewhere.insert(row.key.clone());
                }
                let (Some(record), Some(index)) = (row.changed, this.index_of(&row.key)) else {
                    continue;
                };
                let mine = leases.drives(index);
                if !mine && row.holder != Some(true) {
                    this.keep(index, record);
                }
            }
            if working < cap {
                leases.room.send_modify(|n| *n += 1);
            }
            leases.elsewhere.send_replace(elsewhere);
        })
    }

    /// The life of one instance in a shared run: claimed, then driven here; or followed
    /// through its record while another runner holds it, until it settles or its lease
    /// runs out and this runner takes it over.
    pub(super) async fn drive_shared(self: &Arc<Self>, index: usize) -> Result<(), Halt> {
        let leases = self.shared.as_ref().expect("a shared run");
        let run = self.run.to_string();
        let key = self.plan.instances[index].key.to_string();
        let fatal = |e: StateError| Halt::Fatal(e.to_string());
        let mut elsewhere = leases.elsewhere.subscribe();
        let mut room = leases.room.subscribe();
        loop {
            let slot = self.slot().await?;
            leases.drive(index);
            // Room that opens from now on is news to this claim.
            room.borrow_and_update();
            let claimed = self
                .store
                .claim(
                    &run,
                    &key,
                    self.plan.concurrency,
                    leases.rank(index, self.plan.instances.len()),
                )
                .await;
            let (claim, found) = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    leases.done_driving(index);
                    return Err(fatal(error));
                }
            };
            if let Some(found) = found {
                self.keep(index, found);
            }
            let full = match claim {
                Claim::Mine { from } => {
                    // The lease went back with the write that settled the instance (see
                    // `emit`), and its place under the cap with it.
                    let driven = self.take(index, from).await;
                    leases.done_driving(index);
                    match driven {
                        Ok(()) => {
                            drop(slot);
                            leases.room.send_modify(|n| *n += 1);
                            return Ok(());
                        }
                        Err(Halt::LeaseLost(why)) => {
                            tracing::warn!(%why, "{key}: left to the runner that takes it over");
                            false
                        }
                        Err(halt) => {
                            // Let another runner take it over at once; its live agent keeps
                            // its place under the cap through its record.
                            let _ = self.store.let_go(&run, &key).await;
                            return Err(halt);
                        }
                    }
                }
                Claim::Held(_) | Claim::Full => {
                    drop(slot);
                    leases.done_driving(index);
                    claim == Claim::Full
                }
            };
            // Wait for what would change the answer: room under the cap, or a read of the run
            // that finds the instance settled or let go of.
            loop {
                if self.state(index).is_settled() {
                    return Ok(());
                }
                if !full && !elsewhere.borrow_and_update().contains(&key) {
                    break;
                }
                tokio::select! {
                    () = self.interrupt.cancelled() => return Err(Halt::Interrupted),
                    changed = room.changed(), if full => match changed {
                        Ok(()) => break,
                        Err(_) => return Err(Halt::Interrupted),
                    },
                    changed = elsewhere.changed() => if changed.is_err() { return Err(Halt::Interrupted) },
                }
            }
        }
    }
}

impl<B: Backend> Execution<B> {
    /// Drives instance `index`, claimed: said first when it is taken over `from` a runner
    /// whose lease ran out before it settled.
    async fn take(self: &Arc<Self>, index: usize, from: Option<String>) -> Result<(), Halt> {
        if self.state(index).is_settled() {
            // Settled by the runner it was claimed from, between its last read and the
            // claim: nothing to write, so the lease goes back on its own.
            let run = self.run.to_string();
            let key = &self.plan.instances[index].key;
            return match self
                .store
                .write(fenced(&run, key.as_str(), Vec::new(), true))
                .await
            {
                Ok(()) | Err(StateError::LeaseLost { .. }) => Ok(()),
                Err(error) => Err(Halt::Fatal(error.to_string())),
            };
        }
        if let Some(from) = from {
            let record = self.record(index);
            self.emit(index, &record, InstanceEvent::TakenOver { from })
                .await?;
        }
        self.drive_here(index, true).await
    }
}

/// Writes of an instance of a shared run, fenced by its lease; the lease goes back with
/// them when they `settle` the instance.
pub(super) fn fenced(run: &str, key: &str, writes: Vec<Write>, settle: bool) -> Vec<Write> {
    let mut fenced = Vec::with_capacity(writes.len() + 2);
    fenced.push(Write::Fence(run.to_owned(), key.to_owned()));
    fenced.extend(writes);
    if settle {
        fenced.push(Write::Release(run.to_owned(), key.to_owned()));
    }
    fenced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costly_calls_stop_at_half_a_lease_without_renewal() {
        let lease = Duration::from_secs(30);
        assert!(fresh(Duration::from_secs(14), lease));
        assert!(!fresh(Duration::from_secs(15), lease));
        assert!(!fresh(Duration::from_secs(40), lease));
    }

    #[test]
    fn each_runner_ranks_the_whole_plan_from_its_own_offset() {
        let mut leases = Leases::new(Duration::from_secs(30));
        leases.offset = 7;
        let ranks: Vec<u64> = (0..10).map(|index| leases.rank(index, 10)).collect();
        assert_eq!(ranks, [3, 4, 5, 6, 7, 8, 9, 0, 1, 2]);
        leases.offset = 1_000_000_003;
        let mut ranks: Vec<u64> = (0..10).map(|index| leases.rank(index, 10)).collect();
        assert_eq!(ranks[3], 0, "it starts at its offset, modulo the plan");
        ranks.sort_unstable();
        assert_eq!(ranks, (0..10).collect::<Vec<u64>>(), "every instance once");
    }

    #[test]
    fn fenced_writes_start_with_their_fence() {
        let writes = fenced("w/r", "t[a/b]", vec![Write::RemoveRun("x".into())], false);
        assert!(matches!(&writes[0], Write::Fence(run, key) if run == "w/r" && key == "t[a/b]"));
        assert_eq!(writes.len(), 2);
        let settling = fenced("w/r", "t[a/b]", vec![Write::RemoveRun("x".into())], true);
        assert!(
            matches!(&settling[2], Write::Release(run, key) if run == "w/r" && key == "t[a/b]")
        );
        assert_eq!(settling.len(), 3);
    }
}
