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

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use tokio::sync::Notify;

use super::limit::Stop;
use super::submit::Submitter;
use super::workers::DirectLimiter;
use crate::provider::Provider;

pub(super) struct Pool<P> {
    pub(super) accounts: Vec<Arc<Submitter<P>>>,
    /// Each account's submit rate.
    pub(super) rates: Vec<Arc<DirectLimiter>>,
    /// Woken when a slot may have come free in any account, or one was drained.
    pub(super) notify: Arc<Notify>,
}

impl<P: Provider> Pool<P> {
    /// An account whose slot and rate permit are now taken for one create.
    /// `None`: `stop` fired, or no account takes new items any more.
    pub(super) async fn acquire(&self, stop: &Stop, turn: &mut usize) -> Option<usize> {
        let n = self.accounts.len();
        let clock = DefaultClock::default();
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
                match self.rates[a].check() {
                    Ok(()) => {
                        *turn = turn.wrapping_add(1);
                        return Some(a);
                    }
                    Err(not_until) => {
                        account.limit.untake();
                        let wait = not_until.wait_time_from(clock.now());
                        if soonest.is_none_or(|(w, _)| wait < w) {
                            soonest = Some((wait, a));
                        }
                    }
                }
            }
            // Wait for that permit with the limiter's own timer (finer than
            // a sleep), or for a slot anywhere. Only this loop takes slots,
            // so the slot seen free is still free when the permit comes.
            let permit = async {
                match soonest {
                    Some((_, a)) => {
                        self.rates[a].until_ready().await;
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
