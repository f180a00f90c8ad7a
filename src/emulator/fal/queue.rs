//! The account queue: every request ever submitted, and when each one starts
//! and ends under the account's concurrency limit — computed, never timed.
//!
//! fal queues requests over the limit instead of rejecting them, first come
//! first served. With FIFO order and `limit` slots, a request's start time is
//! fixed the moment it is submitted: `max(submitted, earliest free slot)`,
//! and later submissions never move it. So [`Queue::submit`] assigns
//! `start`/`end` at once and a request's status at any moment is a comparison
//! of timestamps ([`FalRequest::status_at`]). Only a cancel changes the plan:
//! the queued requests behind it move up, so [`Queue::cancel`] re-plans the
//! still-queued tail from the slots as they are at that moment.
//!
//! Start times are non-decreasing in submission order, so the queued
//! requests at any moment are a suffix of `pending`, and a queue position is
//! a binary search.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// The documented status enum (no failure state: failures are read from the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    InQueue,
    InProgress,
    Completed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::InQueue => "IN_QUEUE",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
        }
    }
}

/// How a request ends, decided at submit (from the prompt and the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A video and a seed.
    Video { seed: u64 },
    /// The model rejected the input after running (422, charged).
    InputError,
    /// The runner failed (500, not charged).
    RunnerError(RunnerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunnerError {
    Disconnected,
    Timeout,
}

impl RunnerError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunnerError::Disconnected => "runner_disconnected",
            RunnerError::Timeout => "request_timeout",
        }
    }
}

/// One submitted request.
#[derive(Debug, Clone)]
pub(crate) struct FalRequest {
    pub id: String,
    /// `owner/app`: the only root its status, result and cancel URLs answer under.
    pub app: String,
    /// Key of the seeded per-request fault decisions (body hash + attempt).
    pub fault_key: String,
    pub submitted_at: u64,
    /// How long it runs once started (latency ± jitter).
    pub run_ms: u64,
    pub start: u64,
    pub end: u64,
    pub outcome: Outcome,
    /// Set when a cancel took effect; the request is COMPLETED from then on.
    pub cancelled_at: Option<u64>,
    /// The submit's `fal_webhook`: an absolute http(s) URL, told when it ends.
    pub webhook: Option<String>,
}

impl FalRequest {
    pub(crate) fn status_at(&self, now: u64) -> Status {
        if let Some(at) = self.cancelled_at {
            return if now >= at {
                Status::Completed
            } else {
                Status::InQueue
            };
        }
        if now >= self.end {
            Status::Completed
        } else if now >= self.start {
            Status::InProgress
        } else {
            Status::InQueue
        }
    }
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelResult {
    /// It was queued; it now ends COMPLETED with a cancellation result.
    Cancelled,
    /// It had started (or finished): nothing changes.
    TooLate,
}

#[derive(Debug)]
pub(crate) struct Queue {
    limit: usize,
    requests: Vec<FalRequest>,
    by_id: HashMap<String, usize>,
    by_file: HashMap<String, usize>,
    /// Indices not yet started as of the last [`Queue::advance`], in order.
    pending: VecDeque<usize>,
    /// Indices started and not ended as of the last advance (at most `limit`).
    running: Vec<usize>,
    /// When each of the `limit` slots is next free, counting every planned request.
    slots: BinaryHeap<Reverse<u64>>,
    max_in_progress: usize,
}

impl Queue {
    pub(crate) fn new(limit: usize) -> Queue {
        let limit = limit.max(1);
        Queue {
            limit,
            requests: Vec::new(),
            by_id: HashMap::new(),
            by_file: HashMap::new(),
            pending: VecDeque::new(),
            running: Vec::new(),
            slots: (0..limit).map(|_| Reverse(0)).collect(),
            max_in_progress: 0,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &FalRequest> {
        self.requests.iter()
    }

    /// Plan `req` behind everything already planned; `req.start`/`end` are set here.
    pub(crate) fn submit(&mut self, mut req: FalRequest, now: u64, file: Option<String>) -> usize {
        self.advance(now);
        self.place(&mut req, now);
        let idx = self.requests.len();
        self.by_id.insert(req.id.clone(), idx);
        if let Some(file) = file {
            self.by_file.insert(file, idx);
        }
        self.requests.push(req);
        self.pending.push_back(idx);
        self.advance(now);
        idx
    }

    /// Take the earliest free slot, no earlier than `not_before`.
    fn place(&mut self, req: &mut FalRequest, not_before: u64) {
        let free = self.slots.pop().map_or(0, |Reverse(t)| t);
        req.start = free.max(req.submitted_at).max(not_before);
        req.end = req.start.saturating_add(req.run_ms);
        // Slots still busy at this start, plus this one.
        let busy = self
            .slots
            .iter()
            .filter(|Reverse(t)| *t > req.start)
            .count()
            + 1;
        self.max_in_progress = self.max_in_progress.max(busy);
        self.slots.push(Reverse(req.end));
    }

    /// Move requests whose start or end has passed along.
    fn advance(&mut self, now: u64) {
        while let Some(&idx) = self.pending.front() {
            match self.requests.get(idx) {
                Some(r) if r.start <= now => {
                    self.pending.pop_front();
                    self.running.push(idx);
                }
                Some(_) => break,
                None => {
                    self.pending.pop_front();
                }
            }
        }
        let requests = &self.requests;
        self.running
            .retain(|&i| requests.get(i).is_some_and(|r| r.end > now));
    }

    pub(crate) fn get(&self, id: &str) -> Option<&FalRequest> {
        self.requests.get(*self.by_id.get(id)?)
    }

    /// The request [`Queue::submit`] numbered `idx`.
    pub(crate) fn at(&self, idx: usize) -> Option<&FalRequest> {
        self.requests.get(idx)
    }

    /// The number [`Queue::submit`] gave `id`.
    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The still-queued requests as of the last change, in order: after a
    /// [`Queue::cancel`], exactly the ones it re-planned.
    pub(crate) fn queued(&self) -> impl Iterator<Item = (usize, &FalRequest)> {
        self.pending
            .iter()
            .filter_map(|&i| self.requests.get(i).map(|r| (i, r)))
    }

    pub(crate) fn by_file(&self, file: &str) -> Option<&FalRequest> {
        self.requests.get(*self.by_file.get(file)?)
    }

    /// Requests ahead of `id` in the queue at `now` (0 = next to start);
    /// `None` when it is not queued.
    pub(crate) fn position(&mut self, id: &str, now: u64) -> Option<usize> {
        self.advance(now);
        let idx = *self.by_id.get(id)?;
        // `pending` is sorted by index (submission order).
        let (a, b) = self.pending.as_slices();
        match a.binary_search(&idx) {
            Ok(p) => Some(p),
            Err(_) => b.binary_search(&idx).ok().map(|p| p + a.len()),
        }
    }

    /// Cancel `id` at `now` if it is still queued; `None` for an unknown id.
    pub(crate) fn cancel(&mut self, id: &str, now: u64) -> Option<CancelResult> {
        let idx = *self.by_id.get(id)?;
        let queued = self.position(id, now).is_some();
        if !queued {
            return Some(CancelResult::TooLate);
        }
        if let Some(r) = self.requests.get_mut(idx) {
            r.cancelled_at = Some(now);
            r.start = now;
            r.end = now;
        }
        self.pending.retain(|&i| i != idx);
        self.replan(now);
        Some(CancelResult::Cancelled)
    }

    /// Re-plan every queued request from the slots as they are at `now`.
    fn replan(&mut self, now: u64) {
        self.advance(now);
        let mut slots: BinaryHeap<Reverse<u64>> = self
            .running
            .iter()
            .filter_map(|&i| self.requests.get(i).map(|r| Reverse(r.end)))
            .collect();
        while slots.len() < self.limit {
            slots.push(Reverse(now));
        }
        self.slots = slots;
        let pending: Vec<usize> = self.pending.iter().copied().collect();
        for idx in pending {
            if let Some(mut req) = self.requests.get(idx).cloned() {
                self.place(&mut req, now);
                if let Some(slot) = self.requests.get_mut(idx) {
                    slot.start = req.start;
                    slot.end = req.end;
                }
            }
        }
        self.advance(now);
    }

    /// (queued, in progress) at `now`.
    #[cfg(test)]
    pub(crate) fn counts(&mut self, now: u64) -> (usize, usize) {
        self.advance(now);
        (self.pending.len(), self.running.len())
    }

    /// The most requests ever planned to run at the same moment.
    pub(crate) fn max_in_progress(&self) -> usize {
        self.max_in_progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: u64, submitted_at: u64, run_ms: u64) -> FalRequest {
        FalRequest {
            id: format!("r{n}"),
            app: "fal-ai/veo3".to_owned(),
            fault_key: format!("k{n}"),
            submitted_at,
            run_ms,
            start: 0,
            end: 0,
            outcome: Outcome::Video { seed: n },
            cancelled_at: None,
            webhook: None,
        }
    }

    fn times(q: &Queue, id: &str) -> (u64, u64) {
        let r = q.get(id).expect("known id");
        (r.start, r.end)
    }

    #[test]
    fn requests_over_the_limit_wait_for_a_free_slot_in_order() {
        let mut q = Queue::new(2);
        for n in 0..5 {
            q.submit(req(n, 0, 100), 0, None);
        }
        assert_eq!(times(&q, "r0"), (0, 100));
        assert_eq!(times(&q, "r1"), (0, 100));
        assert_eq!(times(&q, "r2"), (100, 200));
        assert_eq!(times(&q, "r3"), (100, 200));
        assert_eq!(times(&q, "r4"), (200, 300));
        assert_eq!(q.max_in_progress(), 2);
    }

    #[test]
    fn queue_positions_count_down_to_the_start() {
        let mut q = Queue::new(1);
        for n in 0..4 {
            q.submit(req(n, 0, 100), 0, None);
        }
        assert_eq!(q.position("r0", 0), None, "r0 runs at once");
        assert_eq!(q.position("r3", 0), Some(2));
        assert_eq!(q.position("r3", 150), Some(1));
        assert_eq!(q.position("r3", 250), Some(0));
        assert_eq!(q.position("r3", 300), None);
        assert_eq!(
            q.get("r3").map(|r| r.status_at(300)),
            Some(Status::InProgress)
        );
        assert_eq!(
            q.get("r3").map(|r| r.status_at(400)),
            Some(Status::Completed)
        );
        assert_eq!(q.position("nope", 0), None);
    }

    #[test]
    fn a_late_arrival_with_a_free_slot_starts_when_it_arrives() {
        let mut q = Queue::new(2);
        q.submit(req(0, 0, 100), 0, None);
        q.submit(req(1, 500, 100), 500, None);
        assert_eq!(times(&q, "r1"), (500, 600));
        assert_eq!(q.counts(550), (0, 1));
    }

    #[test]
    fn cancelling_a_queued_request_moves_the_ones_behind_it_up() {
        let mut q = Queue::new(1);
        for n in 0..3 {
            q.submit(req(n, 0, 100), 0, None);
        }
        assert_eq!(q.cancel("r1", 10), Some(CancelResult::Cancelled));
        let r1 = q.get("r1").expect("r1");
        assert_eq!(r1.status_at(9), Status::InQueue);
        assert_eq!(r1.status_at(10), Status::Completed);
        assert_eq!(times(&q, "r2"), (100, 200), "r2 takes r1's turn");
        assert_eq!(q.position("r2", 10), Some(0));
        let queued: Vec<usize> = q.queued().map(|(i, _)| i).collect();
        assert_eq!(queued, vec![2], "the re-planned tail, r1 gone");
        assert_eq!(q.index_of("r2"), Some(2));
        assert_eq!(q.at(2).map(|r| r.id.as_str()), Some("r2"));
        assert_eq!(q.cancel("r0", 10), Some(CancelResult::TooLate));
        assert_eq!(q.cancel("r2", 150), Some(CancelResult::TooLate));
        assert_eq!(q.cancel("zz", 150), None);
    }

    #[test]
    fn a_re_planned_request_never_starts_in_the_past() {
        let mut q = Queue::new(1);
        q.submit(req(0, 0, 1000), 0, None);
        q.submit(req(1, 0, 1000), 0, None);
        q.submit(req(2, 0, 1000), 0, None);
        // r0 is running until 1000; cancelling r1 at 500 lets r2 start at 1000, not earlier.
        q.cancel("r1", 500);
        assert_eq!(times(&q, "r2"), (1000, 2000));
        assert_eq!(q.counts(500), (1, 1));
    }
}
