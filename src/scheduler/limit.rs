//! The bound on tasks in flight, and a stop signal.
//!
//! Video APIs count concurrency as tasks created and not yet finished, per
//! account, across every key. So a slot is taken before a
//! create and given back only when the task ends — not when the POST returns.
//! The bound adapts: a "slot full" answer means the account is full (others
//! share it, or we reached its limit), so the limit drops to what we actually
//! hold; each later successful create probes one slot higher again, up to the
//! ceiling (AIMD). With `--concurrency auto` the bound starts low (or where
//! an earlier run of the batch found the account's limit) and the ceiling is
//! high, so it settles at the account's real limit: "slot full" is free.
//! A provider that queues requests over the account's limit instead of
//! refusing them gives no such answer; there the bound is raised from what
//! is seen running ([`InFlight::raise_to`]), not per create.

use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A one-way "stop" flag that tasks can wait on.
#[derive(Debug, Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once [`stop`](Self::stop) has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// A gate new creates wait at while finished work piles up: the engine
/// holds it while more items wait for their downloads than it allows
/// (memory stays flat and video URLs are not left to expire in a queue
/// when the disk or the network is slower than the provider).
#[derive(Debug, Default)]
pub(super) struct Gate {
    held: AtomicBool,
    notify: Notify,
}

impl Gate {
    pub(super) fn hold(&self, held: bool) {
        if self.held.swap(held, Ordering::SeqCst) && !held {
            self.notify.notify_waiters();
        }
    }

    /// Resolves once the gate is open.
    pub(super) async fn open(&self) {
        loop {
            let notified = self.notify.notified();
            if !self.held.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct Counts {
    in_flight: usize,
    limit: usize,
    max: usize,
    /// Successful creates probe one slot higher.
    grows: bool,
    /// The account said "full" at least once in this run.
    seen_full: bool,
    /// Successes since the last probe, once the account has said "full".
    credit: usize,
}

/// Counting bound on tasks in flight with an adaptive limit.
#[derive(Debug)]
pub struct InFlight {
    counts: Mutex<Counts>,
    /// Woken on every release or growth; shared by the accounts of a pool,
    /// so the submit loop waits for a slot in *any* of them.
    notify: Arc<Notify>,
}

impl InFlight {
    /// `already`: tasks from an earlier run still in flight (they count too).
    pub fn new(max: usize, already: usize) -> InFlight {
        InFlight::sharing(max, already, Arc::new(Notify::new()))
    }

    /// A bound of `max` that wakes `notify` when a slot may have come free.
    pub fn sharing(max: usize, already: usize, notify: Arc<Notify>) -> InFlight {
        InFlight::adaptive(max, max, true, already, notify)
    }

    /// A bound that starts at `start`, never passes `max`, and grows by one
    /// per successful create when `grows`.
    pub fn adaptive(
        start: usize,
        max: usize,
        grows: bool,
        already: usize,
        notify: Arc<Notify>,
    ) -> InFlight {
        let max = max.max(1);
        InFlight {
            counts: Mutex::new(Counts {
                in_flight: already,
                limit: start.clamp(1, max),
                max,
                grows,
                seen_full: false,
                credit: 0,
            }),
            notify,
        }
    }

    /// Raise the limit to `n` (up to the ceiling); never lowers it.
    pub fn raise_to(&self, n: usize) {
        let raised = {
            let mut c = self.lock();
            let n = n.min(c.max);
            let raised = n > c.limit;
            if raised {
                c.limit = n;
            }
            raised
        };
        if raised {
            self.notify.notify_waiters();
        }
    }

    /// The limit now, and whether the account said "full" in this run.
    pub fn learned(&self) -> (usize, bool) {
        let c = self.lock();
        (c.limit, c.seen_full)
    }

    /// Take a slot if one is free now.
    pub fn try_acquire(&self) -> bool {
        let mut c = self.lock();
        if c.in_flight < c.limit {
            c.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Slots free now (0 when full).
    pub fn free(&self) -> usize {
        let c = self.lock();
        c.limit.saturating_sub(c.in_flight)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a slot, waiting for one. Returns `false` if `stop` fired first.
    pub async fn acquire(&self, stop: &Stop) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_acquire() {
                return true;
            }
            if stop.is_stopped() {
                return false;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = stop.stopped() => return false,
            }
        }
    }

    /// Give back a slot just taken by [`try_acquire`](Self::try_acquire)
    /// without waking anyone (nothing new came free).
    pub fn untake(&self) {
        let mut c = self.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
    }

    /// Count a task that moved here from another account's bound.
    pub fn take_over(&self) {
        self.lock().in_flight += 1;
    }

    /// Wake whoever waits for a slot (e.g. to notice an account was drained).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Give a slot back (the task ended, or was never created).
    pub fn release(&self) {
        {
            let mut c = self.lock();
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        self.notify.notify_waiters();
    }

    /// The provider said the account is full while we hold `in_flight` slots
    /// (including the caller's): limit to what the others leave us.
    pub fn shrink(&self) {
        let mut c = self.lock();
        c.limit = c.in_flight.saturating_sub(1).max(1);
        c.seen_full = true;
        // The next probe comes a whole window after this "full".
        c.credit = 0;
    }

    /// Give back the caller's slot when more are held than the bound allows
    /// (it shrank under them); `true` when it did. Nobody is woken: no slot
    /// of the bound came free.
    pub fn step_back(&self) -> bool {
        let mut c = self.lock();
        if c.in_flight > c.limit {
            c.in_flight -= 1;
            true
        } else {
            false
        }
    }

    /// A create succeeded: probe higher, up to the configured bound.
    pub fn grow(&self) {
        {
            let mut c = self.lock();
            if c.grows && c.limit < c.max {
                // Until the account first says "full", one more per success
                // (the limit is found in a few round trips); after that, one
                // probe per window of successes, so the account is asked
                // past its limit about once per `limit` creates, not each time.
                if !c.seen_full {
                    c.limit += 1;
                } else {
                    c.credit += 1;
                    if c.credit >= c.limit {
                        c.credit = 0;
                        c.limit += 1;
                    }
                }
            }
        }
        self.notify.notify_waiters();
    }

    /// (in flight, current limit).
    pub fn snapshot(&self) -> (usize, usize) {
        let c = self.lock();
        (c.in_flight, c.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acquire_waits_for_a_release() {
        let limit = std::sync::Arc::new(InFlight::new(1, 0));
        let stop = std::sync::Arc::new(Stop::default());
        assert!(limit.acquire(&stop).await);
        let (l2, s2) = (limit.clone(), stop.clone());
        let waiter = tokio::spawn(async move { l2.acquire(&s2).await });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "second acquire must wait while the slot is held"
        );
        limit.release();
        assert!(waiter.await.unwrap());
        assert_eq!(limit.snapshot(), (1, 1));
    }

    #[tokio::test]
    async fn stop_wakes_a_waiting_acquire() {
        let limit = std::sync::Arc::new(InFlight::new(1, 1));
        let stop = std::sync::Arc::new(Stop::default());
        let (l2, s2) = (limit.clone(), stop.clone());
        let waiter = tokio::spawn(async move { l2.acquire(&s2).await });
        tokio::task::yield_now().await;
        stop.stop();
        assert!(!waiter.await.unwrap());
    }

    #[test]
    fn slot_full_shrinks_to_what_we_hold_and_successes_grow_back() {
        let limit = InFlight::new(10, 6);
        limit.shrink();
        assert_eq!(limit.snapshot(), (6, 5));
        // After a "full", one probe per window of successes.
        for _ in 0..4 {
            limit.grow();
        }
        assert_eq!(limit.snapshot(), (6, 5));
        limit.grow();
        assert_eq!(limit.snapshot(), (6, 6));
        for _ in 0..100 {
            limit.grow();
        }
        assert_eq!(limit.snapshot().1, 10, "never above the configured bound");
    }

    #[test]
    fn an_auto_bound_starts_low_and_a_queueing_one_grows_only_when_raised() {
        let n = || Arc::new(Notify::new());
        let auto = InFlight::adaptive(4, 500, true, 0, n());
        auto.grow();
        assert_eq!(auto.snapshot().1, 5);
        let queued = InFlight::adaptive(4, 500, false, 0, n());
        queued.grow();
        assert_eq!(queued.snapshot().1, 4, "a create proves nothing there");
        queued.raise_to(12);
        queued.raise_to(6);
        assert_eq!(queued.learned(), (12, false));
        queued.raise_to(10_000);
        assert_eq!(queued.snapshot().1, 500, "the ceiling holds");
    }

    #[test]
    fn recovered_tasks_count_against_the_bound() {
        let limit = InFlight::new(2, 5);
        assert_eq!(limit.snapshot(), (5, 2));
        limit.shrink();
        assert_eq!(limit.snapshot().1, 4);
    }
}
