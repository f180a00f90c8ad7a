//! Counters and the request log: [`Stats`] (served at `GET /__emulator/stats`
//! and by `EmulatorHandle::stats`) and [`RecordedRequest`]. The Authorization
//! header is never recorded.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Above this many distinct external ids the per-id map is left out of [`Stats`].
const ATTEMPT_MAP_LIMIT: usize = 10_000;

/// A snapshot of the emulator's counters (JSON in snake_case).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests per route template, e.g. `POST /v1/videos/text2video`,
    /// `GET /v1/videos/{kind}/{id}`, `GET /v1/videos/{kind}` (list and
    /// `?external_task_id=`), `GET /videos/{file}`; unknown paths under `(unmatched)`.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Creates that made a task (ambiguous ones included).
    pub creates_accepted: u64,
    /// Creates refused, by business code (auth, validation, faults, 1102, 1303).
    pub creates_rejected_by_code: BTreeMap<i64, u64>,
    /// External ids sent in a create while a task with that id already
    /// existed: each one is a double submission by the client. Target: empty.
    pub duplicate_external_task_ids: Vec<String>,
    /// Create attempts per external id, whatever their outcome; left out when
    /// more than 10,000 ids were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_attempts_by_external_task_id: Option<BTreeMap<String, u64>>,
    /// The highest number of create attempts any one external id received.
    pub creates_per_external_task_id_max: u64,
    /// Tasks by their status now: submitted, processing, succeed, failed.
    pub tasks_by_status: BTreeMap<String, u64>,
    /// Tasks not yet terminal now (what the concurrency limit counts).
    pub in_flight_now: u64,
    /// The highest in-flight count seen at any create.
    pub max_in_flight: u64,
    /// Videos in the results of every task created (tasks × `videos_per_task`).
    #[serde(default)]
    pub videos_created: u64,
    /// Video responses started (200 or 206).
    pub downloads_started: u64,
    /// Video responses whose last byte was handed to the connection.
    pub downloads_completed: u64,
    /// Downloads cut off halfway by fault injection.
    pub downloads_cut: u64,
    /// Video requests refused with 403 (expired or bad signature).
    pub downloads_forbidden: u64,
    /// Single-task queries (by path id or `?external_task_id=`).
    pub queries: u64,
    /// List queries (`?pageNum=&pageSize=`).
    pub list_queries: u64,
    /// Injected faults by name: create_5000, create_ambiguous, create_1302,
    /// query_5001, download_cut, download_html, download_json, download_short,
    /// download_trickle, download_endless, long_task_id, redirect_download,
    /// redirect_api, callback_drop.
    pub faults_injected: BTreeMap<String, u64>,
    /// Task callbacks (`callback_url`) the receiver answered with a 2xx.
    #[serde(default)]
    pub callbacks_sent: u64,
    /// Task callbacks given up after three failed attempts (connection
    /// error, timeout or a status other than 2xx each time).
    #[serde(default)]
    pub callbacks_failed: u64,
    /// Task callbacks never sent, by the `callback_drop` fault.
    #[serde(default)]
    pub callbacks_dropped: u64,
}

/// One request as the emulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The route template counted in [`Stats::requests_by_route`].
    pub route: String,
    /// HTTP status decided (for a dropped connection: what was never sent).
    pub status: u16,
    /// Business code of a JSON envelope answer.
    pub code: Option<i64>,
    /// The connection was closed without a (complete) answer: ambiguous create
    /// or cut download.
    pub dropped: bool,
    /// Unix milliseconds.
    pub at: u64,
}

/// Mutable counters, kept under the state mutex.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_by_route: HashMap<&'static str, u64>,
    pub creates_accepted: u64,
    pub creates_rejected_by_code: BTreeMap<i64, u64>,
    pub duplicates: Vec<String>,
    duplicate_set: HashSet<String>,
    pub create_attempts: HashMap<String, u64>,
    pub create_attempts_max: u64,
    /// Create attempts without an external id, numbered for fault keys.
    pub anonymous_creates: u64,
    pub query_attempts: HashMap<String, u64>,
    pub download_attempts: HashMap<String, u64>,
    pub downloads_started: u64,
    pub downloads_cut: u64,
    pub downloads_forbidden: u64,
    pub videos_created: u64,
    pub queries: u64,
    pub list_queries: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub(crate) fn route(&mut self, route: &'static str) {
        *self.requests_by_route.entry(route).or_default() += 1;
    }

    pub(crate) fn reject(&mut self, code: i64) {
        *self.creates_rejected_by_code.entry(code).or_default() += 1;
    }

    pub(crate) fn fault(&mut self, name: &'static str) {
        *self.faults.entry(name).or_default() += 1;
    }

    /// Count a create attempt for `ext`; returns its 0-based attempt number.
    pub(crate) fn create_attempt(&mut self, ext: &str) -> u64 {
        let n = self.create_attempts.entry(ext.to_owned()).or_default();
        *n += 1;
        self.create_attempts_max = self.create_attempts_max.max(*n);
        *n - 1
    }

    pub(crate) fn duplicate(&mut self, ext: &str) {
        if self.duplicate_set.insert(ext.to_owned()) {
            self.duplicates.push(ext.to_owned());
        }
    }

    /// Count one more use of `key` in `map`; returns its 0-based number.
    pub(crate) fn nth(map: &mut HashMap<String, u64>, key: &str) -> u64 {
        let n = map.entry(key.to_owned()).or_default();
        *n += 1;
        *n - 1
    }

    /// The parts of [`Stats`] these counters own.
    pub(crate) fn fill(&self, stats: &mut Stats) {
        stats.requests_by_route = self
            .requests_by_route
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        stats.creates_accepted = self.creates_accepted;
        stats.creates_rejected_by_code = self.creates_rejected_by_code.clone();
        stats.duplicate_external_task_ids = self.duplicates.clone();
        stats.create_attempts_by_external_task_id =
            (self.create_attempts.len() <= ATTEMPT_MAP_LIMIT).then(|| {
                self.create_attempts
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            });
        stats.creates_per_external_task_id_max = self.create_attempts_max;
        stats.downloads_started = self.downloads_started;
        stats.downloads_cut = self.downloads_cut;
        stats.downloads_forbidden = self.downloads_forbidden;
        stats.videos_created = self.videos_created;
        stats.queries = self.queries;
        stats.list_queries = self.list_queries;
        stats.faults_injected = self
            .faults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_through_json() {
        let mut c = Counters::default();
        c.route("GET /v1/videos/{kind}/{id}");
        c.reject(1303);
        assert_eq!(c.create_attempt("a"), 0);
        assert_eq!(c.create_attempt("a"), 1);
        c.duplicate("a");
        c.duplicate("a");
        let mut s = Stats::default();
        c.fill(&mut s);
        assert_eq!(s.duplicate_external_task_ids, vec!["a".to_owned()]);
        assert_eq!(s.creates_per_external_task_id_max, 2);
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert!(json.contains("\"1303\":1"), "{json}");
        let back: Stats = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
    }
}
