//! HTTP layer: one fallback handler ([`dispatch`]) parses the path itself, so
//! both path styles, the route templates counted in stats and the Kling-style
//! 404/1202 for unknown paths all come from one match. [`Shared`] is the state
//! behind one mutex with short critical sections (no I/O, no parsing inside).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::{self, Keys, Style};
use super::conn::ConnCtl;
use super::faults;
use super::stats::{Counters, RecordedRequest, Stats};
use super::tasks::{Outcome, Status, Task, TaskStore};
use super::validate::{self, Kind};
use super::video::{self, Layout, RangeReq, VideoStream};
use super::{EmulatorConfig, ProcessingAfter};

/// Create bodies carry Base64 images of up to 10 MB (≈ 13.4 MB encoded).
const MAX_BODY: usize = 32 * 1024 * 1024;
const CONTENT_RISK: &str = "Failure to pass the risk control system";
const UNMATCHED: &str = "(unmatched)";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct StateInner {
    tasks: TaskStore,
    counters: Counters,
    log: Vec<RecordedRequest>,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    config: EmulatorConfig,
    base_url: String,
    keys: Keys,
    url_secret: [u8; 16],
    task_id_base: u64,
    video_id_base: u64,
    state: Mutex<StateInner>,
    downloads_completed: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig, base_url: String) -> Self {
        let keys = Keys::new(
            config.access_key.as_deref(),
            config.secret_key.as_deref(),
            config.api_key.as_deref(),
        );
        // Ids differ between emulator runs, so a task id kept from an earlier
        // run never names a different task in this one.
        let run = (now_ms() % 90_000_000) * 1_000_000_000;
        Shared {
            keys,
            base_url,
            url_secret: *uuid::Uuid::new_v4().as_bytes(),
            task_id_base: 800_000_000_000_000_000 + run,
            video_id_base: 700_000_000_000_000_000 + run,
            state: Mutex::new(StateInner {
                tasks: TaskStore::default(),
                counters: Counters::default(),
                log: Vec::new(),
            }),
            downloads_completed: AtomicU64::new(0),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, StateInner> {
        // A panic elsewhere cannot leave these counters half-updated in a way
        // that matters more than stopping the emulator would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> Stats {
        let now = now_ms();
        let mut st = self.lock();
        let mut stats = Stats::default();
        st.counters.fill(&mut stats);
        stats.tasks_by_status = st
            .tasks
            .status_counts(now)
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), *n))
            .collect();
        stats.in_flight_now = st.tasks.in_flight(now) as u64;
        stats.max_in_flight = st.tasks.max_in_flight() as u64;
        drop(st);
        stats.downloads_completed = self.downloads_completed.load(Ordering::SeqCst);
        stats
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    fn sign(&self, video_id: &str, exp: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.url_secret);
        h.update(video_id.as_bytes());
        h.update(b":");
        h.update(exp.to_be_bytes());
        hex::encode(&h.finalize()[..16])
    }

    fn video_url(&self, video_id: &str, now: u64) -> String {
        let exp = self
            .config
            .url_ttl
            .map(|ttl| now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)))
            .unwrap_or(0);
        format!(
            "{}/videos/{video_id}.mp4?exp={exp}&sig={}",
            self.base_url,
            self.sign(video_id, exp)
        )
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// A decided answer plus what the log needs to know about it.
struct Answer {
    route: &'static str,
    status: StatusCode,
    code: Option<i64>,
    dropped: bool,
    response: Response,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: i64,
    message: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn envelope<T: Serialize>(
    route: &'static str,
    status: StatusCode,
    code: i64,
    message: &str,
    data: Option<T>,
) -> Answer {
    let env = Envelope {
        code,
        message,
        request_id: uuid::Uuid::new_v4().to_string(),
        data,
    };
    let body = serde_json::to_vec(&env).unwrap_or_else(|_| b"{}".to_vec());
    Answer {
        route,
        status,
        code: Some(code),
        dropped: false,
        response: json_response(status, body),
    }
}

fn error(route: &'static str, status: StatusCode, code: i64, message: &str) -> Answer {
    envelope::<()>(route, status, code, message, None)
}

fn ok<T: Serialize>(route: &'static str, data: T) -> Answer {
    envelope(route, StatusCode::OK, 0, "SUCCEED", Some(data))
}

fn plain(route: &'static str, status: StatusCode, text: &'static str) -> Answer {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    Answer {
        route,
        status,
        code: None,
        dropped: false,
        response,
    }
}

fn raw_json<T: Serialize>(route: &'static str, value: &T) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Answer {
        route,
        status: StatusCode::OK,
        code: None,
        dropped: false,
        response: json_response(StatusCode::OK, body),
    }
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    req: Request,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let answer = route(&shared, &conn, req).await;
    tracing::debug!(
        method,
        path,
        status = answer.status.as_u16(),
        code = answer.code,
        "emulator request"
    );
    let mut st = shared.lock();
    st.counters.route(answer.route);
    if shared.config.record_requests {
        st.log.push(RecordedRequest {
            method,
            path,
            query,
            route: answer.route.to_owned(),
            status: answer.status.as_u16(),
            code: answer.code,
            dropped: answer.dropped,
            at: now_ms(),
        });
    }
    drop(st);
    answer.response
}

async fn route(shared: &Arc<Shared>, conn: &ConnCtl, req: Request) -> Answer {
    let path = req.uri().path().to_owned();
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segs: Vec<&str> = trimmed.split('/').collect();
    let method = req.method().clone();
    match segs.as_slice() {
        ["__emulator", "stats"] if method == Method::GET => {
            raw_json("GET /__emulator/stats", &shared.stats())
        }
        ["__emulator", "requests"] if method == Method::GET => {
            raw_json("GET /__emulator/requests", &shared.requests())
        }
        ["videos", file] if method == Method::GET => download(shared, conn, file, &req),
        ["v1", "videos", rest @ ..] => api(shared, conn, Style::Official, rest, req).await,
        ["v1", "ai", _endpoint, "kling", "videos", rest @ ..] => {
            api(shared, conn, Style::Gateway, rest, req).await
        }
        _ => error(
            UNMATCHED,
            StatusCode::NOT_FOUND,
            1202,
            "The requested method is invalid",
        ),
    }
}

fn route_template(style: Style, method: &Method, rest: &[&str]) -> &'static str {
    let official = style == Style::Official;
    match (method, rest) {
        (&Method::POST, ["text2video"]) if official => "POST /v1/videos/text2video",
        (&Method::POST, ["image2video"]) if official => "POST /v1/videos/image2video",
        (&Method::GET, [k]) if official && Kind::parse(k).is_some() => "GET /v1/videos/{kind}",
        (&Method::GET, [k, _]) if official && Kind::parse(k).is_some() => {
            "GET /v1/videos/{kind}/{id}"
        }
        (&Method::POST, ["text2video"]) => "POST /v1/ai/{endpoint}/kling/videos/text2video",
        (&Method::POST, ["image2video"]) => "POST /v1/ai/{endpoint}/kling/videos/image2video",
        (&Method::GET, [k]) if Kind::parse(k).is_some() => {
            "GET /v1/ai/{endpoint}/kling/videos/{kind}"
        }
        (&Method::GET, [k, _]) if Kind::parse(k).is_some() => {
            "GET /v1/ai/{endpoint}/kling/videos/{kind}/{id}"
        }
        _ => UNMATCHED,
    }
}

async fn api(
    shared: &Arc<Shared>,
    conn: &ConnCtl,
    style: Style,
    rest: &[&str],
    req: Request,
) -> Answer {
    let method = req.method().clone();
    let route = route_template(style, &method, rest);
    let is_create = method == Method::POST;
    let now_s = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if let Err(e) = auth::check(&shared.keys, style, header, now_s) {
        if is_create {
            shared.lock().counters.reject(e.code());
        }
        return error(route, StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
    }
    let params: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(p)| p)
        .unwrap_or_default();
    match (&method, rest) {
        (&Method::POST, [k]) => match Kind::parse(k) {
            Some(kind) => create(shared, conn, style, kind, route, req).await,
            None => unknown_method(route),
        },
        (&Method::GET, [k]) => match (Kind::parse(k), params.get("external_task_id")) {
            (Some(kind), Some(ext)) => query_one(shared, kind, ext, true, route),
            (Some(kind), None) => list(shared, kind, &params, route),
            (None, _) => unknown_method(route),
        },
        (&Method::GET, [k, id]) => match Kind::parse(k) {
            Some(kind) => query_one(shared, kind, id, false, route),
            None => unknown_method(route),
        },
        _ => unknown_method(route),
    }
}

fn unknown_method(route: &'static str) -> Answer {
    error(
        route,
        StatusCode::NOT_FOUND,
        1202,
        "The requested method is invalid",
    )
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
struct TaskView {
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

fn task_view(shared: &Shared, task: &Task, now: u64) -> TaskView {
    let status = task.status_at(now);
    let (msg, videos, units) = match (status, &task.outcome) {
        (Status::Succeed, _) => (
            String::new(),
            vec![VideoView {
                id: task.video_id.clone(),
                url: shared.video_url(&task.video_id, now),
                duration: format!("{}.1", task.duration),
            }],
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

async fn create(
    shared: &Arc<Shared>,
    conn: &ConnCtl,
    style: Style,
    kind: Kind,
    route: &'static str,
    req: Request,
) -> Answer {
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
    if faults::fires(cfg.create_1302_rate, cfg.seed, "create_1302", &key, attempt) {
        st.counters.fault("create_1302");
        return reject(
            &mut st,
            StatusCode::TOO_MANY_REQUESTS,
            1302,
            "Request too fast, exceeds platform rate limit",
        );
    }
    if faults::fires(cfg.create_5000_rate, cfg.seed, "create_5000", &key, attempt) {
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
    let task = build_task(shared, kind, &spec, seq, now);
    let view = CreatedView {
        task_id: task.task_id.clone(),
        task_status: Status::Submitted.as_str(),
        task_info: TaskInfo {
            external_task_id: task.external_task_id.clone(),
        },
        created_at: now,
        updated_at: now,
    };
    st.tasks.insert(task, now);
    st.counters.creates_accepted += 1;
    let ambiguous = faults::fires(
        cfg.create_ambiguous_rate,
        cfg.seed,
        "create_ambiguous",
        &key,
        attempt,
    );
    if ambiguous {
        st.counters.fault("create_ambiguous");
    }
    drop(st);
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
    let id = |base: u64, what: &str| {
        (base + seq.saturating_mul(1000) + faults::hash64(cfg.seed, what, seq) % 1000).to_string()
    };
    Task {
        task_id: id(shared.task_id_base, "task_id"),
        kind,
        external_task_id: spec.external_task_id.clone(),
        created_at: now,
        processing_at: now.saturating_add(to_processing),
        terminal_at: now.saturating_add(total),
        outcome,
        video_id: id(shared.video_id_base, "video_id"),
        duration: spec.duration,
        units: validate::units(&spec.model, &spec.mode, spec.duration),
    }
}

fn query_one(shared: &Shared, kind: Kind, id: &str, by_ext: bool, route: &'static str) -> Answer {
    let cfg = &shared.config;
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.queries += 1;
    let attempt = Counters::nth(&mut st.counters.query_attempts, id);
    if faults::fires(cfg.query_5001_rate, cfg.seed, "query_5001", id, attempt) {
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

fn list(
    shared: &Shared,
    kind: Kind,
    params: &HashMap<String, String>,
    route: &'static str,
) -> Answer {
    let page = page_param(params, "pageNum", 1, 1000)
        .and_then(|n| page_param(params, "pageSize", 30, 500).map(|s| (n, s)));
    let now = now_ms();
    let mut st = shared.lock();
    st.counters.list_queries += 1;
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

const DOWNLOAD: &str = "GET /videos/{file}";

fn download(shared: &Arc<Shared>, conn: &ConnCtl, file: &str, req: &Request) -> Answer {
    let cfg = &shared.config;
    let Some(video_id) = file.strip_suffix(".mp4") else {
        return plain(DOWNLOAD, StatusCode::NOT_FOUND, "no such video\n");
    };
    let params: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(p)| p)
        .unwrap_or_default();
    let exp = params.get("exp").and_then(|e| e.parse::<u64>().ok());
    let sig = params.get("sig");
    let now = now_ms();
    let mut st = shared.lock();
    let ready = st
        .tasks
        .by_video(video_id)
        .is_some_and(|t| t.status_at(now) == Status::Succeed);
    if !ready {
        return plain(DOWNLOAD, StatusCode::NOT_FOUND, "no such video\n");
    }
    let valid = match (exp, sig) {
        (Some(exp), Some(sig)) => *sig == shared.sign(video_id, exp) && (exp == 0 || now <= exp),
        _ => false,
    };
    if !valid {
        st.counters.downloads_forbidden += 1;
        return plain(
            DOWNLOAD,
            StatusCode::FORBIDDEN,
            "URL expired or signature invalid; query the task again for a fresh URL\n",
        );
    }
    let layout = Layout::new(video_id, cfg.video_pad_bytes);
    let len = layout.len();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (start, end, status) = match video::parse_range(range, len) {
        RangeReq::Full => (0, len, StatusCode::OK),
        RangeReq::Part(s, e) => (s, e, StatusCode::PARTIAL_CONTENT),
        RangeReq::Unsatisfiable => {
            drop(st);
            let mut answer = plain(
                DOWNLOAD,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range not satisfiable\n",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                answer
                    .response
                    .headers_mut()
                    .insert(header::CONTENT_RANGE, v);
            }
            return answer;
        }
    };
    let attempt = Counters::nth(&mut st.counters.download_attempts, video_id);
    let cut = faults::fires(
        cfg.download_cut_rate,
        cfg.seed,
        "download_cut",
        video_id,
        attempt,
    );
    st.counters.downloads_started += 1;
    if cut {
        st.counters.downloads_cut += 1;
        st.counters.fault("download_cut");
    }
    drop(st);
    let done = shared.clone();
    let stream = VideoStream::new(
        layout,
        start,
        end,
        cut.then(|| (start + (end - start) / 2, conn.clone())),
        Box::new(move || {
            done.downloads_completed.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    Answer {
        route: DOWNLOAD,
        status,
        code: None,
        dropped: cut,
        response,
    }
}
