//! Exactly-once submission of one item (DESIGN.md, "the heart of the product").
//!
//! 1. The intent (status `submitting` + the deterministic external_task_id) is
//!    committed before the POST.
//! 2. The POST carries that external_task_id.
//! 3. A definite answer is final: a task id, or an error that means "not
//!    created". An ambiguous one (timeout, dropped connection, server error) is
//!    never blindly retried: the task is looked up by its external id first;
//!    found → adopted, not found → created again under the same id.
//! 4. [`settle`] is also what recovery runs for items a crash left in
//!    `submitting`.

use std::sync::Arc;
use std::time::Duration;

use crate::events::{EventSender, RunEvent};
use crate::job::{Job, Kind};
use crate::provider::{ErrorClass, Provider, ProviderError, TaskSnapshot};
use crate::state::{Update, WriterHandle};

use super::backoff;
use super::counts::{Request, RequestCounts};
use super::limit::{InFlight, Stop};
use super::setup::{SETUP_STREAK, SetupWatch};

/// How many transient failures in a row one item's create tolerates before it
/// is left pending for the next run ("slot full" never counts).
pub const MAX_TRANSIENT: u32 = 8;

/// How a submission ended.
#[derive(Debug)]
pub enum SubmitOutcome {
    /// The task exists: created now, or found after an ambiguous create.
    Created {
        task_id: String,
        request_id: Option<String>,
        snapshot: Option<TaskSnapshot>,
    },
    /// Definitely not created; the item stays pending (stop requested, or the
    /// API kept failing transiently).
    NotCreated(ProviderError),
    /// An ambiguous create could not be settled (lookups kept failing, or a
    /// stop came first): the item stays `submitting`, and the next run's
    /// recovery settles it before anything else.
    Unsettled(ProviderError),
    /// The answer to a create was lost and the provider cannot be asked
    /// whether it happened: the item is `unknown`, never resent by itself.
    Unknown(ProviderError),
    /// The API rejected the item itself: it fails, the batch goes on.
    Rejected(ProviderError),
    /// The API rejected the account or credentials on the create itself
    /// (definitely not created): the account is drained, the item pending.
    Fatal(ProviderError),
    /// The account failed while an ambiguous create was being looked up: the
    /// item stays `submitting` under this account (the next run settles it
    /// there, never elsewhere: another account does not know its key), and
    /// the account is drained.
    FatalUnsettled(ProviderError),
    /// The state file could not record the intent: nothing was sent.
    StateFailed(String),
}

/// One account, and everything a submission through it needs.
pub struct Submitter<P> {
    /// The account's name in the accounts file; `None`: the only account.
    pub name: Option<String>,
    /// New items may go to it (else it only finishes its earlier tasks).
    pub takes_new: bool,
    pub provider: Arc<P>,
    pub writer: WriterHandle,
    pub events: EventSender,
    pub limit: Arc<InFlight>,
    /// Its create rate (adapts when automatic).
    pub pace: Arc<super::pace::Pace>,
    /// Stop creating through this account (drained, abort or Ctrl-C).
    pub stop: Arc<Stop>,
    pub retry_base: Duration,
    /// Tells a broken setup (every request failing the same way) from a bad item.
    pub setup: Arc<SetupWatch>,
    /// The provider finds a task by our key ([`Capabilities::lookup_by_key`]):
    /// an ambiguous create is settled by looking; without it, the create
    /// is never sent again by itself (at most once) and the item is `unknown`.
    pub lookup: bool,
    /// Requests made, by kind (for the run's summary).
    pub requests: Arc<RequestCounts>,
}

impl<P: Provider> Submitter<P> {
    /// Submit `item` as creation `attempt` under `external_task_id`;
    /// `armed`: its intent is committed already (see `feed`).
    pub async fn submit(
        &self,
        item: &Job,
        external_task_id: &str,
        attempt: u32,
        armed: bool,
    ) -> SubmitOutcome {
        if !armed {
            let intent = Update::Intent {
                id: item.id.clone(),
                external_task_id: external_task_id.to_string(),
                attempt,
                account: self.name.clone(),
            };
            if let Err(e) = self.writer.send_durable(intent).await {
                return SubmitOutcome::StateFailed(e.to_string());
            }
        }
        if self.stop.is_stopped() {
            // Stopped while the intent was being written: nothing was sent.
            return SubmitOutcome::NotCreated(ProviderError {
                class: ErrorClass::RetryLater,
                code: None,
                http_status: None,
                message: "submission stopped before the request was sent".into(),
                request_id: None,
                retry_after: None,
                hint: None,
            });
        }
        let mut transient = 0u32;
        let mut slot_waits = 0u32;
        let mut setup_tries = 0u32;
        let mut sent = 0u32;
        loop {
            self.requests.count(Request::Create);
            if sent > 0 {
                self.requests.retry();
            }
            sent += 1;
            let result = self.provider.create(item, external_task_id).await;
            if self.setup.observe(result.as_ref().err().map(|e| e.class)) {
                // Nothing was created: the item stays pending, the batch stops.
                return match result {
                    Err(e) => SubmitOutcome::Fatal(e),
                    Ok(_) => unreachable_success(),
                };
            }
            let err = match result {
                Ok(c) => {
                    if slot_waits > 0 {
                        self.events.send(RunEvent::SlotAvailable);
                    }
                    self.limit.grow();
                    self.pace.succeeded();
                    return SubmitOutcome::Created {
                        task_id: c.task_id,
                        request_id: c.request_id,
                        snapshot: None,
                    };
                }
                Err(e) => e,
            };
            tracing::debug!(item = %item.id, class = ?err.class, code = ?err.code, "create failed: {}", err.message);
            match err.class {
                ErrorClass::SlotFull => {
                    self.limit.shrink();
                    let (in_flight, limit) = self.limit.snapshot();
                    if slot_waits == 0 {
                        self.events
                            .send(RunEvent::WaitingForSlot { in_flight, limit });
                    }
                    slot_waits += 1;
                    // The bound just shrank below what we hold: this create
                    // was the one past the account's limit. Its slot goes
                    // back and it waits for one of the new bound — a task of
                    // ours ending, which frees one at the account too — and
                    // then goes at once: the account is asked again only
                    // after it gave a slot back, never at every backoff.
                    if self.limit.step_back() {
                        if !self.limit.acquire(&self.stop).await {
                            self.limit.take_over();
                            return SubmitOutcome::NotCreated(err);
                        }
                        continue;
                    }
                    // Full with nothing of ours to wait for (others hold the
                    // account): official advice, exponential backoff from at
                    // least 1 s.
                    let d = backoff::delay(self.retry_base, slot_waits.min(6), err.retry_after);
                    if !self.pause(d).await {
                        return SubmitOutcome::NotCreated(err);
                    }
                }
                ErrorClass::RetryLater => {
                    // "Too fast" (or a struggling server): ease off.
                    self.pace.too_fast();
                    transient += 1;
                    if transient >= MAX_TRANSIENT {
                        return SubmitOutcome::NotCreated(err);
                    }
                    let d = backoff::delay(self.retry_base, transient - 1, err.retry_after);
                    self.events.send(RunEvent::Backoff {
                        reason: err.to_string(),
                        delay: d,
                    });
                    if !self.pause(d).await {
                        return SubmitOutcome::NotCreated(err);
                    }
                }
                ErrorClass::Ambiguous if !self.lookup => return SubmitOutcome::Unknown(err),
                ErrorClass::Ambiguous => match self.settle(item.kind, external_task_id).await {
                    Settled::Found(snap) => return created_from(snap),
                    Settled::Absent => {
                        // Not created: try again under the same id (a duplicate would be refused).
                        transient += 1;
                        if transient >= MAX_TRANSIENT {
                            return SubmitOutcome::NotCreated(err);
                        }
                        let d = backoff::delay(self.retry_base, transient - 1, err.retry_after);
                        if !self.pause(d).await {
                            return SubmitOutcome::NotCreated(err);
                        }
                    }
                    Settled::Unknown(e) => return SubmitOutcome::Unsettled(e),
                    Settled::Fatal(e) => return SubmitOutcome::FatalUnsettled(e),
                },
                ErrorClass::Setup | ErrorClass::Unreachable => {
                    // Not (yet) a pattern: maybe this item, maybe a blip.
                    setup_tries += 1;
                    if err.class == ErrorClass::Setup && setup_tries >= SETUP_STREAK {
                        return SubmitOutcome::Rejected(err);
                    }
                    if err.class == ErrorClass::Unreachable {
                        transient += 1;
                        if transient >= MAX_TRANSIENT {
                            return SubmitOutcome::NotCreated(err);
                        }
                    }
                    let d = backoff::delay(self.retry_base, setup_tries - 1, err.retry_after);
                    if !self.pause(d).await {
                        return SubmitOutcome::NotCreated(err);
                    }
                }
                ErrorClass::ItemInvalid => {
                    // Any business error may be "external_task_id already
                    // exists" (the code for it is undocumented): an earlier
                    // create, by us or by the same manifest run elsewhere.
                    // Look before failing the item; adopt what is found.
                    if self.lookup
                        && may_mean_already_exists(&err)
                        && let Settled::Found(snap) = self.settle(item.kind, external_task_id).await
                    {
                        return created_from(snap);
                    }
                    return SubmitOutcome::Rejected(err);
                }
                ErrorClass::AuthExpired | ErrorClass::BatchFatal => {
                    return SubmitOutcome::Fatal(err);
                }
            }
        }
    }

    /// Find out whether a create under `external_task_id` happened.
    pub async fn settle(&self, kind: Kind, external_task_id: &str) -> Settled {
        let mut tries = 0u32;
        loop {
            self.requests.count(Request::Lookup);
            if tries > 0 {
                self.requests.retry();
            }
            let result = self
                .provider
                .find_by_external_id(kind, external_task_id)
                .await;
            if self.setup.observe(result.as_ref().err().map(|e| e.class)) {
                if let Err(e) = result {
                    return Settled::Fatal(e);
                }
            }
            match result {
                Ok(Some(snap)) => return Settled::Found(snap),
                Ok(None) => return Settled::Absent,
                Err(e) => match e.class {
                    ErrorClass::AuthExpired | ErrorClass::BatchFatal => return Settled::Fatal(e),
                    _ => {
                        tries += 1;
                        if tries >= MAX_TRANSIENT {
                            return Settled::Unknown(e);
                        }
                        let d = backoff::delay(self.retry_base, tries - 1, e.retry_after);
                        if !self.pause(d).await {
                            return Settled::Unknown(e);
                        }
                    }
                },
            }
        }
    }

    /// Sleep, unless asked to stop first. `false`: stopped.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stop.is_stopped(),
            _ = self.stop.stopped() => false,
        }
    }
}

/// What a lookup by external id found.
#[derive(Debug)]
pub enum Settled {
    Found(TaskSnapshot),
    Absent,
    /// The lookup itself kept failing.
    Unknown(ProviderError),
    Fatal(ProviderError),
}

/// A refused create that may mean "a task with this key exists": any
/// business error (the code for it is undocumented), a 409, or a message
/// that says so. Worth one lookup before the item is failed.
fn may_mean_already_exists(err: &ProviderError) -> bool {
    let message = err.message.to_ascii_lowercase();
    err.code.is_some()
        || err.http_status == Some(409)
        || message.contains("exist")
        || message.contains("duplicate")
}

/// `observe` never asks to stop on a success.
fn unreachable_success() -> SubmitOutcome {
    SubmitOutcome::StateFailed("internal: setup stop on a successful create".into())
}

fn created_from(snap: TaskSnapshot) -> SubmitOutcome {
    SubmitOutcome::Created {
        task_id: snap.task_id.clone(),
        request_id: snap.request_id.clone(),
        snapshot: Some(snap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: Option<i64>, http: u16, message: &str) -> ProviderError {
        ProviderError {
            class: ErrorClass::ItemInvalid,
            code,
            http_status: Some(http),
            message: message.into(),
            request_id: None,
            retry_after: None,
            hint: None,
        }
    }

    #[test]
    fn a_refusal_that_may_mean_the_key_exists_is_looked_up_first() {
        assert!(may_mean_already_exists(&err(Some(42), 400, "bad")));
        assert!(may_mean_already_exists(&err(None, 409, "conflict")));
        assert!(may_mean_already_exists(&err(
            None,
            400,
            "Task already EXISTS"
        )));
        assert!(may_mean_already_exists(&err(None, 422, "duplicate key")));
        assert!(!may_mean_already_exists(&err(None, 400, "prompt too long")));
    }
}
