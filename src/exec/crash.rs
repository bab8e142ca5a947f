//! Crash points: crash-safety tests need a process to die at the worst moments, right after an
//! API call answered and before the answer is stored.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A moment a test may ask the process to die at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// A launch call answered.
    Launch,
    /// A follow-up call answered.
    FollowUp,
}

impl CrashPoint {
    fn name(self) -> &'static str {
        match self {
            CrashPoint::Launch => "launch",
            CrashPoint::FollowUp => "follow_up",
        }
    }
}

/// The crash `ORCHESTRATE_CRASH_AFTER` asks for: `launch:3` is the third launch call.
fn planned(spec: &str) -> Option<(String, usize)> {
    let (name, count) = spec.split_once(':')?;
    Some((name.to_owned(), count.parse().ok()?))
}

/// Aborts the process if this is the moment `ORCHESTRATE_CRASH_AFTER` names.
pub(super) fn crash_point(point: CrashPoint) {
    static PLAN: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let plan = PLAN.get_or_init(|| planned(&std::env::var("ORCHESTRATE_CRASH_AFTER").ok()?));
    if let Some((name, count)) = plan {
        if name == point.name() && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *count {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_planned_by_point_and_count() {
        assert_eq!(planned("launch:3"), Some(("launch".into(), 3)));
        assert_eq!(planned("follow_up:1"), Some(("follow_up".into(), 1)));
        assert_eq!(planned("launch"), None);
        assert_eq!(planned("launch:x"), None);
        assert_eq!(CrashPoint::FollowUp.name(), "follow_up");
    }
}
