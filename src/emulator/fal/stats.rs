//! Counters of the fal emulator: [`FalStats`] (served at
//! `GET /__emulator/stats` and by `FalHandle::stats`).
//!
//! fal has no idempotency key, so the only evidence of a double submission is
//! the same input sent to the same model twice: every accepted submit is
//! counted by a hash of (model, body), and a second acceptance of one hash is
//! a "possible duplicate". A client that never resubmits an ambiguous create
//! keeps `possible_duplicate_submits` at zero.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A snapshot of the counters (JSON in snake_case).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FalStats {
    /// Requests per route template, e.g. `POST /{model_id}`,
    /// `GET /{owner}/{app}/requests/{id}/status`; unknown paths under `(unmatched)`.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Submit attempts that reached the submit handler (any outcome).
    pub submit_attempts: u64,
    /// Submits that created a request (ambiguous ones included).
    pub submits_accepted: u64,
    /// Submits refused, by HTTP status (401, 413, 422, 429, 500).
    pub submits_rejected_by_status: BTreeMap<u16, u64>,
    /// Accepted submits whose (model, body) had been accepted before.
    pub possible_duplicate_submits: u64,
    /// The most accepted submits of any one (model, body).
    pub accepted_per_body_max: u64,
    /// Accepted submits by model id.
    pub requests_by_model: BTreeMap<String, u64>,
    /// Calls to `…/requests/{id}/status`.
    pub status_requests: u64,
    /// Calls to `…/requests/{id}` (the result).
    pub result_requests: u64,
    /// Calls to `…/requests/{id}/cancel`.
    pub cancel_requests: u64,
    /// Cancels that stopped a queued request.
    pub cancels_effective: u64,
    /// 422s that fal charges: refused submits plus requests that ended with an input error.
    pub charged_422: u64,
    /// Requests charged so far: completed with a video or a 422 result, plus refused submits (422).
    pub requests_charged: u64,
    /// Requests by their status now: IN_QUEUE, IN_PROGRESS, COMPLETED.
    pub requests_by_status: BTreeMap<String, u64>,
    /// Completed requests by how they ended: video, input_error, runner_disconnected,
    /// request_timeout, cancelled.
    pub completed_by_outcome: BTreeMap<String, u64>,
    /// The most requests ever in progress at once (never above the concurrency limit).
    pub max_in_progress: u64,
    /// Requests answered 429 by the per-user request rate limit.
    pub rate_limited: u64,
    /// Video responses started (200 or 206).
    pub downloads_started: u64,
    /// Video responses whose last byte was handed to the connection.
    pub downloads_completed: u64,
    /// Injected faults by name: submit_ambiguous, submit_429, submit_5xx,
    /// status_5xx, result_422, result_500, download_cut, webhook_drop.
    pub faults_injected: BTreeMap<String, u64>,
    /// Webhooks (`?fal_webhook=`) the receiver answered with a 2xx.
    #[serde(default)]
    pub webhooks_sent: u64,
    /// Webhooks given up after three failed attempts (connection error,
    /// timeout or a non-2xx answer each).
    #[serde(default)]
    pub webhooks_failed: u64,
    /// Webhooks never sent, by the `webhook_drop` fault.
    #[serde(default)]
    pub webhooks_dropped: u64,
}

/// Mutable counters, kept under the state mutex.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_by_route: HashMap<&'static str, u64>,
    pub submit_attempts: u64,
    pub submits_accepted: u64,
    pub submits_rejected: BTreeMap<u16, u64>,
    /// Submit attempts per body key (fault decisions use the attempt number).
    pub attempts_by_body: HashMap<String, u64>,
    /// Accepted submits per body key.
    pub accepted_by_body: HashMap<String, u64>,
    pub possible_duplicates: u64,
    pub accepted_per_body_max: u64,
    pub by_model: BTreeMap<String, u64>,
    pub status_requests: u64,
    pub result_requests: u64,
    pub cancel_requests: u64,
    pub cancels_effective: u64,
    pub submit_422: u64,
    pub rate_limited: u64,
    pub status_attempts: HashMap<String, u64>,
    pub download_attempts: HashMap<String, u64>,
    pub downloads_started: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub(crate) fn route(&mut self, route: &'static str) {
        *self.requests_by_route.entry(route).or_default() += 1;
    }

    pub(crate) fn reject(&mut self, status: u16) {
        *self.submits_rejected.entry(status).or_default() += 1;
        if status == 422 {
            self.submit_422 += 1;
        }
    }

    pub(crate) fn fault(&mut self, name: &'static str) {
        *self.faults.entry(name).or_default() += 1;
    }

    /// Count one more use of `key` in `map`; returns its 0-based number.
    pub(crate) fn nth(map: &mut HashMap<String, u64>, key: &str) -> u64 {
        let n = map.entry(key.to_owned()).or_default();
        *n += 1;
        *n - 1
    }

    /// Count an accepted submit of `body_key` to `model`.
    pub(crate) fn accepted(&mut self, body_key: &str, model: &str) {
        self.submits_accepted += 1;
        *self.by_model.entry(model.to_owned()).or_default() += 1;
        let n = self
            .accepted_by_body
            .entry(body_key.to_owned())
            .or_default();
        *n += 1;
        if *n > 1 {
            self.possible_duplicates += 1;
        }
        self.accepted_per_body_max = self.accepted_per_body_max.max(*n);
    }

    /// The parts of [`FalStats`] these counters own.
    pub(crate) fn fill(&self, s: &mut FalStats) {
        s.requests_by_route = self
            .requests_by_route
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        s.submit_attempts = self.submit_attempts;
        s.submits_accepted = self.submits_accepted;
        s.submits_rejected_by_status = self.submits_rejected.clone();
        s.possible_duplicate_submits = self.possible_duplicates;
        s.accepted_per_body_max = self.accepted_per_body_max;
        s.requests_by_model = self.by_model.clone();
        s.status_requests = self.status_requests;
        s.result_requests = self.result_requests;
        s.cancel_requests = self.cancel_requests;
        s.cancels_effective = self.cancels_effective;
        s.rate_limited = self.rate_limited;
        s.downloads_started = self.downloads_started;
        s.faults_injected = self
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
    fn a_second_acceptance_of_one_body_is_a_possible_duplicate() {
        let mut c = Counters::default();
        c.accepted("a", "fal-ai/veo3");
        c.accepted("b", "fal-ai/veo3");
        assert_eq!(c.possible_duplicates, 0);
        c.accepted("a", "fal-ai/veo3");
        let mut s = FalStats::default();
        c.fill(&mut s);
        assert_eq!(s.possible_duplicate_submits, 1);
        assert_eq!(s.accepted_per_body_max, 2);
        assert_eq!(s.requests_by_model.get("fal-ai/veo3"), Some(&3));
        let json = serde_json::to_string(&s).unwrap_or_default();
        let back: FalStats = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
    }
}
