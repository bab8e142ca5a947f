//! The call budget of one quota scope, learned from the server's answers.
//!
//! Cursor publishes no number for its general limits: they are per team and reset every
//! minute, and a 429 carries `Retry-After` and `X-RateLimit-Limit`, `-Remaining` and
//! `-Reset`. So the budget keeps its own account of the calls the server counted in the
//! last window (by the time each was *answered*, never earlier than the server saw it, so
//! the account is never below the server's, whether its window slides or resets) and:
//!
//! - lets calls go at once up to the most the server has taken in one window, and beyond
//!   that a few at a time (probes: one for each sixteen calls the server has taken, at least
//!   one): the pace doubles every dozen round trips, and when the server's limit is reached,
//!   few calls are in flight past it;
//! - on a 429, holds every call of the scope until `Retry-After` (or the reset) and keeps
//!   to the limit it names from then on. A refusal below that limit (another client spent
//!   the rest of a shared quota) is waited out by the hold: the window is spent until the
//!   reset whoever spent it. A server that names no limit gets AIMD: the first 429 makes
//!   what it took in the window the allowance, each later one halves it, and each quiet
//!   window adds a tenth (at least one call);
//! - after a hold, forgets what the server had taken, since its limit may have changed
//!   while the client waited: beyond the calls already in the window, calls go as probes
//!   again, so that a lower limit costs one 429 (one for each sixteen calls in the window,
//!   from 32 on) and not one for every call sent at once;
//! - when the allowance is nearly spent, keeps what is left for the launches and follow-ups
//!   that wait, before status reads.
//!
//! A limit the server named to an earlier process can be given back ([`Budget::remember`]):
//! the budget then keeps to it from the first call, as if it had just been named.
//!
//! Everything here is a plain function of the calls so far and `now`; the waiting is done
//! by [`super::Quotas`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The server's window: Cursor's limits reset every minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The longest hold believed from one answer: the server's windows are a minute long, so a
/// longer `Retry-After` is taken for a mistake rather than stall a run.
pub const MAX_HOLD: Duration = Duration::from_secs(120);

/// The hold after a 429 that names no wait.
const DEFAULT_HOLD: Duration = Duration::from_secs(1);

/// What may go at once before the server has said anything: any API takes ten calls a
/// minute.
const START: u32 = 10;

/// Probes in flight at once: one for each this many calls the server has taken in a window.
const PROBE_SHARE: u32 = 16;

/// Which calls go first when the budget is tight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Launches, follow-ups, stops: the work itself.
    Mutation,
    /// Status reads and listings: they can wait.
    Read,
}

/// Why a call cannot go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not before this instant (a hold, or the oldest counted call leaving the window); an
    /// answer may free a place sooner.
    Until(Instant),
    /// Until a call in flight is answered.
    Answer,
}

/// A place taken by a call in flight; given back with [`Budget::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ticket {
    probe: bool,
}

/// What the rate-limit headers of one answer said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `X-RateLimit-Limit`: calls allowed per window.
    pub limit: Option<u32>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset`, as a wait from now.
    pub reset: Option<Duration>,
    /// `Retry-After`, as a wait from now.
    pub retry_after: Option<Duration>,
}

/// How the server took a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (whatever the status but 429): the server counted it.
    Counted(RateHeaders),
    /// 429: refused for the rate.
    Throttled(RateHeaders),
    /// It never reached the server (the connection was refused).
    NotSent,
}

/// What the budget knows of the server's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Nothing said yet.
    Unknown,
    /// A 429 (or a header) said.
    Learned {
        /// Calls this client may have in one window now.
        allowance: u32,
        /// The server's limit when it named one: the allowance never grows past it.
        ceiling: Option<u32>,
        /// When the allowance last changed: it grows by one after each quiet window.
        since: Instant,
    },
}

/// The account of one scope.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: Limit,
    /// The most calls the server took in one window since the last hold: as many may go at
    /// once, and beyond that only probes.
    proven: u32,
    /// Answer times of the counted calls still in the window, oldest first.
    counted: VecDeque<Instant>,
    in_flight: u32,
    probing: u32,
    hold_until: Option<Instant>,
    /// Whether the server named the limit to this process (not only to an earlier one).
    named_here: bool,
    waiting_mutations: u32,
    throttled: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    /// A budget that knows nothing of the server yet.
    pub fn new() -> Self {
        Self {
            limit: Limit::Unknown,
            proven: START,
            counted: VecDeque::new(),
            in_flight: 0,
            probing: 0,
            hold_until: None,
            named_here: false,
            waiting_mutations: 0,
            throttled: 0,
        }
    }

    /// The calls this client may have in one window, once the server has said.
    pub fn allowance(&self) -> Option<u32> {
        match self.limit {
            Limit::Unknown => None,
            Limit::Learned { allowance, .. } => Some(allowance),
        }
    }

    /// The limit the server named to this process, if it named one.
    pub fn named_limit(&self) -> Option<u32> {
        match self.limit {
            Limit::Learned { ceiling, .. } if self.named_here => ceiling,
            _ => None,
        }
    }

    /// Starts from a limit the server named to an earlier process, as if it had just named
    /// it: kept to from the first call, and as many calls may go at once.
    pub fn remember(&mut self, limit: u32, now: Instant) {
        let limit = limit.max(1);
        self.limit = Limit::Learned {
            allowance: limit,
            ceiling: Some(limit),
            since: now,
        };
        self.proven = limit;
    }

    /// 429 answers seen.
    pub fn throttled(&self) -> u64 {
        self.throttled
    }

    /// The end of the current hold, if one is on at `now`.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.hold_until.filter(|until| *until > now)
    }

    /// Counts a launch or follow-up that waits: reads leave it a place.
    pub fn mutation_waits(&mut self) {
        self.waiting_mutations += 1;
    }

    /// The launch or follow-up counted by [`Self::mutation_waits`] no longer waits.
    pub fn mutation_done_waiting(&mut self) {
        self.waiting_mutations = self.waiting_mutations.saturating_sub(1);
    }

    /// Takes a place for a call of `priority` at `now`, or says how long to wait.
    pub fn try_take(&mut self, priority: Priority, now: Instant) -> Result<Ticket, Wait> {
        if let Some(until) = self.held_until(now) {
            return Err(Wait::Until(until));
        }
        self.hold_until = None;
        self.prune(now);
        self.grow(now);
        let used = self.in_flight + self.counted_len();
        let reserved = match priority {
            Priority::Mutation => 0,
            Priority::Read => self.waiting_mutations,
        };
        // The server's limit, when known, is never passed; what it has taken (since the
        // last hold) may go at once; between the two, probes.
        let ceiling = self.allowance().unwrap_or(u32::MAX);
        let at_once = self.proven.min(ceiling);
        if used + reserved < at_once {
            self.in_flight += 1;
            return Ok(Ticket { probe: false });
        }
        if used + reserved < ceiling
            && self.probing < (at_once / PROBE_SHARE).max(1)
            && reserved == 0
        {
            self.probing += 1;
            self.in_flight += 1;
            return Ok(Ticket { probe: true });
        }
        Err(self
            .counted
            .front()
            .map_or(Wait::Answer, |oldest| Wait::Until(*oldest + WINDOW)))
    }

    /// Gives back the place of `ticket`, learning from how the server took the call.
    pub fn settle(&mut self, ticket: Ticket, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if ticket.probe {
            self.probing = self.probing.saturating_sub(1);
        }
        self.prune(now);
        match outcome {
            Outcome::NotSent => {}
            Outcome::Counted(headers) => {
                self.counted.push_back(now);
                self.proven = self.proven.max(self.counted_len());
                self.observe(headers, now);
            }
            Outcome::Throttled(headers) => {
                self.throttled += 1;
                let wait = headers
                    .retry_after
                    .or(headers.reset)
                    .unwrap_or(DEFAULT_HOLD);
                self.hold(now + wait.min(MAX_HOLD));
                self.limit = match (headers.limit, self.limit) {
                    // The server named its limit: the account keeps to it, and a refusal
                    // below it (another client spent the rest) is waited out by the hold.
                    (Some(limit), _) => {
                        self.named_here = true;
                        Limit::Learned {
                            allowance: limit.max(1),
                            ceiling: Some(limit.max(1)),
                            since: now,
                        }
                    }
                    // It named none: at first, what it took in the window is its limit;
                    // then each 429 halves the allowance, and quiet windows grow it back.
                    (None, Limit::Unknown) => Limit::Learned {
                        allowance: (self.counted_len() + self.in_flight).max(1),
                        ceiling: None,
                        since: now,
                    },
                    (None, Limit::Learned { allowance, .. }) => Limit::Learned {
                        allowance: (allowance / 2).max(1),
                        ceiling: None,
                        since: now,
                    },
                };
            }
        }
    }

    /// Learns from the headers of an answer that was not refused.
    fn observe(&mut self, headers: RateHeaders, now: Instant) {
        if let Some(limit) = headers.limit.filter(|l| *l > 0) {
            let allowance = match self.limit {
                Limit::Learned {
                    allowance,
                    ceiling: Some(old),
                    ..
                } if old == limit => allowance,
                _ => limit,
            };
            self.limit = Limit::Learned {
                allowance,
                ceiling: Some(limit),
                since: now,
            };
            // The server said how many it takes: no need to probe up to it.
            self.proven = self.proven.max(allowance);
            self.named_here = true;
        }
        if headers.remaining == Some(0) {
            if let Some(reset) = headers.reset {
                self.hold(now + reset.min(MAX_HOLD));
            }
        }
    }

    fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |at| at.max(until)));
        self.proven = 0;
    }

    /// After each window without a 429, a tenth more (at least one call), up to the named
    /// limit (a named limit is kept as it is).
    fn grow(&mut self, now: Instant) {
        if let Limit::Learned {
            allowance,
            ceiling,
            since,
        } = &mut self.limit
        {
            if now.duration_since(*since) >= WINDOW && Some(*allowance) != *ceiling {
                let step = (*allowance / 10).max(1);
                *allowance = allowance
                    .saturating_add(step)
                    .min(ceiling.unwrap_or(u32::MAX));
                *since = now;
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .counted
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            self.counted.pop_front();
        }
    }

    fn counted_len(&self) -> u32 {
        u32::try_from(self.counted.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outcome {
        Outcome::Counted(RateHeaders::default())
    }

    fn too_many(limit: Option<u32>, seconds: u64) -> Outcome {
        Outcome::Throttled(RateHeaders {
            limit,
            remaining: Some(0),
            reset: Some(Duration::from_secs(seconds)),
            retry_after: Some(Duration::from_secs(seconds)),
        })
    }

    /// Takes and settles `n` calls one after another at `now`.
    fn calls(budget: &mut Budget, n: u32, now: Instant) {
        for _ in 0..n {
            let ticket = budget.try_take(Priority::Read, now).unwrap();
            budget.settle(ticket, ok(), now);
        }
    }

    #[test]
    fn before_any_limit_calls_beyond_the_proven_go_one_at_a_time() {
        let now = Instant::now();
        let mut budget = Budget::new();
        let first: Vec<Ticket> = (0..START)
            .map(|_| budget.try_take(Priority::Read, now).unwrap())
            .collect();
        let probe = budget.try_take(Priority::Read, now).unwrap();
        assert_eq!(
            budget.try_take(Priority::Read, now),
            Err(Wait::Answer),
            "a second probe waits for the first"
        );
        budget.settle(probe, ok(), now);
        for ticket in first {
            budget.settle(ticket, ok(), now);
        }
        // Eleven were taken in the window: eleven may go at once in the next.
        assert_eq!(budget.proven, 11);
    }

    #[test]
    fn a_429_holds_the_scope_until_retry_after_and_its_limit_is_kept() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 30, start);
        let refused = budget.try_take(Priority::Mutation, start).unwrap();
        budget.settle(refused, too_many(Some(30), 20), start);
        assert_eq!(budget.throttled(), 1);
        let later = start + Duration::from_secs(5);
        assert_eq!(
            budget.try_take(Priority::Mutation, later),
            Err(Wait::Until(start + Duration::from_secs(20))),
            "every call of the scope holds, not just the refused one"
        );
        // After the hold, the 30 counted calls still fill the window until it passes.
        let after_hold = start + Duration::from_secs(21);
        assert_eq!(
            budget.try_take(Priority::Mutation, after_hold),
            Err(Wait::Until(start + WINDOW))
        );
        let next_window = start + WINDOW;
        calls(&mut budget, 30, next_window);
        assert!(
            budget.try_take(Priority::Mutation, next_window).is_err(),
            "the learned limit of 30 per window is honoured"
        );
        assert_eq!(budget.allowance(), Some(30));
        assert_eq!(budget.named_limit(), Some(30));
    }

    #[test]
    fn a_limit_that_halves_costs_one_429() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 60, start);
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(Some(60), 1), start);
        let t = start + WINDOW;
        // The server's limit is now 30: the 31st call of the window is refused.
        calls(&mut budget, 30, t);
        let refused = budget.try_take(Priority::Read, t).unwrap();
        budget.settle(refused, too_many(Some(30), 60), t);
        assert_eq!(budget.allowance(), Some(30));
        let t = t + WINDOW;
        calls(&mut budget, 30, t);
        assert!(budget.try_take(Priority::Read, t).is_err());
        assert_eq!(budget.throttled(), 2, "one for each limit learned");
    }

    #[test]
    fn refused_below_the_named_limit_the_hold_waits_out_the_window() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 10, start);
        // Another client spent the rest of a 100-call quota.
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(Some(100), 30), start);
        assert_eq!(budget.allowance(), Some(100));
        assert_eq!(
            budget.try_take(Priority::Read, start + Duration::from_secs(29)),
            Err(Wait::Until(start + Duration::from_secs(30)))
        );
        assert!(
            budget
                .try_take(Priority::Read, start + Duration::from_secs(30))
                .is_ok()
        );
    }

    #[test]
    fn without_a_named_limit_429s_halve_the_allowance_and_quiet_windows_grow_it() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 40, start);
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(None, 1), start);
        assert_eq!(budget.allowance(), Some(40), "what the server took");
        // A quiet window grows it to 44; the next 429 halves that.
        let t = start + WINDOW;
        let refused = budget.try_take(Priority::Mutation, t).unwrap();
        assert_eq!(
            budget.allowance(),
            Some(44),
            "a tenth more after a quiet window"
        );
        budget.settle(refused, too_many(None, 1), t);
        assert_eq!(budget.allowance(), Some(22), "halved");
    }

    /// Takes every place the budget gives at `now`.
    fn burst(budget: &mut Budget, now: Instant) -> Vec<Ticket> {
        std::iter::from_fn(|| budget.try_take(Priority::Read, now).ok()).collect()
    }

    #[test]
    fn a_limit_lowered_during_a_hold_costs_one_429() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 20, start);
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(Some(100), 5), start);
        // While the client waited, the server's limit fell to 22 calls a minute.
        let after = start + Duration::from_secs(5);
        for answered in 21..=22 {
            let sent = burst(&mut budget, after);
            assert_eq!(
                sent.len(),
                1,
                "beyond the window's calls, one probe at a time"
            );
            budget.settle(sent[0], ok(), after);
            assert_eq!(budget.counted_len(), answered);
        }
        let sent = burst(&mut budget, after);
        assert_eq!(sent.len(), 1, "no burst into the new limit");
        budget.settle(sent[0], too_many(Some(22), 55), after);
        assert_eq!(
            budget.throttled(),
            2,
            "one for the first limit, one for the new"
        );
        assert_eq!(budget.allowance(), Some(22));
    }

    #[test]
    fn after_a_hold_the_pace_grows_back_with_the_calls_answered() {
        let start = Instant::now();
        let mut budget = Budget::new();
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(Some(1000), 1), start);
        let after = start + Duration::from_secs(1);
        // An answer to a call sent before the hold counts like any other.
        let mut widths = Vec::new();
        while budget.counted_len() < 100 {
            let sent = burst(&mut budget, after);
            widths.push(sent.len());
            for ticket in sent {
                budget.settle(ticket, ok(), after);
            }
        }
        assert_eq!(
            widths[..3],
            [1, 1, 1],
            "slow at first: the limit may have fallen"
        );
        // Probes grow by a sixteenth of what the window holds: from 32 on, the pace doubles
        // about every dozen rounds.
        assert_eq!(widths[31..33], [1, 2], "{widths:?}");
        assert!(widths.len() < 60, "{widths:?}");
    }

    #[test]
    fn when_tight_launches_go_before_reads() {
        let start = Instant::now();
        let mut budget = Budget::new();
        calls(&mut budget, 9, start);
        let refused = budget.try_take(Priority::Read, start).unwrap();
        budget.settle(refused, too_many(Some(10), 1), start);
        let t = start + Duration::from_secs(2);
        // Nine counted, one place left, one launch waiting: a read does not take it.
        budget.mutation_waits();
        assert!(budget.try_take(Priority::Read, t).is_err());
        assert!(budget.try_take(Priority::Mutation, t).is_ok());
        budget.mutation_done_waiting();
    }

    #[test]
    fn headers_on_any_answer_teach_the_limit_and_a_spent_window_holds() {
        let now = Instant::now();
        let mut budget = Budget::new();
        let ticket = budget.try_take(Priority::Read, now).unwrap();
        budget.settle(
            ticket,
            Outcome::Counted(RateHeaders {
                limit: Some(500),
                remaining: Some(0),
                reset: Some(Duration::from_secs(3)),
                retry_after: None,
            }),
            now,
        );
        assert_eq!(budget.allowance(), Some(500));
        assert_eq!(budget.held_until(now), Some(now + Duration::from_secs(3)));
        assert_eq!(budget.throttled(), 0);
    }

    #[test]
    fn a_remembered_limit_is_kept_from_the_first_call() {
        let now = Instant::now();
        let mut budget = Budget::new();
        budget.remember(4, now);
        let sent = burst(&mut budget, now);
        assert_eq!(sent.len(), 4, "the four at once, no probe past them");
        assert_eq!(
            budget.named_limit(),
            None,
            "only a limit named again is worth remembering anew"
        );
        for ticket in sent {
            budget.settle(ticket, ok(), now);
        }
        assert_eq!(
            budget.try_take(Priority::Mutation, now),
            Err(Wait::Until(now + WINDOW))
        );
    }

    #[test]
    fn an_absurd_retry_after_is_bounded() {
        let now = Instant::now();
        let mut budget = Budget::new();
        let ticket = budget.try_take(Priority::Read, now).unwrap();
        budget.settle(ticket, too_many(None, 86_400), now);
        assert_eq!(budget.held_until(now), Some(now + MAX_HOLD));
    }
}
