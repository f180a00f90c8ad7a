//! How often the tasks of a route are looked at: whether a route is swept,
//! and the gap between two sweeps (by the age of its oldest task before
//! any ended, by the window its tasks end in after, never more often than
//! the ends a sweep of several pages finds pay for).
//!
//! Apart from the queue's bookkeeping ([`super`]) because this is the part
//! that is tuned against what sweeps cost and how late an end is seen.

use std::time::{Duration, Instant};

use super::{PollQueue, Route};

/// Ended tasks a sweep should find per page it reads, on average: a sweep
/// comes no sooner than its pages can be paid for by that many ends at the
/// rate tasks are ending (≤ 0.02 status requests per task).
const ENDS_PER_PAGE: f64 = 50.0;
/// The same once nothing waits for a slot: an end seen later then holds
/// only its download, so a sweep must find twice as many (a batch's drain,
/// its in-flight tasks ending at the rate they were created, would
/// otherwise cost as many pages as the rest of the batch).
const DRAIN_ENDS_PER_PAGE: f64 = 100.0;
/// Tasks in flight from which a route none of whose tasks has ended yet is
/// swept instead of probed task by task.
const YOUNG_LIST_THRESHOLD: usize = 10;
/// The shortest gap between two sweeps of a route inside its window.
pub(super) const SWEEP_FLOOR: Duration = Duration::from_millis(50);
/// Before any task of a route ended, a one-page sweep comes when its oldest
/// task has aged by this share again: an end is seen at most an eighth of
/// its latency late (a sweep of more pages comes that many times later).
const YOUNG_SWEEP_SHARE: u32 = 8;
/// The same share while items wait for a slot and every slot is taken:
/// the first end seen is the first refill, and until it is seen no task
/// has a window to be looked at by. A thirty-second of the oldest task's
/// age (at least a single task's `min_gap`): ~60 one-page sweeps while
/// the first half-second tasks run, ~250 for two-minute ones.
const YOUNG_FULL_SHARE: u32 = 32;

impl<R: Copy + Ord> PollQueue<R> {
    /// Whether `route` is polled by list sweeps now: the provider lists
    /// tasks, and enough of the route's are in flight that one sweep costs
    /// less than their single queries. Before any task of the route ended,
    /// every task is probed often, so a few in flight already make one
    /// sweep cheaper than their probes.
    pub(super) fn swept(&self, route: &R) -> bool {
        if self.sweeps_off || self.page_size.is_none() {
            return false;
        }
        let Some(r) = self.routes.get(route) else {
            return false;
        };
        let threshold = if r.ripe {
            1
        } else if r.latency.window().is_none() {
            self.list_threshold.min(YOUNG_LIST_THRESHOLD)
        } else {
            self.list_threshold
        };
        r.in_flight >= threshold
    }

    /// The shortest gap between two looks at one task.
    pub(super) fn min_gap(&self) -> Duration {
        (self.interval / 20).max(Duration::from_millis(1))
    }

    /// The gap between looks inside `route`'s window, once it has one.
    /// A sweep asks about every task of the route for one request, so it
    /// may come closer than a single task's `min_gap` (at most 20 a second):
    /// tasks of one wave end together, and a quarter-second gap would hold
    /// each wave's slots that long.
    pub(super) fn window_gap(&self, route: &R) -> Option<Duration> {
        let w = self.routes.get(route)?.latency.window()?;
        let floor = self.min_gap().min(SWEEP_FLOOR);
        Some(((w.late - w.early) / 4).clamp(floor, self.interval.max(floor)))
    }

    /// The gap between two sweeps of `route`: the window's gap (else the
    /// poll interval); a sweep of several pages also no sooner than lets it
    /// find [`ENDS_PER_PAGE`] ended tasks per page at the rate they end now
    /// ([`DRAIN_ENDS_PER_PAGE`] once nothing waits for a slot), and so does
    /// a one-page sweep once nothing waits for a slot, until no more than
    /// [`DRAIN_ENDS_PER_PAGE`] tasks are left.
    pub(super) fn sweep_gap(&self, route: &R, now: Instant) -> Duration {
        let Some(r) = self.routes.get(route) else {
            return self.interval;
        };
        // No task ended yet: by the age of the oldest (an end is seen at
        // most an eighth of its latency late, a sweep of n pages n times
        // later), no closer than a quarter of the poll interval (what the
        // user asked for, four times over: tasks younger than that rarely
        // end) — unless every slot is taken, see YOUNG_FULL_SHARE; tasks
        // of an earlier run only (their age unknown): as a fresh task is
        // probed, half again as long each time. At most the poll interval
        // apart.
        let gap = self
            .window_gap(route)
            .unwrap_or_else(|| match r.first_since {
                Some(first) => {
                    let pages = self.pages(r) as u32;
                    let (share, floor) = if pages == 1 && self.refills && self.slots_full {
                        (YOUNG_FULL_SHARE, self.min_gap())
                    } else {
                        let floor = (self.interval / 4).max(SWEEP_FLOOR).min(self.interval);
                        (YOUNG_SWEEP_SHARE, floor)
                    };
                    (now.duration_since(first) * pages / share)
                        .clamp(floor, self.interval.max(floor))
                }
                None => self
                    .min_gap()
                    .mul_f64(1.5f64.powi(r.early_sweeps.min(64) as i32))
                    .min(self.interval),
            });
        let (Some(_), Some(&first)) = (self.page_size, r.ends.front()) else {
            return gap;
        };
        let span = now.duration_since(first).as_secs_f64();
        if r.ends.len() < 8 || span <= 0.0 {
            return gap;
        }
        let pages = self.pages(r);
        // One page is one request whatever it finds: worth it as often as
        // the window says while items wait for the slots it frees, and for
        // the last few tasks (the batch's end is when the last is seen).
        if pages < 2 && (self.refills || r.in_flight as f64 <= DRAIN_ENDS_PER_PAGE) {
            return gap;
        }
        let per_second = r.ends.len() as f64 / span;
        let per_page = if self.refills {
            ENDS_PER_PAGE
        } else {
            DRAIN_ENDS_PER_PAGE
        };
        let pages = pages as f64;
        let paid = Duration::from_secs_f64((per_page * pages / per_second).min(3600.0));
        gap.max(paid.min(self.interval))
    }

    /// Whether the route of in-flight item `idx` is swept in one page.
    pub(in crate::scheduler) fn one_page(&self, idx: usize) -> bool {
        self.in_flight
            .get(&idx)
            .and_then(|r| self.routes.get(r))
            .is_some_and(|r| self.pages(r) == 1)
    }

    /// Pages a sweep of `r` reads (at least one).
    pub(super) fn pages(&self, r: &Route) -> usize {
        self.page_size
            .map_or(1, |p| r.in_flight.div_ceil(p as usize))
            .max(1)
    }
}
