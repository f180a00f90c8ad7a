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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::budget::{Budget, Held};
use super::counts::{Request, RequestCounts};
use super::feed::{Arming, Feed, Next};
use super::ids;
use super::items::Items;
use super::limit::{Gate, Stop};
use super::pool::Pool;
use super::submit::{Settled, SubmitOutcome};
use crate::download::{DownloadError, Downloaded, Downloader};
use crate::job::{Job, JobSource, Kind};
use crate::provider::{Provider, ProviderError, TaskSnapshot};
use crate::state::VideoRecord;

/// Where a task's queries and sweeps go: its account (by index) and the
/// provider's endpoint kind of the item. The poll queue treats it as an
/// opaque key, so nothing assumes how many there are.
pub(super) type Route = (u16, Kind);

/// What a worker reports.
pub(super) enum Msg {
    /// A create of item `.0` through account `.1` is about to be sent.
    SubmitStarted(usize, u16),
    Submitted(usize, SubmitOutcome),
    SubmitterDone,
    /// The spend cap kept this item back; it stays pending.
    Held(usize, Held),
    /// What the next creates send could not be read: creating stops.
    Unreadable(String),
    /// A downloaded item's files are gone or changed: its video records
    /// and task id (as the state has them) and which videos to fetch again.
    FilesGone(usize, Gone),
    /// Every downloaded item's files were checked.
    Verified,
    /// What settling item `.0`'s unsettled create found, and in which account.
    Recovered(usize, u16, Settled),
    Polled(usize, Result<TaskSnapshot, ProviderError>),
    /// One page of a sweep: our tasks on it, sent as soon as the page is
    /// read (a task that ended frees its slot without waiting for the rest).
    ListedPage(Vec<(usize, TaskSnapshot)>),
    /// The sweep of `route` is over (after its pages).
    Listed {
        route: Route,
        found_any: bool,
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

/// What the file check found gone for one downloaded item.
pub(super) struct Gone {
    pub(super) videos: Vec<VideoRecord>,
    pub(super) task_id: Option<String>,
    /// The videos (by `n`) to fetch again.
    pub(super) gone: Vec<u32>,
}

/// Pages one sweep reads at most, whatever the page size.
const MAX_SWEEP_PAGES: u32 = 1_000;

/// The page a sweep of `wanted` tasks asks for: all of them and a quarter
/// more (ours that ended since, others' in a shared account) when that is
/// less than the provider's largest page `max`. A page is parsed whole on
/// both sides, and one of 500 tasks for 200 in flight was most of a
/// sweep's cost; a task further down is found on the next page, or by a
/// query of its own.
fn fitted_page(wanted: usize, max: u32) -> u32 {
    let fit = wanted.saturating_add(wanted / 4).saturating_add(20);
    u32::try_from(fit).map_or(max, |fit| fit.min(max)).max(1)
}

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
    /// Pending items in manifest order, with the attempt each is created
    /// as (item indices as `u32`: 8 bytes an item, not 16, for the run).
    pub(super) order: Vec<(u32, u32)>,
    pub(super) items: Arc<Items>,
    /// What each create sends, read a page ahead of the sends.
    pub(super) jobs: Arc<dyn JobSource>,
    pub(super) batch_id: String,
    pub(super) budget: Option<Arc<Budget>>,
    pub(super) estimates: Arc<Vec<Option<f64>>>,
    /// Stops the loop (abort, interrupt).
    pub(super) stop: Arc<Stop>,
    /// Held while too many items wait for their downloads.
    pub(super) backlog: Arc<Gate>,
}

pub(super) struct Workers<P> {
    pub(super) downloader: Downloader,
    /// The run's accounts: one [`Submitter`](super::submit::Submitter) each.
    pub(super) pool: Arc<Pool<P>>,
    /// Polls' own budget, so they never eat into submissions.
    pub(super) rate: Arc<DirectLimiter>,
    /// Concurrent status requests.
    pub(super) slots: Arc<Semaphore>,
    pub(super) requests: Arc<RequestCounts>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
}

impl<P: Provider> Workers<P> {
    /// The submit loop: for each pending item, the spend cap, then an
    /// account with a free slot and a rate permit, then one submission task.
    /// An item refused for its account's sake (balance, auth) is handed back
    /// to the loop while other accounts take new items; so the loop ends
    /// only once its own submissions have come back.
    pub(super) fn submit_loop(&self, plan: SubmitPlan) {
        let pool = self.pool.clone();
        let tx = self.tx.clone();
        let SubmitPlan {
            order,
            items,
            jobs,
            batch_id,
            budget,
            estimates,
            stop,
            backlog,
        } = plan;
        // Intents are committed ahead only where an unsent one is settled
        // by a lookup, with one account (its key names the account) and no
        // spend cap (a held item would have to be taken back).
        let only = &pool.accounts[0];
        let arming =
            (pool.accounts.len() == 1 && only.lookup && only.takes_new && budget.is_none()).then(
                || Arming {
                    writer: only.writer.clone(),
                    batch_id: batch_id.clone(),
                    account: only.name.clone(),
                    depth: pool.total_concurrency,
                },
            );
        tokio::spawn(async move {
            let (requeue_tx, mut requeue_rx) = mpsc::unbounded_channel::<(usize, u32, Job)>();
            let outstanding = Arc::new(AtomicUsize::new(0));
            let came_back = Arc::new(Notify::new());
            let mut feed = Feed::new(order, jobs, items.clone(), arming);
            let mut exhausted = false;
            // An armed item taken and not sent when the loop stops.
            let mut unsent = None;
            let mut turn = 0usize;
            loop {
                if stop.is_stopped() {
                    break;
                }
                let next = match requeue_rx.try_recv() {
                    Ok((idx, attempt, job)) => Some(Next {
                        idx,
                        attempt,
                        job,
                        armed: false,
                    }),
                    Err(_) if exhausted => None,
                    Err(_) => {
                        let read = tokio::select! {
                            read = feed.next() => read,
                            _ = stop.stopped() => break,
                        };
                        match read {
                            Ok(Some(n)) => Some(n),
                            Ok(None) => {
                                exhausted = true;
                                None
                            }
                            Err(e) => {
                                let _ = tx.send(Msg::Unreadable(e));
                                break;
                            }
                        }
                    }
                };
                let next = match next {
                    Some(x) => x,
                    // A submission that comes back hands its item back
                    // before it stops counting: seeing none outstanding
                    // and none handed back means the loop is done.
                    None if outstanding.load(Ordering::SeqCst) == 0 => {
                        match requeue_rx.try_recv() {
                            Ok((idx, attempt, job)) => Next {
                                idx,
                                attempt,
                                job,
                                armed: false,
                            },
                            Err(_) => break,
                        }
                    }
                    None => {
                        tokio::select! {
                            _ = came_back.notified() => continue,
                            _ = stop.stopped() => break,
                        }
                    }
                };
                let idx = next.idx;
                // Finished work piling up waits for the downloads first.
                tokio::select! {
                    _ = backlog.open() => {}
                    _ = stop.stopped() => {
                        unsent = Some(next);
                        break;
                    }
                }
                if let Some(b) = &budget
                    && let Err(held) = b.try_reserve(estimates.get(idx).copied().flatten())
                {
                    let _ = tx.send(Msg::Held(idx, held));
                    continue;
                }
                let Some(a) = pool.acquire(&stop, &mut turn).await else {
                    give_back(&budget, &estimates, idx);
                    unsent = Some(next);
                    break;
                };
                let sub = pool.accounts[a].clone();
                if stop.is_stopped() || tx.send(Msg::SubmitStarted(idx, a as u16)).is_err() {
                    sub.limit.release();
                    give_back(&budget, &estimates, idx);
                    unsent = Some(next);
                    break;
                }
                outstanding.fetch_add(1, Ordering::SeqCst);
                let (pool, tx) = (pool.clone(), tx.clone());
                let (requeue_tx, outstanding, came_back) =
                    (requeue_tx.clone(), outstanding.clone(), came_back.clone());
                let Next {
                    idx,
                    attempt,
                    job,
                    armed,
                } = next;
                let ext = ids::external_task_id(&batch_id, items.id(idx), attempt);
                tokio::spawn(async move {
                    let outcome = sub.submit(&job, &ext, attempt, armed).await;
                    // Definitely not created, for the account's sake: drain
                    // it here too (the coordinator records why), so the
                    // item goes to an account that still takes new items.
                    // So does a create this account's drain stopped before
                    // it was sent.
                    let refused = matches!(outcome, SubmitOutcome::Fatal(_));
                    if refused {
                        sub.stop.stop();
                        sub.limit.wake();
                    }
                    let drained =
                        sub.stop.is_stopped() && matches!(outcome, SubmitOutcome::NotCreated(_));
                    let requeue = (refused || drained) && pool.any_live();
                    let _ = tx.send(Msg::Submitted(idx, outcome));
                    if requeue {
                        let _ = requeue_tx.send((idx, attempt, job));
                    }
                    outstanding.fetch_sub(1, Ordering::SeqCst);
                    came_back.notify_one();
                });
            }
            // Take back what was armed and not sent before saying so.
            feed.close(unsent).await;
            let _ = tx.send(Msg::SubmitterDone);
        });
    }

    /// Settle a create a crash left unanswered, by its key, in `accounts`
    /// (its own; every account when the state does not say). A rebuilt
    /// state settles every item: a bounded number at a time, at the polling
    /// pace, not 100,000 requests at once.
    pub(super) fn settle(&self, idx: usize, kind: Kind, accounts: Vec<u16>, ext: String) {
        let pool = self.pool.clone();
        let tx = self.tx.clone();
        let (slots, rate) = (self.slots.clone(), self.rate.clone());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let mut outcome = (accounts.first().copied().unwrap_or(0), Settled::Absent);
            for a in accounts {
                rate.until_ready().await;
                match pool.accounts[a as usize].settle(kind, &ext).await {
                    Settled::Absent => {}
                    found => {
                        outcome = (a, found);
                        break;
                    }
                }
            }
            let _ = tx.send(Msg::Recovered(idx, outcome.0, outcome.1));
        });
    }

    /// Ask about one task, with the credentials of its account.
    pub(super) fn query(&self, idx: usize, route: Route, task_id: String) {
        let (provider, rate, slots, tx) = (
            self.pool.accounts[route.0 as usize].provider.clone(),
            self.rate.clone(),
            self.slots.clone(),
            self.tx.clone(),
        );
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(route.1, &task_id).await;
            let _ = tx.send(Msg::Polled(idx, result));
        });
    }

    /// Ask a finished task again, for fresh video URLs.
    pub(super) fn refresh(&self, idx: usize, route: Route, task_id: String) {
        let provider = self.pool.accounts[route.0 as usize].provider.clone();
        let (rate, tx) = (self.rate.clone(), self.tx.clone());
        let requests = self.requests.clone();
        tokio::spawn(async move {
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(route.1, &task_id).await;
            let _ = tx.send(Msg::Refreshed(idx, result));
        });
    }

    /// One list sweep of `route`: page through the newest tasks until every
    /// one `wanted` (task id → item) is seen, or the pages run out.
    pub(super) fn sweep(&self, route: Route, mut wanted: HashMap<String, usize>, page_size: u32) {
        let provider = self.pool.accounts[route.0 as usize].provider.clone();
        let (rate, tx) = (self.rate.clone(), self.tx.clone());
        let page_size = fitted_page(wanted.len(), page_size);
        // Allow for tasks of ours that finished recently and others' tasks.
        let max_pages = (wanted.len() as u32 / page_size + 3).min(MAX_SWEEP_PAGES);
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut found_any = false;
            let mut error = None;
            for page in 1..=max_pages {
                rate.until_ready().await;
                requests.count(Request::List);
                match provider.list(route.1, page, page_size).await {
                    Ok(tasks) => {
                        let short = (tasks.len() as u32) < page_size;
                        let found: Vec<(usize, TaskSnapshot)> = tasks
                            .into_iter()
                            .filter_map(|snap| Some((wanted.remove(&snap.task_id)?, snap)))
                            .collect();
                        if !found.is_empty() {
                            found_any = true;
                            let _ = tx.send(Msg::ListedPage(found));
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
                found_any,
                missing,
                error,
            });
        });
    }

    /// Check the files of the downloaded items `todo` against the state's
    /// records, off the async threads; only what is gone comes back.
    pub(super) fn verify(&self, todo: Vec<usize>, items: Arc<Items>, batch_dir: PathBuf) {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            match crate::state::open_ro(&batch_dir) {
                Ok(conn) => {
                    for idx in todo {
                        let mut videos = match crate::state::videos_of(&conn, items.id(idx)) {
                            Ok(v) => v,
                            Err(e) => {
                                tracing::warn!("cannot check the files of downloaded items: {e}");
                                break;
                            }
                        };
                        let gone = super::recover::files_gone(&mut videos, &batch_dir);
                        if gone.is_empty() {
                            continue;
                        }
                        let task_id = crate::state::task_id_of(&conn, items.id(idx))
                            .ok()
                            .flatten();
                        let gone = Gone {
                            videos,
                            task_id,
                            gone,
                        };
                        if tx.send(Msg::FilesGone(idx, gone)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot check the files of downloaded items: {e}"),
            }
            let _ = tx.send(Msg::Verified);
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

#[cfg(test)]
mod tests {
    use super::fitted_page;

    #[test]
    fn a_sweep_asks_for_a_page_that_holds_its_tasks_and_a_quarter_more() {
        assert_eq!(fitted_page(200, 500), 270);
        assert_eq!(fitted_page(0, 500), 20);
        assert_eq!(
            fitted_page(400, 500),
            500,
            "never more than the provider's page"
        );
        assert_eq!(fitted_page(usize::MAX, 500), 500);
        assert_eq!(fitted_page(3, 1), 1);
    }
}
