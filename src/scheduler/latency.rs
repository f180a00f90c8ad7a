//! How long the tasks of one route take, as this batch has seen them.
//!
//! A slot comes back only when we *see* its task end, so every moment
//! between the end and the poll that notices it is a slot the account lets
//! us use and we do not. Tasks of one model finish within a narrow window,
//! so once a few have finished the engine polls a fresh task first when the
//! earliest of them usually end, then at a fraction of the window's width —
//! not at a fixed interval that is seconds too late for short tasks and
//! needlessly chatty for long ones.
//!
//! A poll sees only that a task ended *between* two looks at it, so each
//! sample is the middle of that bracket: the estimate tightens as the polls
//! around the window do.

use std::time::Duration;

/// Samples kept (the most recent ones).
const KEPT: usize = 64;
/// Samples needed before the window is trusted.
const ENOUGH: usize = 3;

#[derive(Debug, Default, Clone)]
pub(super) struct Latency {
    samples: Vec<Duration>,
    /// Where the next sample replaces the oldest, once full.
    next: usize,
    /// The window of the samples, kept as they come: every poll reads it.
    window: Option<Window>,
}

/// The window most tasks end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// About the 10th percentile.
    pub(super) early: Duration,
    /// About the 90th percentile.
    pub(super) late: Duration,
}

impl Latency {
    /// A task ended after `ended_by` (the poll that saw it ended), having
    /// been seen unfinished at `running_at` (both from its creation).
    pub(super) fn ended(&mut self, running_at: Duration, ended_by: Duration) {
        let sample = (running_at + ended_by.max(running_at)) / 2;
        if self.samples.len() < KEPT {
            self.samples.push(sample);
        } else {
            self.samples[self.next] = sample;
            self.next = (self.next + 1) % KEPT;
        }
        if self.samples.len() >= ENOUGH {
            let mut sorted = self.samples.clone();
            sorted.sort_unstable();
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            self.window = Some(Window {
                early: at(0.1),
                late: at(0.9),
            });
        }
    }

    /// The window, once enough tasks ended.
    pub(super) fn window(&self) -> Option<Window> {
        self.window
    }
}

impl Window {
    /// When to ask next about a task `age` old: `lead` before the window's
    /// start if that has not come yet, then every quarter of the window's
    /// width (between `min_gap` and `max_gap`) until its end; past it, half
    /// the time it has overrun the window (a task slower than most is asked
    /// less and less often), up to `slowest`.
    pub(super) fn next_poll(
        &self,
        age: Duration,
        lead: Duration,
        (min_gap, max_gap): (Duration, Duration),
        slowest: Duration,
    ) -> Duration {
        let gap = ((self.late - self.early) / 4).clamp(min_gap, max_gap.max(min_gap));
        let first = self.early.saturating_sub(lead);
        if age + gap < first {
            first - age
        } else if age <= self.late + gap {
            gap
        } else {
            ((age - self.late) / 2).clamp(gap, slowest.max(gap))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_window_before_a_few_tasks_ended() {
        let mut l = Latency::default();
        l.ended(Duration::ZERO, 2 * S);
        l.ended(Duration::ZERO, 2 * S);
        assert_eq!(l.window(), None);
        l.ended(Duration::ZERO, 2 * S);
        assert_eq!(l.window(), Some(Window { early: S, late: S }));
    }

    #[test]
    fn a_sample_is_the_middle_of_the_bracket_the_polls_saw() {
        let mut l = Latency::default();
        for _ in 0..5 {
            l.ended(1800 * MS, 2200 * MS);
        }
        assert_eq!(l.window().unwrap().early, 2 * S);
    }

    #[test]
    fn a_fresh_task_is_first_asked_when_the_earliest_end_and_then_often() {
        let w = Window {
            early: 2 * S,
            late: 4 * S,
        };
        let (gaps, slowest, no_lead) = ((100 * MS, 5 * S), 30 * S, Duration::ZERO);
        assert_eq!(w.next_poll(Duration::ZERO, no_lead, gaps, slowest), 2 * S);
        assert_eq!(w.next_poll(2 * S, no_lead, gaps, slowest), 500 * MS);
        assert_eq!(w.next_poll(4 * S, no_lead, gaps, slowest), 500 * MS);
        // Slower than most: asked less and less often.
        assert_eq!(w.next_poll(5 * S, no_lead, gaps, slowest), 500 * MS);
        assert_eq!(w.next_poll(10 * S, no_lead, gaps, slowest), 3 * S);
        assert_eq!(w.next_poll(600 * S, no_lead, gaps, slowest), slowest);
        let narrow = Window {
            early: 2 * S,
            late: 2 * S,
        };
        assert_eq!(narrow.next_poll(2 * S, no_lead, gaps, slowest), gaps.0);
    }

    #[test]
    fn a_lead_brings_the_first_look_forward_and_nothing_after() {
        let w = Window {
            early: 2 * S,
            late: 2 * S,
        };
        let (gaps, slowest) = ((10 * MS, 5 * S), 30 * S);
        let lead = 125 * MS;
        assert_eq!(w.next_poll(Duration::ZERO, lead, gaps, slowest), 1875 * MS);
        assert_eq!(w.next_poll(1875 * MS, lead, gaps, slowest), 10 * MS);
    }

    #[test]
    fn only_the_most_recent_samples_count() {
        let mut l = Latency::default();
        for _ in 0..KEPT {
            l.ended(Duration::ZERO, 20 * S);
        }
        for _ in 0..KEPT {
            l.ended(Duration::ZERO, 2 * S);
        }
        assert_eq!(l.window().unwrap().late, S);
    }
}
