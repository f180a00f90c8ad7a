//! Account pools: which account sends the next create.
//!
//! A provider counts concurrency and rate per account, so one batch spread
//! over several accounts has one in-flight bound and one submit rate *per
//! account* ([`Submitter`] is one account: its credentials, bound, rate and
//! drain switch). The submit loop asks the pool for an account with a free
//! slot and a rate permit now, the one with the most free slots first (ties
//! rotate), and waits — for a slot anywhere, or for the soonest permit — when
//! none has both. A drained account (balance, auth) gets nothing new; when
//! every account that takes new items is drained, the loop ends.
//!
//! With one account this is exactly the old order: a slot, then a permit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::counts::RequestCounts;
use super::ledger::AccountLedger;
use super::limit::{InFlight, Stop};
use super::pace::Pace;
use super::setup::SetupWatch;
use super::submit::Submitter;
use super::{Account, RunOutcome};
use crate::events::EventSender;
use crate::provider::Provider;
use crate::state::WriterHandle;

/// Where an automatic in-flight bound starts when no earlier run of the
/// batch found the account's limit.
pub const AUTO_START: usize = 5;
/// Fastest an automatic submit rate goes, creates per second.
pub const AUTO_RATE_CEILING: f64 = crate::settings::AUTO_RATE_CEILING;

pub(super) struct Pool<P> {
    pub(super) accounts: Vec<Arc<Submitter<P>>>,
    /// Sum of the accounts' in-flight bounds.
    pub(super) total_concurrency: usize,
    /// Woken when a slot may have come free in any account, or one was drained.
    pub(super) notify: Arc<Notify>,
}

impl<P: Provider> Pool<P> {
    /// One [`Submitter`] per account, each with its own bound (counting the
    /// tasks earlier runs left it, `holding`), rate and drain switch; and
    /// what the ledger keeps about each.
    pub(super) fn build(
        accounts: Vec<Account<P>>,
        holding: &[usize],
        writer: &WriterHandle,
        events: &EventSender,
        requests: &Arc<RequestCounts>,
        retry_base: Duration,
    ) -> (Self, Vec<AccountLedger>) {
        let notify = Arc::new(Notify::new());
        let (mut submitters, mut ledgers) = (Vec::new(), Vec::new());
        let mut total_concurrency = 0;
        for (a, account) in accounts.into_iter().enumerate() {
            let queues = account.provider.capabilities().queues_over_limit;
            // Auto: start low (or where the last run settled); grow per
            // create where "full" is answered, else follow what runs.
            let (start, grows) = if account.concurrency_auto {
                (account.learned.unwrap_or(AUTO_START), !queues)
            } else {
                (account.concurrency, true)
            };
            let limit = Arc::new(InFlight::adaptive(
                start,
                account.concurrency,
                grows,
                holding.get(a).copied().unwrap_or(0),
                notify.clone(),
            ));
            let pace = Arc::new(if account.submit_rate_auto {
                Pace::adaptive(account.submit_rate, AUTO_RATE_CEILING)
            } else {
                Pace::fixed(account.submit_rate)
            });
            let stop = Arc::new(Stop::default());
            total_concurrency += account.concurrency;
            ledgers.push(AccountLedger {
                name: account.name.clone(),
                limit: limit.clone(),
                stop: stop.clone(),
                takes_new: account.takes_new,
                drained: None,
                auto: account.concurrency_auto,
                follows_running: account.concurrency_auto && queues,
                running: 0,
                peak_running: 0,
            });
            submitters.push(Arc::new(Submitter {
                name: account.name,
                takes_new: account.takes_new,
                requests: requests.clone(),
                lookup: account.provider.capabilities().lookup_by_key,
                provider: account.provider,
                writer: writer.clone(),
                events: events.clone(),
                limit,
                pace,
                stop,
                retry_base,
                setup: Arc::new(SetupWatch::default()),
            }));
        }
        let pool = Pool {
            accounts: submitters,
            total_concurrency,
            notify,
        };
        (pool, ledgers)
    }

    /// An account whose slot and rate permit are now taken for one create.
    /// `None`: `stop` fired, or no account takes new items any more.
    pub(super) async fn acquire(&self, stop: &Stop, turn: &mut usize) -> Option<usize> {
        let n = self.accounts.len();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if stop.is_stopped() {
                return None;
            }
            let mut live: Vec<(usize, usize)> = (0..n)
                .filter(|&a| self.accounts[a].takes_new && !self.accounts[a].stop.is_stopped())
                .map(|a| (a, self.accounts[a].limit.free()))
                .collect();
            if live.is_empty() {
                return None;
            }
            // Most free slots first; among equals, rotate so no account is favoured.
            let rank = |a: usize| (a + n - *turn % n) % n;
            live.sort_by_key(|&(a, free)| (std::cmp::Reverse(free), rank(a)));
            // The account with a free slot whose next permit comes soonest.
            let mut soonest: Option<(Duration, usize)> = None;
            for (a, _) in live {
                let account = &self.accounts[a];
                if !account.limit.try_acquire() {
                    continue;
                }
                match account.pace.check() {
                    Ok(()) => {
                        *turn = turn.wrapping_add(1);
                        return Some(a);
                    }
                    Err(wait) => {
                        account.limit.untake();
                        if soonest.is_none_or(|(w, _)| wait < w) {
                            soonest = Some((wait, a));
                        }
                    }
                }
            }
            // Wait for that permit, or for a slot anywhere. Only this loop takes slots,
            // so the slot seen free is still free when the permit comes.
            let permit = async {
                match soonest {
                    Some((_, a)) => {
                        self.accounts[a].pace.until_ready().await;
                        Some(a)
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.stopped() => return None,
                a = permit => {
                    if let Some(a) = a
                        && !self.accounts[a].stop.is_stopped()
                        && self.accounts[a].limit.try_acquire()
                    {
                        *turn = turn.wrapping_add(1);
                        return Some(a);
                    }
                }
                _ = &mut notified => {}
            }
        }
    }

    /// Whether any account still takes new items.
    pub(super) fn any_live(&self) -> bool {
        self.accounts
            .iter()
            .any(|a| a.takes_new && !a.stop.is_stopped())
    }
}

/// The outcome of a run that cannot start: the state names accounts whose
/// tasks this run could not poll or settle.
pub(super) fn cannot_start(
    entries: &[super::entry::Entry],
    missing: &BTreeSet<String>,
) -> RunOutcome {
    let mut counts = std::collections::BTreeMap::new();
    for e in entries {
        *counts.entry(e.status).or_insert(0) += 1;
    }
    let names: Vec<String> = missing
        .iter()
        .map(|n| match n.as_str() {
            "" => "the default account (the provider's usual credential variables)".to_string(),
            n => format!("`{n}`"),
        })
        .collect();
    let aborted = if names.is_empty() {
        "no account to send requests with".to_string()
    } else {
        format!(
            "tasks of this batch were created with {}, which this run does not have: add it back (--accounts) so they are polled with the credentials that created them; nothing was sent",
            names.join(", ")
        )
    };
    RunOutcome {
        at_start: counts.clone(),
        counts,
        aborted: Some(aborted),
        interrupted: false,
        failures: Vec::new(),
        requests: Default::default(),
        cap: None,
        drained: Vec::new(),
        learned: Vec::new(),
    }
}
