//! The workers: every request the engine makes runs as a spawned task that
//! reports back to the coordinator with one [`Msg`].
//!
//! [`Workers`] holds what those tasks share — the provider, the downloader,
//! the poll rate limiter and slots, the request counters and the channel —
//! and spawns them: the submit loop, recovery lookups, single queries, URL
//! refreshes, list sweeps and downloads. It decides nothing: the coordinator
//! says what to send and applies the answers. [`Msg`] lives here, not in the
//! coordinator, because it is the workers' reply contract: the coordinator
//! depends on the workers, never the other way round.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc};

use super::budget::{Budget, Held};
use super::counts::{Request, RequestCounts};
use super::ids;
use super::submit::{Settled, SubmitOutcome, Submitter};
use crate::download::{DownloadError, Downloaded, Downloader};
use crate::job::{Job, Kind};
use crate::provider::{Provider, ProviderError, TaskSnapshot};

/// The endpoint a task's queries and sweeps go to. Today that is the
/// provider's endpoint kind of the item; the poll queue treats it as an
/// opaque key, so nothing assumes how many there are.
pub(super) type Route = Kind;

/// What a worker reports.
pub(super) enum Msg {
    SubmitStarted(usize),
    Submitted(usize, SubmitOutcome),
    SubmitterDone,
    /// The spend cap kept this item back; it stays pending.
    Held(usize, Held),
    Recovered(usize, Settled),
    Polled(usize, Result<TaskSnapshot, ProviderError>),
    Listed {
        route: Route,
        found: Vec<(usize, TaskSnapshot)>,
        missing: Vec<usize>,
        error: Option<ProviderError>,
    },
    Refreshed(usize, Result<TaskSnapshot, ProviderError>),
    Fetched {
        idx: usize,
        n: u32,
        result: Result<Downloaded, DownloadError>,
    },
}

/// Pages one sweep reads at most, whatever the page size.
const MAX_SWEEP_PAGES: u32 = 1_000;

pub(super) type DirectLimiter = governor::DefaultDirectRateLimiter;

/// A limiter of `per_second` requests, no burst.
pub(super) fn limiter(per_second: f64) -> Arc<DirectLimiter> {
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(quota))
}

/// A reservation whose create did not happen is free again.
pub(super) fn give_back(budget: &Option<Arc<Budget>>, estimates: &[Option<f64>], idx: usize) {
    if let (Some(b), Some(est)) = (budget, estimates.get(idx).copied().flatten()) {
        b.give_back(est);
    }
}

/// What the submit loop works through.
pub(super) struct SubmitPlan {
    /// Pending items in manifest order, with the attempt each is created as.
    pub(super) order: Vec<(usize, u32)>,
    pub(super) items: Arc<Vec<Job>>,
    pub(super) batch_id: String,
    pub(super) rate: Arc<DirectLimiter>,
    pub(super) budget: Option<Arc<Budget>>,
    pub(super) estimates: Arc<Vec<Option<f64>>>,
}

pub(super) struct Workers<P> {
    pub(super) provider: Arc<P>,
    pub(super) downloader: Downloader,
    pub(super) submitter: Arc<Submitter<P>>,
    /// Polls' own budget, so they never eat into submissions.
    pub(super) rate: Arc<DirectLimiter>,
    /// Concurrent status requests.
    pub(super) slots: Arc<Semaphore>,
    pub(super) requests: Arc<RequestCounts>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
}

impl<P: Provider> Workers<P> {
    /// The submit loop: for each pending item, the spend cap, an in-flight
    /// slot, then a rate permit, then one submission task.
    pub(super) fn submit_loop(&self, plan: SubmitPlan) {
        let sub = self.submitter.clone();
        let tx = self.tx.clone();
        let SubmitPlan {
            order,
            items,
            batch_id,
            rate,
            budget,
            estimates,
        } = plan;
        tokio::spawn(async move {
            for &(idx, attempt) in &order {
                if sub.stop.is_stopped() {
                    break;
                }
                if let Some(b) = &budget
                    && let Err(held) = b.try_reserve(estimates.get(idx).copied().flatten())
                {
                    let _ = tx.send(Msg::Held(idx, held));
                    continue;
                }
                if !sub.limit.acquire(&sub.stop).await {
                    give_back(&budget, &estimates, idx);
                    break;
                }
                let ready = tokio::select! {
                    biased;
                    _ = sub.stop.stopped() => false,
                    _ = rate.until_ready() => true,
                };
                if !ready || sub.stop.is_stopped() {
                    sub.limit.release();
                    give_back(&budget, &estimates, idx);
                    break;
                }
                if tx.send(Msg::SubmitStarted(idx)).is_err() {
                    sub.limit.release();
                    give_back(&budget, &estimates, idx);
                    break;
                }
                let (sub, items, tx) = (sub.clone(), items.clone(), tx.clone());
                let ext = ids::external_task_id(&batch_id, &items[idx].id, attempt);
                tokio::spawn(async move {
                    let outcome = sub.submit(&items[idx], &ext, attempt).await;
                    let _ = tx.send(Msg::Submitted(idx, outcome));
                });
            }
            let _ = tx.send(Msg::SubmitterDone);
        });
    }

    /// Settle a create a crash left unanswered, by its key. A rebuilt state
    /// settles every item: a bounded number at a time, at the polling pace,
    /// not 100,000 requests at once.
    pub(super) fn settle(&self, idx: usize, route: Route, ext: String) {
        let sub = self.submitter.clone();
        let tx = self.tx.clone();
        let (slots, rate) = (self.slots.clone(), self.rate.clone());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            rate.until_ready().await;
            let settled = sub.settle(route, &ext).await;
            let _ = tx.send(Msg::Recovered(idx, settled));
        });
    }

    /// Ask about one task.
    pub(super) fn query(&self, idx: usize, route: Route, task_id: String) {
        let (provider, rate, slots, tx) = (
            self.provider.clone(),
            self.rate.clone(),
            self.slots.clone(),
            self.tx.clone(),
        );
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(route, &task_id).await;
            let _ = tx.send(Msg::Polled(idx, result));
        });
    }

    /// Ask a finished task again, for fresh video URLs.
    pub(super) fn refresh(&self, idx: usize, route: Route, task_id: String) {
        let (provider, rate, tx) = (self.provider.clone(), self.rate.clone(), self.tx.clone());
        let requests = self.requests.clone();
        tokio::spawn(async move {
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(route, &task_id).await;
            let _ = tx.send(Msg::Refreshed(idx, result));
        });
    }

    /// One list sweep of `route`: page through the newest tasks until every
    /// one `wanted` (task id → item) is seen, or the pages run out.
    pub(super) fn sweep(&self, route: Route, mut wanted: HashMap<String, usize>, page_size: u32) {
        let (provider, rate, tx) = (self.provider.clone(), self.rate.clone(), self.tx.clone());
        // Allow for tasks of ours that finished recently and others' tasks.
        let max_pages = (wanted.len() as u32 / page_size + 3).min(MAX_SWEEP_PAGES);
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut found = Vec::new();
            let mut error = None;
            for page in 1..=max_pages {
                rate.until_ready().await;
                requests.count(Request::List);
                match provider.list(route, page, page_size).await {
                    Ok(tasks) => {
                        let short = (tasks.len() as u32) < page_size;
                        for snap in tasks {
                            if let Some(idx) = wanted.remove(&snap.task_id) {
                                found.push((idx, snap));
                            }
                        }
                        if short || wanted.is_empty() {
                            break;
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let missing = wanted.into_values().collect();
            let _ = tx.send(Msg::Listed {
                route,
                found,
                missing,
                error,
            });
        });
    }

    /// Download video `n` of item `idx` from `url` to `dest`.
    pub(super) fn fetch(&self, idx: usize, n: u32, url: String, dest: PathBuf) {
        let (downloader, tx) = (self.downloader.clone(), self.tx.clone());
        self.requests.count(Request::Download);
        tokio::spawn(async move {
            let result = downloader.fetch(&url, &dest).await;
            let _ = tx.send(Msg::Fetched { idx, n, result });
        });
    }
}
