//! Scheduling: which instances may start, which halt wins when several come, and when an
//! API out of reach stops the run.

use std::collections::VecDeque;
use std::time::Duration;

use super::execution::Halt;
use crate::cursor::Outage;

/// The DAG as a countdown: each instance counts its needs still unsettled; when one settles,
/// its dependents count down, and those reaching zero are ready. No rescan of the whole plan
/// per event.
#[derive(Debug)]
pub(super) struct Countdown {
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    settled: Vec<bool>,
    ready: VecDeque<usize>,
}

impl Countdown {
    /// A countdown over instances with `needs` (by index), of which `settled` ones are done
    /// already (kept from an earlier apply): they are never handed out.
    pub(super) fn new(needs: &[&[usize]], settled: Vec<bool>) -> Self {
        let count = needs.len();
        let mut dependents = vec![Vec::new(); count];
        let mut waiting = vec![0; count];
        for (index, needs) in needs.iter().enumerate() {
            for &need in *needs {
                dependents[need].push(index);
                waiting[index] += usize::from(!settled[need]);
            }
        }
        let ready = (0..count).filter(|&i| waiting[i] == 0).collect();
        Self {
            dependents,
            waiting,
            settled,
            ready,
        }
    }

    /// The next instance that may start, if any.
    pub(super) fn next_ready(&mut self) -> Option<usize> {
        while let Some(index) = self.ready.pop_front() {
            if !self.settled[index] {
                return Some(index);
            }
        }
        None
    }

    /// `index` settled: its dependents count down.
    pub(super) fn settled(&mut self, index: usize) {
        self.settled[index] = true;
        for &dependent in &self.dependents[index] {
            self.waiting[dependent] -= 1;
            if self.waiting[dependent] == 0 {
                self.ready.push_back(dependent);
            }
        }
    }
}

/// The halt a run reports when `new` comes after `current`: the first one, unless a fatal one
/// (the state cannot be written, the key is refused) comes later, which says more.
pub(super) fn prefer(current: Option<Halt>, new: Halt) -> Halt {
    match current {
        Some(current) if !matches!(new, Halt::Fatal(_)) => current,
        _ => new,
    }
}

/// The halt of a run whose API has been out of reach longer than `budget`: fatal, so that
/// `apply` ends with exit 4 and says which URL it could not reach and why.
pub(super) fn out_of_reach(outage: Option<Outage>, budget: Duration) -> Option<Halt> {
    let outage = outage.filter(|o| o.lasted >= budget)?;
    Some(Halt::Fatal(format!(
        "cannot reach {}: {} (every call failed for {}, beyond the {} allowed)",
        outage.url,
        outage.cause,
        humantime::format_duration(Duration::from_secs(outage.lasted.as_secs())),
        humantime::format_duration(budget),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_halts_the_run_only_past_its_budget() {
        let outage = |secs| Outage {
            url: "https://api.cursor.com/".into(),
            lasted: Duration::from_secs(secs),
            cause: "network error before the request was sent: connection refused".into(),
        };
        let budget = Duration::from_secs(120);
        assert_eq!(out_of_reach(None, budget), None);
        assert_eq!(out_of_reach(Some(outage(119)), budget), None);
        let Some(Halt::Fatal(why)) = out_of_reach(Some(outage(121)), budget) else {
            panic!("no halt past the budget")
        };
        assert_eq!(
            why,
            "cannot reach https://api.cursor.com/: network error before the request was sent: connection refused (every call failed for 2m 1s, beyond the 2m allowed)"
        );
    }

    /// a -> b, a -> c, (b, c) -> d.
    fn diamond(settled: Vec<bool>) -> Countdown {
        Countdown::new(&[&[], &[0], &[0], &[1, 2]], settled)
    }

    #[test]
    fn an_instance_is_ready_once_every_need_settled() {
        let mut countdown = diamond(vec![false; 4]);
        assert_eq!(countdown.next_ready(), Some(0));
        assert_eq!(countdown.next_ready(), None);
        countdown.settled(0);
        assert_eq!(
            (countdown.next_ready(), countdown.next_ready()),
            (Some(1), Some(2))
        );
        countdown.settled(1);
        assert_eq!(countdown.next_ready(), None, "d still waits for c");
        countdown.settled(2);
        assert_eq!(countdown.next_ready(), Some(3));
    }

    #[test]
    fn kept_instances_are_not_run_and_do_not_hold_their_dependents() {
        let mut countdown = diamond(vec![true, true, false, false]);
        assert_eq!(countdown.next_ready(), Some(2));
        assert_eq!(countdown.next_ready(), None);
        countdown.settled(2);
        assert_eq!(countdown.next_ready(), Some(3));
    }

    #[test]
    fn the_first_halt_wins_unless_a_fatal_one_follows() {
        let fatal = Halt::Fatal("disk full".into());
        assert_eq!(prefer(None, Halt::Interrupted), Halt::Interrupted);
        assert_eq!(
            prefer(Some(Halt::Interrupted), Halt::UsageLimit("spent".into())),
            Halt::Interrupted
        );
        assert_eq!(prefer(Some(Halt::Interrupted), fatal.clone()), fatal);
        assert_eq!(prefer(Some(fatal.clone()), Halt::Interrupted), fatal);
    }
}
