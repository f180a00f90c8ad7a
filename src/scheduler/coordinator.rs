//! The coordinator: the one task that owns every item's state and applies
//! every worker's answer.
//!
//! It runs the loop (interrupt, worker messages, due polls) and hands each
//! answer to its handler: what a create, a poll or a download's outcome does
//! is in [`created`], [`polled`] and [`fetched`], as functions over the
//! [`Ledger`] (the entries and the steps that record them) and the queue they
//! touch. What to poll when is the [`PollQueue`]'s, what to download next the
//! [`DownloadQueue`]'s, what a resume does first [`recover`]'s, and sending
//! requests the [`Workers`]'; the coordinator counts the work outstanding and
//! decides when the run ends.

mod requests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};

use super::budget::{Budget, Held};
use super::counts::RequestCounts;
use super::fetch::DownloadQueue;
use super::ids;
use super::items::Items;
use super::ledger::Ledger;
use super::limit::{Gate, Stop};
use super::poll::PollQueue;
use super::pool::Pool;
use super::recover::{self, Step};
use super::submit::{Settled, SubmitOutcome};
use super::workers::{Gone, Msg, Route, SubmitPlan, Workers, limiter};
use super::{CapOutcome, EngineInput, RunOutcome};
use super::{created, fetched, polled};
use crate::events::RunEvent;
use crate::job::JobSource;
use crate::provider::{Callback, Provider, TaskSnapshot};
use crate::settings::EngineSettings;
use crate::state::{Status, Update};

/// Concurrent status requests.
const POLL_CONCURRENCY: usize = 32;

/// Videos that may wait for their downloads before new creates wait too
/// (at least; twice the in-flight bound when that is more).
const MIN_BACKLOG: usize = 256;

pub(super) struct Coordinator<P> {
    ledger: Ledger,
    polls: PollQueue<Route>,
    downloads: DownloadQueue,
    workers: Workers<P>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Tasks the provider called back about (`None`: no callbacks).
    callbacks: Option<mpsc::Receiver<Callback>>,
    batch_id: String,
    batch_dir: PathBuf,
    /// Sum of the accounts' in-flight bounds.
    total_concurrency: usize,
    cfg: EngineSettings,
    interrupt: Arc<Stop>,
    // Work outstanding; the run ends when all are zero and submitting is done.
    recovering: usize,
    active_submits: usize,
    active_polls: usize,
    /// Downloaded items whose files are checked once the run has started.
    to_verify: Vec<usize>,
    /// The files of downloaded items are being checked.
    verifying: bool,
    budget: Option<Arc<Budget>>,
    estimates: Arc<Vec<Option<f64>>>,
    /// What each create sends, read when it is sent.
    jobs: Arc<dyn JobSource>,
    /// Creates wait here while more than `backlog_allowance` videos wait
    /// for (or are in) their downloads.
    backlog: Arc<Gate>,
    backlog_allowance: usize,
    /// Items held back by the spend cap: over it, and unpriced.
    held: [u64; 2],
}

impl<P: Provider> Coordinator<P> {
    /// The coordinator of `input`, or the outcome of a run that cannot
    /// start (tasks of an account the run was not given).
    pub(super) fn new(input: EngineInput<P>) -> Result<Self, Box<RunOutcome>> {
        let estimates: Arc<Vec<Option<f64>>> = Arc::new(match input.max_units {
            Some(_) => input.records.iter().map(|r| r.est_units).collect(),
            None => Vec::new(),
        });
        let names: Vec<Option<String>> = input.accounts.iter().map(|a| a.name.clone()).collect();
        let items = Arc::new(Items::of(&input.records));
        let loaded = recover::load(input.records, &estimates, &names);
        if input.accounts.is_empty() || !loaded.missing_accounts.is_empty() {
            return Err(Box::new(super::pool::cannot_start(
                &loaded.entries,
                &loaded.missing_accounts,
            )));
        }
        let cfg = input.settings;
        let budget = input
            .max_units
            .map(|max| Arc::new(Budget::new(max, loaded.already_spent)));
        let stop_submit = Arc::new(Stop::default());
        let requests = Arc::new(RequestCounts::default());
        let (pool, ledgers) = Pool::build(
            input.accounts,
            &loaded.holding_slots,
            &input.writer,
            &input.events,
            &requests,
            cfg.retry_base,
        );
        let total_concurrency = pool.total_concurrency;
        let page_size = pool.accounts[0].provider.capabilities().list_page_size;
        // Polls have their own budget so they never eat into submissions: enough
        // for every in-flight task to be asked twice per poll interval.
        let poll_per_sec =
            (2.0 * total_concurrency as f64 / cfg.poll_interval.as_secs_f64()).clamp(20.0, 2000.0);
        let (tx, rx) = mpsc::unbounded_channel();
        let n = loaded.entries.len();
        let mut polls = PollQueue::new(
            cfg.poll_interval,
            cfg.max_poll_interval,
            cfg.list_threshold,
            page_size,
        );
        if input.callbacks.is_some() {
            let provider = pool.accounts[0].provider.clone();
            polls.index_tasks(Arc::new(move |task_id| provider.callback_key(task_id)));
        }
        Ok(Coordinator {
            ledger: Ledger::new(
                items,
                loaded.entries,
                input.writer,
                input.events,
                stop_submit,
                ledgers,
            ),
            polls,
            downloads: DownloadQueue::new(n, cfg.download_pool),
            workers: Workers {
                downloader: input.downloader,
                pool: Arc::new(pool),
                rate: limiter(poll_per_sec),
                slots: Arc::new(Semaphore::new(POLL_CONCURRENCY)),
                requests,
                tx,
            },
            rx,
            callbacks: input.callbacks,
            batch_id: input.batch_id,
            batch_dir: input.batch_dir,
            total_concurrency,
            cfg,
            interrupt: input.interrupt,
            recovering: 0,
            active_submits: 0,
            active_polls: 0,
            to_verify: Vec::new(),
            verifying: false,
            budget,
            estimates,
            jobs: input.jobs,
            backlog: Arc::new(Gate::default()),
            backlog_allowance: (2 * total_concurrency).max(MIN_BACKLOG),
            held: [0; 2],
        })
    }

    pub(super) async fn run(mut self) -> RunOutcome {
        let at_start = self.ledger.counts();
        self.ledger.events.send(RunEvent::Started {
            total: self.ledger.entries.len() as u64,
            counts: at_start.clone().into_iter().collect(),
            batch_dir: self.batch_dir.clone(),
            concurrency: self.total_concurrency,
            concurrency_auto: self.ledger.accounts.iter().any(|a| a.auto),
            in_flight_since: (self.ledger.entries.iter().zip(self.ledger.items.ids()))
                .filter(|(e, _)| matches!(e.status, Status::Submitted | Status::Processing))
                .filter_map(|(e, id)| Some((id.to_string(), e.submitted_at()?)))
                .collect(),
        });
        self.resume();
        if self.recovering == 0 {
            self.start_submitter();
        }
        self.verify_downloaded();
        let mut interrupted = false;
        while !self.is_done() {
            let next_due = self.polls.next_due();
            tokio::select! {
                biased;
                _ = self.interrupt.stopped() => {
                    interrupted = true;
                    self.ledger.stop_submitting();
                    self.ledger.events.send(RunEvent::Interrupted);
                    break;
                }
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                _ = sleep_until_opt(next_due) => self.dispatch_due_polls(),
                callback = next_callback(&mut self.callbacks) => match callback {
                    Some(callback) => self.on_callback(callback),
                    None => self.callbacks = None, // the listener stopped
                },
            }
            self.backlog
                .hold(self.downloads.outstanding() > self.backlog_allowance);
            if self.ledger.fatal_stop
                || (self.ledger.setup_stop && self.active_submits == 0 && self.recovering == 0)
            {
                break;
            }
        }
        let (running, waiting) = (self.downloads.peak(), self.downloads.peak_waiting());
        let folder_syncs = self.workers.downloader.folder_syncs();
        tracing::debug!(
            running,
            waiting,
            folder_syncs,
            "downloads: most running and waiting at once"
        );
        // Everything sent so far is committed before the outcome is reported.
        if let Err(e) = self.ledger.writer.flush().await {
            self.ledger
                .abort(format!("cannot write the state file: {e}"));
        }
        RunOutcome {
            counts: self.ledger.counts(),
            aborted: self.ledger.aborted.take(),
            interrupted,
            failures: std::mem::take(&mut self.ledger.failures),
            cap: self.budget.as_ref().map(|b| CapOutcome {
                max_units: b.limit(),
                committed_units: b.committed(),
                held_over_cap: self.held[0],
                held_unpriced: self.held[1],
            }),
            at_start,
            requests: self.workers.requests.snapshot(),
            drained: self.ledger.drained(),
            learned: self.ledger.learned(),
        }
    }

    fn is_done(&self) -> bool {
        self.ledger.submitter_done
            && !self.verifying
            && self.recovering == 0
            && self.active_submits == 0
            && self.polls.in_flight() == 0
            && self.active_polls == 0
            && self.downloads.outstanding() == 0
    }

    // ---- start / resume -------------------------------------------------

    /// Carry out the resume plan (see [`recover::plan`]).
    fn resume(&mut self) {
        let now = Instant::now();
        let policy = recover::Policy {
            retry_failed: self.cfg.retry_failed,
            resubmit_unknown: self.cfg.resubmit_unknown,
            lookup: self.workers.pool.accounts[0].lookup,
        };
        for (idx, step) in recover::plan(&self.ledger.entries, policy) {
            match step {
                Step::Settle => {
                    self.ledger.entries[idx].holds_slot = true;
                    self.recovering += 1;
                    let e = &mut self.ledger.entries[idx];
                    let ext = match e.take_pending_key() {
                        Some(key) => key.into_string(),
                        None => ids::external_task_id(
                            &self.batch_id,
                            self.ledger.items.id(idx),
                            e.attempt,
                        ),
                    };
                    // Its key is known only to the account that sent it.
                    let accounts = if e.account_unknown {
                        (0..self.ledger.accounts.len() as u16).collect()
                    } else {
                        vec![e.account]
                    };
                    self.workers
                        .settle(idx, self.ledger.items.kind(idx), accounts, ext);
                }
                Step::Unusable => {
                    // It was counted against the bound at start: give that back.
                    self.ledger.entries[idx].holds_slot = true;
                    self.ledger.release(idx);
                    self.ledger.fail(
                        idx,
                        None,
                        "the recorded task id is unusable (empty, too long or not printable); the task cannot be polled".into(),
                        None,
                    );
                }
                Step::Poll { timed_out } => {
                    self.ledger.entries[idx].holds_slot = true;
                    if timed_out {
                        self.ledger.transition(idx, Status::Submitted);
                        self.ledger.write(Update::Status {
                            id: self.ledger.items.id(idx).to_string(),
                            status: Status::Submitted,
                        });
                    }
                    let (l, polls, cfg) = (&mut self.ledger, &mut self.polls, &self.cfg);
                    polled::track_in_flight(l, polls, cfg, idx, now, false);
                    self.polls.schedule(idx, now);
                }
                Step::Unknown => {
                    self.ledger.entries[idx].holds_slot = true;
                    self.ledger.release(idx);
                    self.ledger.mark_unknown(
                        idx,
                        "a create was sent before the last run stopped and this provider cannot look it up",
                    );
                }
                Step::Download => self.start_downloads(idx),
                Step::Verify => self.to_verify.push(idx),
                Step::Retry => {
                    let e = &mut self.ledger.entries[idx];
                    e.attempt += 1;
                    e.task_id = None;
                    e.set_videos(Vec::new());
                    let attempt = e.attempt;
                    self.ledger.write(Update::Retry {
                        id: self.ledger.items.id(idx).to_string(),
                        attempt,
                    });
                    self.ledger.transition(idx, Status::Pending);
                }
            }
        }
    }

    /// Downloaded items whose files are gone or changed size are fetched again
    /// (from a fresh URL if needed) — never created again.
    /// The check runs beside the run (the files of 100k items are not in
    /// the way of the first request); the state keeps the video records.
    fn verify_downloaded(&mut self) {
        let todo = std::mem::take(&mut self.to_verify);
        if todo.is_empty() {
            return;
        }
        self.verifying = true;
        self.workers
            .verify(todo, self.ledger.items.clone(), self.batch_dir.clone());
    }

    /// A downloaded item's files are gone: fetch them again. The state
    /// forgets the file before anything relies on it: a run that cannot
    /// download it again leaves it `succeeded`.
    fn on_files_gone(&mut self, idx: usize, found: Gone) {
        if self.ledger.entries[idx].status != Status::Downloaded {
            return;
        }
        let id = self.ledger.items.id(idx).to_string();
        for n in found.gone {
            self.ledger.write(Update::VideoGone { id: id.clone(), n });
        }
        let e = &mut self.ledger.entries[idx];
        e.set_videos(found.videos);
        e.task_id = found.task_id.map(String::into_boxed_str);
        self.ledger.transition(idx, Status::Succeeded);
        self.start_downloads(idx);
    }

    fn start_submitter(&mut self) {
        if self.ledger.submitter_started {
            return;
        }
        self.ledger.submitter_started = true;
        let order = (self.ledger.entries.iter().enumerate())
            .filter(|(_, e)| e.status == Status::Pending)
            // Fewer than 2³² items: each takes 40 bytes of entry already.
            .map(|(i, e)| (i as u32, e.attempt))
            .collect();
        self.workers.submit_loop(SubmitPlan {
            order,
            items: self.ledger.items.clone(),
            jobs: self.jobs.clone(),
            batch_id: self.batch_id.clone(),
            budget: self.budget.clone(),
            estimates: self.estimates.clone(),
            stop: self.ledger.stop_submit.clone(),
            backlog: self.backlog.clone(),
        });
    }

    // ---- messages -------------------------------------------------------

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::SubmitStarted(idx, account) => {
                self.active_submits += 1;
                let e = &mut self.ledger.entries[idx];
                e.holds_slot = true;
                e.account = account;
                e.account_unknown = false;
                self.ledger.transition(idx, Status::Submitting);
            }
            Msg::Submitted(idx, outcome) => {
                self.active_submits -= 1;
                self.on_submitted(idx, outcome);
            }
            Msg::SubmitterDone => self.submitter_done(),
            Msg::Held(idx, held) => self.on_held(idx, held),
            Msg::FilesGone(idx, found) => self.on_files_gone(idx, found),
            Msg::Verified => self.verifying = false,
            Msg::Unreadable(e) => self.ledger.abort(format!(
                "cannot read what to send from the state file: {e}; items not yet sent stay pending"
            )),
            Msg::Recovered(idx, account, settled) => {
                self.recovering -= 1;
                self.move_to_account(idx, account);
                self.on_recovered(idx, settled);
                if self.recovering == 0 && !self.ledger.stop_submit.is_stopped() {
                    self.start_submitter();
                } else if self.recovering == 0 {
                    self.submitter_done();
                }
            }
            Msg::Polled(idx, result) => {
                self.active_polls -= 1;
                self.polls.set_busy(idx, false);
                match result {
                    Ok(snap) => {
                        let account = self.ledger.account_of(idx);
                        self.workers.pool.accounts[account].setup.answered();
                        self.on_snapshot(idx, snap)
                    }
                    Err(e) => {
                        let account = self.ledger.account_of(idx);
                        let setup = &self.workers.pool.accounts[account].setup;
                        polled::on_poll_error(
                            &mut self.ledger,
                            &mut self.polls,
                            &self.cfg,
                            setup,
                            idx,
                            e,
                        )
                    }
                }
            }
            Msg::ListedPage(mut found) => {
                // Ends first, on a route swept in one page: their latencies
                // may set or move the window that the tasks still running
                // on this page are then scheduled by (a page lists the
                // newest, still running, tasks first: read in page order,
                // the first wave's were scheduled as if no task had ended).
                // A route of several pages pays per request: its running
                // tasks keep the cadence they had until the next sweep.
                if found
                    .first()
                    .is_some_and(|(idx, _)| self.polls.one_page(*idx))
                {
                    found.sort_by_key(|(_, snap)| !snap.status.is_terminal());
                }
                for (idx, snap) in found {
                    self.polls.set_busy(idx, false);
                    self.on_snapshot(idx, snap);
                }
            }
            Msg::Listed {
                route,
                found_any,
                missing,
                error,
            } => {
                self.active_polls -= 1;
                self.polls
                    .sweep_returned(route, found_any, !missing.is_empty());
                let now = Instant::now();
                for idx in missing {
                    self.polls.missed(idx);
                    if self.ledger.entries[idx].status.is_in_flight() {
                        self.polls.schedule_at(idx, now);
                    }
                }
                if let Some(e) = error {
                    polled::on_sweep_error(&mut self.ledger, &mut self.polls, route.0 as usize, e);
                }
            }
            Msg::Refreshed(idx, result) => {
                self.active_polls -= 1;
                self.polls.set_busy(idx, false);
                let (l, q, w) = (&mut self.ledger, &mut self.downloads, &self.workers);
                fetched::on_refreshed(l, q, w, &self.batch_dir, idx, result);
            }
            Msg::Fetched { idx, n, result } => {
                self.downloads.finished(idx);
                if fetched::on_fetched(
                    &mut self.ledger,
                    &mut self.downloads,
                    &self.batch_dir,
                    idx,
                    n,
                    result,
                ) {
                    self.refresh(idx);
                }
                self.pump_downloads();
            }
        }
    }

    /// Nothing more will be created this run: no item waits for a slot.
    fn submitter_done(&mut self) {
        self.ledger.submitter_done = true;
        self.polls.submitter_done();
    }

    fn on_held(&mut self, idx: usize, held: Held) {
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
        let id = self.ledger.items.id(idx).to_string();
        self.ledger.write(Update::Note {
            id,
            code: None,
            message: why.into(),
            request_id: None,
        });
    }

    // ---- outcomes (see created, polled, fetched) -------------------------

    fn on_submitted(&mut self, idx: usize, outcome: SubmitOutcome) {
        let (l, polls, cfg) = (&mut self.ledger, &mut self.polls, &self.cfg);
        if created::on_submitted(l, polls, cfg, &self.budget, &self.estimates, idx, outcome) {
            self.start_downloads(idx);
        }
    }

    fn on_recovered(&mut self, idx: usize, settled: Settled) {
        let (l, polls, cfg) = (&mut self.ledger, &mut self.polls, &self.cfg);
        if created::on_recovered(l, polls, cfg, &self.budget, &self.estimates, idx, settled) {
            self.start_downloads(idx);
        }
    }

    fn on_snapshot(&mut self, idx: usize, snap: TaskSnapshot) {
        let (l, polls, cfg) = (&mut self.ledger, &mut self.polls, &self.cfg);
        if polled::on_snapshot(l, polls, cfg, &self.budget, &self.estimates, idx, snap) {
            self.start_downloads(idx);
        }
    }

    fn start_downloads(&mut self, idx: usize) {
        let (l, q, w) = (&mut self.ledger, &mut self.downloads, &self.workers);
        fetched::start(l, q, w, &self.batch_dir, idx);
    }

    fn pump_downloads(&mut self) {
        let (l, q, w) = (&mut self.ledger, &mut self.downloads, &self.workers);
        fetched::pump(l, q, w, &self.batch_dir);
    }
}

/// The next callback; never, without callbacks.
async fn next_callback(rx: &mut Option<mpsc::Receiver<Callback>>) -> Option<Callback> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
