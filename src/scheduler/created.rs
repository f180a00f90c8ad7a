//! What a create's outcome does, and what settling an interrupted create
//! on resume does (the same, once the task is found).
//!
//! Functions over the [`Ledger`] and the [`PollQueue`] (a created task is
//! polled next). `true`: the task was found finished, with videos to
//! download.

use std::sync::Arc;
use std::time::Instant;

use super::budget::Budget;
use super::ledger::Ledger;
use super::poll::PollQueue;
use super::polled;
use super::submit::{Settled, SubmitOutcome};
use super::workers::{Route, give_back};
use crate::provider::RemoteStatus;
use crate::settings::EngineSettings;
use crate::state::{Status, Update, now_ms};

/// Apply a create's outcome; `true`: the task was found finished, with
/// videos to download.
pub(super) fn on_submitted(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    cfg: &EngineSettings,
    budget: &Option<Arc<Budget>>,
    estimates: &[Option<f64>],
    idx: usize,
    outcome: SubmitOutcome,
) -> bool {
    let id = l.items.id(idx).to_string();
    match outcome {
        SubmitOutcome::Created {
            task_id,
            request_id,
            snapshot,
        } => {
            let account = l.accounts[l.account_of(idx)].name.clone();
            l.write(Update::Created {
                id,
                task_id: task_id.clone(),
                request_id,
                at: now_ms(),
                account,
            });
            l.entries[idx].task_id = Some(task_id.into_boxed_str());
            l.transition(idx, Status::Submitted);
            let now = Instant::now();
            // A task found after an ambiguous create was made at some earlier time.
            polled::track_in_flight(l, polls, cfg, idx, now, snapshot.is_none());
            match snapshot {
                // Found after an ambiguous create: it may have moved on already.
                Some(snap) if snap.status != RemoteStatus::Submitted => {
                    return polled::on_snapshot(l, polls, cfg, budget, estimates, idx, snap);
                }
                _ => polls.schedule(idx, now),
            }
        }
        SubmitOutcome::NotCreated(e) => {
            l.release(idx);
            give_back(budget, estimates, idx);
            l.write(Update::NotCreated {
                id,
                code: e.code,
                message: format!("not submitted: {}", e.message),
                request_id: e.request_id.clone(),
            });
            l.transition(idx, Status::Pending);
        }
        SubmitOutcome::Unknown(e) => {
            // It may exist and cost: keep its reservation, never resend it.
            l.release(idx);
            l.mark_unknown(
                idx,
                &format!("the create's answer was lost ({})", e.message),
            );
        }
        SubmitOutcome::Unsettled(e) => {
            // Left `submitting` on disk: the next run settles it first.
            tracing::debug!("{}: create outcome unknown: {}", l.items.id(idx), e.message);
            l.release(idx);
        }
        SubmitOutcome::Rejected(e) => {
            l.release(idx);
            give_back(budget, estimates, idx);
            l.fail(idx, e.code, e.message, e.request_id);
        }
        SubmitOutcome::Fatal(e) => {
            l.release(idx);
            give_back(budget, estimates, idx);
            l.write(Update::NotCreated {
                id,
                code: e.code,
                message: e.message.clone(),
                request_id: e.request_id.clone(),
            });
            l.transition(idx, Status::Pending);
            // This account gets nothing new (the submit loop hands the item
            // to another one, if any is left); with none left, the batch
            // stops once the creates in the air have come back.
            let account = l.account_of(idx);
            l.drain(account, &e);
        }
        SubmitOutcome::FatalUnsettled(e) => {
            // Still `submitting` on disk, under this account: the next run
            // settles it there first.
            l.release(idx);
            let account = l.account_of(idx);
            l.drain(account, &e);
        }
        SubmitOutcome::StateFailed(message) => {
            l.release(idx);
            give_back(budget, estimates, idx);
            l.transition(idx, Status::Pending);
            l.abort(format!("cannot write the state file: {message}"));
            l.fatal_stop = true;
        }
    }
    false
}

/// Apply what settling an interrupted create found (by its key); `true` as
/// for [`on_submitted`].
pub(super) fn on_recovered(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    cfg: &EngineSettings,
    budget: &Option<Arc<Budget>>,
    estimates: &[Option<f64>],
    idx: usize,
    settled: Settled,
) -> bool {
    let id = l.items.id(idx).to_string();
    match settled {
        Settled::Found(snap) => {
            return on_submitted(
                l,
                polls,
                cfg,
                budget,
                estimates,
                idx,
                SubmitOutcome::Created {
                    task_id: snap.task_id.clone(),
                    request_id: snap.request_id.clone(),
                    snapshot: Some(snap),
                },
            );
        }
        Settled::Absent => {
            l.release(idx);
            l.write(Update::NotCreated {
                id,
                code: None,
                message: "earlier create was not made; resubmitting".into(),
                request_id: None,
            });
            l.transition(idx, Status::Pending);
        }
        Settled::Unknown(e) => {
            tracing::debug!("{}: create outcome unknown: {}", l.items.id(idx), e.message);
            l.release(idx);
        }
        Settled::Fatal(e) => {
            // Still `submitting` on disk: the next run settles it first.
            l.release(idx);
            let account = l.account_of(idx);
            l.drain(account, &e);
        }
    }
    false
}
