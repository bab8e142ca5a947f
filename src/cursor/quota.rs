//! Client-side rate limits, so orchestrate never exceeds a quota of the API.
//!
//! One governor limiter for all calls, one for launches, and for `GET /v0/repositories`
//! (documented limit: 1 per minute and 30 per hour per user) one limiter per window. The
//! repositories limiters allow no burst: a GCRA limiter of 30 per hour with a burst of 30
//! would let 60 calls through in one rolling hour. Each is taken in turn, the one with the
//! longest interval last, and the call follows at once; so calls are at least that interval
//! apart and every window holds. The last call time is exposed so that a store can persist it
//! and a later process can start where this one left off.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

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

/// The quotas a client keeps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Every call.
    pub calls: Rate,
    /// Calls that may come at once after a quiet spell.
    pub calls_burst: u32,
    /// Launches (`POST /v0/agents`).
    pub launches: Rate,
    /// Launches that may come at once.
    pub launches_burst: u32,
    /// `GET /v0/repositories`, each window kept separately.
    pub repositories: Vec<Rate>,
}

impl Default for QuotaConfig {
    /// Conservative: the API publishes no number but the repositories one.
    fn default() -> Self {
        Self {
            calls: Rate::new(120, Duration::from_secs(60)),
            calls_burst: 10,
            launches: Rate::new(30, Duration::from_secs(60)),
            launches_burst: 5,
            repositories: vec![
                Rate::new(1, Duration::from_secs(60)),
                Rate::new(30, Duration::from_secs(3600)),
            ],
        }
    }
}

impl QuotaConfig {
    /// Overrides from a spec such as `calls=600/min,launches=60/min,repositories=1/min+30/h`.
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected KEY=RATE"))?;
            let rate = |v: &str| v.parse::<Rate>().map_err(|e| e.to_string());
            match key.trim() {
                "calls" => self.calls = rate(value)?,
                "launches" => self.launches = rate(value)?,
                "repositories" => {
                    self.repositories = value.parse::<Rates>().map_err(|e| e.to_string())?.0;
                }
                "calls_burst" => {
                    self.calls_burst = value
                        .parse()
                        .map_err(|_| format!("`{value}` is not a count"))?;
                }
                "launches_burst" => {
                    self.launches_burst = value
                        .parse()
                        .map_err(|_| format!("`{value}` is not a count"))?;
                }
                other => {
                    return Err(format!(
                        "unknown quota `{other}`: calls, launches, repositories, calls_burst, launches_burst"
                    ));
                }
            }
        }
        Ok(self)
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

/// The longest a server's rate-limit reset is believed: the documented windows are a minute.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(120);

/// Which quotas a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Counts against the overall quota only.
    Other,
    /// A launch.
    Launch,
    /// `GET /v0/repositories`.
    Repositories,
}

/// The live quotas of one client.
pub struct Quotas {
    config: QuotaConfig,
    calls: Limiter,
    launches: Limiter,
    repositories: Vec<Limiter>,
    /// Serialises repositories calls, and holds the earliest time the next one may start.
    repositories_gate: tokio::sync::Mutex<Option<Instant>>,
    last_repositories_call: Mutex<Option<SystemTime>>,
    /// The server said (`X-RateLimit-Remaining: 0`) that no call is left before this time.
    server_window: Mutex<Option<Instant>>,
    waited_micros: AtomicU64,
}

impl fmt::Debug for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quotas")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
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
            calls: limiter(config.calls, config.calls_burst, &clock),
            launches: limiter(config.launches, config.launches_burst, &clock),
            repositories: repositories_limiters(&config.repositories, &clock),
            repositories_gate: tokio::sync::Mutex::new(not_before),
            last_repositories_call: Mutex::new(last_repositories_call),
            server_window: Mutex::new(None),
            waited_micros: AtomicU64::new(0),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    /// Waits until a call of `kind` is within every quota, and counts it.
    pub async fn acquire(&self, kind: CallKind) {
        let start = Instant::now();
        match kind {
            CallKind::Other => {}
            CallKind::Launch => self.launches.until_ready().await,
            CallKind::Repositories => {
                let mut not_before = self.repositories_gate.lock().await;
                if let Some(at) = not_before.take() {
                    tokio::time::sleep_until(at.into()).await;
                }
                for limiter in &self.repositories {
                    limiter.until_ready().await;
                }
                *self.last_repositories_call.lock().expect("not poisoned") =
                    Some(SystemTime::now());
            }
        }
        self.calls.until_ready().await;
        let hold = *self.server_window.lock().expect("not poisoned");
        if let Some(until) = hold.filter(|until| *until > Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
        }
        let waited = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.waited_micros.fetch_add(waited, Ordering::Relaxed);
    }

    /// Learns from the server's `X-RateLimit-*` headers that its window is spent for `wait`:
    /// calls hold until then rather than collect 429s.
    pub fn server_window_spent(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_SERVER_WAIT);
        let mut window = self.server_window.lock().expect("not poisoned");
        *window = Some(window.map_or(until, |at| at.max(until)));
    }

    /// Records that a repositories call was answered now: the next process waits from here,
    /// the latest moment the server may have counted the call.
    pub fn repositories_answered(&self) {
        *self.last_repositories_call.lock().expect("not poisoned") = Some(SystemTime::now());
    }

    /// When `GET /v0/repositories` was last called (by this process, or the one before).
    pub fn last_repositories_call(&self) -> Option<SystemTime> {
        *self.last_repositories_call.lock().expect("not poisoned")
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

#[cfg(test)]
mod tests {
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
        assert_eq!(config.calls, Rate::new(10, Duration::from_secs(1)));
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
        quotas.acquire(CallKind::Repositories).await;
        assert!(
            start.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            start.elapsed()
        );
        assert!(
            quotas.last_repositories_call().unwrap() >= SystemTime::now() - Duration::from_secs(1)
        );
    }
}
