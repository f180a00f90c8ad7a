//! One item's in-memory state, as the coordinator owns it.
//!
//! Only what the coordinator itself decides on lives here (status, attempt,
//! task id, slot, deadline, videos). What belongs to polling (due times,
//! poll counts, busy) is in [`super::poll::PollQueue`] and what belongs to
//! downloads (files in the pool, URL refreshes) in
//! [`super::fetch::DownloadQueue`], each keyed by the item's index.
//!
//! A 100k-item batch holds 100k of these, and at any moment nearly all of
//! them are either not started or done: so an entry is 40 bytes, and what
//! only an item with a task in the air or videos to fetch needs (deadline,
//! video records, the key of an unsettled create) sits in a [`Live`] box
//! that exists only while it does. A finished item (downloaded or failed)
//! keeps neither its task id nor its box: error messages, prompts and the
//! videos of done items stay in the state.

use std::num::NonZeroI64;
use std::time::Instant;

#[cfg(test)]
const _: () = assert!(std::mem::size_of::<Entry>() <= 40);

use crate::state::{Status, VideoRecord};

#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) status: Status,
    pub(super) attempt: u32,
    /// Only while the engine may still ask about the task (not for items
    /// downloaded or failed, in this run or before it).
    pub(super) task_id: Option<Box<str>>,
    /// Holds one of our in-flight slots (in its account's bound).
    pub(super) holds_slot: bool,
    /// The account whose credentials sent the current attempt (index into
    /// the run's accounts).
    pub(super) account: u16,
    /// The state names no account for an unsettled create (a rebuilt state):
    /// recovery asks every account.
    pub(super) account_unknown: bool,
    /// `None` while every field of it would be empty (most items).
    live: Option<Box<Live>>,
}

/// What an item needs only while its task is in the air or its videos are
/// still to be fetched.
#[derive(Debug, Default)]
struct Live {
    /// When the task times out; `Some` exactly while it is tracked as in
    /// flight (by the poll queue).
    deadline: Option<Instant>,
    videos: Vec<VideoRecord>,
    /// The key an unsettled create used, as the state recorded it (only for
    /// items left `submitting`): recovery must ask for exactly that key,
    /// whatever the manifest or the naming rules say today.
    pending_key: Option<Box<str>>,
    /// Unix ms the task was created (from the state), for `RunEvent::Started`.
    submitted_at: Option<NonZeroI64>,
}

impl Live {
    fn is_empty(&self) -> bool {
        self.deadline.is_none()
            && self.videos.is_empty()
            && self.pending_key.is_none()
            && self.submitted_at.is_none()
    }
}

impl Entry {
    pub(super) fn new(status: Status, attempt: u32) -> Entry {
        Entry {
            status,
            attempt,
            ..Entry::default()
        }
    }

    /// When the task times out, while it is tracked as in flight.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.live.as_ref().and_then(|l| l.deadline)
    }

    /// Set (or clear) the deadline; the one it had.
    pub(super) fn set_deadline(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        let old = std::mem::replace(&mut self.live_mut().deadline, deadline);
        self.tidy();
        old
    }

    /// The video records of an item whose videos are still to be fetched.
    pub(super) fn videos(&self) -> &[VideoRecord] {
        self.live.as_ref().map_or(&[], |l| &l.videos)
    }

    pub(super) fn videos_mut(&mut self) -> &mut [VideoRecord] {
        match &mut self.live {
            Some(l) => &mut l.videos,
            None => &mut [],
        }
    }

    pub(super) fn set_videos(&mut self, videos: Vec<VideoRecord>) {
        self.live_mut().videos = videos;
        self.tidy();
    }

    /// The key of the unsettled create, once (recovery asks for it).
    pub(super) fn take_pending_key(&mut self) -> Option<Box<str>> {
        let key = self.live.as_mut()?.pending_key.take();
        self.tidy();
        key
    }

    pub(super) fn set_pending_key(&mut self, key: Option<Box<str>>) {
        self.live_mut().pending_key = key;
        self.tidy();
    }

    /// Unix ms the task was created, as the state recorded it.
    pub(super) fn submitted_at(&self) -> Option<i64> {
        Some(self.live.as_ref()?.submitted_at?.get())
    }

    pub(super) fn set_submitted_at(&mut self, at: Option<i64>) {
        self.live_mut().submitted_at = at.and_then(NonZeroI64::new);
        self.tidy();
    }

    /// The item is done (downloaded or failed): nothing more is asked about
    /// its task in this run, so it keeps neither the task id nor its videos
    /// (the state has both; a downloaded item whose files turn out gone
    /// reads them back). A deadline still set stays: the poll queue's books
    /// are closed by the one who clears it.
    pub(super) fn finished(&mut self) {
        self.task_id = None;
        if let Some(l) = &mut self.live {
            l.videos = Vec::new();
            l.pending_key = None;
            l.submitted_at = None;
        }
        self.tidy();
    }

    fn live_mut(&mut self) -> &mut Live {
        self.live.get_or_insert_with(Box::default)
    }

    fn tidy(&mut self) {
        if self.live.as_ref().is_some_and(|l| l.is_empty()) {
            self.live = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_item_keeps_no_task_id_videos_or_box() {
        let mut e = Entry::new(Status::Succeeded, 1);
        e.task_id = Some("t1".into());
        e.set_videos(vec![VideoRecord {
            n: 1,
            ..VideoRecord::default()
        }]);
        e.set_submitted_at(Some(5));
        assert_eq!(e.videos().len(), 1);
        assert_eq!(e.submitted_at(), Some(5));
        e.finished();
        assert!(e.task_id.is_none());
        assert!(e.videos().is_empty());
        assert!(e.live.is_none());
    }

    #[test]
    fn the_box_exists_only_while_something_is_in_it() {
        let mut e = Entry::default();
        let now = Instant::now();
        assert_eq!(e.set_deadline(Some(now)), None);
        e.set_pending_key(Some("k".into()));
        assert_eq!(e.set_deadline(None), Some(now));
        assert!(e.live.is_some());
        assert_eq!(e.take_pending_key().as_deref(), Some("k"));
        assert!(e.live.is_none());
        // A deadline outlives `finished`: the poll queue still tracks it.
        e.set_deadline(Some(now));
        e.finished();
        assert_eq!(e.deadline(), Some(now));
    }
}
