//! The quota windows the simulator enforces over real time.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::cursor::Rate;

/// Sliding windows of call times, one per quota.
#[derive(Debug, Default)]
pub struct Windows {
    calls: VecDeque<SystemTime>,
}

/// Why the gate refused a call for its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRefusal {
    /// Until a call would be admitted.
    pub wait: Duration,
    /// The calls the refusing quota allows per window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Whether it is the documented repositories limit.
    pub documented: bool,
}

impl Windows {
    /// Records a call at `now` if every rate allows it; else the wait until one would.
    pub fn admit(&mut self, rates: &[Rate], now: SystemTime) -> Result<(), Duration> {
        let longest = rates.iter().map(|r| r.per).max().unwrap_or_default();
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() >= longest)
        {
            self.calls.pop_front();
        }
        let mut wait = Duration::ZERO;
        for rate in rates {
            let in_window: Vec<&SystemTime> = self
                .calls
                .iter()
                .filter(|t| now.duration_since(**t).unwrap_or_default() < rate.per)
                .collect();
            if in_window.len() >= rate.count as usize {
                let oldest = in_window[in_window.len() - rate.count as usize];
                let frees = *oldest + rate.per;
                wait = wait.max(frees.duration_since(now).unwrap_or_default());
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        self.calls.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_count_then_says_when_the_oldest_frees() {
        let rate: Rate = "2/min".parse().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s| start + Duration::from_secs(s);
        let mut windows = Windows::default();
        assert_eq!(windows.admit(&[rate], at(0)), Ok(()));
        assert_eq!(windows.admit(&[rate], at(10)), Ok(()));
        assert_eq!(windows.admit(&[rate], at(20)), Err(Duration::from_secs(40)));
        assert_eq!(
            windows.admit(&[rate], at(60)),
            Ok(()),
            "the first call left the window"
        );
    }
}
