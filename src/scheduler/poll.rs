//! The poll queue: when each in-flight task is asked about next, and when
//! one list sweep replaces many single queries.
//!
//! A min-heap of due times over item indices, the per-task polling books
//! (next due time, polls made, errors in a row, a request out, missed by the
//! last sweep) and the sweep state of each *route* — the endpoint a task is
//! polled through (`R`, opaque here; the coordinator uses the provider's
//! endpoint kind). Nothing assumes how many routes there are. A route is
//! swept once it has `list_threshold` tasks in flight (10 before any of its
//! tasks ended; once it had `list_threshold`, until its last task ends)
//! and the provider has a list endpoint (`list_page_size`); sweeps stop for
//! the run when the list never shows our tasks or the server has no such
//! endpoint.
//!
//! When: before any task of a route ended, by the age of its oldest task
//! (an end is seen at most an eighth of its latency late); after, by the
//! window its tasks end in ([`Latency`]), as close as [`SWEEP_FLOOR`] for a
//! swept route (one request looks at all of them); a sweep of several pages
//! no more often than the ends it finds pay for (those gaps: [`cadence`]).
//!
//! This is bookkeeping only: it decides *what* to ask, the coordinator sends
//! the requests (through its workers) and feeds the answers back.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::latency::Latency;

mod cadence;

use cadence::SWEEP_FLOOR;

/// Failed polls in a row of one task before it is treated as gone.
pub(super) const MAX_POLL_ERRORS: u32 = 10;
/// List sweeps in a row that see none of our tasks before list polling is off.
const MAX_FRUITLESS_SWEEPS: u32 = 3;
/// Recent ends kept per route to tell the rate tasks end at.
const ENDS_KEPT: usize = 128;
/// A route swept in one page first looks at a fresh task this share of the
/// window's start early, while items wait for the slots its tasks hold. A
/// one-page sweep costs one request whatever it finds, and a window learned
/// a little late (its first ends seen by a sweep well after them) would
/// otherwise hold every slot of each wave that much longer; a route of
/// several pages pays per page, and once nothing waits for a slot an end
/// seen a little later costs nothing: both are looked at from the window's
/// start.
const ONE_PAGE_LEAD: u32 = 16;

/// Polling books of one item.
#[derive(Debug, Default, Clone)]
struct Slot {
    next: Option<Instant>,
    polls: u32,
    errors: u32,
    /// A query or sweep for this task is out.
    busy: bool,
    /// The last list sweep did not see it: query it on its own next time.
    list_missed: bool,
    /// Created (in this run) at; `None`: created earlier, its age unknown.
    since: Option<Instant>,
    /// Last seen unfinished at.
    seen_running: Option<Instant>,
    /// What callbacks name its task by, when they come (see
    /// [`PollQueue::index_tasks`]).
    key: Option<Box<str>>,
    /// A callback last told us it ended at.
    hinted_at: Option<Instant>,
    /// A callback came while an answer was in the air: if that answer
    /// says it runs, look again at once.
    recheck: bool,
}

/// Sweep state of one route.
#[derive(Debug, Default)]
struct Route {
    in_flight: usize,
    /// A sweep is out.
    sweeping: bool,
    /// When the last sweep started (the next may start a sweep gap later:
    /// the window's gap once known, else the poll interval).
    last_sweep: Option<Instant>,
    /// How long its tasks took in this run.
    latency: Latency,
    /// When its latest tasks were seen ended (the most recent few).
    ends: VecDeque<Instant>,
    /// Sweeps made before any of its tasks ended.
    early_sweeps: u32,
    /// When its first task created in this run was (its oldest, until one
    /// ends).
    first_since: Option<Instant>,
    /// A callback said one of its tasks ended since the last sweep began:
    /// the next may come a `min_gap` after it, whatever the window says.
    called_back: bool,
    /// It had `list_threshold` in flight: it stays swept until its last
    /// task ends (a batch's last tasks end together, one sweep sees them
    /// all; a lone straggler costs a sweep where it would cost a query).
    ripe: bool,
}

/// What is due now.
#[derive(Debug, PartialEq)]
pub(super) struct Due<R> {
    /// Items to query one by one, in the order they fell due.
    pub(super) queries: Vec<usize>,
    /// Routes to sweep, in route order.
    pub(super) sweeps: Vec<R>,
}

#[derive(Debug)]
pub(super) struct PollQueue<R> {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Only items with a poll scheduled or a task tracked have one (a
    /// 100k-item batch keeps books for what is in flight, not for all).
    slots: HashMap<usize, Slot>,
    /// In-flight items and their route (what a sweep looks for).
    in_flight: HashMap<usize, R>,
    routes: BTreeMap<R, Route>,
    /// Sweeps in a row that found none of ours, and whether sweeps are off.
    fruitless: u32,
    sweeps_off: bool,
    interval: Duration,
    max_interval: Duration,
    list_threshold: usize,
    page_size: Option<u32>,
    /// In-flight items by what callbacks name their tasks by, kept only
    /// when callbacks come; and how a task id becomes that name.
    by_task: Option<TaskIndex>,
    /// Items may still wait for a slot (the submitter has not finished).
    refills: bool,
    /// Every slot of every account is taken: what holds the next create
    /// is a task we have not yet seen end.
    slots_full: bool,
}

/// In-flight items by what callbacks name their tasks by.
struct TaskIndex {
    items: HashMap<Box<str>, usize>,
    key_of: CallbackKey,
}

impl std::fmt::Debug for TaskIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskIndex({} tasks)", self.items.len())
    }
}

/// What a callback names a task by, from the task's id (the provider's
/// [`crate::provider::Provider::callback_key`]).
pub(super) type CallbackKey = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl<R: Copy + Ord> PollQueue<R> {
    /// Books for a batch; `page_size: None` means never sweep.
    pub(super) fn new(
        interval: Duration,
        max_interval: Duration,
        list_threshold: usize,
        page_size: Option<u32>,
    ) -> Self {
        PollQueue {
            heap: BinaryHeap::new(),
            slots: HashMap::new(),
            in_flight: HashMap::new(),
            routes: BTreeMap::new(),
            fruitless: 0,
            sweeps_off: false,
            interval,
            max_interval,
            list_threshold,
            // A page of nothing is no list endpoint.
            page_size: page_size.filter(|&n| n > 0),
            by_task: None,
            refills: true,
            slots_full: false,
        }
    }

    /// Nothing more will be submitted: no item waits for a freed slot.
    pub(super) fn submitter_done(&mut self) {
        self.refills = false;
    }

    /// Whether every slot of every account is taken now.
    pub(super) fn set_slots_full(&mut self, full: bool) {
        self.slots_full = full;
    }

    /// Keep in-flight items findable by what callbacks name their tasks by.
    pub(super) fn index_tasks(&mut self, key: CallbackKey) {
        self.by_task = Some(TaskIndex {
            items: HashMap::new(),
            key_of: key,
        });
    }

    /// Remember `idx`'s task, if tasks are indexed.
    pub(super) fn index(&mut self, idx: usize, task_id: &str) {
        let Some(index) = &mut self.by_task else {
            return;
        };
        let Some(key) = (index.key_of)(task_id) else {
            return;
        };
        let key: Box<str> = key.into();
        index.items.insert(key.clone(), idx);
        self.slots.entry(idx).or_default().key = Some(key);
    }

    /// The in-flight item whose task a callback names `name`.
    pub(super) fn by_task(&self, name: &str) -> Option<usize> {
        self.by_task.as_ref()?.items.get(name).copied()
    }

    /// A callback says `idx`'s task ended: look at it now — by a sweep of
    /// its route, which may then come a [`Self::min_gap`] after the last
    /// (one sweep sees every task that ended meanwhile), or by a query —
    /// and if an answer already in the air says it runs, look again at
    /// once. At most once per `min_gap` a task, however often it is told.
    pub(super) fn called_back(&mut self, idx: usize, now: Instant) {
        let gap = self.min_gap();
        let (Some(s), Some(&route)) = (self.slots.get_mut(&idx), self.in_flight.get(&idx)) else {
            return;
        };
        if s.hinted_at.is_some_and(|t| now.duration_since(t) < gap) {
            return;
        }
        s.hinted_at = Some(now);
        s.recheck = s.busy;
        if let Some(r) = self.routes.get_mut(&route) {
            r.called_back = true;
        }
        self.schedule_at(idx, now);
    }

    /// When the earliest scheduled poll is due (maybe a stale one).
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Tasks tracked as in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(super) fn page_size(&self) -> Option<u32> {
        self.page_size
    }

    /// Start tracking a task that went in flight on `route`, created at
    /// `since` (`None`: in an earlier run).
    pub(super) fn track(&mut self, idx: usize, route: R, since: Option<Instant>) {
        self.in_flight.insert(idx, route);
        let threshold = self.list_threshold;
        let r = self.routes.entry(route).or_default();
        r.in_flight += 1;
        r.ripe |= r.in_flight >= threshold;
        if let Some(t) = since {
            r.first_since = Some(r.first_since.map_or(t, |f| f.min(t)));
        }
        let slot = self.slots.entry(idx).or_default();
        slot.since = since;
        slot.seen_running = None;
    }

    /// A poll found the task still running.
    pub(super) fn saw_running(&mut self, idx: usize, now: Instant) {
        if let Some(s) = self.slots.get_mut(&idx) {
            s.seen_running = Some(now);
        }
    }

    /// A poll found the task ended: what it took tells when to poll its
    /// route's next tasks.
    pub(super) fn ended(&mut self, idx: usize, now: Instant) {
        let Some(slot) = self.slots.get(&idx) else {
            return;
        };
        let (Some(since), Some(route)) = (slot.since, self.in_flight.get(&idx)) else {
            return;
        };
        let running_at = slot.seen_running.unwrap_or(since).duration_since(since);
        if let Some(r) = self.routes.get_mut(route) {
            r.latency.ended(running_at, now.duration_since(since));
            if r.ends.len() == ENDS_KEPT {
                r.ends.pop_front();
            }
            r.ends.push_back(now);
        }
    }

    /// Stop tracking a task that ended (or timed out).
    pub(super) fn untrack(&mut self, idx: usize) {
        if let (Some(slot), Some(index)) = (self.slots.remove(&idx), &mut self.by_task)
            && let Some(key) = slot.key
            && index.items.get(&key) == Some(&idx)
        {
            index.items.remove(&key);
        }
        if let Some(route) = self.in_flight.remove(&idx)
            && let Some(r) = self.routes.get_mut(&route)
        {
            r.in_flight -= 1;
            r.ripe &= r.in_flight > 0;
        }
    }

    /// Next poll of a task created in this run: by the window its route's
    /// tasks end in (see [`Latency`]) once that is known, and until then
    /// from a twentieth of the poll interval, half again as long each time.
    /// A task of an earlier run (its age unknown): the poll interval,
    /// stretched by a quarter per poll already made (long tasks are asked
    /// less often), up to the maximum.
    pub(super) fn schedule(&mut self, idx: usize, now: Instant) {
        if let Some(s) = self.slots.get_mut(&idx)
            && std::mem::take(&mut s.recheck)
        {
            self.schedule_at(idx, now);
            return;
        }
        let route = self.in_flight.get(&idx).copied();
        let window = route
            .and_then(|r| self.routes.get(&r))
            .and_then(|r| r.latency.window());
        let swept = route.filter(|r| self.swept(r));
        // A swept task is looked at by its route's sweeps, which may come
        // as close as the sweep floor inside the window, and before it by
        // the age of the route's oldest task.
        let min_gap = match swept {
            Some(_) => self.min_gap().min(SWEEP_FLOOR),
            None => self.min_gap(),
        };
        if let (Some(r), None) = (swept, window)
            && self.routes.get(&r).is_some_and(|r| r.first_since.is_some())
        {
            let at = now + self.sweep_gap(&r, now);
            self.slots.entry(idx).or_default().polls += 1;
            self.schedule_at(idx, at);
            return;
        }
        let slot = self.slots.entry(idx).or_default();
        let (polls, since) = (slot.polls, slot.since);
        slot.polls += 1;
        if let Some(since) = since {
            let age = now.duration_since(since);
            let d = match window {
                Some(w) => {
                    let lead = match swept.and_then(|r| self.routes.get(&r)) {
                        Some(r) if self.refills && self.pages(r) == 1 => w.early / ONE_PAGE_LEAD,
                        _ => Duration::ZERO,
                    };
                    w.next_poll(age, lead, (min_gap, self.interval), self.max_interval)
                }
                // No task of the route has ended yet: look often at first,
                // half again as long each time, so the first ends are seen
                // (and measured) within a third of their age; at most the
                // poll interval apart.
                None => self
                    .min_gap()
                    .mul_f64(1.5f64.powi(polls.min(64) as i32))
                    .min(self.interval),
            };
            self.schedule_at(idx, now + d);
            return;
        }
        let stretch = 1.0 + polls as f64 / 4.0;
        let d = self.interval.mul_f64(stretch).min(self.max_interval);
        self.schedule_at(idx, now + d);
    }

    pub(super) fn schedule_at(&mut self, idx: usize, at: Instant) {
        self.slots.entry(idx).or_default().next = Some(at);
        self.heap.push(Reverse((at, idx)));
    }

    pub(super) fn set_busy(&mut self, idx: usize, busy: bool) {
        if let Some(s) = self.slots.get_mut(&idx) {
            s.busy = busy;
        }
    }

    /// The task answered: its error count starts again.
    pub(super) fn answered(&mut self, idx: usize) {
        if let Some(s) = self.slots.get_mut(&idx) {
            s.errors = 0;
        }
    }

    /// A poll of the task failed; the errors in a row so far.
    pub(super) fn failed(&mut self, idx: usize) -> u32 {
        let s = self.slots.entry(idx).or_default();
        s.errors += 1;
        s.errors
    }

    /// Take what is due at `now`. A route with at least `list_threshold`
    /// tasks in flight is polled by list sweeps — at most one per poll
    /// interval, each covering every in-flight task of that route — instead
    /// of one query per task. Stale heap entries (rescheduled, busy, or no
    /// longer `in_flight`) are dropped.
    pub(super) fn take_due(
        &mut self,
        now: Instant,
        in_flight: impl Fn(usize) -> bool,
        route: impl Fn(usize) -> R,
    ) -> Due<R> {
        let mut due: Vec<usize> = Vec::new();
        while let Some(Reverse((t, idx))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            match self.slots.get(&idx) {
                Some(s) if s.next == Some(t) && !s.busy && in_flight(idx) => {}
                _ => continue,
            }
            due.push(idx);
        }
        let mut queries = Vec::new();
        let mut sweeps = BTreeSet::new();
        for idx in due {
            let r = route(idx);
            let missed = self.slots.get(&idx).is_some_and(|s| s.list_missed);
            if missed || !self.swept(&r) {
                if let Some(s) = self.slots.get_mut(&idx) {
                    s.list_missed = false;
                }
                queries.push(idx);
                continue;
            }
            let (sweeping, last_sweep, called_back) =
                self.routes.get(&r).map_or((false, None, false), |s| {
                    (s.sweeping, s.last_sweep, s.called_back)
                });
            let gap = if called_back {
                self.min_gap()
            } else {
                self.sweep_gap(&r, now)
            };
            match last_sweep.map(|t| t + gap) {
                _ if sweeping => self.schedule_at(idx, now + gap),
                // Looked at again soon: a window learned meanwhile brings
                // the next sweep forward.
                Some(at) if at > now => self.schedule_at(idx, at.min(now + self.min_gap())),
                _ => {
                    sweeps.insert(r);
                }
            }
        }
        Due {
            queries,
            sweeps: sweeps.into_iter().collect(),
        }
    }

    /// Start a sweep of `route`: every in-flight task of it with no request
    /// out and not missed by the last sweep, by task id (marked busy).
    pub(super) fn start_sweep(
        &mut self,
        route: R,
        now: Instant,
        in_flight: impl Fn(usize) -> bool,
        task_id: impl Fn(usize) -> Option<String>,
    ) -> HashMap<String, usize> {
        let r = self.routes.entry(route).or_default();
        r.sweeping = true;
        r.last_sweep = Some(now);
        r.called_back = false;
        if r.latency.window().is_none() {
            r.early_sweeps += 1;
        }
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for (&idx, &on) in &self.in_flight {
            let s = self.slots.entry(idx).or_default();
            if on == route
                && in_flight(idx)
                && !s.busy
                && !s.list_missed
                && let Some(t) = task_id(idx)
            {
                wanted.insert(t, idx);
                s.busy = true;
            }
        }
        for &idx in wanted.values() {
            if let Some(s) = self.slots.get_mut(&idx) {
                s.polls += 1;
                s.next = None;
            }
        }
        wanted
    }

    /// A sweep of `route` came back. A list that never shows our tasks (a
    /// gateway that lists something else, or nothing) is given up after a
    /// few tries.
    pub(super) fn sweep_returned(&mut self, route: R, found_any: bool, missed_any: bool) {
        self.routes.entry(route).or_default().sweeping = false;
        if !found_any && missed_any {
            self.fruitless += 1;
            if self.fruitless >= MAX_FRUITLESS_SWEEPS {
                self.give_up_sweeps("it never lists our tasks");
            }
        } else if found_any {
            self.fruitless = 0;
        }
    }

    /// The last sweep did not see this task: query it on its own next time.
    pub(super) fn missed(&mut self, idx: usize) {
        if let Some(s) = self.slots.get_mut(&idx) {
            s.busy = false;
            s.list_missed = true;
        }
    }

    pub(super) fn give_up_sweeps(&mut self, why: &str) {
        if !self.sweeps_off {
            tracing::debug!("list polling disabled for this run: {why}");
            self.sweeps_off = true;
        }
    }
}

#[cfg(test)]
mod tests;
