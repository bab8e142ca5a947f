//! When to try a failed call again: exponential backoff with full jitter, bounded.

use std::time::Duration;

use rand::Rng;

/// How failed calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles with each attempt.
    pub base_delay: Duration,
    /// The largest single wait.
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempts count from 1), or `None` when the
    /// policy says to give up. A `Retry-After` from the API is honoured as it is (retrying
    /// sooner would only be refused again); otherwise the wait is drawn uniformly from zero to the exponential
    /// ceiling ("full jitter"), which spreads a fleet's retries apart.
    pub fn delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let delay = retry_after.unwrap_or_else(|| {
            let ceiling = self
                .base_delay
                .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
                .min(self.max_delay);
            rand::rng().random_range(Duration::ZERO..=ceiling)
        });
        (elapsed + delay <= self.max_total).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_ceiling_and_stops() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            max_total: Duration::from_secs(10),
        };
        for _ in 0..200 {
            assert!(policy.delay(1, Duration::ZERO, None).unwrap() <= Duration::from_millis(100));
            assert!(policy.delay(2, Duration::ZERO, None).unwrap() <= Duration::from_millis(200));
            assert!(policy.delay(3, Duration::ZERO, None).unwrap() <= Duration::from_millis(250));
        }
        assert_eq!(policy.delay(4, Duration::ZERO, None), None);
    }

    #[test]
    fn retry_after_is_honoured_and_total_time_bounded() {
        let policy = RetryPolicy::default();
        let asked = Some(Duration::from_secs(7));
        assert_eq!(
            policy.delay(1, Duration::ZERO, asked),
            Some(Duration::from_secs(7))
        );
        assert_eq!(policy.delay(1, Duration::from_secs(118), asked), None);
    }
}
