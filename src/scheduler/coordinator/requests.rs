//! The coordinator's requests about tasks in flight: what the poll queue
//! says is due (single queries, list sweeps), fresh URLs, and a create that
//! settled in another account than it was counted in.

use std::time::Instant;

use super::Coordinator;
use crate::provider::{Callback, Provider};
use crate::scheduler::workers::Route;

impl<P: Provider> Coordinator<P> {
    /// Send what the poll queue says is due: single queries, then sweeps.
    pub(super) fn dispatch_due_polls(&mut self) {
        let now = Instant::now();
        let full = self.ledger.accounts.iter().all(|a| a.limit.free() == 0);
        self.polls.set_slots_full(full);
        let (entries, items) = (&self.ledger.entries, &self.ledger.items);
        let due = self.polls.take_due(
            now,
            |i| entries[i].status.is_in_flight(),
            |i| (entries[i].account, items.kind(i)),
        );
        for idx in due.queries {
            if let Some((route, task_id)) = self.ask(idx) {
                self.workers.query(idx, route, task_id);
            }
        }
        for route in due.sweeps {
            self.sweep(route, now);
        }
    }

    /// The provider called back about a task: if it says the task ended
    /// and the task is ours and in flight, it is looked at now (see
    /// [`crate::scheduler::poll::PollQueue::called_back`]); the answer
    /// settles it, as any poll's would.
    pub(super) fn on_callback(&mut self, callback: Callback) {
        if !callback.settled {
            return;
        }
        let Some(idx) = self.polls.by_task(&callback.task_id) else {
            return;
        };
        if self.ledger.entries[idx].status.is_in_flight() {
            self.polls.called_back(idx, Instant::now());
        }
    }

    /// Ask the task again for fresh video URLs.
    pub(super) fn refresh(&mut self, idx: usize) {
        if let Some((route, task_id)) = self.ask(idx) {
            self.workers.refresh(idx, route, task_id);
        }
    }

    /// Count a request about item `idx`'s task as out; its route and task id.
    fn ask(&mut self, idx: usize) -> Option<(Route, String)> {
        let e = &self.ledger.entries[idx];
        let task_id = e.task_id.as_deref().map(String::from)?;
        let route = (e.account, self.ledger.items.kind(idx));
        self.polls.set_busy(idx, true);
        self.active_polls += 1;
        Some((route, task_id))
    }

    /// One list sweep covers every in-flight task of `route`.
    fn sweep(&mut self, route: Route, now: Instant) {
        let Some(page_size) = self.polls.page_size() else {
            return;
        };
        let entries = &self.ledger.entries;
        let wanted = self.polls.start_sweep(
            route,
            now,
            |i| entries[i].status.is_in_flight(),
            |i| entries[i].task_id.as_deref().map(String::from),
        );
        self.active_polls += 1;
        self.workers.sweep(route, wanted, page_size);
    }

    /// A create settled in another account than the entry was counted in
    /// (a rebuilt state asks every account): its slot moves with it.
    pub(super) fn move_to_account(&mut self, idx: usize, account: u16) {
        let e = &mut self.ledger.entries[idx];
        e.account_unknown = false;
        if e.account == account {
            return;
        }
        if e.holds_slot {
            self.ledger.accounts[e.account as usize].limit.release();
            self.ledger.accounts[account as usize].limit.take_over();
        }
        e.account = account;
    }
}
