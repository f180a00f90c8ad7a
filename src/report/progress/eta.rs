//! Time left in a run, from the task latency observed in the event stream.
//! Main type: [`Eta`].
//!
//! A position-rate ETA (indicatif's) is wrong exactly when it matters: it
//! says "0s" before anything finishes, and right after a resume it divides
//! two minutes of work by the burst of items that were already done. What
//! bounds a batch is the provider's latency and the in-flight limit, so:
//!
//! - latency = time from a task's creation to its end, measured on arrival
//!   of the events (creation times of tasks from an earlier run come with
//!   `RunEvent::Started`), smoothed;
//! - slots free up as in-flight tasks finish (latency minus their age), and
//!   waiting items fill them in waves of `limit`: roughly
//!   `ceil(waiting / limit) × latency` after the slots free up.
//!
//! No sample yet, no estimate: nothing is shown rather than a made-up number.

use std::collections::HashMap;
use std::time::Duration;

use crate::events::RunEvent;
use crate::state::Status;

/// Weight of a new latency sample (smoothing over roughly the last five).
const ALPHA: f64 = 0.2;

/// Latency estimator fed with events and the time they arrived (Unix ms).
#[derive(Debug, Clone, Default)]
pub struct Eta {
    /// Tasks in flight with a known creation time.
    created: HashMap<String, i64>,
    /// Smoothed latency, ms; `None` until a task has finished.
    latency_ms: Option<f64>,
}

impl Eta {
    /// Take note of one event that arrived at `now_ms`.
    pub fn observe(&mut self, ev: &RunEvent, now_ms: i64) {
        match ev {
            RunEvent::Started {
                in_flight_since, ..
            } => {
                self.created.extend(in_flight_since.iter().cloned());
            }
            RunEvent::Transition { id, to, .. } => match to {
                Status::Submitted | Status::Processing => {
                    self.created.entry(id.clone()).or_insert(now_ms);
                }
                Status::Succeeded | Status::Failed | Status::TimedOut => {
                    if let Some(t0) = self.created.remove(id) {
                        let sample = (now_ms - t0).max(0) as f64;
                        self.latency_ms = Some(match self.latency_ms {
                            Some(l) => l + ALPHA * (sample - l),
                            None => sample,
                        });
                    }
                }
                Status::Pending | Status::Submitting | Status::Downloaded | Status::Unknown => {
                    self.created.remove(id);
                }
            },
            _ => {}
        }
    }

    /// Observed task latency, once a task has finished.
    pub fn latency(&self) -> Option<Duration> {
        self.latency_ms.map(|l| Duration::from_millis(l as u64))
    }

    /// Time until every item has finished at the provider, at `now_ms`, with
    /// `waiting` items not yet submitted, `unstarted` in flight without a
    /// known creation time (being submitted), and at most `limit` in flight.
    pub fn estimate(
        &self,
        now_ms: i64,
        waiting: u64,
        unstarted: u64,
        limit: usize,
    ) -> Option<Duration> {
        let latency = self.latency_ms?;
        // When each busy slot frees up, from now (ms).
        let mut free_at: Vec<f64> = self
            .created
            .values()
            .map(|t0| (latency - (now_ms - t0) as f64).max(0.0))
            .collect();
        free_at.extend((0..unstarted.min(100_000)).map(|_| latency));
        let limit = limit.max(1);
        let busy_max = free_at.iter().copied().fold(0.0, f64::max);
        if waiting == 0 {
            return Some(ms(busy_max));
        }
        // Idle slots are free now; then waiting items take the earliest free
        // slot, `limit` at a time: full waves, then one partial wave.
        free_at.sort_by(f64::total_cmp);
        free_at.resize(limit.max(free_at.len()), 0.0);
        free_at.sort_by(f64::total_cmp);
        free_at.truncate(limit);
        let waves = waiting / limit as u64;
        let rest = (waiting % limit as u64) as usize;
        let end = free_at
            .iter()
            .enumerate()
            .map(|(k, s)| s + (waves + u64::from(k < rest)) as f64 * latency)
            .fold(busy_max, f64::max);
        Some(ms(end))
    }
}

fn ms(x: f64) -> Duration {
    Duration::from_millis(x.clamp(0.0, 1e12) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(id: &str, from: Status, to: Status) -> RunEvent {
        RunEvent::Transition {
            id: id.into(),
            from,
            to,
        }
    }

    fn started(in_flight: &[(&str, i64)]) -> RunEvent {
        RunEvent::Started {
            total: 10,
            counts: vec![],
            batch_dir: "out".into(),
            concurrency: 2,
            concurrency_auto: false,
            in_flight_since: in_flight.iter().map(|(i, t)| (i.to_string(), *t)).collect(),
        }
    }

    #[test]
    fn no_estimate_before_a_task_finishes() {
        let mut e = Eta::default();
        e.observe(&started(&[]), 0);
        e.observe(&tr("a", Status::Submitting, Status::Submitted), 0);
        assert_eq!(e.estimate(1_000, 8, 0, 2), None);
    }

    #[test]
    fn waves_of_the_limit_times_the_latency() {
        let mut e = Eta::default();
        e.observe(&tr("a", Status::Submitting, Status::Submitted), 0);
        e.observe(&tr("a", Status::Processing, Status::Succeeded), 10_000);
        assert_eq!(e.latency(), Some(Duration::from_secs(10)));
        // Two slots idle, eight waiting: four waves of ten seconds.
        assert_eq!(e.estimate(10_000, 8, 0, 2), Some(Duration::from_secs(40)));
        // Seven waiting: the last wave is partial, still ten seconds.
        assert_eq!(e.estimate(10_000, 7, 0, 2), Some(Duration::from_secs(40)));
    }

    #[test]
    fn resumed_tasks_count_from_their_creation_not_from_the_resume() {
        let mut e = Eta::default();
        // Created 60 s and 10 s before the resume at t = 100 s.
        e.observe(&started(&[("a", 40_000), ("b", 90_000)]), 100_000);
        e.observe(&tr("a", Status::Processing, Status::Succeeded), 105_000);
        assert_eq!(e.latency(), Some(Duration::from_secs(65)), "not 5 s");
        // b is 15 s old: 50 s left; nothing waiting.
        assert_eq!(e.estimate(105_000, 0, 0, 2), Some(Duration::from_secs(50)));
        // Two waiting: one starts now (65 s), one when b frees its slot (50 + 65 s).
        assert_eq!(e.estimate(105_000, 2, 0, 2), Some(Duration::from_secs(115)));
    }

    #[test]
    fn a_retried_item_is_not_a_latency_sample() {
        let mut e = Eta::default();
        e.observe(&tr("a", Status::Submitting, Status::Submitted), 0);
        e.observe(&tr("a", Status::Submitted, Status::Pending), 1_000);
        e.observe(&tr("a", Status::Pending, Status::Failed), 2_000);
        assert_eq!(e.latency(), None);
    }
}
