//! The four queue endpoints — submit, status, result, cancel — and the JSON
//! they answer with, spelled from providers.md §8a (fal's queue docs).
//!
//! A submit is keyed for fault decisions by a hash of (model, body) and the
//! number of times that exact input was submitted before: fal has no
//! idempotency key, and this keeps each input's faults the same across runs
//! whatever order concurrent clients send them in.
//!
//! A finished request's result is rendered in one place ([`result_view`]):
//! the result GET answers it and the webhook (`webhooks.rs`) carries it, so
//! the two can never disagree.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::conn::ConnCtl;
use super::super::faults;
use super::super::server::{Answer, now_ms};
use super::queue::{CancelResult, FalRequest, Outcome, RunnerError, Status};
use super::server::{CANCEL, RESULT, STATUS, SUBMIT, Shared, detail, json, not_found, with_header};
use super::stats::Counters;
use super::validate::{self, Problem};
use super::webhooks;

/// Bodies carry data-URI images; fal's own payload limit is in this range.
const MAX_BODY: usize = 32 * 1024 * 1024;

fn unprocessable(shared: &Shared, problems: &[Problem]) -> Answer {
    shared.lock().counters.reject(422);
    json(
        SUBMIT,
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ "detail": problems }),
    )
}

pub(super) async fn submit(
    shared: &Arc<Shared>,
    conn: &ConnCtl,
    model: &str,
    req: Request,
) -> Answer {
    let cfg = &shared.config;
    let webhook = webhooks::from_uri(req.uri());
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        let mut st = shared.lock();
        st.counters.submit_attempts += 1;
        st.counters.reject(413);
        return detail(
            SUBMIT,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body unreadable or over 32 MiB",
        );
    };
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    h.update(&bytes);
    let body_key = hex::encode(&h.finalize()[..16]);
    {
        let mut st = shared.lock();
        st.counters.submit_attempts += 1;
        let attempt = Counters::nth(&mut st.counters.attempts_by_body, &body_key);
        let rates = (cfg.submit_429_rate, cfg.submit_5xx_rate);
        if faults::fires(rates.0, cfg.seed, "submit_429", &body_key, attempt) {
            st.counters.fault("submit_429");
            st.counters.reject(429);
            let answer = detail(SUBMIT, StatusCode::TOO_MANY_REQUESTS, "rate limited");
            return with_header(answer, "retry-after", "1");
        }
        if faults::fires(rates.1, cfg.seed, "submit_5xx", &body_key, attempt) {
            st.counters.fault("submit_5xx");
            st.counters.reject(500);
            return detail(
                SUBMIT,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            );
        }
    }
    // Parsing and validation (data-URI images included) stay outside the lock.
    // The query comes first in the list, as FastAPI checks it first.
    let mut problems = Vec::new();
    let webhook = webhook.unwrap_or_else(|p| {
        problems.push(p);
        None
    });
    let checked = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => validate::check(model, &map),
        Ok(_) => Err(vec![Problem::body(
            "value is not a valid dict",
            "type_error.dict",
        )]),
        Err(_) => Err(vec![Problem::body(
            "Expecting a JSON object",
            "value_error.jsondecode",
        )]),
    };
    let prompt = match checked {
        Ok(p) if problems.is_empty() => p,
        Ok(_) => return unprocessable(shared, &problems),
        Err(more) => {
            problems.extend(more);
            return unprocessable(shared, &problems);
        }
    };
    let now = now_ms();
    let mut st = shared.lock();
    // The attempt number of this accepted input, for its own fault decisions.
    let n = st
        .counters
        .accepted_by_body
        .get(&body_key)
        .copied()
        .unwrap_or(0);
    let fault_key = format!("{body_key}#{n}");
    let outcome = decide_outcome(shared, &mut st.counters, &prompt, &fault_key);
    let id = uuid::Uuid::new_v4().to_string();
    let app = model.split('/').take(2).collect::<Vec<_>>().join("/");
    let request = FalRequest {
        id: id.clone(),
        app: app.clone(),
        fault_key: fault_key.clone(),
        submitted_at: now,
        run_ms: run_ms(shared, &fault_key),
        start: 0,
        end: 0,
        outcome,
        cancelled_at: None,
        webhook,
    };
    let file = matches!(outcome, Outcome::Video { .. }).then(|| id.clone());
    let idx = st.queue.submit(request, now, file);
    // Scheduled with the submit, under the same lock: the loop never sees
    // an entry for a request it cannot find.
    let wake = webhooks::schedule(&mut st, idx);
    st.counters.accepted(&body_key, model);
    let position = st.queue.position(&id, now).unwrap_or(0);
    let ambiguous = faults::fires(
        cfg.submit_ambiguous_rate,
        cfg.seed,
        "submit_ambiguous",
        &fault_key,
        0,
    );
    if ambiguous {
        st.counters.fault("submit_ambiguous");
    }
    drop(st);
    if wake {
        shared.webhooks.wake();
    }
    let response_url = shared.response_url(&app, &id);
    let body = json!({
        "request_id": id,
        "response_url": response_url,
        "status_url": format!("{response_url}/status"),
        "cancel_url": format!("{response_url}/cancel"),
        "queue_position": position,
    });
    let mut answer = json(SUBMIT, StatusCode::OK, &body);
    if ambiguous {
        // The request exists; no byte of the answer may leave.
        conn.kill();
        answer.dropped = true;
    }
    answer
}

/// How the request will end: the fail prompt, then the seeded result faults.
fn decide_outcome(shared: &Shared, c: &mut Counters, prompt: &str, key: &str) -> Outcome {
    let cfg = &shared.config;
    let fail_prompt = cfg
        .fail_prompt_substring
        .as_deref()
        .is_some_and(|s| !s.is_empty() && prompt.contains(s));
    if fail_prompt {
        return Outcome::RunnerError(RunnerError::Disconnected);
    }
    if faults::fires(cfg.result_422_rate, cfg.seed, "result_422", key, 0) {
        c.fault("result_422");
        return Outcome::InputError;
    }
    if faults::fires(cfg.result_500_rate, cfg.seed, "result_500", key, 0) {
        c.fault("result_500");
        let timeout = faults::unit(cfg.seed, "result_500_kind", key, 0) < 0.5;
        return Outcome::RunnerError(if timeout {
            RunnerError::Timeout
        } else {
            RunnerError::Disconnected
        });
    }
    let seed = faults::hash64(cfg.seed, key, 0) % (1 << 31);
    Outcome::Video { seed }
}

/// `latency ± jitter`, seeded per input.
fn run_ms(shared: &Shared, key: &str) -> u64 {
    let cfg = &shared.config;
    let latency = u64::try_from(cfg.latency.as_millis()).unwrap_or(u64::MAX);
    let jitter = u64::try_from(cfg.jitter.as_millis()).unwrap_or(u64::MAX);
    if jitter == 0 {
        return latency;
    }
    let u = faults::unit(cfg.seed, "jitter", key, 0);
    (latency as f64 + (u * 2.0 - 1.0) * jitter as f64).max(0.0) as u64
}

/// The request `id`, only when it belongs to `app`.
fn find<'a>(st: &'a super::server::Inner, app: &str, id: &str) -> Option<&'a FalRequest> {
    st.queue.get(id).filter(|r| r.app == app)
}

pub(super) fn status(shared: &Shared, app: &str, id: &str, logs: bool) -> Answer {
    let cfg = &shared.config;
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.status_requests += 1;
    let Some(r) = find(&st, app, id).cloned() else {
        return not_found(STATUS);
    };
    let attempt = Counters::nth(&mut st.counters.status_attempts, &r.id);
    if faults::fires(
        cfg.status_5xx_rate,
        cfg.seed,
        "status_5xx",
        &r.fault_key,
        attempt,
    ) {
        st.counters.fault("status_5xx");
        return detail(
            STATUS,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        );
    }
    let status = r.status_at(now);
    let position = st.queue.position(id, now);
    drop(st);
    let mut body = json!({
        "status": status.as_str(),
        "response_url": shared.response_url(&r.app, &r.id),
        "logs": if logs { log_lines(&r, status) } else { Value::Null },
    });
    if status == Status::InQueue {
        body["queue_position"] = json!(position.unwrap_or(0));
    }
    if status == Status::Completed && r.cancelled_at.is_none() {
        body["metrics"] = json!({ "inference_time": r.run_ms as f64 / 1000.0 });
    }
    json(STATUS, StatusCode::OK, &body)
}

fn log_lines(r: &FalRequest, status: Status) -> Value {
    let line = |message: &str, at: u64| json!({"message": message, "level": "INFO", "source": "user", "timestamp": at});
    match status {
        Status::InQueue => json!([]),
        Status::InProgress => json!([line("Generating video", r.start)]),
        Status::Completed => json!([line("Generating video", r.start), line("Done", r.end)]),
    }
}

pub(super) fn result(shared: &Shared, app: &str, id: &str) -> Answer {
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.result_requests += 1;
    let Some(r) = find(&st, app, id).cloned() else {
        return not_found(RESULT);
    };
    drop(st);
    if r.status_at(now) != Status::Completed {
        return detail(
            RESULT,
            StatusCode::BAD_REQUEST,
            "Request is still in progress",
        );
    }
    let view = result_view(shared, &r);
    let answer = json(RESULT, view.status, &view.body);
    match view.error_type {
        Some(kind) => with_header(answer, "x-fal-error-type", kind),
        None => answer,
    }
}

/// What the result of a COMPLETED request is: the HTTP status, the JSON body
/// and fal's error type (also sent as `X-Fal-Error-Type`), if any.
pub(super) struct ResultView {
    pub status: StatusCode,
    pub body: Value,
    pub error_type: Option<&'static str>,
}

/// The result of `r`, which must be COMPLETED: the one rendering shared by
/// the result GET and the webhook.
pub(super) fn result_view(shared: &Shared, r: &FalRequest) -> ResultView {
    let view = |status, body, error_type| ResultView {
        status,
        body,
        error_type,
    };
    if r.cancelled_at.is_some() {
        let body = json!({
            "detail": "Request was cancelled before it started",
            "error_type": "request_cancelled",
        });
        return view(StatusCode::BAD_REQUEST, body, Some("request_cancelled"));
    }
    match r.outcome {
        Outcome::Video { seed } => {
            let layout = super::super::video::Layout::new(&r.id, shared.config.video_pad_bytes);
            let body = json!({
                "video": {
                    "url": format!("{}/files/{}.mp4", shared.base_url, r.id),
                    "content_type": "video/mp4",
                    "file_name": format!("{}.mp4", r.id),
                    "file_size": layout.len(),
                },
                "seed": seed,
            });
            view(StatusCode::OK, body, None)
        }
        Outcome::InputError => {
            let body = json!({"detail": [{
                "loc": ["body", "prompt"],
                "msg": "The model could not process this input",
                "type": "content_policy_violation",
            }]});
            view(StatusCode::UNPROCESSABLE_ENTITY, body, None)
        }
        Outcome::RunnerError(e) => {
            let msg = match e {
                RunnerError::Disconnected => "The runner disconnected while processing the request",
                RunnerError::Timeout => "The request timed out while processing",
            };
            let body = json!({ "detail": msg, "error_type": e.as_str() });
            view(StatusCode::INTERNAL_SERVER_ERROR, body, Some(e.as_str()))
        }
    }
}

pub(super) fn cancel(shared: &Shared, app: &str, id: &str) -> Answer {
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.cancel_requests += 1;
    if find(&st, app, id).is_none() {
        return not_found(CANCEL);
    }
    match st.queue.cancel(id, now) {
        Some(CancelResult::Cancelled) => {
            st.counters.cancels_effective += 1;
            // The requests behind it moved up: so do their webhooks.
            if webhooks::replanned(&mut st, id) {
                drop(st);
                shared.webhooks.wake();
            }
            json(
                CANCEL,
                StatusCode::ACCEPTED,
                &json!({"status": "CANCELLATION_REQUESTED"}),
            )
        }
        Some(CancelResult::TooLate) => json(
            CANCEL,
            StatusCode::BAD_REQUEST,
            &json!({"status": "ALREADY_COMPLETED"}),
        ),
        None => not_found(CANCEL),
    }
}
