//! The engine: submit, poll, download — for a whole batch, exactly once.
//!
//! One coordinator task owns every item's in-memory state; workers (the
//! submit loop, polls, list sweeps, downloads) run as separate tasks and send
//! their results back on one channel, so no state is shared behind locks and
//! every transition is seen, stored and reported in one place:
//!
//! ```text
//! submit loop: in-flight slot -> rate permit -> intent (durable) -> POST -> settle
//! polls:       due-time heap -> single GET, or one list sweep for many -> status
//! downloads:   bounded pool -> .part -> fsync -> rename -> sha256
//! every transition -> state writer (single writer) -> RunEvent -> reporters
//! ```
//!
//! On start, recovery settles every item a crash left in `submitting` (by its
//! external_task_id) before any new create; tasks already created are polled,
//! finished ones downloaded, files on disk verified.

mod backoff;
mod budget;
mod counts;
pub mod ids;
mod limit;
mod setup;
mod submit;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc};

use crate::download::{DownloadError, Downloaded, Downloader};
use crate::events::{EventSender, RunEvent};
use crate::manifest::{Item, Kind};
use crate::provider::{ErrorClass, Provider, ProviderError, RemoteStatus, TaskSnapshot};
use crate::settings::EngineSettings;
use crate::state::{ItemRecord, Status, Update, VideoRecord, WriterHandle, now_ms};

pub use budget::{Budget, Held};
pub use counts::{Request, RequestCounts, Requests};
pub use limit::{InFlight, Stop};
pub use submit::{Settled, SubmitOutcome, Submitter};

/// Page size for list sweeps (Kling's maximum, kling-api.md §6.2).
const LIST_PAGE_SIZE: u32 = 500;
/// Fresh URLs asked for per item per run before a download is left for next time.
const MAX_URL_REFRESHES: u32 = 3;
/// Failed polls in a row of one task before it is treated as gone.
const MAX_POLL_ERRORS: u32 = 10;
/// List sweeps in a row that see none of our tasks before list polling is off.
const MAX_FRUITLESS_SWEEPS: u32 = 3;
/// Concurrent status requests.
const POLL_CONCURRENCY: usize = 32;

/// One item that did not succeed, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub id: String,
    pub status: Status,
    pub code: Option<i64>,
    pub message: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Items of this manifest by status.
    pub counts: BTreeMap<Status, u64>,
    /// Why submitting stopped early (auth, balance, ...), if it did.
    pub aborted: Option<String>,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    /// Items failed or timed out in this run, and downloads left unfinished.
    pub failures: Vec<Failure>,
    /// Items of this manifest by status when the run started.
    pub at_start: BTreeMap<Status, u64>,
    /// Requests this run made, by kind.
    pub requests: Requests,
    /// The spend cap, when one was set, and what it held back.
    pub cap: Option<CapOutcome>,
}

/// What `--max-units` did in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CapOutcome {
    pub max_units: f64,
    /// Estimated-plus-charged units of every task the batch created.
    pub committed_units: f64,
    /// Items left pending because their estimate would pass the cap.
    pub held_over_cap: u64,
    /// Items left pending because no price is known for them.
    pub held_unpriced: u64,
}

impl RunOutcome {
    pub fn all_downloaded(&self) -> bool {
        self.counts
            .iter()
            .all(|(s, n)| *s == Status::Downloaded || *n == 0)
    }
}

/// What the engine is given.
pub struct EngineInput<P> {
    pub provider: Arc<P>,
    pub downloader: Downloader,
    /// The manifest's items, in order.
    pub items: Vec<Item>,
    /// The store's records (after syncing the manifest), any order.
    pub records: Vec<ItemRecord>,
    pub batch_id: String,
    pub batch_dir: PathBuf,
    pub writer: WriterHandle,
    pub events: EventSender,
    pub settings: EngineSettings,
    /// Set by Ctrl-C: stop at once, state consistent.
    pub interrupt: Arc<Stop>,
    /// The spend cap (`--max-units`) and each item's estimated units, in
    /// manifest order; `None`: no cap.
    pub spend: Option<Spend>,
}

/// A spend cap and the estimates it is kept with.
#[derive(Debug, Clone)]
pub struct Spend {
    pub max_units: f64,
    /// Per item, in manifest order; `None`: no price known.
    pub estimates: Vec<Option<f64>>,
}

#[derive(Debug, Default)]
struct Entry {
    status: Status,
    attempt: u32,
    task_id: Option<String>,
    /// Holds one of our in-flight slots.
    holds_slot: bool,
    deadline: Option<Instant>,
    next_poll: Option<Instant>,
    polls: u32,
    poll_errors: u32,
    /// A query or sweep for this task is out.
    busy: bool,
    /// The last list sweep did not see it: query it on its own next time.
    list_missed: bool,
    videos: Vec<VideoRecord>,
    downloading: usize,
    needs_refresh: bool,
    refreshes: u32,
    last_error: Option<(Option<i64>, String)>,
    /// The key an unsettled create used, as the state recorded it (only for
    /// items left `submitting`): recovery must ask for exactly that key,
    /// whatever the manifest or the naming rules say today.
    pending_key: Option<Box<str>>,
    /// Unix ms the task was created (from the state), for `RunEvent::Started`.
    submitted_at: Option<i64>,
}

enum Msg {
    SubmitStarted(usize),
    Submitted(usize, SubmitOutcome),
    SubmitterDone,
    /// The spend cap kept this item back; it stays pending.
    Held(usize, Held),
    Recovered(usize, Settled),
    Polled(usize, Result<TaskSnapshot, ProviderError>),
    Listed {
        kind: Kind,
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

type DirectLimiter = governor::DefaultDirectRateLimiter;

fn limiter(per_second: f64) -> Arc<DirectLimiter> {
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(quota))
}

/// Run the batch to the end (or to an abort or interrupt).
pub async fn run<P: Provider>(input: EngineInput<P>) -> RunOutcome {
    Coordinator::new(input).run().await
}

struct Coordinator<P> {
    provider: Arc<P>,
    downloader: Downloader,
    items: Arc<Vec<Item>>,
    entries: Vec<Entry>,
    batch_id: String,
    batch_dir: PathBuf,
    writer: WriterHandle,
    events: EventSender,
    cfg: EngineSettings,
    interrupt: Arc<Stop>,
    /// Stops creating: abort, or interrupt.
    stop_submit: Arc<Stop>,
    limit: Arc<InFlight>,
    submitter: Arc<Submitter<P>>,
    poll_rate: Arc<DirectLimiter>,
    poll_slots: Arc<Semaphore>,
    /// Videos waiting for the download pool, and how many are being fetched.
    download_queue: std::collections::VecDeque<(usize, u32)>,
    downloads_running: usize,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    // Work outstanding; the run ends when all are zero and submitting is done.
    recovering: usize,
    submitter_started: bool,
    submitter_done: bool,
    active_submits: usize,
    in_flight_entries: usize,
    /// In-flight tasks per kind (index: `kind_index`), to choose list sweeps.
    in_flight_by_kind: [usize; 2],
    /// Indices of in-flight tasks (what a sweep looks for).
    in_flight_idx: std::collections::HashSet<usize>,
    /// Per kind: a sweep is out, and the earliest time the next may start.
    sweep_running: [bool; 2],
    next_sweep: [Option<Instant>; 2],
    /// Sweeps in a row that found none of ours, and whether sweeps are off.
    fruitless_sweeps: u32,
    sweeps_disabled: bool,
    active_polls: usize,
    active_downloads: usize,
    aborted: Option<String>,
    fatal_stop: bool,
    /// The setup is broken (wrong address, route, TLS): end the run as soon
    /// as no create or recovery lookup is in the air.
    setup_stop: bool,
    failures: Vec<Failure>,
    /// Downloaded items whose files are checked once the run has started.
    to_verify: Vec<usize>,
    budget: Option<Arc<Budget>>,
    estimates: Arc<Vec<Option<f64>>>,
    held: [u64; 2],
    requests: Arc<RequestCounts>,
}

impl<P: Provider> Coordinator<P> {
    fn new(input: EngineInput<P>) -> Self {
        // Records are moved into the entries, not copied: on 100k items the
        // video records are tens of megabytes.
        let mut by_id: HashMap<String, ItemRecord> = input
            .records
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let estimates = Arc::new(
            input
                .spend
                .as_ref()
                .map(|s| s.estimates.clone())
                .unwrap_or_default(),
        );
        let mut already_spent = 0.0;
        let mut entries = Vec::with_capacity(input.items.len());
        for (i, item) in input.items.iter().enumerate() {
            let mut e = Entry {
                attempt: 1,
                ..Entry::default()
            };
            if let Some(r) = by_id.remove(item.id.as_str()) {
                // What earlier runs committed: the charge, else the estimate.
                if r.task_id.is_some() || r.status() == Status::Submitting {
                    already_spent += r
                        .units
                        .as_deref()
                        .and_then(|u| u.trim().parse::<f64>().ok())
                        .or_else(|| estimates.get(i).copied().flatten())
                        .unwrap_or(0.0);
                }
                e.status = r.status();
                e.attempt = r.attempt.max(1);
                e.task_id = r.task_id;
                e.videos = r.videos;
                e.last_error = r.error_message.map(|m| (r.error_code, m));
                if e.status == Status::Submitting {
                    e.pending_key = r.external_task_id.map(String::into_boxed_str);
                }
                e.submitted_at = r.submitted_at;
            }
            entries.push(e);
        }
        drop(by_id);
        let cfg = input.settings;
        // Tasks from an earlier run that may hold account slots count against the bound.
        let already = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.status,
                    Status::Submitting | Status::Submitted | Status::Processing | Status::TimedOut
                )
            })
            .count();
        let limit = Arc::new(InFlight::new(cfg.concurrency, already));
        let budget = input
            .spend
            .as_ref()
            .map(|s| Arc::new(Budget::new(s.max_units, already_spent)));
        let stop_submit = Arc::new(Stop::default());
        let requests = Arc::new(RequestCounts::default());
        let submitter = Arc::new(Submitter {
            requests: requests.clone(),
            provider: input.provider.clone(),
            writer: input.writer.clone(),
            events: input.events.clone(),
            limit: limit.clone(),
            stop: stop_submit.clone(),
            retry_base: cfg.retry_base,
            setup: Arc::new(setup::SetupWatch::default()),
        });
        // Polls have their own budget so they never eat into submissions: enough
        // for every in-flight task to be asked twice per poll interval.
        let poll_per_sec =
            (2.0 * cfg.concurrency as f64 / cfg.poll_interval.as_secs_f64()).clamp(20.0, 2000.0);
        let (tx, rx) = mpsc::unbounded_channel();
        Coordinator {
            provider: input.provider,
            downloader: input.downloader,
            items: Arc::new(input.items),
            entries,
            batch_id: input.batch_id,
            batch_dir: input.batch_dir,
            writer: input.writer,
            events: input.events,
            interrupt: input.interrupt,
            stop_submit,
            limit,
            submitter,
            poll_rate: limiter(poll_per_sec),
            poll_slots: Arc::new(Semaphore::new(POLL_CONCURRENCY)),
            download_queue: std::collections::VecDeque::new(),
            downloads_running: 0,
            cfg,
            tx,
            rx,
            heap: BinaryHeap::new(),
            recovering: 0,
            submitter_started: false,
            submitter_done: false,
            active_submits: 0,
            in_flight_entries: 0,
            in_flight_by_kind: [0; 2],
            in_flight_idx: std::collections::HashSet::new(),
            sweep_running: [false; 2],
            next_sweep: [None; 2],
            fruitless_sweeps: 0,
            sweeps_disabled: false,
            active_polls: 0,
            active_downloads: 0,
            aborted: None,
            fatal_stop: false,
            setup_stop: false,
            failures: Vec::new(),
            to_verify: Vec::new(),
            budget,
            estimates,
            held: [0; 2],
            requests,
        }
    }

    async fn run(mut self) -> RunOutcome {
        let at_start = self.counts();
        self.events.send(RunEvent::Started {
            total: self.entries.len() as u64,
            counts: at_start.clone().into_iter().collect(),
            batch_dir: self.batch_dir.clone(),
            concurrency: self.cfg.concurrency,
            in_flight_since: (self.entries.iter().zip(self.items.iter()))
                .filter(|(e, _)| matches!(e.status, Status::Submitted | Status::Processing))
                .filter_map(|(e, it)| Some((it.id.clone(), e.submitted_at?)))
                .collect(),
        });
        self.resume();
        if self.recovering == 0 {
            self.start_submitter();
        }
        self.verify_downloaded();
        let mut interrupted = false;
        while !self.is_done() {
            let next_due = self.heap.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                biased;
                _ = self.interrupt.stopped() => {
                    interrupted = true;
                    self.stop_submit.stop();
                    self.events.send(RunEvent::Interrupted);
                    break;
                }
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                _ = sleep_until_opt(next_due) => self.dispatch_due_polls(),
            }
            if self.fatal_stop
                || (self.setup_stop && self.active_submits == 0 && self.recovering == 0)
            {
                break;
            }
        }
        // Everything sent so far is committed before the outcome is reported.
        if let Err(e) = self.writer.flush().await {
            self.abort(format!("cannot write the state file: {e}"));
        }
        RunOutcome {
            counts: self.counts(),
            aborted: self.aborted.take(),
            interrupted,
            failures: std::mem::take(&mut self.failures),
            cap: self.budget.as_ref().map(|b| CapOutcome {
                max_units: b.limit(),
                committed_units: b.committed(),
                held_over_cap: self.held[0],
                held_unpriced: self.held[1],
            }),
            at_start,
            requests: self.requests.snapshot(),
        }
    }

    fn is_done(&self) -> bool {
        self.submitter_done
            && self.recovering == 0
            && self.active_submits == 0
            && self.in_flight_entries == 0
            && self.active_polls == 0
            && self.active_downloads == 0
    }

    fn counts(&self) -> BTreeMap<Status, u64> {
        let mut c = BTreeMap::new();
        for e in &self.entries {
            *c.entry(e.status).or_insert(0) += 1;
        }
        c
    }

    // ---- start / resume -------------------------------------------------

    fn resume(&mut self) {
        let now = Instant::now();
        for idx in 0..self.entries.len() {
            match self.entries[idx].status {
                Status::Submitting => {
                    // A crash between intent and answer: settle before creating anything.
                    self.entries[idx].holds_slot = true;
                    self.recovering += 1;
                    let sub = self.submitter.clone();
                    let (kind, attempt) = (self.items[idx].kind, self.entries[idx].attempt);
                    let ext = match self.entries[idx].pending_key.take() {
                        Some(key) => key.into_string(),
                        None => ids::external_task_id(&self.batch_id, &self.items[idx].id, attempt),
                    };
                    let tx = self.tx.clone();
                    // A rebuilt state settles every item: a bounded number at
                    // a time, at the polling pace, not 100,000 requests at once.
                    let (slots, rate) = (self.poll_slots.clone(), self.poll_rate.clone());
                    tokio::spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        rate.until_ready().await;
                        let settled = sub.settle(kind, &ext).await;
                        let _ = tx.send(Msg::Recovered(idx, settled));
                    });
                }
                Status::Submitted | Status::Processing | Status::TimedOut
                    if !self.entries[idx]
                        .task_id
                        .as_deref()
                        .is_some_and(crate::provider::usable_task_id) =>
                {
                    // A poisoned id from an earlier build (or a hand-edited
                    // state): fail this item, never the batch. It was
                    // counted against the bound at start: give that back.
                    self.entries[idx].holds_slot = true;
                    self.release(idx);
                    self.fail(
                        idx,
                        None,
                        "the recorded task id is unusable (empty, too long or not printable); the task cannot be polled".into(),
                        None,
                    );
                }
                Status::Submitted | Status::Processing | Status::TimedOut => {
                    // Created earlier: poll it (a timed-out task gets a fresh deadline).
                    let e = &mut self.entries[idx];
                    e.holds_slot = true;
                    if e.status == Status::TimedOut {
                        self.transition(idx, Status::Submitted);
                        self.write(Update::Status {
                            id: self.items[idx].id.clone(),
                            status: Status::Submitted,
                        });
                    }
                    self.track_in_flight(idx, now);
                    self.schedule_poll(idx, now);
                }
                Status::Succeeded => self.start_downloads(idx),
                // Checked after the submitter starts: stat-ing many files
                // should not delay the first request.
                Status::Downloaded => self.to_verify.push(idx),
                Status::Failed if self.cfg.retry_failed => {
                    let e = &mut self.entries[idx];
                    e.attempt += 1;
                    e.task_id = None;
                    e.videos.clear();
                    let attempt = e.attempt;
                    self.write(Update::Retry {
                        id: self.items[idx].id.clone(),
                        attempt,
                    });
                    self.transition(idx, Status::Pending);
                }
                Status::Pending | Status::Failed => {}
            }
        }
    }

    /// Downloaded items whose files are gone or changed size are fetched again
    /// (from a fresh URL if needed) — never created again.
    fn verify_downloaded(&mut self) {
        for idx in std::mem::take(&mut self.to_verify) {
            let gone = self.files_gone(idx);
            if gone.is_empty() {
                // Done and verified: the store keeps its video records.
                self.entries[idx].videos = Vec::new();
            } else {
                // The state forgets the file before anything relies on it: a
                // run that cannot download it again leaves it `succeeded`.
                let id = self.items[idx].id.clone();
                for n in gone {
                    self.write(Update::VideoGone { id: id.clone(), n });
                }
                self.transition(idx, Status::Succeeded);
                self.start_downloads(idx);
            }
        }
    }

    /// The recorded videos of a downloaded item that are not on disk with
    /// their recorded size (cleared in memory too).
    fn files_gone(&mut self, idx: usize) -> Vec<u32> {
        let mut gone = Vec::new();
        for v in &mut self.entries[idx].videos {
            let ok = match (&v.path, v.bytes) {
                (Some(p), Some(b)) => {
                    let path = self.batch_dir.join(p);
                    std::fs::metadata(&path)
                        .map(|m| m.is_file() && m.len() == b)
                        .unwrap_or(false)
                        // An error page an older build saved as .mp4 has a
                        // size too; its first bytes give it away.
                        && crate::download::looks_like_video(&path)
                }
                _ => false,
            };
            if !ok {
                v.path = None;
                v.bytes = None;
                v.sha256 = None;
                gone.push(v.n);
            }
        }
        if self.entries[idx].videos.is_empty() {
            // Downloaded with no video record at all: nothing proves a file.
            gone.push(1);
        }
        gone
    }

    fn start_submitter(&mut self) {
        if self.submitter_started {
            return;
        }
        self.submitter_started = true;
        let order: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].status == Status::Pending)
            .collect();
        let attempts: Vec<u32> = order.iter().map(|&i| self.entries[i].attempt).collect();
        let sub = self.submitter.clone();
        let items = self.items.clone();
        let batch_id = self.batch_id.clone();
        let rate = limiter(self.cfg.submit_rate.per_second);
        let tx = self.tx.clone();
        let (budget, estimates) = (self.budget.clone(), self.estimates.clone());
        tokio::spawn(async move {
            for (&idx, &attempt) in order.iter().zip(&attempts) {
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

    // ---- messages -------------------------------------------------------

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::SubmitStarted(idx) => {
                self.active_submits += 1;
                self.entries[idx].holds_slot = true;
                self.transition(idx, Status::Submitting);
            }
            Msg::Submitted(idx, outcome) => {
                self.active_submits -= 1;
                self.on_submitted(idx, outcome);
            }
            Msg::SubmitterDone => self.submitter_done = true,
            Msg::Held(idx, held) => {
                let (slot, why) = match held {
                    Held::OverCap => (
                        0,
                        "not submitted: its estimated units would take the batch past --max-units",
                    ),
                    Held::Unpriced => (
                        1,
                        "not submitted: no price is known for it, so --max-units cannot be kept",
                    ),
                };
                self.held[slot] += 1;
                let id = self.items[idx].id.clone();
                self.write(Update::Note {
                    id,
                    code: None,
                    message: why.into(),
                    request_id: None,
                });
            }
            Msg::Recovered(idx, settled) => {
                self.recovering -= 1;
                self.on_recovered(idx, settled);
                if self.recovering == 0 && !self.stop_submit.is_stopped() {
                    self.start_submitter();
                } else if self.recovering == 0 {
                    self.submitter_done = true;
                }
            }
            Msg::Polled(idx, result) => {
                self.active_polls -= 1;
                self.entries[idx].busy = false;
                match result {
                    Ok(snap) => {
                        self.submitter.setup.answered();
                        self.on_snapshot(idx, snap)
                    }
                    Err(e) => self.on_poll_error(idx, e),
                }
            }
            Msg::Listed {
                kind,
                found,
                missing,
                error,
            } => {
                self.active_polls -= 1;
                self.sweep_running[kind_index(kind)] = false;
                let now = Instant::now();
                // A list that never shows our tasks (a gateway that lists
                // something else, or nothing) is given up after a few tries.
                if found.is_empty() && !missing.is_empty() {
                    self.fruitless_sweeps += 1;
                    if self.fruitless_sweeps >= MAX_FRUITLESS_SWEEPS {
                        self.give_up_sweeps("it never lists our tasks");
                    }
                } else if !found.is_empty() {
                    self.fruitless_sweeps = 0;
                }
                for (idx, snap) in found {
                    self.entries[idx].busy = false;
                    self.on_snapshot(idx, snap);
                }
                for idx in missing {
                    let e = &mut self.entries[idx];
                    e.busy = false;
                    e.list_missed = true;
                    if e.status.is_in_flight() {
                        self.schedule_at(idx, now);
                    }
                }
                if let Some(e) = error {
                    self.on_sweep_error(e);
                }
            }
            Msg::Refreshed(idx, result) => {
                self.active_polls -= 1;
                self.entries[idx].busy = false;
                self.on_refreshed(idx, result);
            }
            Msg::Fetched { idx, n, result } => {
                self.active_downloads -= 1;
                self.downloads_running -= 1;
                self.entries[idx].downloading -= 1;
                self.on_fetched(idx, n, result);
                self.pump_downloads();
            }
        }
    }

    fn on_submitted(&mut self, idx: usize, outcome: SubmitOutcome) {
        let id = self.items[idx].id.clone();
        match outcome {
            SubmitOutcome::Created {
                task_id,
                request_id,
                snapshot,
            } => {
                self.write(Update::Created {
                    id,
                    task_id: task_id.clone(),
                    request_id,
                    at: now_ms(),
                });
                self.entries[idx].task_id = Some(task_id);
                self.transition(idx, Status::Submitted);
                let now = Instant::now();
                self.track_in_flight(idx, now);
                match snapshot {
                    // Found after an ambiguous create: it may have moved on already.
                    Some(snap) if snap.status != RemoteStatus::Submitted => {
                        self.on_snapshot(idx, snap)
                    }
                    _ => self.schedule_poll(idx, now),
                }
            }
            SubmitOutcome::NotCreated(e) => {
                self.release(idx);
                give_back(&self.budget, &self.estimates, idx);
                self.write(Update::NotCreated {
                    id,
                    code: e.code,
                    message: format!("not submitted: {}", e.message),
                    request_id: e.request_id.clone(),
                });
                self.entries[idx].last_error = Some((e.code, e.message));
                self.transition(idx, Status::Pending);
            }
            SubmitOutcome::Unsettled(e) => {
                // Left `submitting` on disk: the next run settles it first.
                self.release(idx);
                self.entries[idx].last_error =
                    Some((e.code, format!("create outcome unknown: {}", e.message)));
            }
            SubmitOutcome::Rejected(e) => {
                self.release(idx);
                give_back(&self.budget, &self.estimates, idx);
                self.fail(idx, e.code, e.message, e.request_id);
            }
            SubmitOutcome::Fatal(e) => {
                self.release(idx);
                give_back(&self.budget, &self.estimates, idx);
                self.write(Update::NotCreated {
                    id,
                    code: e.code,
                    message: e.message.clone(),
                    request_id: e.request_id.clone(),
                });
                self.transition(idx, Status::Pending);
                self.abort(fatal_message(&e));
                if matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
                    // Polls go to the same broken address: end the run once
                    // the creates in the air have come back (as pending).
                    self.setup_stop = true;
                }
            }
            SubmitOutcome::StateFailed(message) => {
                self.release(idx);
                give_back(&self.budget, &self.estimates, idx);
                self.transition(idx, Status::Pending);
                self.abort(format!("cannot write the state file: {message}"));
                self.fatal_stop = true;
            }
        }
    }

    fn on_recovered(&mut self, idx: usize, settled: Settled) {
        let id = self.items[idx].id.clone();
        match settled {
            Settled::Found(snap) => {
                self.on_submitted(
                    idx,
                    SubmitOutcome::Created {
                        task_id: snap.task_id.clone(),
                        request_id: snap.request_id.clone(),
                        snapshot: Some(snap),
                    },
                );
            }
            Settled::Absent => {
                self.release(idx);
                self.write(Update::NotCreated {
                    id,
                    code: None,
                    message: "earlier create was not made; resubmitting".into(),
                    request_id: None,
                });
                self.transition(idx, Status::Pending);
            }
            Settled::Unknown(e) => {
                self.release(idx);
                self.entries[idx].last_error =
                    Some((e.code, format!("create outcome unknown: {}", e.message)));
            }
            Settled::Fatal(e) => {
                // Still `submitting` on disk: the next run settles it first.
                self.release(idx);
                self.abort(fatal_message(&e));
                if matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
                    self.setup_stop = true;
                }
            }
        }
    }

    fn on_snapshot(&mut self, idx: usize, snap: TaskSnapshot) {
        let now = Instant::now();
        let id = self.items[idx].id.clone();
        self.entries[idx].poll_errors = 0;
        if !self.entries[idx].status.is_in_flight() {
            return; // already settled (e.g. timed out while the answer was in the air)
        }
        match snap.status {
            RemoteStatus::Submitted | RemoteStatus::Processing => {
                let to = if snap.status == RemoteStatus::Processing {
                    Status::Processing
                } else {
                    Status::Submitted
                };
                if self.entries[idx].status != to {
                    self.write(Update::Status {
                        id: id.clone(),
                        status: to,
                    });
                    self.transition(idx, to);
                }
                if self.entries[idx].deadline.is_some_and(|d| now >= d) {
                    self.time_out(idx);
                } else {
                    self.schedule_poll(idx, now);
                }
            }
            RemoteStatus::Succeeded { videos, units } => {
                self.release(idx);
                self.in_flight_done(idx);
                if let (Some(b), Some(est), Some(charged)) = (
                    &self.budget,
                    self.estimates.get(idx).copied().flatten(),
                    units.as_deref().and_then(|u| u.trim().parse::<f64>().ok()),
                ) {
                    b.settle(est, charged);
                }
                if videos.is_empty() {
                    self.fail(
                        idx,
                        None,
                        "task succeeded but returned no video".into(),
                        snap.request_id,
                    );
                    return;
                }
                let records: Vec<VideoRecord> = videos
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| VideoRecord {
                        n: i as u32 + 1,
                        video_id: Some(v.id),
                        url: Some(v.url),
                        duration: v.duration,
                        ..VideoRecord::default()
                    })
                    .collect();
                self.write(Update::Succeeded {
                    id,
                    units,
                    videos: records.clone(),
                    at: now_ms(),
                });
                self.entries[idx].videos = records;
                self.transition(idx, Status::Succeeded);
                self.start_downloads(idx);
            }
            RemoteStatus::Failed { message } => {
                self.release(idx);
                self.in_flight_done(idx);
                self.fail(idx, None, message, snap.request_id);
            }
        }
    }

    fn on_poll_error(&mut self, idx: usize, e: ProviderError) {
        if self.submitter.setup.observe(Some(e.class)) {
            // Tasks in flight stay as they are on disk; the fixed rerun polls them.
            self.abort(fatal_message(&e));
            self.setup_stop = true;
            return;
        }
        match e.class {
            ErrorClass::AuthExpired | ErrorClass::BatchFatal => {
                self.abort(fatal_message(&e));
                self.fatal_stop = true;
            }
            _ => {
                let entry = &mut self.entries[idx];
                entry.poll_errors += 1;
                let errors = entry.poll_errors;
                if errors >= MAX_POLL_ERRORS && e.class == ErrorClass::ItemInvalid {
                    // The provider keeps saying the task does not exist.
                    self.release(idx);
                    self.in_flight_done(idx);
                    self.fail(
                        idx,
                        e.code,
                        format!("task can no longer be queried: {}", e.message),
                        e.request_id,
                    );
                    return;
                }
                let now = Instant::now();
                if self.entries[idx].deadline.is_some_and(|d| now >= d) {
                    self.time_out(idx);
                    return;
                }
                let d = backoff::delay(self.cfg.poll_interval, errors.min(6), e.retry_after);
                self.schedule_at(idx, now + d);
            }
        }
    }

    fn on_sweep_error(&mut self, e: ProviderError) {
        if matches!(e.class, ErrorClass::AuthExpired | ErrorClass::BatchFatal) {
            self.abort(fatal_message(&e));
            self.fatal_stop = true;
        } else if matches!(e.class, ErrorClass::ItemInvalid | ErrorClass::Setup) {
            // 404/1202 and the like: this server has no list endpoint.
            self.give_up_sweeps(&e.to_string());
        }
        // Otherwise the tasks it missed are queried one by one.
    }

    fn give_up_sweeps(&mut self, why: &str) {
        if !self.sweeps_disabled {
            tracing::debug!("list polling disabled for this run: {why}");
            self.sweeps_disabled = true;
        }
    }

    fn on_refreshed(&mut self, idx: usize, result: Result<TaskSnapshot, ProviderError>) {
        let id = self.items[idx].id.clone();
        match result {
            Ok(TaskSnapshot {
                status: RemoteStatus::Succeeded { videos, .. },
                ..
            }) => {
                for (i, v) in videos.into_iter().enumerate() {
                    let n = i as u32 + 1;
                    if let Some(rec) = self.entries[idx].videos.iter_mut().find(|r| r.n == n) {
                        rec.url = Some(v.url.clone());
                        self.write(Update::VideoUrl {
                            id: id.clone(),
                            n,
                            url: v.url,
                        });
                    }
                }
                self.start_downloads(idx);
            }
            Ok(other) => self.warn(
                idx,
                None,
                format!("task no longer reports a video (status {:?})", other.status),
            ),
            Err(e) => self.warn(
                idx,
                e.code,
                format!("could not refresh the video URL: {}", e.message),
            ),
        }
    }

    fn on_fetched(&mut self, idx: usize, n: u32, result: Result<Downloaded, DownloadError>) {
        let id = self.items[idx].id.clone();
        match result {
            Ok(d) => {
                let path = video_rel_path(&id, n, self.entries[idx].videos.len());
                if let Some(v) = self.entries[idx].videos.iter_mut().find(|v| v.n == n) {
                    v.path = Some(path.clone());
                    v.bytes = Some(d.bytes);
                    v.sha256 = Some(d.sha256.clone());
                }
                self.write(Update::Downloaded {
                    id: id.clone(),
                    n,
                    path,
                    bytes: d.bytes,
                    sha256: d.sha256,
                });
            }
            Err(DownloadError::Expired { status }) => {
                if self.entries[idx].refreshes < MAX_URL_REFRESHES {
                    self.entries[idx].needs_refresh = true;
                } else {
                    self.warn(
                        idx,
                        None,
                        format!("video URL keeps failing (HTTP {status}); rerun to try again"),
                    );
                }
            }
            // An error page served as 200 is often an expired or hotlink-
            // protected URL: one fresh URL per run, then the item keeps the error.
            Err(DownloadError::NotAVideo { .. }) if self.entries[idx].refreshes == 0 => {
                self.entries[idx].needs_refresh = true;
            }
            Err(e @ (DownloadError::NotAVideo { .. } | DownloadError::TooLarge { .. })) => {
                self.warn(idx, None, format!("download refused: {e}"))
            }
            Err(DownloadError::Io { path, source })
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                // Every further video would fail the same way, and every
                // further create would pay for one: stop submitting.
                self.warn(
                    idx,
                    None,
                    format!("download failed: the disk is full ({})", path.display()),
                );
                self.abort(format!(
                    "the disk holding {} is full: free some space, then run the same command again (finished tasks are downloaded then, nothing is created again)",
                    self.batch_dir.display()
                ));
                self.setup_stop = true;
            }
            Err(e) => self.warn(
                idx,
                None,
                format!("download failed: {e}; rerun to resume it"),
            ),
        }
        let entry = &mut self.entries[idx];
        if entry.downloading > 0 {
            return;
        }
        if entry.needs_refresh {
            entry.needs_refresh = false;
            entry.refreshes += 1;
            self.refresh(idx);
        } else if entry.videos.iter().all(|v| v.sha256.is_some())
            && entry.status == Status::Succeeded
        {
            self.write(Update::Status {
                id,
                status: Status::Downloaded,
            });
            self.transition(idx, Status::Downloaded);
            // The store has them; a finished item keeps no URLs in memory.
            self.entries[idx].videos = Vec::new();
        }
    }

    // ---- polling --------------------------------------------------------

    fn track_in_flight(&mut self, idx: usize, now: Instant) {
        if self.entries[idx].deadline.is_none() {
            self.in_flight_entries += 1;
            self.in_flight_by_kind[kind_index(self.items[idx].kind)] += 1;
            self.in_flight_idx.insert(idx);
        }
        self.entries[idx].deadline = Some(now + self.cfg.task_timeout);
    }

    fn in_flight_done(&mut self, idx: usize) {
        if self.entries[idx].deadline.take().is_some() {
            self.in_flight_entries -= 1;
            self.in_flight_by_kind[kind_index(self.items[idx].kind)] -= 1;
            self.in_flight_idx.remove(&idx);
        }
    }

    /// Next poll: the poll interval, stretched by a quarter per poll already
    /// made (long tasks are asked less often), up to the maximum.
    fn schedule_poll(&mut self, idx: usize, now: Instant) {
        let polls = self.entries[idx].polls;
        let stretch = 1.0 + polls as f64 / 4.0;
        let d = self
            .cfg
            .poll_interval
            .mul_f64(stretch)
            .min(self.cfg.max_poll_interval);
        self.entries[idx].polls += 1;
        self.schedule_at(idx, now + d);
    }

    fn schedule_at(&mut self, idx: usize, at: Instant) {
        self.entries[idx].next_poll = Some(at);
        self.heap.push(Reverse((at, idx)));
    }

    /// Poll what is due. A kind with at least `list_threshold` tasks in flight
    /// is polled by list sweeps — at most one per poll interval, each covering
    /// every in-flight task of that kind — instead of one query per task.
    fn dispatch_due_polls(&mut self) {
        let now = Instant::now();
        let mut due: Vec<usize> = Vec::new();
        while let Some(Reverse((t, idx))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            let e = &self.entries[idx];
            // Stale heap entries (rescheduled or settled since) are skipped.
            if e.next_poll != Some(t) || e.busy || !e.status.is_in_flight() {
                continue;
            }
            due.push(idx);
        }
        let mut sweep_now = [false; 2];
        for idx in due {
            let k = kind_index(self.items[idx].kind);
            if self.entries[idx].list_missed
                || self.sweeps_disabled
                || self.in_flight_by_kind[k] < self.cfg.list_threshold
            {
                self.entries[idx].list_missed = false;
                self.query(idx);
                continue;
            }
            match self.next_sweep[k] {
                _ if self.sweep_running[k] => self.schedule_at(idx, now + self.cfg.poll_interval),
                Some(at) if at > now => self.schedule_at(idx, at),
                _ => sweep_now[k] = true,
            }
        }
        for kind in [Kind::Text2Video, Kind::Image2Video] {
            if sweep_now[kind_index(kind)] {
                self.sweep(kind, now);
            }
        }
    }

    fn query(&mut self, idx: usize) {
        let Some(task_id) = self.entries[idx].task_id.clone() else {
            return;
        };
        self.entries[idx].busy = true;
        self.active_polls += 1;
        let (provider, rate, slots, tx) = (
            self.provider.clone(),
            self.poll_rate.clone(),
            self.poll_slots.clone(),
            self.tx.clone(),
        );
        let kind = self.items[idx].kind;
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(kind, &task_id).await;
            let _ = tx.send(Msg::Polled(idx, result));
        });
    }

    fn refresh(&mut self, idx: usize) {
        let Some(task_id) = self.entries[idx].task_id.clone() else {
            return;
        };
        self.entries[idx].busy = true;
        self.active_polls += 1;
        let (provider, rate, tx) = (
            self.provider.clone(),
            self.poll_rate.clone(),
            self.tx.clone(),
        );
        let kind = self.items[idx].kind;
        let requests = self.requests.clone();
        tokio::spawn(async move {
            rate.until_ready().await;
            requests.count(Request::Query);
            let result = provider.query(kind, &task_id).await;
            let _ = tx.send(Msg::Refreshed(idx, result));
        });
    }

    /// One list sweep covers every in-flight task of `kind`: page through the
    /// newest tasks until all of ours are seen (or the pages run out).
    fn sweep(&mut self, kind: Kind, now: Instant) {
        let k = kind_index(kind);
        self.sweep_running[k] = true;
        self.next_sweep[k] = Some(now + self.cfg.poll_interval);
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for &idx in &self.in_flight_idx {
            let e = &mut self.entries[idx];
            if self.items[idx].kind == kind && e.status.is_in_flight() && !e.busy && !e.list_missed
            {
                if let Some(t) = &e.task_id {
                    wanted.insert(t.clone(), idx);
                    e.busy = true;
                }
            }
        }
        for &idx in wanted.values() {
            self.entries[idx].polls += 1;
            self.entries[idx].next_poll = None;
        }
        self.active_polls += 1;
        let (provider, rate, tx) = (
            self.provider.clone(),
            self.poll_rate.clone(),
            self.tx.clone(),
        );
        // Allow for tasks of ours that finished recently and others' tasks.
        let max_pages = (wanted.len() as u32 / LIST_PAGE_SIZE + 3).min(1000);
        let requests = self.requests.clone();
        tokio::spawn(async move {
            let mut found = Vec::new();
            let mut error = None;
            for page in 1..=max_pages {
                rate.until_ready().await;
                requests.count(Request::List);
                match provider.list(kind, page, LIST_PAGE_SIZE).await {
                    Ok(tasks) => {
                        let short = (tasks.len() as u32) < LIST_PAGE_SIZE;
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
                kind,
                found,
                missing,
                error,
            });
        });
    }

    fn time_out(&mut self, idx: usize) {
        self.release(idx);
        self.in_flight_done(idx);
        let id = self.items[idx].id.clone();
        let message = format!(
            "still unfinished after {}; rerun to keep polling it",
            humantime::format_duration(self.cfg.task_timeout)
        );
        self.write(Update::Note {
            id: id.clone(),
            code: None,
            message: message.clone(),
            request_id: None,
        });
        self.write(Update::Status {
            id: id.clone(),
            status: Status::TimedOut,
        });
        self.transition(idx, Status::TimedOut);
        self.failures.push(Failure {
            id,
            status: Status::TimedOut,
            code: None,
            message,
        });
    }

    // ---- downloads ------------------------------------------------------

    /// Queue the item's missing videos. They wait here, as two integers
    /// each, rather than as parked tasks: a fast provider can finish tasks far
    /// quicker than the download pool drains them.
    fn start_downloads(&mut self, idx: usize) {
        let id = self.items[idx].id.clone();
        let mut queued = 0;
        for v in &self.entries[idx].videos {
            if v.sha256.is_none() && v.url.is_some() {
                self.download_queue.push_back((idx, v.n));
                queued += 1;
            }
        }
        self.active_downloads += queued;
        self.entries[idx].downloading += queued;
        let e = &self.entries[idx];
        if queued == 0
            && !e.videos.is_empty()
            && e.videos.iter().all(|v| v.sha256.is_some())
            && e.status == Status::Succeeded
        {
            self.write(Update::Status {
                id,
                status: Status::Downloaded,
            });
            self.transition(idx, Status::Downloaded);
        }
        self.pump_downloads();
    }

    /// Start queued downloads while the pool has room.
    fn pump_downloads(&mut self) {
        while self.downloads_running < self.cfg.download_concurrency.max(1) {
            let Some((idx, n)) = self.download_queue.pop_front() else {
                break;
            };
            let count = self.entries[idx].videos.len();
            let url = self.entries[idx]
                .videos
                .iter()
                .find(|v| v.n == n)
                .and_then(|v| v.url.clone());
            let Some(url) = url else {
                // Cannot happen (only videos with a URL are queued); keep the books straight.
                self.active_downloads -= 1;
                self.entries[idx].downloading -= 1;
                continue;
            };
            let dest = self
                .batch_dir
                .join(video_rel_path(&self.items[idx].id, n, count));
            let (downloader, tx) = (self.downloader.clone(), self.tx.clone());
            self.downloads_running += 1;
            self.requests.count(Request::Download);
            tokio::spawn(async move {
                let result = downloader.fetch(&url, &dest).await;
                let _ = tx.send(Msg::Fetched { idx, n, result });
            });
        }
    }

    // ---- helpers --------------------------------------------------------

    fn release(&mut self, idx: usize) {
        if std::mem::take(&mut self.entries[idx].holds_slot) {
            self.limit.release();
        }
    }

    fn fail(&mut self, idx: usize, code: Option<i64>, message: String, request_id: Option<String>) {
        let id = self.items[idx].id.clone();
        self.write(Update::Failed {
            id: id.clone(),
            code,
            message: message.clone(),
            request_id,
            at: now_ms(),
        });
        self.transition(idx, Status::Failed);
        self.events.send(RunEvent::ItemFailed {
            id: id.clone(),
            code,
            message: message.clone(),
        });
        self.failures.push(Failure {
            id,
            status: Status::Failed,
            code,
            message,
        });
    }

    fn warn(&mut self, idx: usize, code: Option<i64>, message: String) {
        let id = self.items[idx].id.clone();
        self.write(Update::Note {
            id: id.clone(),
            code,
            message: message.clone(),
            request_id: None,
        });
        self.events.send(RunEvent::ItemWarning {
            id: id.clone(),
            message: message.clone(),
        });
        self.failures.push(Failure {
            id,
            status: self.entries[idx].status,
            code,
            message,
        });
    }

    fn abort(&mut self, reason: String) {
        if self.aborted.is_none() {
            self.events.send(RunEvent::Aborting {
                reason: reason.clone(),
            });
            self.aborted = Some(reason);
        }
        self.stop_submit.stop();
        if !self.submitter_started {
            self.submitter_started = true;
            self.submitter_done = true;
        }
    }

    fn write(&mut self, update: Update) {
        if let Err(e) = self.writer.send(update) {
            self.abort(format!("cannot write the state file: {e}"));
            self.fatal_stop = true;
        }
    }

    fn transition(&mut self, idx: usize, to: Status) {
        let from = self.entries[idx].status;
        if from != to {
            self.entries[idx].status = to;
            self.events.send(RunEvent::Transition {
                id: self.items[idx].id.clone(),
                from,
                to,
            });
        }
    }
}

/// A reservation whose create did not happen is free again.
fn give_back(budget: &Option<Arc<Budget>>, estimates: &[Option<f64>], idx: usize) {
    if let (Some(b), Some(est)) = (budget, estimates.get(idx).copied().flatten()) {
        b.give_back(est);
    }
}

/// What a batch-fatal error tells the user to fix.
fn fatal_message(e: &ProviderError) -> String {
    if matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
        return format!("{e} — {}", setup::hint(e.class));
    }
    let hint = match e.code {
        Some(1000..=1004) => {
            "check KLING_ACCESS_KEY / KLING_SECRET_KEY (or KLING_API_KEY) and the system clock"
        }
        Some(1100) => "the account has a problem; contact Kling support",
        Some(1101) => "the account is in arrears; top up",
        Some(1102) => "the resource pack is used up or expired; buy units, then rerun to continue",
        Some(1304) => "this IP is not on the account's whitelist",
        _ => "fix the cause, then rerun the same command to continue",
    };
    format!("{e} — {hint}")
}

/// `videos/<id>.mp4`, or `videos/<id>.videos/<n>.mp4` when a task made
/// several videos. No two items can collide: single videos are files ending
/// in `.mp4`, several are folders ending in `.videos`, and both map ids one
/// to one (`<id>-1.mp4` would be the file of an item called `<id>-1`). Ids
/// are validated as file names (in bytes, leaving room for these suffixes);
/// anything else is replaced here too, so no id can write outside the output
/// folder.
pub fn video_rel_path(id: &str, n: u32, count: usize) -> String {
    let mut safe: String = id
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert(0, '_');
    }
    if count > 1 {
        format!("videos/{safe}.videos/{n}.mp4")
    } else {
        format!("videos/{safe}.mp4")
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Text2Video => 0,
        Kind::Image2Video => 1,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
