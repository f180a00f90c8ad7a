//! The task endpoints: create (validation, faults, the new task), query one
//! task, list a page — and the JSON views they answer with, spelled from
//! kling-api.md §6.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::Value;

use super::ProcessingAfter;
use super::auth::Style;
use super::callbacks;
use super::conn::ConnCtl;
use super::faults;
use super::server::{Answer, Shared, StateInner, error, now_ms, ok, plain};
use super::stats::Counters;
use super::tasks::{Outcome, Status, Task};
use super::validate::{self, Kind};

/// Create bodies carry Base64 images of up to 10 MB (≈ 13.4 MB encoded).
const MAX_BODY: usize = 32 * 1024 * 1024;
const CONTENT_RISK: &str = "Failure to pass the risk control system";
/// Length of a task id made long by the `long_task_id` fault.
const LONG_TASK_ID_LEN: usize = 40 * 1024;

/// An API call's route, and where the `redirect_api` fault sends it.
pub(super) struct Elsewhere {
    pub(super) route: &'static str,
    pub(super) location: String,
}

impl Elsewhere {
    /// 307 or 308 (seeded) to another origin; the call is not carried out.
    fn redirect(&self, st: &mut StateInner, seed: u64, key: &str, attempt: u64) -> Answer {
        st.counters.fault("redirect_api");
        let status = if faults::unit(seed, "redirect_api_code", key, attempt) < 0.5 {
            StatusCode::TEMPORARY_REDIRECT
        } else {
            StatusCode::PERMANENT_REDIRECT
        };
        let mut answer = plain(self.route, status, "moved to another origin\n");
        if let Ok(v) = HeaderValue::from_str(&self.location) {
            answer.response.headers_mut().insert(header::LOCATION, v);
        }
        answer
    }
}

#[derive(Serialize)]
struct TaskInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    external_task_id: Option<String>,
}

#[derive(Serialize)]
struct CreatedView {
    task_id: String,
    task_status: &'static str,
    task_info: TaskInfo,
    created_at: u64,
    updated_at: u64,
}

#[derive(Serialize)]
struct VideoView {
    id: String,
    url: String,
    duration: String,
}

#[derive(Serialize)]
struct TaskResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    videos: Vec<VideoView>,
}

#[derive(Serialize)]
struct Watermark {
    enabled: bool,
}

#[derive(Serialize)]
pub(super) struct TaskView {
    task_id: String,
    task_status: &'static str,
    task_status_msg: String,
    task_info: TaskInfo,
    task_result: TaskResult,
    watermark_info: Watermark,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_unit_deduction: Option<String>,
    created_at: u64,
    updated_at: u64,
}

/// A task as a query sees it at `now`; callbacks send the same object.
pub(super) fn task_view(shared: &Shared, task: &Task, now: u64) -> TaskView {
    let status = task.status_at(now);
    let (msg, videos, units) = match (status, &task.outcome) {
        (Status::Succeed, _) => (
            String::new(),
            task.video_ids
                .iter()
                .map(|id| VideoView {
                    id: id.clone(),
                    url: shared.video_url(id, now),
                    duration: format!("{}.1", task.duration),
                })
                .collect(),
            Some(task.units.clone()),
        ),
        (Status::Failed, Outcome::Failed(m)) => (m.clone(), Vec::new(), Some("0".to_owned())),
        _ => (String::new(), Vec::new(), None),
    };
    TaskView {
        task_id: task.task_id.clone(),
        task_status: status.as_str(),
        task_status_msg: msg,
        task_info: TaskInfo {
            external_task_id: task.external_task_id.clone(),
        },
        task_result: TaskResult { videos },
        watermark_info: Watermark { enabled: false },
        final_unit_deduction: units,
        created_at: task.created_at,
        updated_at: task.updated_at(now),
    }
}

fn bad_request(shared: &Shared, route: &'static str, code: i64, message: &str) -> Answer {
    shared.lock().counters.reject(code);
    error(route, StatusCode::BAD_REQUEST, code, message)
}

pub(super) async fn create(
    shared: &Arc<Shared>,
    conn: &ConnCtl,
    style: Style,
    kind: Kind,
    elsewhere: Elsewhere,
    req: Request,
) -> Answer {
    let route = elsewhere.route;
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return bad_request(
            shared,
            route,
            1200,
            "Invalid request parameters: body unreadable or over 32 MB",
        );
    };
    let map = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => map,
        _ => {
            return bad_request(
                shared,
                route,
                1200,
                "Invalid request parameters: body must be a JSON object",
            );
        }
    };
    // Parsing and validation (Base64 images included) stay outside the lock.
    let checked = validate::validate_create(kind, style, &map);
    let ext_raw = map
        .get("external_task_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let cfg = &shared.config;
    let now = now_ms();
    let mut st = shared.lock();
    let (key, attempt) = match &ext_raw {
        Some(ext) => (ext.clone(), st.counters.create_attempt(ext)),
        None => {
            let n = st.counters.anonymous_creates;
            st.counters.anonymous_creates += 1;
            (format!("#anonymous-{n}"), 0)
        }
    };
    let rates = st.rates;
    if faults::fires(rates.redirect_api, cfg.seed, "redirect_api", &key, attempt) {
        return elsewhere.redirect(&mut st, cfg.seed, &key, attempt);
    }
    let spec = match checked {
        Ok(spec) => spec,
        Err(msg) => {
            st.counters.reject(1201);
            return error(route, StatusCode::BAD_REQUEST, 1201, &msg);
        }
    };
    let reject = |st: &mut StateInner, status, code, message: &str| {
        st.counters.reject(code);
        error(route, status, code, message)
    };
    if let Some(ext) = &spec.external_task_id {
        if st.tasks.ext_exists(ext) {
            st.counters.duplicate(ext);
            return reject(
                &mut st,
                StatusCode::BAD_REQUEST,
                1201,
                "external_task_id already exists",
            );
        }
    }
    if cfg
        .balance_exhausted_after_creates
        .is_some_and(|n| st.counters.creates_accepted >= n)
    {
        return reject(
            &mut st,
            StatusCode::TOO_MANY_REQUESTS,
            1102,
            "Resource pack depleted or expired",
        );
    }
    if faults::fires(rates.create_1302, cfg.seed, "create_1302", &key, attempt) {
        st.counters.fault("create_1302");
        return reject(
            &mut st,
            StatusCode::TOO_MANY_REQUESTS,
            1302,
            "Request too fast, exceeds platform rate limit",
        );
    }
    if faults::fires(rates.create_5000, cfg.seed, "create_5000", &key, attempt) {
        st.counters.fault("create_5000");
        return reject(
            &mut st,
            StatusCode::INTERNAL_SERVER_ERROR,
            5000,
            "Server internal error",
        );
    }
    if let Some(limit) = cfg.concurrency_limit {
        if st.tasks.in_flight(now) >= limit {
            return reject(
                &mut st,
                StatusCode::TOO_MANY_REQUESTS,
                1303,
                "parallel task over resource pack limit",
            );
        }
    }
    let seq = st.tasks.len() as u64;
    let long_id = faults::fires(rates.long_task_id, cfg.seed, "long_task_id", &key, attempt);
    if long_id {
        st.counters.fault("long_task_id");
    }
    let task = build_task(shared, kind, &spec, seq, now, long_id);
    let view = CreatedView {
        task_id: task.task_id.clone(),
        task_status: Status::Submitted.as_str(),
        task_info: TaskInfo {
            external_task_id: task.external_task_id.clone(),
        },
        created_at: now,
        updated_at: now,
    };
    st.counters.videos_created += task.video_ids.len() as u64;
    let first_callback = callbacks::first_due(&task);
    let idx = st.tasks.insert(task, now);
    // Scheduled with the insert, under the same lock: the loop never sees
    // an entry for a task it cannot find.
    let wake = first_callback.is_some_and(|due| st.schedule.push(due, idx));
    st.counters.creates_accepted += 1;
    let ambiguous = faults::fires(
        rates.create_ambiguous,
        cfg.seed,
        "create_ambiguous",
        &key,
        attempt,
    );
    if ambiguous {
        st.counters.fault("create_ambiguous");
    }
    drop(st);
    if wake {
        shared.outbox.wake();
    }
    let mut answer = ok(route, view);
    if ambiguous {
        // The task exists; now make sure no byte of the answer leaves.
        conn.kill();
        answer.dropped = true;
    }
    answer
}

fn build_task(
    shared: &Shared,
    kind: Kind,
    spec: &validate::CreateSpec,
    seq: u64,
    now: u64,
    long_id: bool,
) -> Task {
    let cfg = &shared.config;
    let latency = u64::try_from(cfg.latency.as_millis()).unwrap_or(u64::MAX);
    let jitter = u64::try_from(cfg.jitter.as_millis()).unwrap_or(u64::MAX);
    let total = if jitter == 0 {
        latency
    } else {
        let u = faults::unit(cfg.seed, "jitter", "", seq);
        let offset = (u * 2.0 - 1.0) * jitter as f64;
        (latency as f64 + offset).max(0.0) as u64
    };
    let to_processing = match cfg.processing_after {
        ProcessingAfter::Fraction(f) => (total as f64 * f) as u64,
        ProcessingAfter::After(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(total),
    };
    let outcome = match &cfg.fail_prompt_substring {
        Some(s) if !s.is_empty() && spec.prompt.contains(s.as_str()) => {
            Outcome::Failed(CONTENT_RISK.to_owned())
        }
        _ => Outcome::Succeed,
    };
    let id = |base: u64, what: &str, n: u64| {
        let jitter = faults::hash64(cfg.seed, what, seq).wrapping_add(n) % 1000;
        (base + seq.saturating_mul(1000) + jitter).to_string()
    };
    let mut task_id = id(shared.task_id_base, "task_id", 0);
    if long_id {
        // Digits still, as real ids are; the repeats keep it unique.
        task_id = task_id.repeat(LONG_TASK_ID_LEN / task_id.len() + 1);
        task_id.truncate(LONG_TASK_ID_LEN);
    }
    // Distinct per video for up to 1000 videos a task (the cap is 100).
    let video_ids = (0..u64::from(cfg.videos_per_task.max(1)))
        .map(|n| id(shared.video_id_base, "video_id", n))
        .collect();
    Task {
        task_id,
        kind,
        external_task_id: spec.external_task_id.clone(),
        callback_url: spec.callback_url.clone(),
        created_at: now,
        processing_at: now.saturating_add(to_processing),
        terminal_at: now.saturating_add(total),
        outcome,
        video_ids,
        duration: spec.duration,
        units: validate::units(&spec.model, &spec.mode, spec.duration),
    }
}

pub(super) fn query_one(
    shared: &Shared,
    kind: Kind,
    id: &str,
    by_ext: bool,
    elsewhere: Elsewhere,
) -> Answer {
    let cfg = &shared.config;
    let route = elsewhere.route;
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.queries += 1;
    let attempt = Counters::nth(&mut st.counters.query_attempts, id);
    let rates = st.rates;
    if faults::fires(rates.redirect_api, cfg.seed, "redirect_api", id, attempt) {
        return elsewhere.redirect(&mut st, cfg.seed, id, attempt);
    }
    if faults::fires(rates.query_5001, cfg.seed, "query_5001", id, attempt) {
        st.counters.fault("query_5001");
        return error(
            route,
            StatusCode::SERVICE_UNAVAILABLE,
            5001,
            "Server temporarily unavailable",
        );
    }
    let found = if by_ext {
        st.tasks.find_ext(kind, id)
    } else {
        st.tasks.find(kind, id)
    };
    let Some(task) = found.cloned() else {
        return error(
            route,
            StatusCode::NOT_FOUND,
            1203,
            "Requested resource does not exist",
        );
    };
    drop(st);
    ok(route, task_view(shared, &task, now))
}

fn page_param(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("{name}: must be an integer between 1 and {max}")),
        },
    }
}

pub(super) fn list(
    shared: &Shared,
    kind: Kind,
    params: &HashMap<String, String>,
    elsewhere: Elsewhere,
) -> Answer {
    let route = elsewhere.route;
    let page = page_param(params, "pageNum", 1, 1000)
        .and_then(|n| page_param(params, "pageSize", 30, 500).map(|s| (n, s)));
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.list_queries += 1;
    let key = format!("list:{}", kind.index());
    let attempt = Counters::nth(&mut st.counters.query_attempts, &key);
    let seed = shared.config.seed;
    if faults::fires(st.rates.redirect_api, seed, "redirect_api", &key, attempt) {
        return elsewhere.redirect(&mut st, seed, &key, attempt);
    }
    let (num, size) = match page {
        Ok(p) => p,
        Err(msg) => return error(route, StatusCode::BAD_REQUEST, 1201, &msg),
    };
    let tasks: Vec<Task> = st
        .tasks
        .page(kind, num, size)
        .into_iter()
        .cloned()
        .collect();
    drop(st);
    let views: Vec<TaskView> = tasks.iter().map(|t| task_view(shared, t, now)).collect();
    ok(route, views)
}
