//! What the submit loop sends next, in order, and — where that is safe —
//! with its intent already committed.
//!
//! The requests to send are read from the state a page at a time, ahead of
//! the slots that will take them. A create may go out only once its intent
//! is durable (DESIGN.md, exactly-once), and a commit is a trip through the
//! writer and an fsync: paid per slot as it frees, that is milliseconds of
//! idle account after every task that ends. So where the provider finds a
//! task by our key ([`Capabilities::lookup_by_key`]), the intents of the
//! next few items are committed ahead, many per commit, and a slot that
//! comes free sends its create at once.
//!
//! That is safe because an intent is only a promise to look before sending
//! again: after a crash, an armed item that was never sent is `submitting`
//! in the state, the next run looks its key up, finds nothing and creates
//! it — nothing paid twice, nothing lost; the cost is a lookup per armed
//! item. Without a lookup an unsettled intent would leave the item
//! `unknown` (never resent by itself), so there the intent is written just
//! before the create, as always. Intents armed and not sent when the loop
//! stops are taken back ([`Update::Disarmed`]).
//!
//! [`Capabilities::lookup_by_key`]: crate::provider::Capabilities
//! [`Update::Disarmed`]: crate::state::Update

use std::sync::Arc;
use std::vec;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ids;
use super::items::Items;
use crate::job::{Job, JobSource};
use crate::state::{Update, WriterHandle};

/// Items whose requests are read at once, ahead of sending them.
pub(super) const JOB_PAGE: usize = 128;
/// Most intents committed ahead of their creates.
pub(super) const MAX_ARMED: usize = 256;

/// One item to create.
pub(super) struct Next {
    pub(super) idx: usize,
    pub(super) attempt: u32,
    pub(super) job: Job,
    /// Its intent is committed already.
    pub(super) armed: bool,
}

/// Where intents are committed ahead: the state's writer, the batch's id
/// (keys are made from it) and the account every create goes through.
pub(super) struct Arming {
    pub(super) writer: WriterHandle,
    pub(super) batch_id: String,
    pub(super) account: Option<String>,
    /// How many at most (the account's bound: more would wait anyway).
    pub(super) depth: usize,
}

pub(super) enum Feed {
    /// Read a page when the last is used up; intents are written per create.
    Reading {
        order: vec::IntoIter<(u32, u32)>,
        ahead: std::collections::VecDeque<Next>,
        jobs: Arc<dyn JobSource>,
        items: Arc<Items>,
    },
    /// A task reads and arms ahead; the loop takes from its channel.
    Armed {
        rx: mpsc::Receiver<Result<Next, String>>,
        armer: JoinHandle<()>,
        writer: WriterHandle,
    },
}

impl Feed {
    /// The feed of `order`; armed ahead when `arming` is given.
    pub(super) fn new(
        order: Vec<(u32, u32)>,
        jobs: Arc<dyn JobSource>,
        items: Arc<Items>,
        arming: Option<Arming>,
    ) -> Feed {
        let order = order.into_iter();
        let Some(arming) = arming else {
            return Feed::Reading {
                order,
                ahead: Default::default(),
                jobs,
                items,
            };
        };
        let (tx, rx) = mpsc::channel(arming.depth.clamp(1, MAX_ARMED));
        let writer = arming.writer.clone();
        let armer = tokio::spawn(arm(order, jobs, items, arming, tx));
        Feed::Armed { rx, armer, writer }
    }

    /// The next item in order; `None` once there is none left. Cancel-safe
    /// when armed (a cancelled read of the unarmed feed loses its page, so
    /// it is only cancelled when the loop stops).
    pub(super) async fn next(&mut self) -> Result<Option<Next>, String> {
        match self {
            Feed::Reading {
                order,
                ahead,
                jobs,
                items,
            } => {
                if ahead.is_empty() {
                    let page = take_page(order);
                    ahead.extend(read_page(jobs, items, page).await?.into_iter().map(
                        |(idx, attempt, job)| Next {
                            idx,
                            attempt,
                            job,
                            armed: false,
                        },
                    ));
                }
                Ok(ahead.pop_front())
            }
            Feed::Armed { rx, .. } => rx.recv().await.transpose(),
        }
    }

    /// Creating is over: take back the intents armed and not sent —
    /// `taken`, the one the loop held, and whatever the armer had ready.
    /// Returns once every take-back is queued to the writer.
    pub(super) async fn close(self, taken: Option<Next>) {
        let Feed::Armed {
            mut rx,
            armer,
            writer,
        } = self
        else {
            return;
        };
        let disarm = |n: Next| {
            if n.armed {
                let _ = writer.send(Update::Disarmed { id: n.job.id });
            }
        };
        if let Some(n) = taken {
            disarm(n);
        }
        rx.close();
        while let Some(n) = rx.recv().await {
            if let Ok(n) = n {
                disarm(n);
            }
        }
        let _ = armer.await;
    }
}

/// Read `order` a page at a time and hand its items over with their
/// intents committed, as many per commit as there is room ahead.
async fn arm(
    mut order: vec::IntoIter<(u32, u32)>,
    jobs: Arc<dyn JobSource>,
    items: Arc<Items>,
    arming: Arming,
    tx: mpsc::Sender<Result<Next, String>>,
) {
    loop {
        let page = take_page(&mut order);
        if page.is_empty() {
            return;
        }
        let mut page = match read_page(&jobs, &items, page).await {
            Ok(p) => p.into_iter().peekable(),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        while page.peek().is_some() {
            // Wait for room, then fill all of it with one commit.
            let Ok(first) = tx.reserve().await else {
                return; // the loop stopped: nothing of this group was written
            };
            let mut permits = vec![first];
            while let Ok(p) = tx.try_reserve() {
                permits.push(p);
            }
            let group: Vec<(usize, u32, Job)> = page.by_ref().take(permits.len()).collect();
            for (idx, attempt, job) in &group {
                let _ = arming.writer.send(Update::Intent {
                    id: job.id.clone(),
                    external_task_id: ids::external_task_id(
                        &arming.batch_id,
                        items.id(*idx),
                        *attempt,
                    ),
                    attempt: *attempt,
                    account: arming.account.clone(),
                });
            }
            // Not committed (disk full, state file replaced): handed over
            // unarmed, so each create writes its own intent and meets the
            // failure there, as any create does.
            let armed = arming.writer.flush().await.is_ok();
            for (permit, (idx, attempt, job)) in permits.into_iter().zip(group) {
                permit.send(Ok(Next {
                    idx,
                    attempt,
                    job,
                    armed,
                }));
            }
        }
    }
}

/// The next page of `order`: (item, attempt).
fn take_page(order: &mut vec::IntoIter<(u32, u32)>) -> Vec<(usize, u32)> {
    order
        .by_ref()
        .take(JOB_PAGE)
        .map(|(idx, attempt)| (idx as usize, attempt))
        .collect()
}

/// The jobs of `page` (item, attempt), read off the async threads.
async fn read_page(
    jobs: &Arc<dyn JobSource>,
    items: &Arc<Items>,
    page: Vec<(usize, u32)>,
) -> Result<Vec<(usize, u32, Job)>, String> {
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let (jobs, items) = (jobs.clone(), items.clone());
    tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = page.iter().map(|&(idx, _)| items.id(idx)).collect();
        let read = jobs.jobs(&ids)?;
        if read.len() != page.len() {
            return Err(format!(
                "{} requests read for {} items",
                read.len(),
                page.len()
            ));
        }
        Ok(page
            .into_iter()
            .zip(read)
            .map(|((idx, attempt), job)| (idx, attempt, job))
            .collect())
    })
    .await
    .map_err(|e| format!("the reader stopped: {e}"))?
}
