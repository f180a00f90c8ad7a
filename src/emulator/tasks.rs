//! The task store: every task ever created, indexed by task id, external id,
//! video id and kind. A [`Task`] holds its transition times; its status at any
//! moment is computed from them ([`Task::status_at`]), and the in-flight count
//! is a min-heap of terminal times pruned on demand, so no timer exists per task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::validate::Kind;

/// The documented statuses (spelled `succeed`, kling-api.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Submitted,
    Processing,
    Succeed,
    Failed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "submitted",
            Status::Processing => "processing",
            Status::Succeed => "succeed",
            Status::Failed => "failed",
        }
    }
}

/// How a task ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeed,
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub task_id: String,
    pub kind: Kind,
    pub external_task_id: Option<String>,
    /// Where status changes are POSTed (`callbacks.rs`); absolute http(s).
    pub callback_url: Option<String>,
    pub created_at: u64,
    pub processing_at: u64,
    pub terminal_at: u64,
    pub outcome: Outcome,
    /// One id per video in the result (distinct files).
    pub video_ids: Vec<String>,
    /// Requested seconds; the result reports a slightly longer string (§6.1).
    pub duration: u32,
    pub units: String,
}

impl Task {
    pub(crate) fn status_at(&self, now: u64) -> Status {
        if now >= self.terminal_at {
            match self.outcome {
                Outcome::Succeed => Status::Succeed,
                Outcome::Failed(_) => Status::Failed,
            }
        } else if now >= self.processing_at {
            Status::Processing
        } else {
            Status::Submitted
        }
    }

    /// When the status last changed, as seen at `now`.
    pub(crate) fn updated_at(&self, now: u64) -> u64 {
        match self.status_at(now) {
            Status::Submitted => self.created_at,
            Status::Processing => self.processing_at,
            Status::Succeed | Status::Failed => self.terminal_at,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct TaskStore {
    tasks: Vec<Task>,
    by_id: HashMap<String, usize>,
    by_ext: HashMap<String, usize>,
    by_video: HashMap<String, usize>,
    by_kind: [Vec<usize>; 2],
    /// Terminal times of tasks that may still be in flight.
    in_flight: BinaryHeap<Reverse<u64>>,
    max_in_flight: usize,
}

impl TaskStore {
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// By index, as returned by [`TaskStore::insert`] (tasks are never removed).
    pub(crate) fn get(&self, idx: usize) -> Option<&Task> {
        self.tasks.get(idx)
    }

    pub(crate) fn ext_exists(&self, ext: &str) -> bool {
        self.by_ext.contains_key(ext)
    }

    /// Tasks not terminal at `now`.
    pub(crate) fn in_flight(&mut self, now: u64) -> usize {
        while self.in_flight.peek().is_some_and(|Reverse(t)| *t <= now) {
            self.in_flight.pop();
        }
        self.in_flight.len()
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    pub(crate) fn insert(&mut self, task: Task, now: u64) -> usize {
        let idx = self.tasks.len();
        self.by_id.insert(task.task_id.clone(), idx);
        if let Some(ext) = &task.external_task_id {
            self.by_ext.insert(ext.clone(), idx);
        }
        for video_id in &task.video_ids {
            self.by_video.insert(video_id.clone(), idx);
        }
        self.by_kind[task.kind.index()].push(idx);
        self.in_flight.push(Reverse(task.terminal_at));
        self.tasks.push(task);
        let now_in_flight = self.in_flight(now);
        self.max_in_flight = self.max_in_flight.max(now_in_flight);
        idx
    }

    /// By task id first, then by external id (§6.1), within one kind.
    pub(crate) fn find(&self, kind: Kind, id: &str) -> Option<&Task> {
        let idx = self.by_id.get(id).or_else(|| self.by_ext.get(id))?;
        self.tasks.get(*idx).filter(|t| t.kind == kind)
    }

    pub(crate) fn find_ext(&self, kind: Kind, ext: &str) -> Option<&Task> {
        let idx = self.by_ext.get(ext)?;
        self.tasks.get(*idx).filter(|t| t.kind == kind)
    }

    pub(crate) fn by_video(&self, video_id: &str) -> Option<&Task> {
        self.tasks.get(*self.by_video.get(video_id)?)
    }

    /// One page, newest first; pages are 1-based.
    pub(crate) fn page(&self, kind: Kind, page_num: usize, page_size: usize) -> Vec<&Task> {
        let skip = page_num.saturating_sub(1).saturating_mul(page_size);
        self.by_kind[kind.index()]
            .iter()
            .rev()
            .skip(skip)
            .take(page_size)
            .filter_map(|i| self.tasks.get(*i))
            .collect()
    }

    /// Count per status at `now` (all four keys present).
    pub(crate) fn status_counts(&self, now: u64) -> [(Status, u64); 4] {
        let mut counts = [
            (Status::Submitted, 0),
            (Status::Processing, 0),
            (Status::Succeed, 0),
            (Status::Failed, 0),
        ];
        for t in &self.tasks {
            let s = t.status_at(now);
            if let Some(slot) = counts.iter_mut().find(|(k, _)| *k == s) {
                slot.1 += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u64, kind: Kind, created: u64, terminal: u64) -> Task {
        Task {
            task_id: format!("{n:018}"),
            kind,
            external_task_id: Some(format!("ext-{n}")),
            callback_url: None,
            created_at: created,
            processing_at: created + (terminal - created) / 2,
            terminal_at: terminal,
            outcome: Outcome::Succeed,
            video_ids: vec![format!("v{n}")],
            duration: 5,
            units: "1".to_owned(),
        }
    }

    #[test]
    fn lifecycle_is_computed_from_times() {
        let t = task(1, Kind::Text2Video, 100, 200);
        assert_eq!(t.status_at(100), Status::Submitted);
        assert_eq!(t.status_at(150), Status::Processing);
        assert_eq!(t.updated_at(150), 150);
        assert_eq!(t.status_at(200), Status::Succeed);
        assert_eq!(t.updated_at(500), 200);
    }

    #[test]
    fn in_flight_and_pages() {
        let mut s = TaskStore::default();
        for n in 0..5 {
            s.insert(task(n, Kind::Text2Video, 0, 100 + n), 0);
        }
        s.insert(task(9, Kind::Image2Video, 0, 50), 0);
        assert_eq!(s.max_in_flight(), 6);
        assert_eq!(s.in_flight(60), 5);
        assert_eq!(s.in_flight(1000), 0);
        let page: Vec<&str> = s
            .page(Kind::Text2Video, 1, 2)
            .iter()
            .map(|t| t.task_id.as_str())
            .collect();
        assert_eq!(page, vec!["000000000000000004", "000000000000000003"]);
        assert_eq!(s.page(Kind::Text2Video, 3, 2).len(), 1);
        assert!(s.find(Kind::Text2Video, "ext-2").is_some());
        assert!(s.find(Kind::Image2Video, "ext-2").is_none());
    }
}
