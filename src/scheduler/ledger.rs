//! The ledger: what the run has recorded about every item, and the small
//! steps that change it.
//!
//! Each step here keeps the entry, the state file, the event stream and the
//! run's failures in step with one another (a transition is stored, shown and
//! counted together), so the handlers only decide which step to take. It also
//! keeps why the run stops: an abort reason, a fatal stop, a broken setup.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Failure;
use super::entry::Entry;
use super::items::Items;
use super::limit::{InFlight, Stop};
use super::setup;
use crate::events::{EventSender, RunEvent};
use crate::provider::{ErrorClass, ProviderError};
use crate::state::{Status, Update, WriterHandle, now_ms};

pub(super) struct Ledger {
    pub(super) items: Arc<Items>,
    pub(super) entries: Vec<Entry>,
    pub(super) writer: WriterHandle,
    pub(super) events: EventSender,
    /// Items failed or timed out in this run, and downloads left unfinished.
    pub(super) failures: Vec<Failure>,
    /// Why submitting stopped early, if it did.
    pub(super) aborted: Option<String>,
    /// Stop the run at once (the state cannot be written, auth is gone).
    pub(super) fatal_stop: bool,
    /// The setup is broken (wrong address, route, TLS): end the run as soon
    /// as no create or recovery lookup is in the air.
    pub(super) setup_stop: bool,
    /// Stops creating: abort, or interrupt.
    pub(super) stop_submit: Arc<Stop>,
    /// Each account's bound and drain switch, by account index.
    pub(super) accounts: Vec<AccountLedger>,
    pub(super) submitter_started: bool,
    pub(super) submitter_done: bool,
}

/// What the ledger keeps about one account of the run.
pub(super) struct AccountLedger {
    /// `None`: the batch's only (unnamed) account.
    pub(super) name: Option<String>,
    pub(super) limit: Arc<InFlight>,
    /// Drains the account: no new creates go to it.
    pub(super) stop: Arc<Stop>,
    /// It may be given new items (a default account kept only to finish
    /// tasks it created earlier may not).
    pub(super) takes_new: bool,
    /// Why it was drained, once it was.
    pub(super) drained: Option<String>,
    /// Its in-flight bound is found, not given.
    pub(super) auto: bool,
    /// ... and the provider queues over the limit: the bound follows what
    /// is seen running (twice the most seen at once) instead.
    pub(super) follows_running: bool,
    /// Its tasks seen running now, and the most at once.
    pub(super) running: usize,
    pub(super) peak_running: usize,
}

impl Ledger {
    pub(super) fn new(
        items: Arc<Items>,
        entries: Vec<Entry>,
        writer: WriterHandle,
        events: EventSender,
        stop_submit: Arc<Stop>,
        accounts: Vec<AccountLedger>,
    ) -> Self {
        Ledger {
            items,
            entries,
            writer,
            events,
            failures: Vec::new(),
            aborted: None,
            fatal_stop: false,
            setup_stop: false,
            stop_submit,
            accounts,
            submitter_started: false,
            submitter_done: false,
        }
    }

    pub(super) fn counts(&self) -> BTreeMap<Status, u64> {
        let mut c = BTreeMap::new();
        for e in &self.entries {
            *c.entry(e.status).or_insert(0) += 1;
        }
        c
    }

    pub(super) fn release(&mut self, idx: usize) {
        if std::mem::take(&mut self.entries[idx].holds_slot) {
            let account = self.entries[idx].account as usize;
            self.accounts[account].limit.release();
        }
    }

    /// The account of item `idx`'s current task.
    pub(super) fn account_of(&self, idx: usize) -> usize {
        self.entries[idx].account as usize
    }

    /// Some account still takes new items.
    pub(super) fn any_live(&self) -> bool {
        self.accounts
            .iter()
            .any(|a| a.takes_new && !a.stop.is_stopped())
    }

    /// Account `a` hit an error no item gets past (balance, auth, a broken
    /// setup): it gets nothing new, its tasks in flight still finish. When it
    /// was the last account taking new items, the batch stops as it always
    /// did for one account. `true`: other accounts go on.
    pub(super) fn drain(&mut self, a: usize, e: &ProviderError) -> bool {
        let account = &mut self.accounts[a];
        account.stop.stop();
        account.limit.wake();
        if account.drained.is_none() {
            let reason = fatal_message(e);
            account.drained = Some(reason.clone());
            if let Some(name) = account.name.clone() {
                self.events.send(RunEvent::AccountDrained {
                    account: name,
                    reason,
                });
            }
        }
        if self.any_live() {
            return true;
        }
        self.abort_for(e);
        false
    }

    /// A task of item `idx`'s account started (or stopped) running. Where
    /// the provider queues over the limit, an automatic bound keeps twice
    /// the most seen running at once in flight: enough queued to start the
    /// next at once, not a long queue to pay for if the batch is cancelled.
    fn count_running(&mut self, idx: usize, started: bool) {
        let account = &mut self.accounts[self.entries[idx].account as usize];
        if started {
            account.running += 1;
            if account.running > account.peak_running {
                account.peak_running = account.running;
                if account.follows_running {
                    account.limit.raise_to(2 * account.peak_running);
                }
            }
        } else {
            account.running = account.running.saturating_sub(1);
        }
    }

    /// Where each automatic bound settled, by account name (`""`: unnamed):
    /// the limit, once the account said "full" or was seen running; else
    /// nothing was learned.
    pub(super) fn learned(&self) -> Vec<(String, usize)> {
        self.accounts
            .iter()
            .filter(|a| a.auto)
            .filter_map(|a| {
                let (limit, seen_full) = a.limit.learned();
                let known = seen_full || (a.follows_running && a.peak_running > 0);
                known.then(|| (a.name.clone().unwrap_or_default(), limit))
            })
            .collect()
    }

    /// Drained accounts and why, by name (for the summary).
    pub(super) fn drained(&self) -> Vec<(String, String)> {
        self.accounts
            .iter()
            .filter_map(|a| Some((a.name.clone()?, a.drained.clone()?)))
            .collect()
    }

    /// The create's outcome cannot be known: at most once, and honest about it.
    pub(super) fn mark_unknown(&mut self, idx: usize, why: &str) {
        let message = format!(
            "{why}: it may have been created and charged; not resubmitted (--resubmit-unknown sends it again)"
        );
        self.write(Update::Unknown {
            id: self.items.id(idx).to_string(),
            message: message.clone(),
        });
        self.transition(idx, Status::Unknown);
        self.failures.push(Failure {
            id: self.items.id(idx).to_string(),
            status: Status::Unknown,
            code: None,
            message,
        });
    }

    pub(super) fn fail(
        &mut self,
        idx: usize,
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
    ) {
        let id = self.items.id(idx).to_string();
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

    pub(super) fn warn(&mut self, idx: usize, code: Option<i64>, message: String) {
        let id = self.items.id(idx).to_string();
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

    /// Stop the batch for an error no item gets past. A broken setup also
    /// ends the run once the creates in the air have come back: polls go to
    /// the same broken address.
    pub(super) fn abort_for(&mut self, e: &ProviderError) {
        self.abort(fatal_message(e));
        if matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
            self.setup_stop = true;
        }
    }

    pub(super) fn abort(&mut self, reason: String) {
        if self.aborted.is_none() {
            self.events.send(RunEvent::Aborting {
                reason: reason.clone(),
            });
            self.aborted = Some(reason);
        }
        self.stop_submitting();
        if !self.submitter_started {
            self.submitter_started = true;
            self.submitter_done = true;
        }
    }

    /// No create is sent any more, through any account (abort, interrupt).
    pub(super) fn stop_submitting(&self) {
        self.stop_submit.stop();
        for account in &self.accounts {
            account.stop.stop();
            account.limit.wake();
        }
    }

    pub(super) fn write(&mut self, update: Update) {
        if let Err(e) = self.writer.send(update) {
            self.abort(format!("cannot write the state file: {e}"));
            self.fatal_stop = true;
        }
    }

    pub(super) fn transition(&mut self, idx: usize, to: Status) {
        let from = self.entries[idx].status;
        if from != to {
            self.entries[idx].status = to;
            if matches!(to, Status::Downloaded | Status::Failed) {
                self.entries[idx].finished();
            }
            if from == Status::Processing || to == Status::Processing {
                self.count_running(idx, to == Status::Processing);
            }
            self.events.send(RunEvent::Transition {
                id: self.items.id(idx).to_string(),
                from,
                to,
            });
        }
    }
}

/// What a batch-fatal error tells the user to fix: the setup advice for a
/// broken setup, else the provider's hint for its error, else plain advice.
pub(super) fn fatal_message(e: &ProviderError) -> String {
    if matches!(e.class, ErrorClass::Setup | ErrorClass::Unreachable) {
        return format!("{e} — {}", setup::hint(e.class));
    }
    let hint = e
        .hint
        .as_deref()
        .unwrap_or("fix the cause, then rerun the same command to continue");
    format!("{e} — {hint}")
}
