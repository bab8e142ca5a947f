//! One run shared by several runners (`apply --join`): each instance is claimed through a
//! lease in the database before this runner acts on it, followed through its record while
//! another runner holds it, and taken over when that runner's lease runs out.
//!
//! What keeps an agent from being launched twice: every write of an instance is fenced by
//! its lease in the same transaction ([`Write::Fence`]), a launch or follow-up is sent only
//! while this runner renewed its leases less than half a lease ago, and a runner that takes
//! an instance over continues it from its record through the launch identity (a launch in
//! flight is looked for before it is sent again).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::backend::Backend;
use super::event::InstanceEvent;
use super::execution::{Execution, Halt};
use crate::state::{Claim, StateError, Write};

/// How long an instance another runner holds is left before its record is read again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How long a claim refused for the cap waits before it is tried again, unless this runner
/// gives a place back first (a place another runner gives back is seen on the next try).
const FULL_RETRY: Duration = Duration::from_secs(1);

/// This runner's leases: how long they last, and when they were last renewed.
#[derive(Debug)]
pub(crate) struct Leases {
    lease: Duration,
    /// When the last renewal that succeeded was sent (before the answer: the lease runs
    /// from no earlier than that).
    renewed: Mutex<Instant>,
    /// Told when this runner gives a place under the cap back: a claim waiting for one
    /// tries again at once.
    freed: tokio::sync::Notify,
}

impl Leases {
    pub(super) fn new(lease: Duration) -> Self {
        Self {
            lease,
            renewed: Mutex::new(Instant::now()),
            freed: tokio::sync::Notify::new(),
        }
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

    /// Says that this runner gave a place under the cap back.
    fn freed(&self) {
        if let Some(leases) = &self.shared {
            leases.freed.notify_one();
        }
    }

    /// Renews this runner's leases every third of their life until the returned guard is
    /// dropped.
    pub(super) fn renew_leases(self: &Arc<Self>) -> tokio_util::sync::DropGuard {
        let stop = tokio_util::sync::CancellationToken::new();
        let this = self.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let Some(leases) = &this.shared else { return };
            let mut every = tokio::time::interval(leases.lease / 3);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = every.tick() => {}
                }
                let sent = Instant::now();
                match this.store.renew_leases().await {
                    Ok(_) => leases.renewed(sent),
                    Err(error) => tracing::warn!(%error, "the leases were not renewed"),
                }
            }
        });
        stop.drop_guard()
    }

    /// The life of one instance in a shared run: claimed, then driven here; or followed
    /// through its record while another runner holds it, until it settles or its lease
    /// runs out and this runner takes it over.
    pub(super) async fn drive_shared(self: &Arc<Self>, index: usize) -> Result<(), Halt> {
        let run = self.run.to_string();
        let key = self.plan.instances[index].key.to_string();
        let fatal = |e: StateError| Halt::Fatal(e.to_string());
        loop {
            let mut slot = Some(self.slot().await?);
            let (claim, found) = self
                .store
                .claim(&run, &key, self.plan.concurrency)
                .await
                .map_err(fatal)?;
            if let Some(found) = found {
                self.keep(index, found);
            }
            if !matches!(claim, Claim::Mine { .. }) {
                slot = None;
            }
            let full = claim == Claim::Full;
            let wait = match claim {
                Claim::Mine { from } => match self.take(index, from, slot.take()).await {
                    Ok(()) => {
                        self.store
                            .release_lease(&run, &key, true)
                            .await
                            .map_err(fatal)?;
                        self.freed();
                        return Ok(());
                    }
                    Err(Halt::LeaseLost(why)) => {
                        tracing::warn!(%why, "{key}: left to the runner that takes it over");
                        FOLLOW_EVERY
                    }
                    Err(halt) => {
                        // Let another runner take it over at once; its live agent keeps
                        // its place under the cap through its record.
                        let _ = self.store.release_lease(&run, &key, false).await;
                        return Err(halt);
                    }
                },
                Claim::Held(_) | Claim::Full if self.state(index).is_settled() => return Ok(()),
                Claim::Held(_) => FOLLOW_EVERY,
                Claim::Full => FULL_RETRY,
            };
            let jittered = wait.mul_f64(rand::rng().random_range(0.5..1.5));
            let leases = self.shared.as_ref().expect("a shared run");
            tokio::select! {
                () = leases.freed.notified(), if full => {}
                paused = self.pause(jittered) => paused?,
            }
        }
    }
}

impl<B: Backend> Execution<B> {
    /// Drives instance `index`, claimed: said first when it is taken over `from` a runner
    /// whose lease ran out before it settled.
    async fn take(
        self: &Arc<Self>,
        index: usize,
        from: Option<String>,
        slot: Option<tokio::sync::SemaphorePermit<'_>>,
    ) -> Result<(), Halt> {
        if let Some(from) = from.filter(|_| !self.state(index).is_settled()) {
            let record = self.record(index);
            self.emit(index, &record, InstanceEvent::TakenOver { from })
                .await?;
        }
        self.drive_here(index, slot).await
    }
}

/// Writes of an instance of a shared run, fenced by its lease.
pub(super) fn fenced(run: &str, key: &str, writes: Vec<Write>) -> Vec<Write> {
    let mut fenced = Vec::with_capacity(writes.len() + 1);
    fenced.push(Write::Fence(run.to_owned(), key.to_owned()));
    fenced.extend(writes);
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
    fn fenced_writes_start_with_their_fence() {
        let writes = fenced("w/r", "t[a/b]", vec![Write::RemoveRun("x".into())]);
        assert!(matches!(&writes[0], Write::Fence(run, key) if run == "w/r" && key == "t[a/b]"));
        assert_eq!(writes.len(), 2);
    }
}
