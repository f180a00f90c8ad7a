//! How many requests a run made, by kind: the figures `summary.json` reports
//! so a pipeline can see what a run cost in API calls. Counted where the
//! engine calls the provider and the downloader; atomics, because the
//! submit tasks and the coordinator's workers count concurrently.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters shared by the engine's workers.
#[derive(Debug, Default)]
pub struct RequestCounts {
    create: AtomicU64,
    query: AtomicU64,
    list: AtomicU64,
    lookup: AtomicU64,
    download: AtomicU64,
    retries: AtomicU64,
}

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A create POST.
    Create,
    /// A single-task status query (also the query for a fresh video URL).
    Query,
    /// One page of a list sweep.
    List,
    /// A lookup by external_task_id (settling an ambiguous create).
    Lookup,
    /// A video download started (its internal Range resumes are one download).
    Download,
}

impl RequestCounts {
    pub fn count(&self, r: Request) {
        let c = match r {
            Request::Create => &self.create,
            Request::Query => &self.query,
            Request::List => &self.list,
            Request::Lookup => &self.lookup,
            Request::Download => &self.download,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A request sent again because an earlier one for the same thing failed
    /// transiently (also counted under its kind).
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Requests {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Requests {
            create: get(&self.create),
            query: get(&self.query),
            list: get(&self.list),
            lookup: get(&self.lookup),
            download: get(&self.download),
            retries: get(&self.retries),
        }
    }
}

/// Requests a run made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    pub create: u64,
    pub query: u64,
    pub list: u64,
    pub lookup: u64,
    pub download: u64,
    /// Creates and lookups repeated after a transient failure or a full slot.
    pub retries: u64,
}

impl Requests {
    /// Every request to the provider and every download.
    pub fn total(&self) -> u64 {
        self.create + self.query + self.list + self.lookup + self.download
    }
}
