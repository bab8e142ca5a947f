//! Rate limits, so orchestrate goes as fast as the API allows and never faster.
//!
//! Three layers, each taken in turn before a call:
//! - configured ceilings (`ORCHESTRATE_QUOTAS`): governor limiters, none by default;
//! - for `GET /v0/repositories` (documented: 1 per minute and 30 per hour per user), one
//!   limiter per window, without burst (a GCRA limiter of 30 per hour with a burst of 30
//!   would let 60 calls through in one rolling hour), serialised so that calls are at least
//!   the longest interval apart; the last call time is exposed so that a store can persist
//!   it and a later process starts where this one left off;
//! - the budget learned from the server ([`super::budget`]): a 429 holds every call of its
//!   scope, launches and follow-ups go before reads when it is tight.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::budget::{Budget, MAX_HOLD, Outcome, Priority, RateHeaders, Ticket, WINDOW, Wait};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A rate: `count` calls per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed in each window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// `count` calls per `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    /// The steady interval between two calls.
    pub fn interval(self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            _ => humantime::format_duration(self.per).to_string(),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: write COUNT/UNIT, for example 120/min, 30/h or 5/s")]
pub struct RateError(String);

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || RateError(text.to_owned());
        let (count, unit) = text.trim().split_once('/').ok_or_else(error)?;
        let count: u32 = count.trim().parse().map_err(|_| error())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| error())?,
        };
        if count == 0 || per.is_zero() {
            return Err(error());
        }
        Ok(Rate { count, per })
    }
}

/// Several windows of one quota, written `1/min+30/h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates(pub Vec<Rate>);

impl FromStr for Rates {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split('+')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Rates)
    }
}

/// The quotas a client keeps to: ceilings of its own, and the documented hard limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// A ceiling on every call; none by default (the server's limit is learned).
    pub calls: Option<Rate>,
    /// Calls that may come at once under the ceiling.
    pub calls_burst: u32,
    /// A ceiling on launches; none by default (the API publishes no launch limit).
    pub launches: Option<Rate>,
    /// Launches that may come at once under the ceiling.
    pub launches_burst: u32,
    /// `GET /v0/repositories`, each window kept separately.
    pub repositories: Vec<Rate>,
}

/// The documented limit of the repositories endpoint: 1 per minute and 30 per hour.
pub fn documented_repositories() -> Vec<Rate> {
    vec![
        Rate::new(1, Duration::from_secs(60)),
        Rate::new(30, Duration::from_secs(3600)),
    ]
}

impl Default for QuotaConfig {
    /// No ceiling but the documented repositories limit: the concurrency cap and
    /// `--max-agents` bound the cost, the server's answers the pace.
    fn default() -> Self {
        Self {
            calls: None,
            calls_burst: 10,
            launches: None,
            launches_burst: 5,
            repositories: documented_repositories(),
        }
    }
}

/// Why quota overrides (`ORCHESTRATE_QUOTAS`) do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// A part is not `KEY=RATE`.
    #[error("`{0}`: expected KEY=RATE")]
    NotKeyValue(String),
    /// A rate does not parse.
    #[error(transparent)]
    Rate(#[from] RateError),
    /// A burst is not a count.
    #[error("`{0}` is not a count")]
    NotACount(String),
    /// No such quota.
    #[error("unknown quota `{0}`: calls, launches, repositories, calls_burst, launches_burst")]
    Unknown(String),
}

impl QuotaConfig {
    /// Overrides from a spec such as `calls=600/min,launches=60/min,repositories=1/min+30/h`.
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, OverrideError> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| OverrideError::NotKeyValue(part.to_owned()))?;
            let count = |v: &str| {
                v.parse()
                    .map_err(|_| OverrideError::NotACount(v.to_owned()))
            };
            match key.trim() {
                "calls" => self.calls = Some(value.parse()?),
                "launches" => self.launches = Some(value.parse()?),
                "repositories" => self.repositories = value.parse::<Rates>()?.0,
                "calls_burst" => self.calls_burst = count(value)?,
                "launches_burst" => self.launches_burst = count(value)?,
                other => return Err(OverrideError::Unknown(other.to_owned())),
            }
        }
        Ok(self)
    }

    /// The documented repositories limit stays hard against a remote API: a configured one
    /// only adds windows to it. An API on loopback (the simulator) may be given any.
    #[must_use]
    pub fn hardened(mut self, loopback: bool) -> Self {
        if !loopback {
            for rate in documented_repositories() {
                if !self.repositories.contains(&rate) {
                    self.repositories.push(rate);
                }
            }
        }
        self
    }

    /// The shortest interval between two repositories calls that keeps every window, with
    /// the safety margin.
    pub fn repositories_interval(&self) -> Duration {
        self.repositories
            .iter()
            .map(|r| r.interval())
            .max()
            .unwrap_or_default()
            + REPOSITORIES_MARGIN
    }
}

type Limiter<C = DefaultClock> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

fn limiter<C: Clock + Clone>(rate: Rate, burst: u32, clock: &C) -> Limiter<C> {
    let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
        .expect("a positive interval")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
    RateLimiter::direct_with_clock(quota, clock.clone())
}

/// Added to each interval of the repositories endpoint: the server starts its window when a
/// call arrives, not when the client sent it, and network delays differ between two calls.
pub const REPOSITORIES_MARGIN: Duration = Duration::from_secs(1);

/// The limiters of the repositories endpoint, longest interval last, without burst.
fn repositories_limiters<C: Clock + Clone>(rates: &[Rate], clock: &C) -> Vec<Limiter<C>> {
    let mut intervals: Vec<Duration> = rates
        .iter()
        .map(|r| r.interval() + REPOSITORIES_MARGIN)
        .collect();
    intervals.sort();
    intervals
        .into_iter()
        .map(|interval| limiter(Rate::new(1, interval), 1, clock))
        .collect()
}

/// Which quotas a call counts against, and how urgent it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A status read or listing.
    Read,
    /// A launch.
    Launch,
    /// Any other change: a follow-up, stop, delete.
    Change,
    /// `GET /v0/repositories`: its own documented limit, and its own 429s.
    Repositories,
}

impl CallKind {
    fn priority(self) -> Priority {
        match self {
            Self::Launch | Self::Change => Priority::Mutation,
            Self::Read | Self::Repositories => Priority::Read,
        }
    }
}

/// Buckets of calls shared with other processes (runners on one database): a configured
/// ceiling holds for all of them together, not for each.
pub trait SharedBuckets: Send + Sync {
    /// Takes one call from bucket `name`, which refills at `rate` and holds at most `burst`;
    /// when it is empty, how long until it holds one.
    fn take(
        &self,
        name: &'static str,
        rate: Rate,
        burst: u32,
    ) -> futures_util::future::BoxFuture<'_, Result<(), Duration>>;
}

/// The live quotas of one client.
pub struct Quotas {
    config: QuotaConfig,
    calls: Option<Limiter>,
    launches: Option<Limiter>,
    repositories: Vec<Limiter>,
    /// Serialises repositories calls, and holds the earliest time the next one may start.
    repositories_gate: tokio::sync::Mutex<Option<Instant>>,
    last_repositories_call: Mutex<Option<SystemTime>>,
    /// A 429 of the repositories endpoint: its next call waits until then.
    repositories_hold: Mutex<Option<Instant>>,
    /// The budget of every call but the repositories endpoint's own limit.
    budget: Mutex<Budget>,
    /// Told whenever a place may have come free.
    changed: Notify,
    waited_micros: AtomicU64,
    /// Where the configured ceilings are shared with other processes, if they are.
    shared: std::sync::OnceLock<std::sync::Arc<dyn SharedBuckets>>,
}

impl fmt::Debug for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quotas")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The server's pace, once learned: the steady interval of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Calls this client may make in one window.
    pub allowance: u32,
    /// The window.
    pub window: Duration,
}

impl Pace {
    /// The interval of one call at the allowed rate.
    pub fn interval(self) -> Duration {
        self.window / self.allowance.max(1)
    }
}

/// A place taken for one call: settle it with the answer. Dropped unsettled (the call was
/// abandoned or failed after sending), it counts as answered, the safe assumption.
#[must_use]
pub struct Permit<'a> {
    quotas: &'a Quotas,
    kind: CallKind,
    ticket: Option<Ticket>,
}

impl Permit<'_> {
    /// Gives the place back with what the answer said: a 429, its headers, or nothing sent.
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.quotas.settle(self.kind, ticket, outcome);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.quotas
                .settle(self.kind, ticket, Outcome::Counted(RateHeaders::default()));
        }
    }
}

/// Counts a waiting launch or follow-up while it waits, however the wait ends.
struct MutationWaiting<'a>(&'a Mutex<Budget>);

impl Drop for MutationWaiting<'_> {
    fn drop(&mut self) {
        lock(self.0).mutation_done_waiting();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("not poisoned")
}

impl Quotas {
    /// Quotas as `config` says; `last_repositories_call` is the last call of an earlier
    /// process, when a store remembers it.
    pub fn new(config: QuotaConfig, last_repositories_call: Option<SystemTime>) -> Self {
        let clock = DefaultClock::default();
        let not_before = last_repositories_call.and_then(|last| {
            let since = SystemTime::now().duration_since(last).unwrap_or_default();
            config
                .repositories_interval()
                .checked_sub(since)
                .map(|left| Instant::now() + left)
        });
        Self {
            calls: config
                .calls
                .map(|rate| limiter(rate, config.calls_burst, &clock)),
            launches: config
                .launches
                .map(|rate| limiter(rate, config.launches_burst, &clock)),
            repositories: repositories_limiters(&config.repositories, &clock),
            repositories_gate: tokio::sync::Mutex::new(not_before),
            last_repositories_call: Mutex::new(last_repositories_call),
            repositories_hold: Mutex::new(None),
            budget: Mutex::new(Budget::new()),
            changed: Notify::new(),
            waited_micros: AtomicU64::new(0),
            shared: std::sync::OnceLock::new(),
            config,
        }
    }

    /// Keeps the configured ceilings (calls, launches) together with other processes,
    /// through `buckets`, from now on.
    pub fn share_with(&self, buckets: std::sync::Arc<dyn SharedBuckets>) {
        let _ = self.shared.set(buckets);
    }

    /// Waits for a call of bucket `name` shared with other processes, if shared.
    async fn take_shared(&self, name: &'static str, rate: Option<Rate>, burst: u32) {
        let (Some(buckets), Some(rate)) = (self.shared.get(), rate) else {
            return;
        };
        while let Err(wait) = buckets.take(name, rate, burst).await {
            tokio::time::sleep(wait).await;
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    /// Waits until a call of `kind` is within every quota, and takes its place.
    pub async fn acquire(&self, kind: CallKind) -> Permit<'_> {
        let start = Instant::now();
        if let (CallKind::Launch, Some(launches)) = (kind, &self.launches) {
            launches.until_ready().await;
            self.take_shared("launches", self.config.launches, self.config.launches_burst)
                .await;
        }
        // The repositories gate is held until the call goes, so that no wait after its
        // limiters lets two calls through closer than their interval.
        let gate = if kind == CallKind::Repositories {
            let mut not_before = self.repositories_gate.lock().await;
            if let Some(at) = not_before.take() {
                tokio::time::sleep_until(at.into()).await;
            }
            let held = *lock(&self.repositories_hold);
            if let Some(until) = held.filter(|until| *until > Instant::now()) {
                tokio::time::sleep_until(until.into()).await;
            }
            for limiter in &self.repositories {
                limiter.until_ready().await;
            }
            Some(not_before)
        } else {
            None
        };
        if let Some(calls) = &self.calls {
            calls.until_ready().await;
            self.take_shared("calls", self.config.calls, self.config.calls_burst)
                .await;
        }
        let ticket = self.take(kind.priority()).await;
        if gate.is_some() {
            *lock(&self.last_repositories_call) = Some(SystemTime::now());
        }
        drop(gate);
        let waited = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.waited_micros.fetch_add(waited, Ordering::Relaxed);
        Permit {
            quotas: self,
            kind,
            ticket: Some(ticket),
        }
    }

    async fn take(&self, priority: Priority) -> Ticket {
        let mut waiting = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = {
                let mut budget = lock(&self.budget);
                match budget.try_take(priority, Instant::now()) {
                    Ok(ticket) => return ticket,
                    Err(wait) => {
                        if priority == Priority::Mutation && waiting.is_none() {
                            budget.mutation_waits();
                            waiting = Some(MutationWaiting(&self.budget));
                        }
                        wait
                    }
                }
            };
            match wait {
                Wait::Until(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = changed => {}
                    }
                }
                Wait::Answer => changed.await,
            }
        }
    }

    fn settle(&self, kind: CallKind, ticket: Ticket, outcome: Outcome) {
        let now = Instant::now();
        if let (CallKind::Repositories, Outcome::Throttled(headers)) = (kind, outcome) {
            // The endpoint's own limit: the hold is its own, and the budget learns nothing.
            if let Some(wait) = headers.retry_after.or(headers.reset) {
                let until = now + wait.min(MAX_HOLD);
                let mut hold = lock(&self.repositories_hold);
                *hold = Some(hold.map_or(until, |at| at.max(until)));
            }
            lock(&self.budget).settle(ticket, Outcome::Counted(RateHeaders::default()), now);
        } else {
            lock(&self.budget).settle(ticket, outcome, now);
        }
        self.changed.notify_waiters();
    }

    /// The pace the server allows, once a 429 or a header has said.
    pub fn pace(&self) -> Option<Pace> {
        lock(&self.budget).allowance().map(|allowance| Pace {
            allowance,
            window: WINDOW,
        })
    }

    /// The calls per minute the server named, once it has: worth remembering for the next
    /// run against the same API.
    pub fn named_limit(&self) -> Option<u32> {
        lock(&self.budget).named_limit()
    }

    /// Starts from the calls per minute the server named to an earlier run.
    pub fn remember_limit(&self, limit: u32) {
        lock(&self.budget).remember(limit, Instant::now());
    }

    /// 429 answers this client has had (the repositories endpoint's included).
    pub fn throttled(&self) -> u64 {
        lock(&self.budget).throttled()
    }

    /// Records that a repositories call was answered now: the next process waits from here,
    /// the latest moment the server may have counted the call.
    pub fn repositories_answered(&self) {
        *lock(&self.last_repositories_call) = Some(SystemTime::now());
    }

    /// When `GET /v0/repositories` was last called (by this process, or the one before).
    pub fn last_repositories_call(&self) -> Option<SystemTime> {
        *lock(&self.last_repositories_call)
    }

    /// Takes in a call of the repositories endpoint that another process sharing the state
    /// made at `at`: the next call here waits out the endpoint's interval from it.
    pub async fn heed_repositories_call(&self, at: SystemTime) {
        let since = SystemTime::now().duration_since(at).unwrap_or_default();
        if let Some(left) = self.config.repositories_interval().checked_sub(since) {
            let earliest = Instant::now() + left;
            let mut not_before = self.repositories_gate.lock().await;
            *not_before = Some(not_before.map_or(earliest, |t| t.max(earliest)));
        }
        let mut last = lock(&self.last_repositories_call);
        *last = Some(last.map_or(at, |l| l.max(at)));
    }

    /// The earliest time the repositories endpoint may be called again.
    pub fn next_repositories_call(&self) -> Option<SystemTime> {
        self.last_repositories_call()
            .map(|last| last + self.config.repositories_interval())
    }

    /// Total time calls have waited on quotas.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_micros.load(Ordering::Relaxed))
    }
}

/// What the rate-limit headers of an answer say: `Retry-After` (seconds or an HTTP date),
/// `X-RateLimit-Limit`, `-Remaining`, and `-Reset` (seconds from now, or a Unix time: the
/// header is written both ways in the wild, and a value past 2001 can only be a time).
pub fn rate_headers(headers: &reqwest::header::HeaderMap) -> RateHeaders {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |name: &str| text(name)?.parse::<u32>().ok();
    let retry_after = text("retry-after").and_then(|value| {
        if let Ok(seconds) = value.parse::<f64>() {
            return (seconds.is_finite() && seconds >= 0.0)
                .then(|| Duration::from_secs_f64(seconds));
        }
        let at = httpdate::parse_http_date(value).ok()?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    });
    let reset = text("x-ratelimit-reset")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|value| {
            if value > 1_000_000_000.0 {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(value);
                at.duration_since(SystemTime::now()).unwrap_or_default()
            } else {
                Duration::from_secs_f64(value)
            }
        });
    RateHeaders {
        limit: number("x-ratelimit-limit"),
        remaining: number("x-ratelimit-remaining"),
        reset,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(
            "30/h".parse::<Rate>().unwrap(),
            Rate::new(30, Duration::from_secs(3600))
        );
        assert_eq!("120/min".parse::<Rate>().unwrap().to_string(), "120/min");
        assert_eq!(
            "5/10s".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(2)
        );
        for bad in ["", "30", "0/min", "x/min", "3/fortnight"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        let config = QuotaConfig::default()
            .with_overrides("calls=10/s,repositories=2/min+60/h")
            .unwrap();
        assert_eq!(config.calls, Some(Rate::new(10, Duration::from_secs(1))));
        assert_eq!(
            config.repositories_interval(),
            Duration::from_secs(61),
            "60 s and the margin"
        );
        assert!(QuotaConfig::default().with_overrides("nope=1/s").is_err());
    }

    /// Drives the repositories limiters on a fake clock as `acquire` does, as fast as they
    /// allow for three hours, and checks both documented windows everywhere.
    #[test]
    fn repositories_calls_keep_one_per_minute_and_thirty_per_hour() {
        let clock = FakeRelativeClock::default();
        let limiters = repositories_limiters(&QuotaConfig::default().repositories, &clock);
        let mut calls: Vec<Duration> = Vec::new();
        let mut now = Duration::ZERO;
        let step = Duration::from_secs(1);
        while now < Duration::from_secs(3 * 3600) {
            for limiter in &limiters {
                while limiter.check().is_err() {
                    clock.advance(step);
                    now += step;
                }
            }
            calls.push(now);
        }
        for (i, &at) in calls.iter().enumerate() {
            let in_minute = calls[i..]
                .iter()
                .take_while(|&&c| c < at + Duration::from_secs(60))
                .count();
            let in_hour = calls[i..]
                .iter()
                .take_while(|&&c| c < at + Duration::from_secs(3600))
                .count();
            assert!(
                in_minute <= 1,
                "{in_minute} calls in the minute from {at:?}"
            );
            assert!(in_hour <= 30, "{in_hour} calls in the hour from {at:?}");
        }
        // And the limit is used, not just kept: 30 calls in the first hour.
        assert_eq!(
            calls
                .iter()
                .filter(|&&c| c < Duration::from_secs(3600))
                .count(),
            30
        );
    }

    #[tokio::test]
    async fn a_recent_call_from_an_earlier_process_delays_the_next() {
        let config = QuotaConfig::default()
            .with_overrides("repositories=1/2s")
            .unwrap();
        let quotas = Quotas::new(config, Some(SystemTime::now()));
        let start = Instant::now();
        quotas
            .acquire(CallKind::Repositories)
            .await
            .settle(Outcome::NotSent);
        assert!(
            start.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            start.elapsed()
        );
        assert!(
            quotas.last_repositories_call().unwrap() >= SystemTime::now() - Duration::from_secs(1)
        );
    }

    #[test]
    fn the_documented_repositories_limit_is_not_loosened_against_a_remote_api() {
        let loose = QuotaConfig::default()
            .with_overrides("repositories=1000/s")
            .unwrap();
        assert_eq!(
            loose.clone().hardened(false).repositories_interval(),
            Duration::from_secs(121),
            "30 per hour, whatever is configured"
        );
        assert!(loose.hardened(true).repositories_interval() < Duration::from_secs(2));
        let stricter = QuotaConfig::default()
            .with_overrides("repositories=1/5min")
            .unwrap()
            .hardened(false);
        assert_eq!(stricter.repositories_interval(), Duration::from_secs(301));
    }

    fn throttled(limit: u32, retry_after: Duration) -> Outcome {
        Outcome::Throttled(RateHeaders {
            limit: Some(limit),
            remaining: Some(0),
            reset: Some(retry_after),
            retry_after: Some(retry_after),
        })
    }

    #[tokio::test]
    async fn a_429_holds_every_call_of_its_scope() {
        let quotas = Quotas::new(QuotaConfig::default(), None);
        let hold = Duration::from_millis(300);
        quotas
            .acquire(CallKind::Read)
            .await
            .settle(throttled(1000, hold));
        let start = Instant::now();
        for kind in [CallKind::Launch, CallKind::Read, CallKind::Change] {
            quotas.acquire(kind).await.settle(Outcome::NotSent);
            assert!(
                start.elapsed() >= hold.saturating_sub(Duration::from_millis(5)),
                "{kind:?}"
            );
        }
        assert_eq!(quotas.throttled(), 1);
        assert_eq!(
            quotas.pace().map(|p| p.allowance),
            Some(1000),
            "the limit it named"
        );
    }

    #[tokio::test]
    async fn a_repositories_429_holds_that_endpoint_only_and_never_loosens_it() {
        let config = QuotaConfig::default()
            .with_overrides("repositories=1/10ms")
            .unwrap();
        let quotas = Quotas::new(config, None);
        let hold = Duration::from_millis(300);
        quotas
            .acquire(CallKind::Repositories)
            .await
            .settle(throttled(1_000_000, hold));
        let start = Instant::now();
        quotas
            .acquire(CallKind::Read)
            .await
            .settle(Outcome::NotSent);
        assert!(start.elapsed() < hold / 2, "reads do not wait");
        assert_eq!(quotas.pace(), None, "the general budget learned nothing");
        quotas
            .acquire(CallKind::Repositories)
            .await
            .settle(Outcome::NotSent);
        assert!(start.elapsed() >= hold.saturating_sub(Duration::from_millis(5)));
        assert_eq!(
            quotas.config().repositories_interval(),
            Duration::from_millis(1010)
        );
    }

    #[tokio::test]
    async fn a_waiting_launch_goes_before_waiting_reads() {
        let quotas = Arc::new(Quotas::new(QuotaConfig::default(), None));
        // The server allows 2 a window and has taken 1: one place is left.
        quotas
            .acquire(CallKind::Read)
            .await
            .settle(Outcome::Counted(RateHeaders::default()));
        quotas
            .acquire(CallKind::Read)
            .await
            .settle(throttled(2, Duration::from_millis(100)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for kind in [CallKind::Read, CallKind::Launch] {
            let (quotas, order) = (quotas.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = quotas.acquire(kind).await;
                lock(&order).push(kind);
                std::mem::forget(permit);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            *lock(&order),
            [CallKind::Launch],
            "the read waits for the window"
        );
        for task in tasks {
            task.abort();
        }
    }
}
