//! `RunEvent`: the only contract between the engine and whatever shows
//! progress. The engine knows nothing of terminals; reporters (progress bar,
//! plain lines, tests) subscribe to this stream and keep their own counts.
//! Events carry no timestamps: they are sent the moment things happen, and a
//! reporter stamps them on arrival (the ETA measures task latency that way).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::state::Status;

#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The run starts: how many items and where each one stands.
    Started {
        total: u64,
        counts: Vec<(Status, u64)>,
        batch_dir: PathBuf,
        /// The in-flight bound; with `concurrency_auto`, its ceiling.
        concurrency: usize,
        /// The bound is found at run time (`--concurrency auto`).
        concurrency_auto: bool,
        /// Tasks created by an earlier run and still running: item id and
        /// Unix ms of creation (from the state file), so a resumed run's ETA
        /// knows how far along they are instead of starting them from zero.
        in_flight_since: Vec<(String, i64)>,
    },
    /// An item moved from one status to another.
    Transition {
        id: String,
        from: Status,
        to: Status,
    },
    /// An item failed (also reported as a transition to `failed`).
    ItemFailed {
        id: String,
        code: Option<i64>,
        message: String,
    },
    /// A problem that did not change the item's status (e.g. a download that
    /// will be retried by the next run).
    ItemWarning { id: String, message: String },
    /// The provider said the account's concurrency is full (1303): waiting.
    WaitingForSlot { in_flight: usize, limit: usize },
    /// A slot was obtained again after waiting.
    SlotAvailable,
    /// Backing off after a transient error.
    Backoff { reason: String, delay: Duration },
    /// Submitting stopped for good; what is in flight still finishes.
    Aborting { reason: String },
    /// One account of a pool gets nothing new (balance, auth, setup); the
    /// others go on. Named, never keyed.
    AccountDrained { account: String, reason: String },
    /// Ctrl-C seen: state is being flushed.
    Interrupted,
}

/// Sending half handed to the engine. Sending never blocks and never fails
/// the run: a reporter that went away just stops receiving.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: Option<mpsc::UnboundedSender<RunEvent>>,
}

impl EventSender {
    pub fn channel() -> (EventSender, mpsc::UnboundedReceiver<RunEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSender { tx: Some(tx) }, rx)
    }

    /// A sender whose events go nowhere.
    pub fn none() -> EventSender {
        EventSender { tx: None }
    }

    pub fn send(&self, event: RunEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}
