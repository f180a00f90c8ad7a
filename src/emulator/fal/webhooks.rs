//! fal's webhooks (providers.md §8a): a submit with `?fal_webhook=<url>`
//! gets one POST there when the request ends —
//! `{request_id, gateway_request_id, status: "OK", payload}` with the result
//! as its payload, or `{…, status: "ERROR", error, payload}` for a request
//! whose result is an error. fal sends nothing for `IN_QUEUE`/`IN_PROGRESS`.
//!
//! Why a clock here when everything else in this emulator is computed from
//! timestamps (`queue.rs`): a webhook has to leave at the moment of the end,
//! unasked. It runs on the Kling emulator's callback machinery
//! (`../callbacks.rs`): one loop per emulator over a min-heap of (due, request
//! index), kept under the state mutex beside the queue, a shared client (5 s
//! timeout, no redirects), three tries 100 ms apart, at most 64 in the air.
//! This file is the fal side of it, a [`Source`]: which entry is due and
//! what to send for it.
//!
//! One source of truth for both the moment and the body: when an entry is
//! due the loop asks the request its status *now* (`FalRequest::status_at`)
//! and renders the payload with the result GET's own function
//! (`endpoints::result_view`), so the webhook's payload is exactly what a GET
//! of the result URL answers. Every request with a webhook has exactly one
//! entry, at its planned end. A cancel is the only thing that moves planned
//! ends (the queued requests behind it move up), so [`replanned`] swaps
//! their entries, and drops the cancelled one: a cancelled request sends no
//! webhook (the documentation is silent; no result to report).
//!
//! Choices where the documentation is silent: `gateway_request_id` equals
//! `request_id` (the emulator never retries a request on another runner);
//! `error` is `"Invalid status code: <result HTTP status>"`, as in fal's
//! example; no signature headers. A `fal_webhook` that is not one absolute
//! http(s) URL (at most 2048 characters) refuses the submit with a 422 like
//! any other bad input. The URL may carry a receiver's secret, so it is
//! never logged. The `webhook_drop` fault is keyed by the request's fault
//! key, so a seed drops the same webhooks whatever the timing.

use std::sync::Arc;

use axum::extract::Query;
use axum::http::Uri;
use bytes::Bytes;
use serde_json::{Value, json};

use super::super::callbacks::{Delivery, Outbox, Source};
use super::super::faults;
use super::endpoints::result_view;
use super::queue::{FalRequest, Status};
use super::server::{Inner, Shared};
use super::validate::Problem;

/// The query parameter fal reads the webhook URL from.
const PARAM: &str = "fal_webhook";
/// Kept with every request, so bounded (fal names no limit).
const MAX_URL: usize = 2048;

/// The submit's `fal_webhook`, decoded and normalised: `Ok(None)` without
/// one, a validation problem for anything but one absolute http(s) URL.
pub(super) fn from_uri(uri: &Uri) -> Result<Option<String>, Problem> {
    let bad = |msg: &str| Problem::query(PARAM, msg, "value_error.url");
    if uri.query().is_none() {
        return Ok(None);
    }
    // Form decoding never fails on odd bytes; it only replaces them.
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| bad("the query string cannot be decoded"))?
        .0;
    let mut values = pairs.into_iter().filter(|(k, _)| k == PARAM);
    let Some((_, raw)) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad("fal_webhook given more than once"));
    }
    if raw.chars().count() > MAX_URL {
        return Err(bad("fal_webhook is longer than 2048 characters"));
    }
    match reqwest::Url::parse(&raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(Some(url.into()))
        }
        _ => Err(bad(
            "fal_webhook is not an absolute http:// or https:// URL",
        )),
    }
}

/// Schedule the webhook of the request just submitted as `idx`, if it asked
/// for one; true when it is now the earliest, so the loop must be woken.
pub(super) fn schedule(st: &mut Inner, idx: usize) -> bool {
    match st.queue.at(idx) {
        Some(r) if r.webhook.is_some() => {
            let end = r.end;
            st.schedule.push(end, idx)
        }
        _ => false,
    }
}

/// After `cancelled` was cancelled: its entry goes, and every still-queued
/// request's entry moves to its new end. True when anything was pushed
/// (the loop re-reads its schedule).
pub(super) fn replanned(st: &mut Inner, cancelled: &str) -> bool {
    let moved: Vec<(usize, u64)> = st
        .queue
        .queued()
        .filter(|(_, r)| r.webhook.is_some())
        .map(|(i, r)| (i, r.end))
        .collect();
    let gone = st.queue.index_of(cancelled);
    // Both sorted ascending: `queued` is in submission order.
    st.schedule
        .remove(|i| Some(i) == gone || moved.binary_search_by_key(&i, |&(m, _)| m).is_ok());
    for &(idx, end) in &moved {
        st.schedule.push(end, idx);
    }
    !moved.is_empty()
}

impl Source for Shared {
    fn outbox(&self) -> &Arc<Outbox> {
        &self.webhooks
    }

    fn next_due(&self) -> Option<u64> {
        self.lock().schedule.next_due()
    }

    fn take_due(&self, now: u64) -> Option<Delivery> {
        let (url, r) = take_request(self, now)?;
        let body = serde_json::to_vec(&body(self, &r)).unwrap_or_else(|_| b"{}".to_vec());
        Some(Delivery {
            url,
            body: Bytes::from(body),
            id: r.id,
        })
    }
}

/// Pop the earliest due entry; the request and its URL when its webhook
/// leaves now (not when it was cancelled, or the drop fault fires).
fn take_request(shared: &Shared, now: u64) -> Option<(String, FalRequest)> {
    let mut guard = shared.lock();
    let st = &mut *guard;
    let idx = st.schedule.pop_due(now)?;
    let r = st.queue.at(idx)?;
    let url = r.webhook.clone()?;
    if r.cancelled_at.is_some() {
        return None;
    }
    if r.status_at(now) != Status::Completed {
        // Woken before its end (clock stepped back): look again then.
        let end = r.end;
        st.schedule.push(end, idx);
        return None;
    }
    let cfg = &shared.config;
    if faults::fires(
        cfg.webhook_drop_rate,
        cfg.seed,
        "webhook_drop",
        &r.fault_key,
        0,
    ) {
        st.counters.fault("webhook_drop");
        shared.webhooks.count_dropped();
        return None;
    }
    Some((url, r.clone()))
}

/// The webhook body of a finished, uncancelled request.
fn body(shared: &Shared, r: &FalRequest) -> Value {
    let view = result_view(shared, r);
    if view.status.is_success() {
        json!({
            "request_id": r.id,
            "gateway_request_id": r.id,
            "status": "OK",
            "payload": view.body,
        })
    } else {
        json!({
            "request_id": r.id,
            "gateway_request_id": r.id,
            "status": "ERROR",
            "error": format!("Invalid status code: {}", view.status.as_u16()),
            "payload": view.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(uri: &str) -> Result<Option<String>, Problem> {
        let uri: Uri = uri.parse().unwrap_or_default();
        from_uri(&uri)
    }

    #[test]
    fn the_webhook_is_read_decoded_from_the_query() {
        assert_eq!(hook("/fal-ai/veo3"), Ok(None));
        assert_eq!(hook("/fal-ai/veo3?x=1"), Ok(None));
        assert_eq!(
            hook("/fal-ai/veo3?fal_webhook=https%3A%2F%2Fh.example.com%2Fvb%2Fabc%3Fx%3D1%26y"),
            Ok(Some("https://h.example.com/vb/abc?x=1&y".to_owned()))
        );
        assert_eq!(
            hook("/fal-ai/veo3?a=b&fal_webhook=http://127.0.0.1:9/hook"),
            Ok(Some("http://127.0.0.1:9/hook".to_owned()))
        );
    }

    #[test]
    fn anything_but_one_absolute_http_url_is_a_query_problem() {
        let long = format!("/m/x?fal_webhook=http://h/{}", "a".repeat(MAX_URL));
        for bad in [
            "/m/x?fal_webhook=",
            "/m/x?fal_webhook=ftp://h/x",
            "/m/x?fal_webhook=/relative",
            "/m/x?fal_webhook=http%3A%2F%2F",
            "/m/x?fal_webhook=mailto:a@b.c",
            "/m/x?fal_webhook=http://a/1&fal_webhook=http://a/2",
            "/m/x?fal_webhook=%FF%FE",
            long.as_str(),
        ] {
            let err = hook(bad).err();
            let loc = err.map(|p| p.loc);
            assert_eq!(
                loc,
                Some(vec![Value::from("query"), Value::from(PARAM)]),
                "{bad}"
            );
        }
    }
}
