//! Providers: the video APIs vidbatch talks to, behind one trait.
//!
//! The engine only sees [`Provider`] and the normalized types here; each
//! provider module maps its own wire format and error codes onto them. Errors
//! are classified once, in the provider, into an [`ErrorClass`] the scheduler
//! acts on (retry later, wait for a slot, fail the item, abort the batch, or
//! settle an ambiguous create), so no business code leaks into the engine.

pub mod fal;
pub mod http;
pub mod kling;
pub mod price;
pub mod registry;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use crate::job::{Job, Kind};

/// Longest task handle vidbatch stores. A handle is opaque to the engine:
/// Kling's is its task id (which its provider holds to 256 bytes), a queue
/// provider's may carry the status and result URLs it was given.
pub const MAX_TASK_ID_BYTES: usize = 4096;

/// A task handle we can store and log: 1 to [`MAX_TASK_ID_BYTES`] visible
/// ASCII characters. Anything else from a server is an item-level error,
/// never a reason to stop the batch.
pub fn usable_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_TASK_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

/// What a cancel request achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The provider took it: the task will not run (and, normally, not cost).
    Cancelled,
    /// Too late: the task has started or ended; it runs (and costs) as usual.
    TooLate,
    /// This provider has no cancel.
    Unsupported,
}

/// A task the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub task_id: String,
    pub request_id: Option<String>,
}

/// Lifecycle of a remote task, normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteStatus {
    Submitted,
    Processing,
    Succeeded {
        videos: Vec<Video>,
        /// Units charged (`final_unit_deduction`), as the API wrote it.
        units: Option<String>,
    },
    Failed {
        message: String,
    },
}

impl RemoteStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RemoteStatus::Succeeded { .. } | RemoteStatus::Failed { .. }
        )
    }
}

/// One generated video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub id: String,
    pub url: String,
    /// Seconds, as the API wrote it (e.g. "5.1").
    pub duration: Option<String>,
}

/// What one query said about one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    pub task_id: String,
    pub external_task_id: Option<String>,
    pub status: RemoteStatus,
    pub request_id: Option<String>,
}

/// What a provider's callback (webhook) said, as far as the engine uses it:
/// which task to look at now. Never a result: anyone who learns the address
/// can POST to it, so the task is settled only by what a query answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The task as the callback names it (see [`Provider::callback_key`]).
    pub task_id: String,
    /// The callback says the task ended (or does not say what it is):
    /// worth a query now. `false`: a step on the way (`processing`).
    pub settled: bool,
}

/// The address a provider calls back (public URL + this run's secret path
/// segment). `Debug` never prints it: the segment is what makes a call ours.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUrl(pub String);

impl std::fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackUrl(<redacted>)")
    }
}

/// What the scheduler should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (1302, 5001, connection refused before sending, 5xx without a
    /// body on a query): back off and try again.
    RetryLater,
    /// The account's concurrency is full (1303): wait for a slot, never fail.
    SlotFull,
    /// The request may or may not have created a task (timeout or dropped
    /// connection after sending, 5000, 5002): settle by external_task_id first.
    Ambiguous,
    /// The token was rejected as expired / not yet valid (1003, 1004): re-sign once.
    AuthExpired,
    /// This item cannot succeed as written (1200–1203, 1300, 1301, 1103): fail it, go on.
    ItemInvalid,
    /// Nothing will succeed until the user acts (1000–1002, 1100–1102, 1304):
    /// stop submitting and exit 3.
    BatchFatal,
    /// The request did not reach a working API as configured: a route the
    /// server does not know (a wrong path in the base URL), a page that is not
    /// the API's, a redirect, a TLS failure. Nothing was created. One such
    /// answer may be about the item; the same answer to every create in a row
    /// is about the setup, and the engine stops the batch (items stay pending).
    Setup,
    /// Nothing was sent: connection refused, name not resolved, connect
    /// timeout. Transient once the API has answered in this run; before that,
    /// a few in a row mean the address is wrong and the batch stops.
    Unreachable,
}

/// A failed provider call, classified. Never contains credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", code.map(|c| format!("code {c}: ")).unwrap_or_default())]
pub struct ProviderError {
    pub class: ErrorClass,
    /// Business code when the API sent one.
    pub code: Option<i64>,
    pub http_status: Option<u16>,
    pub message: String,
    pub request_id: Option<String>,
    /// From a `Retry-After` header, when present.
    pub retry_after: Option<Duration>,
    /// What the user should do about it, in the provider's words (its code
    /// table knows what a business code means); shown when the error stops
    /// the batch. `None`: the engine's neutral advice.
    pub hint: Option<String>,
}

/// What a provider's API can do, declared once so the engine picks its
/// strategy from it and names no provider's endpoints or limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Largest page [`Provider::list`] takes; `None`: there is no list
    /// endpoint, so tasks are only ever polled one by one.
    pub list_page_size: Option<u32>,
    /// [`Provider::find_by_external_id`] finds a task by our key, so an
    /// ambiguous create can be settled by looking it up.
    pub lookup_by_key: bool,
    /// A create carries our key and the provider refuses a second create
    /// under a key it knows.
    pub idempotency_key: bool,
    /// A created task can be cancelled.
    pub cancel: bool,
    /// Requests over the account's concurrency wait in the provider's
    /// queue instead of being refused with "slot full": no create ever says
    /// the account is full, so an automatic bound follows what runs.
    pub queues_over_limit: bool,
}

/// A video-generation API. Implementations are cheap to clone behind an `Arc`
/// and safe to call from many tasks at once.
pub trait Provider: Send + Sync + 'static {
    /// What this API can do.
    fn capabilities(&self) -> Capabilities;

    /// Create a task for `job` (which this provider built, see
    /// [`registry::AnyProvider::job`]), tagged with `external_task_id` (the
    /// idempotency key, where the API takes one).
    fn create(
        &self,
        job: &Job,
        external_task_id: &str,
    ) -> impl Future<Output = Result<Created, ProviderError>> + Send;

    /// Query one task by its provider task id.
    fn query(
        &self,
        kind: Kind,
        task_id: &str,
    ) -> impl Future<Output = Result<TaskSnapshot, ProviderError>> + Send;

    /// Find a task by the external id we gave it. `Ok(None)`: no such task
    /// (so the create never happened and may be retried).
    fn find_by_external_id(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> impl Future<Output = Result<Option<TaskSnapshot>, ProviderError>> + Send;

    /// One page of recent tasks of `kind` (page numbers start at 1), for
    /// polling many tasks with few requests. An empty or short page is the end.
    fn list(
        &self,
        kind: Kind,
        page: u32,
        page_size: u32,
    ) -> impl Future<Output = Result<Vec<TaskSnapshot>, ProviderError>> + Send;

    /// The task a callback body (what the provider POSTed to our callback
    /// address) is about; `None`: not one of this provider's callbacks.
    /// Providers that send none keep this default.
    fn parse_callback(&self, body: &[u8]) -> Option<Callback> {
        let _ = body;
        None
    }

    /// What a callback about the task with handle `task_id` names it by
    /// ([`Callback::task_id`]): the handle itself unless the provider's
    /// handles carry more than its own id.
    fn callback_key(&self, task_id: &str) -> Option<String> {
        Some(task_id.to_owned())
    }

    /// Ask the provider to cancel a task that has not started. Providers
    /// without a cancel (see [`Capabilities::cancel`]) keep this default.
    fn cancel(
        &self,
        kind: Kind,
        task_id: &str,
    ) -> impl Future<Output = Result<CancelOutcome, ProviderError>> + Send {
        let _ = (kind, task_id);
        async { Ok(CancelOutcome::Unsupported) }
    }
}
