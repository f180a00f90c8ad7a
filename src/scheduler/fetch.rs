//! The download queue: videos waiting for the download pool, the pool's
//! accounting, and each item's fresh-URL budget.
//!
//! Videos wait here as `(item index, video number)` pairs — two integers
//! each — rather than as parked tasks: a fast provider can finish tasks far
//! quicker than the pool drains them. The pool's size is the
//! [`DownloadPool`]'s: fixed, or (`auto`) growing with the videos waiting up
//! to its ceiling, so a backlog is worked off by more downloads at once
//! instead of waiting behind a handful. The coordinator starts what
//! [`DownloadQueue::pop`] hands out and reports back with
//! [`DownloadQueue::finished`]; an expired URL asks for a fresh one (by
//! querying the task again) a bounded number of times per run.

use std::collections::VecDeque;

use crate::settings::DownloadPool;

/// Fresh URLs asked for per item per run before a download is left for next time.
const MAX_URL_REFRESHES: u16 = 3;

/// Download books of one item (8 bytes: one for every item of the batch).
#[derive(Debug, Default, Clone)]
struct Books {
    /// Videos queued or being fetched.
    downloading: u32,
    refreshes: u16,
    needs_refresh: bool,
}

#[derive(Debug)]
pub(super) struct DownloadQueue {
    queue: VecDeque<(usize, u32)>,
    running: usize,
    pool: DownloadPool,
    /// Most downloads that ran at once, and most videos that waited (the
    /// run's figures, and tests').
    peak: usize,
    peak_waiting: usize,
    items: Vec<Books>,
}

impl DownloadQueue {
    /// Books for `items` items and a `pool` of downloads (at least one).
    pub(super) fn new(items: usize, pool: DownloadPool) -> Self {
        DownloadQueue {
            queue: VecDeque::new(),
            running: 0,
            pool,
            peak: 0,
            peak_waiting: 0,
            items: vec![Books::default(); items],
        }
    }

    /// Queue video `n` of item `idx`.
    pub(super) fn push(&mut self, idx: usize, n: u32) {
        self.queue.push_back((idx, n));
        self.peak_waiting = self.peak_waiting.max(self.queue.len());
        self.items[idx].downloading += 1;
    }

    /// The next video to start, while the pool has room. Follow with
    /// [`started`](Self::started) or [`dropped`](Self::dropped).
    pub(super) fn pop(&mut self) -> Option<(usize, u32)> {
        if self.running >= self.pool.bound(self.queue.len()) {
            return None;
        }
        self.queue.pop_front()
    }

    /// The video just popped is being fetched.
    pub(super) fn started(&mut self) {
        self.running += 1;
        self.peak = self.peak.max(self.running);
    }

    /// Most downloads that ran at once so far.
    pub(super) fn peak(&self) -> usize {
        self.peak
    }

    /// Most videos that waited for a download at once so far.
    pub(super) fn peak_waiting(&self) -> usize {
        self.peak_waiting
    }

    /// The video just popped of item `idx` cannot be fetched (no URL).
    pub(super) fn dropped(&mut self, idx: usize) {
        self.items[idx].downloading -= 1;
    }

    /// A fetch of item `idx` came back.
    pub(super) fn finished(&mut self, idx: usize) {
        self.running -= 1;
        self.items[idx].downloading -= 1;
    }

    /// Videos queued or being fetched (the run is not done while any are).
    pub(super) fn outstanding(&self) -> usize {
        self.queue.len() + self.running
    }

    /// Some video of item `idx` is queued or being fetched.
    pub(super) fn downloading(&self, idx: usize) -> bool {
        self.items[idx].downloading > 0
    }

    /// The URL expired: ask for a fresh one once the item's downloads are
    /// back, unless this run already asked too often (false).
    pub(super) fn url_expired(&mut self, idx: usize) -> bool {
        let b = &mut self.items[idx];
        if b.refreshes < MAX_URL_REFRESHES {
            b.needs_refresh = true;
            true
        } else {
            false
        }
    }

    /// An error page served as a video: often an expired or hotlink-
    /// protected URL, so one fresh URL per run (false: already asked).
    pub(super) fn not_a_video(&mut self, idx: usize) -> bool {
        let b = &mut self.items[idx];
        if b.refreshes == 0 {
            b.needs_refresh = true;
            true
        } else {
            false
        }
    }

    /// Whether to ask for a fresh URL now (and count it).
    pub(super) fn take_refresh(&mut self, idx: usize) -> bool {
        let b = &mut self.items[idx];
        if std::mem::take(&mut b.needs_refresh) {
            b.refreshes += 1;
            true
        } else {
            false
        }
    }
}

/// `videos/<id>.mp4`, or `videos/<id>.videos/<n>.mp4` when a task made
/// several videos. No two items can collide: single videos are files ending
/// in `.mp4`, several are folders ending in `.videos`, and both map ids one
/// to one (`<id>-1.mp4` would be the file of an item called `<id>-1`). Ids
/// are validated as file names (in bytes, leaving room for these suffixes);
/// anything else is replaced here too, so no id can write outside the output
/// folder.
pub fn video_rel_path(id: &str, n: u32, count: usize) -> String {
    let mut safe: String = id
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert(0, '_');
    }
    if count > 1 {
        format!("videos/{safe}.videos/{n}.mp4")
    } else {
        format!("videos/{safe}.mp4")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start everything the pool has room for; the items started.
    fn start_all(q: &mut DownloadQueue) -> Vec<usize> {
        let mut started = Vec::new();
        while let Some((idx, _)) = q.pop() {
            q.started();
            started.push(idx);
        }
        started
    }

    #[test]
    fn the_pool_never_runs_more_than_its_limit() {
        let mut q = DownloadQueue::new(3, DownloadPool::Fixed(2));
        for idx in 0..3 {
            q.push(idx, 1);
        }
        assert_eq!(q.pop(), Some((0, 1)));
        q.started();
        assert_eq!(q.pop(), Some((1, 1)));
        q.started();
        assert_eq!(q.pop(), None);
        assert_eq!(q.outstanding(), 3);
        q.finished(0);
        assert!(!q.downloading(0));
        assert_eq!(q.pop(), Some((2, 1)));
        q.dropped(2);
        assert_eq!(q.outstanding(), 1);
    }

    #[test]
    fn an_explicit_pool_is_a_hard_bound_whatever_waits() {
        let mut q = DownloadQueue::new(1000, DownloadPool::Fixed(3));
        for idx in 0..1000 {
            q.push(idx, 1);
        }
        assert_eq!(start_all(&mut q), [0, 1, 2]);
        q.finished(0);
        assert_eq!(
            start_all(&mut q),
            [3],
            "a freed download is refilled, no more"
        );
        assert_eq!(q.peak(), 3);
    }

    #[test]
    fn an_auto_pool_grows_when_a_backlog_forms_and_never_passes_its_ceiling() {
        let auto = DownloadPool::Auto {
            start: 8,
            ceiling: 64,
        };
        let mut q = DownloadQueue::new(1000, auto);
        // A few finished tasks, no backlog: the pool's start runs them all.
        (0..8).for_each(|idx| q.push(idx, 1));
        let mut running: VecDeque<usize> = start_all(&mut q).into();
        assert_eq!(running.len(), 8);
        // Two more wait: one more download starts for the one still waiting.
        (8..10).for_each(|idx| q.push(idx, 1));
        running.extend(start_all(&mut q));
        assert_eq!(running.len(), 9);
        // A burst of 990 finished tasks: the pool grows to its ceiling...
        (10..1000).for_each(|idx| q.push(idx, 1));
        running.extend(start_all(&mut q));
        assert_eq!(running.len(), 64);
        // ...refills each freed download at once, and never runs more,
        // until the backlog is worked off.
        while let Some(idx) = running.pop_front() {
            q.finished(idx);
            running.extend(start_all(&mut q));
            assert!(running.len() <= 64, "{} running", running.len());
        }
        assert_eq!(q.peak(), 64);
        assert_eq!(q.outstanding(), 0);
        // Nothing waits: new videos find the pool back at its start, plus
        // one for each still waiting (8 + 11 of 30).
        (0..30).for_each(|idx| q.push(idx, 1));
        assert_eq!(start_all(&mut q).len(), 19);
    }

    #[test]
    fn expired_urls_are_refreshed_a_bounded_number_of_times() {
        let mut q = DownloadQueue::new(1, DownloadPool::Fixed(1));
        for _ in 0..MAX_URL_REFRESHES {
            assert!(q.url_expired(0));
            assert!(q.take_refresh(0));
        }
        assert!(!q.url_expired(0));
        assert!(!q.take_refresh(0));
    }

    #[test]
    fn an_error_page_asks_for_one_fresh_url_per_run() {
        let mut q = DownloadQueue::new(1, DownloadPool::Fixed(1));
        assert!(q.not_a_video(0));
        assert!(q.take_refresh(0));
        assert!(!q.not_a_video(0));
    }
}
