//! The bound on tasks in flight, and a stop signal.
//!
//! Video APIs count concurrency as tasks created and not yet finished, per
//! account, across every key. So a slot is taken before a
//! create and given back only when the task ends — not when the POST returns.
//! The bound adapts: a "slot full" answer means someone else shares the
//! account, so the limit drops to what we actually hold; each later successful
//! create probes one slot higher again, back up to the configured bound (AIMD).

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

#[derive(Debug)]
struct Counts {
    in_flight: usize,
    limit: usize,
    max: usize,
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

    /// A bound that wakes `notify` when a slot may have come free.
    pub fn sharing(max: usize, already: usize, notify: Arc<Notify>) -> InFlight {
        InFlight {
            counts: Mutex::new(Counts {
                in_flight: already,
                limit: max.max(1),
                max: max.max(1),
            }),
            notify,
        }
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
    }

    /// A create succeeded: probe one slot higher, up to the configured bound.
    pub fn grow(&self) {
        {
            let mut c = self.lock();
            if c.limit < c.max {
                c.limit += 1;
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
        limit.grow();
        limit.grow();
        assert_eq!(limit.snapshot(), (6, 7));
        for _ in 0..10 {
            limit.grow();
        }
        assert_eq!(limit.snapshot().1, 10, "never above the configured bound");
    }

    #[test]
    fn recovered_tasks_count_against_the_bound() {
        let limit = InFlight::new(2, 5);
        assert_eq!(limit.snapshot(), (5, 2));
        limit.shrink();
        assert_eq!(limit.snapshot().1, 4);
    }
}
