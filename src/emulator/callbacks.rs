//! Task callbacks (kling-api.md §7): a task created with `callback_url` has
//! its task object POSTed there when it turns `processing` and when it ends.
//!
//! Why a module of its own: everywhere else a task's status is computed
//! lazily from its timestamps (`tasks.rs`), because nothing needs to happen
//! until someone asks. A callback has to leave at the moment of the change,
//! unasked, so it needs a clock — one per emulator, not one per task: a
//! [`Schedule`] (a min-heap of due time and task index, kept under the state
//! mutex beside the tasks) and one background loop ([`Runner`]) sleeping until
//! its earliest entry. A create whose entry becomes the earliest wakes the
//! loop through [`Outbox::wake`].
//!
//! The loop never decides a status itself: when an entry is due it reads the
//! task's status *now* with `Task::status_at` and renders the same view a
//! single-task query renders at that instant (`endpoints::task_view`, video
//! URLs signed then, so `url_ttl` counts from the callback). A loop running
//! late therefore reports the status at that moment; a `processing` step
//! already overtaken by the end is not reported.
//!
//! Choices where the reference is silent (§7 "Undocumented"): no signature
//! or auth header; any 2xx is an acknowledgement, the answer body is not
//! read; a connection error, timeout (5 s) or other status is retried twice,
//! 100 ms apart, then given up; redirects are not followed. Each delivery
//! runs on its own task, at most [`MAX_IN_AIR`] at once (a due callback
//! waits for a slot), so a slow receiver delays later callbacks instead of
//! growing memory; a retried callback may therefore arrive after a later
//! one of the same task. The URL may carry a receiver's secret, so it is
//! never logged.
//!
//! The clock, the slots, the client and the retries do not depend on what
//! is sent, so the fal emulator's webhooks (`fal/webhooks.rs`) run on the
//! same [`Runner`]: an emulator implements [`Source`] — where its schedule
//! is, and what (if anything) to send for an entry that has come due — and
//! this file holds the Kling one beside the shared machinery.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::endpoints::task_view;
use super::faults;
use super::server::{Shared, now_ms};
use super::stats::Stats;
use super::tasks::{Status, Task};

/// Deliveries in the air at once, per emulator.
pub(crate) const MAX_IN_AIR: usize = 64;
/// Tries per callback, the first included.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Pending checks: (due Unix ms, task index), earliest first. A task has at
/// most one entry at a time: its next status change.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

impl Schedule {
    /// Add an entry; true when it is now the earliest, so the loop must re-arm.
    pub(crate) fn push(&mut self, due: u64, idx: usize) -> bool {
        let earliest = self.next_due().is_none_or(|head| due < head);
        self.heap.push(Reverse((due, idx)));
        earliest
    }

    pub(crate) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// The earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<usize> {
        match self.heap.peek() {
            Some(Reverse((due, _))) if *due <= now => self.heap.pop().map(|Reverse((_, i))| i),
            _ => None,
        }
    }

    /// Drop every entry whose index `moved` accepts, in one pass (for an
    /// emulator whose due times can move; the caller pushes the new ones).
    pub(crate) fn remove(&mut self, mut moved: impl FnMut(usize) -> bool) {
        self.heap.retain(|Reverse((_, i))| !moved(*i));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// When a new task's first callback is due: its `processing` step if it has
/// one (a step as long as zero is never visible to a query), else its end.
pub(crate) fn first_due(task: &Task) -> Option<u64> {
    task.callback_url.as_ref()?;
    Some(if task.processing_at < task.terminal_at {
        task.processing_at
    } else {
        task.terminal_at
    })
}

/// The sending side shared by the loop and its deliveries: the wake-up, the
/// delivery slots, the HTTP client (built on first use: an emulator that
/// never calls back never loads TLS roots) and the counters.
pub(crate) struct Outbox {
    /// What a delivery is called in the debug log ("emulator callback").
    label: &'static str,
    wake: Notify,
    slots: Arc<Semaphore>,
    client: OnceLock<Option<reqwest::Client>>,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::labelled("emulator callback")
    }
}

/// Deliveries so far: acknowledged, given up, never sent (drop fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

impl Outbox {
    /// An outbox whose deliveries the debug log calls `label`.
    pub(crate) fn labelled(label: &'static str) -> Outbox {
        Outbox {
            label,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(MAX_IN_AIR)),
            client: OnceLock::new(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A new entry is the earliest: the loop re-reads the schedule. A wake
    /// before the loop waits is kept (Notify stores one permit).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// One delivery decided against by a drop fault.
    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn fill(&self, stats: &mut Stats) {
        let c = self.counts();
        stats.callbacks_sent = c.sent;
        stats.callbacks_failed = c.failed;
        stats.callbacks_dropped = c.dropped;
    }

    /// `None` only if the TLS backend cannot start, which no input causes;
    /// every callback then counts as failed rather than panicking.
    fn client(&self) -> Option<&reqwest::Client> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("vidbatch-emulator/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

/// One emulator as the loop sees it. `next_due` and `take_due` run on the
/// loop's task and must not block: take the state lock briefly, no I/O.
pub(crate) trait Source: Send + Sync + 'static {
    /// The outbox this emulator's create/submit handler wakes.
    fn outbox(&self) -> &Arc<Outbox>;
    /// When the earliest entry of the schedule is due.
    fn next_due(&self) -> Option<u64>;
    /// Pop the earliest entry if it is due at `now`, schedule whatever comes
    /// next for it, and return what to send now, if anything.
    fn take_due(&self, now: u64) -> Option<Delivery>;
}

/// One POST to make: the URL (never logged), the JSON body, and an id for
/// the log.
pub(crate) struct Delivery {
    pub url: String,
    pub body: Bytes,
    pub id: String,
}

/// The callback loop of one emulator. Dropping it stops the loop (and aborts
/// deliveries in the air); [`Runner::shutdown`] stops it and waits.
pub(crate) struct Runner {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

impl Runner {
    pub(crate) fn spawn<S: Source>(source: Arc<S>) -> Runner {
        let (stop, stopped) = oneshot::channel();
        let join = tokio::spawn(run(source, stopped));
        Runner {
            stop: Some(stop),
            join,
        }
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
        }
    }
}

async fn run<S: Source>(source: Arc<S>, mut stop: oneshot::Receiver<()>) {
    let outbox = source.outbox().clone();
    // Owned here, so ending the loop aborts every delivery still going.
    let mut deliveries = JoinSet::new();
    loop {
        let now = now_ms();
        let next = source.next_due();
        if next.is_some_and(|due| due <= now) {
            let permit = tokio::select! {
                _ = &mut stop => break,
                p = outbox.slots.clone().acquire_owned() => p,
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => continue,
            };
            // The semaphore is never closed; an error would mean no slots ever.
            let Ok(permit) = permit else { break };
            // The moment of the check is after the wait for a slot.
            if let Some(delivery) = source.take_due(now_ms()) {
                deliveries.spawn(deliver(outbox.clone(), delivery, permit));
            }
            continue;
        }
        let wait = next.map(|due| Duration::from_millis(due.saturating_sub(now)));
        tokio::select! {
            _ = &mut stop => break,
            () = outbox.wake.notified() => {}
            () = sleep_or_forever(wait) => {}
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        // tokio caps a deadline past its range at "far future"; no overflow.
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A callback decided under the lock, rendered outside it.
struct Job {
    url: String,
    task: Task,
    now: u64,
}

impl Source for Shared {
    fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    fn next_due(&self) -> Option<u64> {
        self.lock().schedule.next_due()
    }

    fn take_due(&self, now: u64) -> Option<Delivery> {
        let job = take_job(self, now)?;
        let body = serde_json::to_vec(&task_view(self, &job.task, job.now))
            .unwrap_or_else(|_| b"{}".to_vec());
        Some(Delivery {
            url: job.url,
            body: Bytes::from(body),
            id: job.task.task_id,
        })
    }
}

/// Pop the earliest due entry; schedule the task's next change and return
/// the callback to send now, if any (none when the drop fault fires).
fn take_job(shared: &Shared, now: u64) -> Option<Job> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    let idx = st.schedule.pop_due(now)?;
    let task = st.tasks.get(idx)?;
    let url = task.callback_url.clone()?;
    let status = task.status_at(now);
    let attempt = match status {
        Status::Submitted => {
            // Woken before the step (clock stepped back): look again then.
            st.schedule.push(task.processing_at, idx);
            return None;
        }
        Status::Processing => {
            st.schedule.push(task.terminal_at, idx);
            1
        }
        Status::Succeed | Status::Failed => 2,
    };
    // Keyed like the create faults (external id, else creation order), so a
    // seed drops the same callbacks whatever the timing.
    let key = task
        .external_task_id
        .clone()
        .unwrap_or_else(|| format!("#task-{idx}"));
    let seed = shared.config.seed;
    if faults::fires(st.rates.callback_drop, seed, "callback_drop", &key, attempt) {
        st.counters.fault("callback_drop");
        shared.outbox.count_dropped();
        return None;
    }
    Some(Job {
        url,
        task: task.clone(),
        now,
    })
}

async fn deliver(outbox: Arc<Outbox>, delivery: Delivery, _slot: OwnedSemaphorePermit) {
    let Delivery { url, body, id } = delivery;
    let what = outbox.label;
    let Some(client) = outbox.client() else {
        tracing::warn!("{what}s: no HTTP client (TLS backend failed to start)");
        outbox.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let sent = client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                outbox.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                tracing::debug!(id, attempt, status, "{what} refused");
            }
            Err(err) => {
                // reqwest's message names the URL; keep it out of the log.
                let err = err.without_url();
                tracing::debug!(id, attempt, "{what} failed: {err}");
            }
        }
    }
    outbox.failed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::tasks::Outcome;
    use crate::emulator::validate::Kind;

    #[test]
    fn schedule_pops_earliest_due_first_and_says_when_to_rearm() {
        let mut s = Schedule::default();
        assert!(s.push(300, 1));
        assert!(s.push(100, 2));
        assert!(!s.push(200, 3));
        assert!(!s.push(100, 4));
        assert_eq!(s.next_due(), Some(100));
        assert_eq!(s.pop_due(99), None);
        assert_eq!(s.pop_due(150), Some(2));
        assert_eq!(s.pop_due(150), Some(4));
        assert_eq!(s.pop_due(150), None);
        assert_eq!(s.len(), 2);
        assert_eq!(s.pop_due(u64::MAX), Some(3));
        assert_eq!(s.pop_due(u64::MAX), Some(1));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn removed_entries_are_gone_and_the_rest_keep_their_order() {
        let mut s = Schedule::default();
        for (due, idx) in [(100, 1), (200, 2), (300, 3), (400, 4)] {
            s.push(due, idx);
        }
        s.remove(|i| i == 1 || i == 3);
        assert_eq!(s.len(), 2);
        assert!(s.push(50, 3), "a moved-up entry is the earliest");
        assert_eq!(s.pop_due(u64::MAX), Some(3));
        assert_eq!(s.pop_due(u64::MAX), Some(2));
        assert_eq!(s.pop_due(u64::MAX), Some(4));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn first_due_is_the_visible_processing_step_or_the_end() {
        let mut t = Task {
            task_id: "1".into(),
            kind: Kind::Text2Video,
            external_task_id: None,
            callback_url: None,
            created_at: 100,
            processing_at: 150,
            terminal_at: 200,
            outcome: Outcome::Succeed,
            video_ids: Vec::new(),
            duration: 5,
            units: "1".into(),
        };
        assert_eq!(first_due(&t), None);
        t.callback_url = Some("http://127.0.0.1:9/hook".into());
        assert_eq!(first_due(&t), Some(150));
        t.processing_at = 200;
        assert_eq!(first_due(&t), Some(200));
    }
}
