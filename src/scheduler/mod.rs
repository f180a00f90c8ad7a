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
//!
//! The parts, each owning its own fields:
//!
//! - `coordinator.rs`: the loop and dispatch of the workers' messages.
//! - `ledger.rs`: the entries, the writer, the events, the failures and the
//!   abort; the steps that change them (write, transition, fail, ...).
//! - `created.rs`, `polled.rs`, `fetched.rs`: what a create, a poll and a
//!   download's outcome do, as functions over the ledger and their queue.
//! - `workers.rs`: spawns every request and defines the `Msg` they send back.
//! - `poll.rs`: the poll queue (due times, sweeps per route); `latency.rs`:
//!   the window a route's tasks end in, which the poll times follow.
//! - `fetch.rs`: the download queue (pool, fresh-URL budget) and file names.
//! - `recover.rs`: what resuming does about each item (pure) and file checks.
//! - `pool.rs`: which account sends the next create (account pools).
//! - `pace.rs`: each account's create rate (fixed, or adaptive with `auto`).
//! - `submit.rs`, `limit.rs`, `budget.rs`, `setup.rs`, `ids.rs`,
//!   `counts.rs`, `backoff.rs`: one create, the in-flight bound, the spend
//!   cap, broken-setup detection, keys, request counts, retry delays.

mod backoff;
mod budget;
mod coordinator;
mod counts;
mod created;
mod entry;
mod feed;
mod fetch;
mod fetched;
pub mod ids;
mod items;
mod latency;
mod ledger;
mod limit;
mod pace;
mod poll;
mod polled;
mod pool;
mod recover;
mod setup;
mod submit;
mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::download::Downloader;
use crate::events::EventSender;
use crate::job::JobSource;
use crate::provider::Provider;
use crate::settings::EngineSettings;
use crate::state::{Progress, Status, WriterHandle};

pub use budget::{Budget, Held};
pub use counts::{Request, RequestCounts, Requests};
pub use fetch::video_rel_path;
pub use limit::{InFlight, Stop};
pub use submit::{Settled, SubmitOutcome, Submitter};

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
    /// Accounts of a pool that were drained, by name, and why.
    pub drained: Vec<(String, String)>,
    /// Where each automatic in-flight bound settled, by account name (`""`:
    /// the unnamed account), for the next run of the batch to start from.
    pub learned: Vec<(String, usize)>,
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

/// One account the run may use: its provider (holding its credentials),
/// its own in-flight bound and submit rate.
pub struct Account<P> {
    /// Its name in the accounts file, stored with every task it creates;
    /// `None`: the batch's only (unnamed) account.
    pub name: Option<String>,
    pub provider: Arc<P>,
    /// Its in-flight bound; with `concurrency_auto`, the ceiling.
    pub concurrency: usize,
    /// Find the account's concurrency instead of being told.
    pub concurrency_auto: bool,
    /// Where an earlier run of the batch found the bound settle (auto only).
    pub learned: Option<usize>,
    /// Creates per second; with `submit_rate_auto`, the starting rate.
    pub submit_rate: f64,
    pub submit_rate_auto: bool,
    /// New items may go to it; `false`: it only finishes the tasks it
    /// created in earlier runs.
    pub takes_new: bool,
}

impl<P> Account<P> {
    /// The one unnamed account of a batch without a pool.
    pub fn only(provider: Arc<P>, settings: &EngineSettings) -> Self {
        Account {
            name: None,
            provider,
            concurrency: settings.concurrency,
            concurrency_auto: settings.concurrency_auto,
            learned: None,
            submit_rate: settings.submit_rate.per_second,
            submit_rate_auto: settings.submit_rate_auto,
            takes_new: true,
        }
    }
}

/// What the engine is given.
pub struct EngineInput<P> {
    /// The accounts, at least one.
    pub accounts: Vec<Account<P>>,
    pub downloader: Downloader,
    /// The batch's items, in manifest order: their progress as the state
    /// holds it (`state::load_progress` after syncing the manifest). The
    /// engine runs exactly these.
    pub records: Vec<Progress>,
    /// What each item's create sends, read when it is sent.
    pub jobs: Arc<dyn JobSource>,
    pub batch_id: String,
    pub batch_dir: PathBuf,
    pub writer: WriterHandle,
    pub events: EventSender,
    pub settings: EngineSettings,
    /// Set by Ctrl-C: stop at once, state consistent.
    pub interrupt: Arc<Stop>,
    /// The spend cap (`--max-units`), kept with each record's estimated
    /// units; `None`: no cap.
    pub max_units: Option<f64>,
    /// What the provider's callbacks name (`crate::webhook`): each task
    /// said to have ended is looked at now (its route swept, or it is
    /// queried). `None`: polls only.
    pub callbacks: Option<tokio::sync::mpsc::Receiver<crate::provider::Callback>>,
}

/// Run the batch to the end (or to an abort or interrupt).
pub async fn run<P: Provider>(input: EngineInput<P>) -> RunOutcome {
    match coordinator::Coordinator::new(input) {
        Ok(coordinator) => coordinator.run().await,
        Err(outcome) => *outcome,
    }
}

#[cfg(test)]
mod tests;
