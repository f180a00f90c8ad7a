//! HTTP layer of the fal emulator: one fallback handler parses the path
//! itself, because model ids contain slashes and the queue URLs are told
//! apart from a submit only by a `requests` segment in third position.
//! [`Shared`] keeps the state behind one mutex with short critical sections
//! (no I/O, no parsing inside).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use super::super::callbacks::{Outbox, Schedule};
use super::super::conn::ConnCtl;
use super::super::server::{Answer, json_response, now_ms};
use super::queue::{Outcome, Queue, Status};
use super::stats::{Counters, FalStats};
use super::{FalConfig, RecordedRequest, endpoints, files};

const UNMATCHED: &str = "(unmatched)";
pub(super) const SUBMIT: &str = "POST /{model_id}";
pub(super) const STATUS: &str = "GET /{owner}/{app}/requests/{id}/status";
pub(super) const RESULT: &str = "GET /{owner}/{app}/requests/{id}";
pub(super) const CANCEL: &str = "PUT /{owner}/{app}/requests/{id}/cancel";

pub(super) struct Inner {
    pub(super) queue: Queue,
    /// Webhooks to send, beside the requests they name (`webhooks.rs`).
    pub(super) schedule: Schedule,
    pub(super) counters: Counters,
    log: Vec<RecordedRequest>,
    /// (second, API requests in it) for the optional per-user rate limit.
    window: (u64, u32),
}

pub(crate) struct Shared {
    pub(super) config: FalConfig,
    pub(super) base_url: String,
    state: Mutex<Inner>,
    pub(super) downloads_completed: AtomicU64,
    /// The webhook loop's wake-up, delivery slots, client and counters.
    pub(super) webhooks: Arc<Outbox>,
}

impl Shared {
    pub(super) fn new(config: FalConfig, addr: SocketAddr) -> Self {
        Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(Inner {
                queue: Queue::new(config.concurrency),
                schedule: Schedule::default(),
                counters: Counters::default(),
                log: Vec::new(),
                window: (0, 0),
            }),
            downloads_completed: AtomicU64::new(0),
            webhooks: Arc::new(Outbox::labelled("fal webhook")),
            config,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stats(&self) -> FalStats {
        let now = now_ms();
        let st = self.lock();
        let mut s = FalStats::default();
        st.counters.fill(&mut s);
        let mut charged = st.counters.submit_422;
        let mut charged_422 = st.counters.submit_422;
        for r in st.queue.iter() {
            let status = r.status_at(now);
            *s.requests_by_status
                .entry(status.as_str().to_owned())
                .or_default() += 1;
            if status != Status::Completed {
                continue;
            }
            let how = match (r.cancelled_at, r.outcome) {
                (Some(_), _) => "cancelled",
                (None, Outcome::Video { .. }) => {
                    charged += 1;
                    "video"
                }
                (None, Outcome::InputError) => {
                    charged += 1;
                    charged_422 += 1;
                    "input_error"
                }
                (None, Outcome::RunnerError(e)) => e.as_str(),
            };
            *s.completed_by_outcome.entry(how.to_owned()).or_default() += 1;
        }
        s.requests_charged = charged;
        s.charged_422 = charged_422;
        s.max_in_progress = st.queue.max_in_progress() as u64;
        drop(st);
        s.downloads_completed = self.downloads_completed.load(Ordering::SeqCst);
        let hooks = self.webhooks.counts();
        s.webhooks_sent = hooks.sent;
        s.webhooks_failed = hooks.failed;
        s.webhooks_dropped = hooks.dropped;
        s
    }

    pub(super) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    /// `{base}/{app}/requests/{id}` — the response URL every other URL hangs off.
    pub(super) fn response_url(&self, app: &str, id: &str) -> String {
        format!("{}/{app}/requests/{id}", self.base_url)
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

/// A JSON answer with fal's error-free conventions (no envelope).
pub(super) fn json(route: &'static str, status: StatusCode, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Answer {
        route,
        status,
        code: None,
        dropped: false,
        response: json_response(status, bytes),
    }
}

/// `{"detail": msg}` with `status`.
pub(super) fn detail(route: &'static str, status: StatusCode, msg: &str) -> Answer {
    json(route, status, &json!({ "detail": msg }))
}

pub(super) fn with_header(mut answer: Answer, name: &'static str, value: &str) -> Answer {
    if let Ok(v) = HeaderValue::from_str(value) {
        answer.response.headers_mut().insert(name, v);
    }
    answer
}

pub(super) fn not_found(route: &'static str) -> Answer {
    detail(route, StatusCode::NOT_FOUND, "Request not found")
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    req: Request,
) -> axum::response::Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let answer = route(&shared, &conn, req).await;
    tracing::debug!(
        method,
        path,
        status = answer.status.as_u16(),
        "fal emulator request"
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
            code: None,
            dropped: answer.dropped,
            at: now_ms(),
        });
    }
    drop(st);
    answer.response
}

/// Which queue endpoint a path names, with its app root and request id.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Submit { model: String },
    Status { app: String, id: &'a str },
    Result { app: String, id: &'a str },
    Cancel { app: String, id: &'a str },
    Unmatched,
}

fn target<'a>(method: &Method, segs: &[&'a str]) -> Target<'a> {
    let app = |o: &str, a: &str| format!("{o}/{a}");
    match (method, segs) {
        (&Method::GET, [o, a, "requests", id, "status"]) => Target::Status { app: app(o, a), id },
        (&Method::GET, [o, a, "requests", id]) => Target::Result { app: app(o, a), id },
        (&Method::PUT, [o, a, "requests", id, "cancel"]) => Target::Cancel { app: app(o, a), id },
        // A queue path with the wrong method or shape is no model id.
        (_, [_, _, "requests", ..]) => Target::Unmatched,
        (&Method::POST, [_, _, ..]) if segs.iter().all(|s| !s.is_empty()) => Target::Submit {
            model: segs.join("/"),
        },
        _ => Target::Unmatched,
    }
}

async fn route(shared: &Arc<Shared>, conn: &ConnCtl, req: Request) -> Answer {
    let path = req.uri().path().to_owned();
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segs: Vec<&str> = trimmed.split('/').collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["__emulator", "stats"]) => {
            let stats = serde_json::to_value(shared.stats()).unwrap_or(Value::Null);
            return json("GET /__emulator/stats", StatusCode::OK, &stats);
        }
        (&Method::GET, ["__emulator", "requests"]) => {
            let log = serde_json::to_value(shared.requests()).unwrap_or(Value::Null);
            return json("GET /__emulator/requests", StatusCode::OK, &log);
        }
        (&Method::GET, ["files", file]) => return files::serve(shared, conn, file, &req),
        _ => {}
    }
    let target = target(&method, &segs);
    let route = match &target {
        Target::Submit { .. } => SUBMIT,
        Target::Status { .. } => STATUS,
        Target::Result { .. } => RESULT,
        Target::Cancel { .. } => CANCEL,
        Target::Unmatched => return detail(UNMATCHED, StatusCode::NOT_FOUND, "Not Found"),
    };
    if let Some(limited) = rate_limited(shared, route) {
        return limited;
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if let Err(msg) = check_auth(shared.config.fal_key.as_deref(), auth) {
        let mut st = shared.lock();
        match route {
            SUBMIT => {
                st.counters.submit_attempts += 1;
                st.counters.reject(401);
            }
            STATUS => st.counters.status_requests += 1,
            RESULT => st.counters.result_requests += 1,
            _ => st.counters.cancel_requests += 1,
        }
        return detail(route, StatusCode::UNAUTHORIZED, msg);
    }
    let logs = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "logs=1" || kv == "logs=true"));
    match target {
        Target::Submit { model } => endpoints::submit(shared, conn, &model, req).await,
        Target::Status { app, id } => endpoints::status(shared, &app, id, logs),
        Target::Result { app, id } => endpoints::result(shared, &app, id),
        Target::Cancel { app, id } => endpoints::cancel(shared, &app, id),
        Target::Unmatched => detail(UNMATCHED, StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// fal's 10 requests/s per user, when configured: a fixed one-second window.
fn rate_limited(shared: &Shared, route: &'static str) -> Option<Answer> {
    let limit = shared.config.rate_limit_per_sec?;
    let second = now_ms() / 1000;
    let mut st = shared.lock();
    if st.window.0 != second {
        st.window = (second, 0);
    }
    st.window.1 = st.window.1.saturating_add(1);
    if st.window.1 <= limit {
        return None;
    }
    st.counters.rate_limited += 1;
    if route == SUBMIT {
        st.counters.submit_attempts += 1;
        st.counters.reject(429);
    }
    drop(st);
    let answer = detail(route, StatusCode::TOO_MANY_REQUESTS, "rate limited");
    Some(with_header(answer, "retry-after", "1"))
}

/// `Key <FAL_KEY>`: exact when a key is configured, any non-empty key otherwise.
fn check_auth(expected: Option<&str>, header: Option<&[u8]>) -> Result<(), &'static str> {
    let Some(header) = header else {
        return Err("Missing Authorization header; expected 'Key <FAL_KEY>'");
    };
    let Some(given) = header.strip_prefix(b"Key ") else {
        return Err("Invalid Authorization header; expected 'Key <FAL_KEY>'");
    };
    match expected {
        Some(key) if given != key.as_bytes() => Err("Invalid key"),
        None if given.trim_ascii().is_empty() => {
            Err("Invalid Authorization header; expected 'Key <FAL_KEY>'")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_match_only_at_the_app_root() {
        let segs = |p: &'static str| p.split('/').collect::<Vec<_>>();
        assert_eq!(
            target(
                &Method::GET,
                &segs("fal-ai/kling-video/requests/abc/status")
            ),
            Target::Status {
                app: "fal-ai/kling-video".to_owned(),
                id: "abc"
            }
        );
        let full = "fal-ai/kling-video/v2.1/standard/text-to-video/requests/abc/status";
        assert_eq!(target(&Method::GET, &segs(full)), Target::Unmatched);
        assert_eq!(
            target(
                &Method::POST,
                &segs("fal-ai/kling-video/v2.1/standard/text-to-video")
            ),
            Target::Submit {
                model: "fal-ai/kling-video/v2.1/standard/text-to-video".to_owned()
            }
        );
        assert_eq!(target(&Method::POST, &segs("veo3")), Target::Unmatched);
        assert_eq!(
            target(&Method::POST, &segs("fal-ai/veo3/requests/x/cancel")),
            Target::Unmatched
        );
        assert_eq!(
            target(&Method::POST, &segs("fal-ai//veo3")),
            Target::Unmatched
        );
    }

    #[test]
    fn auth_wants_the_key_scheme() {
        assert!(check_auth(None, Some(b"Key abc")).is_ok());
        assert!(check_auth(None, Some(b"Bearer abc")).is_err());
        assert!(check_auth(None, Some(b"Key  ")).is_err());
        assert!(check_auth(None, None).is_err());
        assert!(check_auth(Some("abc"), Some(b"Key abc")).is_ok());
        assert!(check_auth(Some("abc"), Some(b"Key abd")).is_err());
    }
}
