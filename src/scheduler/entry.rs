//! One item's in-memory state, as the coordinator owns it.
//!
//! Only what the coordinator itself decides on lives here (status, attempt,
//! task id, slot, deadline, videos). What belongs to polling (due times,
//! poll counts, busy) is in [`super::poll::PollQueue`] and what belongs to
//! downloads (files in the pool, URL refreshes) in
//! [`super::fetch::DownloadQueue`], each keyed by the item's index. Kept
//! small (96 bytes; error messages, prompts and the videos of done items
//! stay in the state): a 100k-item batch holds 100k of these.

use std::time::Instant;

#[cfg(test)]
const _: () = assert!(std::mem::size_of::<Entry>() <= 96);

use crate::state::{Status, VideoRecord};

#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) status: Status,
    pub(super) attempt: u32,
    /// Only while the engine may still ask about the task (not for items
    /// downloaded or failed before this run).
    pub(super) task_id: Option<Box<str>>,
    /// Holds one of our in-flight slots (in its account's bound).
    pub(super) holds_slot: bool,
    /// The account whose credentials sent the current attempt (index into
    /// the run's accounts).
    pub(super) account: u16,
    /// The state names no account for an unsettled create (a rebuilt state):
    /// recovery asks every account.
    pub(super) account_unknown: bool,
    /// When the task times out; `Some` exactly while it is tracked as in
    /// flight (by the poll queue).
    pub(super) deadline: Option<Instant>,
    pub(super) videos: Vec<VideoRecord>,
    /// The key an unsettled create used, as the state recorded it (only for
    /// items left `submitting`): recovery must ask for exactly that key,
    /// whatever the manifest or the naming rules say today.
    pub(super) pending_key: Option<Box<str>>,
    /// Unix ms the task was created (from the state), for `RunEvent::Started`.
    pub(super) submitted_at: Option<std::num::NonZeroI64>,
}
