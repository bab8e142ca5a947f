//! How long the API has been out of reach: the time since the first of an unbroken row of
//! failed calls (no connection, a 5xx), so that a run can give up after a bounded time instead
//! of waiting for ever on a wrong URL or a dead proxy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ApiError;

/// The API out of reach for a while, and the last reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The API's root URL.
    pub url: String,
    /// How long since the first failure of the row.
    pub lasted: Duration,
    /// The last failure.
    pub cause: String,
}

/// The first and last failures since the API last answered.
#[derive(Debug, Default)]
pub struct OutageClock {
    row: Mutex<Option<(Instant, String)>>,
}

impl OutageClock {
    /// Notes the result of one call, at `now`. Any answer the API gave, even a refusal or a
    /// 429, ends an outage: only a call that reached nobody, or a 5xx, extends it.
    pub fn note(&self, result: Result<(), &ApiError>, now: Instant) {
        let mut row = self.row.lock().expect("not poisoned");
        match result {
            Err(error) if error.is_outage() => {
                let since = row.as_ref().map_or(now, |(since, _)| *since);
                *row = Some((since, error.to_string()));
            }
            _ => *row = None,
        }
    }

    /// The outage at `now` of the API at `url`, if its last call failed.
    pub fn outage(&self, url: &str, now: Instant) -> Option<Outage> {
        let row = self.row.lock().expect("not poisoned");
        row.as_ref().map(|(since, cause)| Outage {
            url: url.to_owned(),
            lasted: now.saturating_duration_since(*since),
            cause: cause.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://api.example.com/";

    fn refused() -> ApiError {
        ApiError::Network {
            sent: false,
            message: "connection refused".into(),
        }
    }

    #[test]
    fn an_outage_lasts_from_the_first_failure_and_ends_with_any_answer() {
        let clock = OutageClock::default();
        let start = Instant::now();
        assert_eq!(clock.outage(URL, start), None);
        clock.note(Err(&refused()), start);
        let server = ApiError::Server {
            status: 502,
            message: "bad gateway".into(),
        };
        clock.note(Err(&server), start + Duration::from_secs(30));
        let outage = clock.outage(URL, start + Duration::from_secs(90)).unwrap();
        assert_eq!(outage.lasted, Duration::from_secs(90));
        assert!(outage.cause.contains("502"), "{}", outage.cause);

        // A 429 is an answer: the API is there.
        let throttled = ApiError::RateLimited {
            retry_after: None,
            message: "slow down".into(),
        };
        clock.note(Err(&throttled), start + Duration::from_secs(91));
        assert_eq!(clock.outage(URL, start + Duration::from_secs(92)), None);
        clock.note(Err(&refused()), start + Duration::from_secs(100));
        clock.note(Ok(()), start + Duration::from_secs(101));
        assert_eq!(clock.outage(URL, start + Duration::from_secs(102)), None);
    }
}
