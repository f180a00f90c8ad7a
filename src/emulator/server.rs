//! HTTP layer: one fallback handler ([`dispatch`]) parses the path itself, so
//! both path styles, the route templates counted in stats and the Kling-style
//! 404/1202 for unknown paths all come from one match. [`Shared`] is the state
//! behind one mutex with short critical sections (no I/O, no parsing inside).
//! The handlers themselves live by what they serve: `endpoints.rs` (create,
//! query, list) and `download.rs` (video files).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::EmulatorConfig;
use super::auth::{self, Keys, Style};
use super::callbacks::{Outbox, Schedule};
use super::conn::ConnCtl;
use super::download;
use super::endpoints::{self, Elsewhere};
use super::faults::Rates;
use super::stats::{Counters, RecordedRequest, Stats};
use super::tasks::TaskStore;
use super::validate::Kind;

const UNMATCHED: &str = "(unmatched)";

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) struct StateInner {
    pub(super) tasks: TaskStore,
    /// Callbacks to check, beside the tasks they name (`callbacks.rs`).
    pub(super) schedule: Schedule,
    pub(super) counters: Counters,
    /// Fault rates in force (zeroed by [`Shared::heal`]).
    pub(super) rates: Rates,
    log: Vec<RecordedRequest>,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub(super) config: EmulatorConfig,
    pub(super) base_url: String,
    /// Another origin (`http://127.0.0.2:{port}`) for API redirects.
    pub(super) redirect_origin: String,
    keys: Keys,
    url_secret: [u8; 16],
    pub(super) task_id_base: u64,
    pub(super) video_id_base: u64,
    state: Mutex<StateInner>,
    pub(super) downloads_completed: AtomicU64,
    /// The callback loop's wake-up, delivery slots, client and counters.
    pub(super) outbox: Arc<Outbox>,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig, addr: SocketAddr) -> Self {
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
            base_url: format!("http://{addr}"),
            redirect_origin: format!("http://127.0.0.2:{}", addr.port()),
            url_secret: *uuid::Uuid::new_v4().as_bytes(),
            task_id_base: 800_000_000_000_000_000 + run,
            video_id_base: 700_000_000_000_000_000 + run,
            state: Mutex::new(StateInner {
                tasks: TaskStore::default(),
                schedule: Schedule::default(),
                counters: Counters::default(),
                rates: Rates::from_config(&config),
                log: Vec::new(),
            }),
            downloads_completed: AtomicU64::new(0),
            outbox: Arc::new(Outbox::default()),
            config,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, StateInner> {
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
        self.outbox.fill(&mut stats);
        stats
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    pub(crate) fn heal(&self) {
        self.lock().rates = Rates::default();
    }

    pub(super) fn sign(&self, video_id: &str, exp: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.url_secret);
        h.update(video_id.as_bytes());
        h.update(b":");
        h.update(exp.to_be_bytes());
        hex::encode(&h.finalize()[..16])
    }

    pub(super) fn video_url(&self, video_id: &str, now: u64) -> String {
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
pub(super) struct Answer {
    pub(super) route: &'static str,
    pub(super) status: StatusCode,
    pub(super) code: Option<i64>,
    pub(super) dropped: bool,
    pub(super) response: Response,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: i64,
    message: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
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

pub(super) fn error(route: &'static str, status: StatusCode, code: i64, message: &str) -> Answer {
    envelope::<()>(route, status, code, message, None)
}

pub(super) fn ok<T: Serialize>(route: &'static str, data: T) -> Answer {
    envelope(route, StatusCode::OK, 0, "SUCCEED", Some(data))
}

pub(super) fn plain(route: &'static str, status: StatusCode, text: &'static str) -> Answer {
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
        ["videos", file] if method == Method::GET => {
            download::serve(shared, conn, file, &req, false)
        }
        ["cdn", "videos", file] if method == Method::GET => {
            download::serve(shared, conn, file, &req, true)
        }
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
    let elsewhere = Elsewhere {
        route,
        location: format!(
            "{}{}",
            shared.redirect_origin,
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        ),
    };
    match (&method, rest) {
        (&Method::POST, [k]) => match Kind::parse(k) {
            Some(kind) => endpoints::create(shared, conn, style, kind, elsewhere, req).await,
            None => unknown_method(route),
        },
        (&Method::GET, [k]) => match (Kind::parse(k), params.get("external_task_id")) {
            (Some(kind), Some(ext)) => endpoints::query_one(shared, kind, ext, true, elsewhere),
            (Some(kind), None) => endpoints::list(shared, kind, &params, elsewhere),
            (None, _) => unknown_method(route),
        },
        (&Method::GET, [k, id]) => match Kind::parse(k) {
            Some(kind) => endpoints::query_one(shared, kind, id, false, elsewhere),
            None => unknown_method(route),
        },
        _ => unknown_method(route),
    }
}

pub(super) fn unknown_method(route: &'static str) -> Answer {
    error(
        route,
        StatusCode::NOT_FOUND,
        1202,
        "The requested method is invalid",
    )
}
