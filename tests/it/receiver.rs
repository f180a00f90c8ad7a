//! A callback receiver for the emulators' tests: a tiny axum server on
//! 127.0.0.1:0 that keeps every POST (`/hook` answers 200, `/fail` 500),
//! and a bounded wait for what it should have seen.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::routing::post;
use serde_json::Value;

/// How long a wait for a callback may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) at: Instant,
    /// Path and query as requested.
    pub(crate) target: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Value,
}

/// Collects every POST; `/hook` answers 200, `/fail` answers 500.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    pub(crate) async fn start() -> (Receiver, String) {
        let recv = Receiver::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/fail", post(fail))
            .with_state(recv.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (recv, format!("http://{addr}"))
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn record(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let hit = Hit {
            at: Instant::now(),
            target: uri.to_string(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        };
        if let Ok(mut hits) = self.hits.lock() {
            hits.push(hit);
        }
    }
}

async fn hook(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.record(&uri, &headers, &body);
    StatusCode::OK
}

async fn fail(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.record(&uri, &headers, &body);
    StatusCode::INTERNAL_SERVER_ERROR
}

/// Poll `check` until it gives a value, or fail after [`DEADLINE`].
pub(crate) async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
