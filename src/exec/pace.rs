//! When to read an agent's status next: paced by what this run has seen of its agents'
//! durations, and by the call budget the server allows.
//!
//! An agent's prompt is read at ages that grow with it, so that it is seen ended within a
//! fraction of its time and an hour-long one costs few reads. Once some prompts have ended,
//! the ones that follow are not read before the age at which the quickest of them were still
//! working. When the server's budget is known and tight, a read missed costs more than a
//! late sighting: reads wait for the age at which most prompts were seen ended, and are
//! never closer than the server's steady interval.

use std::time::Duration;

/// How much older than at its last read an agent is before it is read again, before any
/// duration is known: each read at most half as late as the agent's age.
const BLIND_GROWTH: f64 = 0.5;

/// The same once an agent is past the age its kind usually ends at: seen within a tenth of
/// its time.
const GROWTH: f64 = 0.1;

/// Observations kept: enough for the quantiles, bounded for a fleet of any size.
const KEEP: usize = 1_024;

/// The ages at which prompts of this run were last seen working and first seen ended.
#[derive(Debug, Clone, Default)]
pub struct Durations {
    working: Vec<Duration>,
    ended: Vec<Duration>,
}

impl Durations {
    /// A prompt last seen working at `working` and seen ended at `ended` (its age each time).
    pub fn record(&mut self, working: Duration, ended: Duration) {
        if self.working.len() == KEEP {
            self.working.remove(0);
            self.ended.remove(0);
        }
        self.working.push(working);
        self.ended.push(ended);
    }

    /// The age before which a new prompt is not worth reading: the quickest tenth were
    /// still working then (or, when reads are dear, most were seen ended by then).
    pub fn expected(&self, dear: bool) -> Option<Duration> {
        if dear {
            quantile(&self.ended, 0.5)
        } else {
            quantile(&self.working, 0.1)
        }
    }
}

fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    // Rounded down: an index into the sorted values, within bounds.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * q) as usize;
    Some(sorted[index])
}

/// What the pacing knows of one agent's current prompt.
#[derive(Debug, Clone, Copy)]
pub struct Prompt {
    /// Its age now.
    pub age: Duration,
    /// How long ago it was last read, if it was.
    pub read_ago: Option<Duration>,
}

/// The bounds of the pacing.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The shortest interval between two reads of one agent.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The server's steady interval of one call, when it is known and reads are dear.
    pub budget: Option<Duration>,
}

/// How long from now until `prompt` is due a read.
pub fn due_in(prompt: Prompt, durations: &Durations, bounds: Bounds) -> Duration {
    let dear = bounds.budget.is_some();
    let floor = bounds.min.max(bounds.budget.unwrap_or_default());
    let expected = durations.expected(dear);
    // Never read again within the floor of the last read, whatever else says it is due.
    let since_read = prompt
        .read_ago
        .map_or(Duration::ZERO, |ago| floor.saturating_sub(ago));
    if let Some(expected) = expected.filter(|e| prompt.age < *e) {
        return expected.saturating_sub(prompt.age).max(since_read);
    }
    let growth = if expected.is_some() {
        GROWTH
    } else {
        BLIND_GROWTH
    };
    let spacing = prompt
        .age
        .mul_f64(growth)
        .clamp(floor, bounds.max.max(floor));
    match prompt.read_ago {
        Some(ago) => spacing.saturating_sub(ago),
        None => floor.saturating_sub(prompt.age),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn bounds() -> Bounds {
        Bounds {
            min: ms(250),
            max: s(60),
            budget: None,
        }
    }

    /// The ages at which one prompt is read, if it works for `works`; and the age it is seen
    /// ended at.
    fn reads(works: Duration, durations: &Durations, bounds: Bounds) -> (usize, Duration) {
        let mut age = Duration::ZERO;
        let mut last: Option<Duration> = None;
        let mut count = 0;
        loop {
            let prompt = Prompt {
                age,
                read_ago: last.map(|l| age.saturating_sub(l)),
            };
            age += due_in(prompt, durations, bounds);
            count += 1;
            last = Some(age);
            if age >= works {
                return (count, age);
            }
        }
    }

    #[test]
    fn quick_agents_are_seen_within_a_fraction_of_their_time() {
        let (count, seen) = reads(ms(2500), &Durations::default(), bounds());
        assert!(seen <= ms(2500).mul_f64(1.5), "{seen:?}");
        assert!(count <= 8, "{count} reads");
    }

    #[test]
    fn an_hour_long_agent_costs_few_reads() {
        let (count, seen) = reads(s(3600), &Durations::default(), bounds());
        assert!(count <= 90, "{count} reads");
        assert!(seen <= s(3660), "{seen:?}");
    }

    #[test]
    fn once_durations_are_known_reads_wait_for_them() {
        let mut durations = Durations::default();
        for _ in 0..10 {
            durations.record(ms(2400), ms(2700));
        }
        let (count, seen) = reads(ms(2500), &durations, bounds());
        assert!(count <= 2, "{count} reads");
        assert!(seen <= ms(2700), "{seen:?}");
        // A ten-minute kind: the first read is at nine minutes, not at a quarter second.
        let mut slow = Durations::default();
        slow.record(s(540), s(600));
        let first = due_in(
            Prompt {
                age: Duration::ZERO,
                read_ago: None,
            },
            &slow,
            bounds(),
        );
        assert_eq!(first, s(540));
    }

    #[test]
    fn when_reads_are_dear_they_wait_for_most_to_end_and_keep_the_budget_s_pace() {
        let mut durations = Durations::default();
        for ended in [2600, 2700, 2800, 5000] {
            durations.record(ms(2400), ms(ended));
        }
        let dear = Bounds {
            budget: Some(s(2)),
            ..bounds()
        };
        let (count, seen) = reads(ms(2500), &durations, dear);
        assert_eq!(
            (count, seen),
            (1, ms(2700)),
            "the median of those seen ended"
        );
        let again = due_in(
            Prompt {
                age: s(3),
                read_ago: Some(ms(200)),
            },
            &durations,
            dear,
        );
        assert_eq!(again, ms(1800), "never closer than the budget's interval");
    }

    #[test]
    fn an_agent_just_read_is_not_due_again_within_the_floor() {
        // Durations learnt from the very read that saw this one working put its expected
        // end a hair later: it is still not read twice in a row.
        let mut durations = Durations::default();
        durations.record(ms(2400), ms(4001));
        let dear = Bounds {
            budget: Some(s(2)),
            ..bounds()
        };
        let just_read = Prompt {
            age: s(4),
            read_ago: Some(Duration::ZERO),
        };
        assert_eq!(due_in(just_read, &durations, dear), s(2));
        let mut quick = Durations::default();
        quick.record(ms(4001), ms(4500));
        assert_eq!(due_in(just_read, &quick, bounds()), ms(250));
    }

    #[test]
    fn a_resumed_agent_never_read_is_due_at_once() {
        let prompt = Prompt {
            age: s(3600),
            read_ago: None,
        };
        assert_eq!(
            due_in(prompt, &Durations::default(), bounds()),
            Duration::ZERO
        );
    }
}
