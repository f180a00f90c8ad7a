//! What a poll's answer does: a task's status (from a single query or a
//! list sweep), a poll error, a failed sweep, a task that never ends.
//!
//! Functions over the [`Ledger`] and the [`PollQueue`]: each answer either
//! moves the item on (and is recorded) or schedules its next poll. A task
//! that finished with videos is handed back to the caller to download.

use std::sync::Arc;
use std::time::Instant;

use super::Failure;
use super::backoff;
use super::budget::Budget;
use super::ledger::{Ledger, fatal_message};
use super::poll::{MAX_POLL_ERRORS, PollQueue};
use super::setup::SetupWatch;
use super::workers::Route;
use crate::provider::{ErrorClass, ProviderError, RemoteStatus, TaskSnapshot};
use crate::settings::EngineSettings;
use crate::state::{Status, Update, VideoRecord, now_ms};

/// Apply a task's status; `true`: it succeeded with videos to download.
pub(super) fn on_snapshot(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    cfg: &EngineSettings,
    budget: &Option<Arc<Budget>>,
    estimates: &[Option<f64>],
    idx: usize,
    snap: TaskSnapshot,
) -> bool {
    let now = Instant::now();
    let id = l.items.id(idx).to_string();
    polls.answered(idx);
    if !l.entries[idx].status.is_in_flight() {
        return false; // already settled (e.g. timed out while the answer was in the air)
    }
    if matches!(
        snap.status,
        RemoteStatus::Submitted | RemoteStatus::Processing
    ) {
        polls.saw_running(idx, now);
    } else {
        polls.ended(idx, now);
    }
    match snap.status {
        RemoteStatus::Submitted | RemoteStatus::Processing => {
            let to = if snap.status == RemoteStatus::Processing {
                Status::Processing
            } else {
                Status::Submitted
            };
            if l.entries[idx].status != to {
                l.write(Update::Status {
                    id: id.clone(),
                    status: to,
                });
                l.transition(idx, to);
            }
            if l.entries[idx].deadline().is_some_and(|d| now >= d) {
                time_out(l, polls, cfg, idx);
            } else {
                polls.schedule(idx, now);
            }
        }
        RemoteStatus::Succeeded { videos, units } => {
            l.release(idx);
            in_flight_done(l, polls, idx);
            if let (Some(b), Some(est), Some(charged)) = (
                budget,
                estimates.get(idx).copied().flatten(),
                units.as_deref().and_then(|u| u.trim().parse::<f64>().ok()),
            ) {
                b.settle(est, charged);
            }
            if videos.is_empty() {
                l.fail(
                    idx,
                    None,
                    "task succeeded but returned no video".into(),
                    snap.request_id,
                );
                return false;
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
            l.write(Update::Succeeded {
                id,
                units,
                videos: records.clone(),
                at: now_ms(),
            });
            l.entries[idx].set_videos(records);
            l.transition(idx, Status::Succeeded);
            return true;
        }
        RemoteStatus::Failed { message } => {
            l.release(idx);
            in_flight_done(l, polls, idx);
            l.fail(idx, None, message, snap.request_id);
        }
    }
    false
}

/// A single query failed: stop the batch, give the task up, time it out, or
/// poll it again after a back-off.
pub(super) fn on_poll_error(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    cfg: &EngineSettings,
    setup: &SetupWatch,
    idx: usize,
    e: ProviderError,
) {
    let account = l.account_of(idx);
    let account_failed = setup.observe(Some(e.class))
        || matches!(e.class, ErrorClass::AuthExpired | ErrorClass::BatchFatal);
    if account_failed && l.accounts.len() > 1 && l.drain(account, &e) {
        // Other accounts go on; this task stays as it is on disk and the
        // next run polls it with its own account again.
        l.release(idx);
        in_flight_done(l, polls, idx);
        return;
    }
    if account_failed && matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
        // Tasks in flight stay as they are on disk; the fixed rerun polls them.
        l.abort(fatal_message(&e));
        l.setup_stop = true;
        return;
    }
    match e.class {
        ErrorClass::AuthExpired | ErrorClass::BatchFatal => {
            l.abort(fatal_message(&e));
            l.fatal_stop = true;
        }
        _ => {
            let errors = polls.failed(idx);
            if errors >= MAX_POLL_ERRORS && e.class == ErrorClass::ItemInvalid {
                // The provider keeps saying the task does not exist.
                l.release(idx);
                in_flight_done(l, polls, idx);
                l.fail(
                    idx,
                    e.code,
                    format!("task can no longer be queried: {}", e.message),
                    e.request_id,
                );
                return;
            }
            let now = Instant::now();
            if l.entries[idx].deadline().is_some_and(|d| now >= d) {
                time_out(l, polls, cfg, idx);
                return;
            }
            let d = backoff::delay(cfg.poll_interval, errors.min(6), e.retry_after);
            polls.schedule_at(idx, now + d);
        }
    }
}

/// A list sweep failed; the tasks it missed are queried one by one.
pub(super) fn on_sweep_error(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    account: usize,
    e: ProviderError,
) {
    let fatal = matches!(e.class, ErrorClass::AuthExpired | ErrorClass::BatchFatal);
    if fatal && l.accounts.len() > 1 && l.drain(account, &e) {
        // Other accounts go on; this one's tasks are queried one by one and
        // left for the next run as their queries fail.
        return;
    }
    if fatal {
        l.abort(fatal_message(&e));
        l.fatal_stop = true;
    } else if matches!(e.class, ErrorClass::ItemInvalid | ErrorClass::Setup) {
        // A "not found" or a route the server does not know: it has no
        // list endpoint.
        polls.give_up_sweeps(&e.to_string());
    }
    // Otherwise the tasks it missed are queried one by one.
}

/// The task is in flight from `now`: tracked for sweeps, with a deadline.
/// `created_now`: its create was answered just now (its age is known).
pub(super) fn track_in_flight(
    l: &mut Ledger,
    polls: &mut PollQueue<Route>,
    cfg: &EngineSettings,
    idx: usize,
    now: Instant,
    created_now: bool,
) {
    if l.entries[idx].deadline().is_none() {
        let route = (l.entries[idx].account, l.items.kind(idx));
        polls.track(idx, route, created_now.then_some(now));
        if let Some(task_id) = &l.entries[idx].task_id {
            polls.index(idx, task_id);
        }
    }
    l.entries[idx].set_deadline(Some(now + cfg.task_timeout));
}

fn in_flight_done(l: &mut Ledger, polls: &mut PollQueue<Route>, idx: usize) {
    if l.entries[idx].set_deadline(None).is_some() {
        polls.untrack(idx);
    }
}

/// The task ran past `--task-timeout`: timed out here, polled again next run.
fn time_out(l: &mut Ledger, polls: &mut PollQueue<Route>, cfg: &EngineSettings, idx: usize) {
    l.release(idx);
    in_flight_done(l, polls, idx);
    let id = l.items.id(idx).to_string();
    let message = format!(
        "still unfinished after {}; rerun to keep polling it",
        humantime::format_duration(cfg.task_timeout)
    );
    l.write(Update::Note {
        id: id.clone(),
        code: None,
        message: message.clone(),
        request_id: None,
    });
    l.write(Update::Status {
        id: id.clone(),
        status: Status::TimedOut,
    });
    l.transition(idx, Status::TimedOut);
    l.failures.push(Failure {
        id,
        status: Status::TimedOut,
        code: None,
        message,
    });
}
