//! Integration tests: kling.
//!
//! The Kling client and the downloader against tiny mock servers on
//! 127.0.0.1:0 that answer with the JSON of kling-api.md and record every
//! request, so each test asserts on exactly what went over the wire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use vidbatch::download::{DownloadError, Downloader};
use vidbatch::manifest::{ImageRef, Item, Kind};
use vidbatch::provider::kling::{Credentials, KlingConfig, KlingProvider, Style};
use vidbatch::provider::{ErrorClass, Provider, RemoteStatus};

const AK: &str = "ak-test-access";
const SK: &str = "sk-test-secret-key";
const API_KEY: &str = "gw-static-key-123";

// ---------------------------------------------------------------- mock server

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// What the mock answers: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, Body);
type Responder = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Mock {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Responder,
}

impl Mock {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn record(State(mock): State<Mock>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let index = {
        let mut all = mock.seen.lock().expect("lock");
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, headers, body) = (mock.respond)(&seen, index);
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(body).expect("response")
}

/// Start a mock; returns its base URL (`http://127.0.0.1:port`) and handle.
async fn serve(respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> (String, Mock) {
    let mock = Mock {
        seen: Arc::default(),
        respond: Arc::new(respond),
    };
    let app = Router::new().fallback(record).with_state(mock.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), mock)
}

fn json_reply(status: u16, body: Value) -> Reply {
    (
        status,
        vec![("content-type", "application/json".into())],
        Body::from(body.to_string()),
    )
}

/// A raw TCP server that reads each whole request and then either drops the
/// connection without a byte of answer (`hang == false`) or holds it open
/// forever (`hang == true`). Returns the base URL and the count of requests read.
async fn silent_server(hang: bool) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(Mutex::new(0usize));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            read_request(&mut socket).await;
            *counter.lock().expect("lock") += 1;
            if hang {
                held.push(socket);
            } else {
                drop(socket);
            }
        }
    });
    (format!("http://{addr}"), count)
}

/// Read request headers and a `Content-Length` body; returns the header
/// block, lowercased.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return String::new();
        };
        if n == 0 {
            return String::new();
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return head;
            }
        }
    }
}

/// A port nothing listens on: bind, note the port, close.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------- fixtures

fn official(base: &str) -> KlingProvider {
    KlingProvider::new(KlingConfig {
        base_url: base.to_owned(),
        style: Style::Official,
        credentials: Credentials::Jwt {
            access_key: AK.into(),
            secret_key: SK.into(),
        },
        request_timeout: Duration::from_secs(10),
        callback_url: None,
    })
}

fn gateway(base: &str) -> KlingProvider {
    KlingProvider::new(KlingConfig {
        base_url: format!("{base}/v1/ai/ABCDEFGH12345678"),
        style: Style::Gateway,
        credentials: Credentials::ApiKey(API_KEY.into()),
        request_timeout: Duration::from_secs(10),
        callback_url: None,
    })
}

fn t2v_item() -> Item {
    Item {
        id: "cat".into(),
        origin: "items[0]".into(),
        kind: Kind::Text2Video,
        prompt: Some("a cat surfing a wave".into()),
        negative_prompt: Some("blurry".into()),
        image: None,
        image_tail: None,
        model_name: Some("kling-v2-6".into()),
        mode: Some("pro".into()),
        duration: Some("5".into()),
        aspect_ratio: Some("16:9".into()),
        cfg_scale: Some(0.5),
        camera_control: None,
        sound: Some("off".into()),
        extra: None,
        extra_files: Vec::new(),
    }
}

/// §6.4 create response.
fn create_ok(task_id: &str, external: &str) -> Value {
    json!({"code":0,"message":"SUCCEED","request_id":"c0656403-aaaa","data":{
        "task_id":task_id,"task_status":"submitted","task_info":{"external_task_id":external},
        "created_at":1774805076166i64,"updated_at":1774805076166i64}})
}

/// §6.1 query response for a finished task.
fn task_succeed(task_id: &str, external: &str) -> Value {
    json!({
        "task_id": task_id, "task_status": "succeed", "task_status_msg": "",
        "task_info": {"external_task_id": external},
        "task_result": {"videos": [{"id":"v-1","url":"https://cdn.klingai.com/bs2/v.mp4","duration":"5.1"}]},
        "final_unit_deduction": "2.5",
        "created_at": 1722769557708i64, "updated_at": 1722769557708i64
    })
}

fn envelope(data: Value) -> Value {
    json!({"code":0,"message":"SUCCEED","request_id":"3d67a2e2-cec7-4571-ba0d-556668ff7e82","data":data})
}

fn error_body(code: i64, message: &str) -> Value {
    json!({"code":code,"message":message,"request_id":"9984d27b-err"})
}

/// Verify a `Bearer <jwt>` header with the secret; returns the claims.
fn verify_jwt(authorization: &str) -> Value {
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("Bearer prefix with one space");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_nbf = true;
    validation.set_issuer(&[AK]);
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(SK.as_bytes()), &validation)
            .expect("JWT verifies with the secret key");
    assert_eq!(data.header.typ.as_deref(), Some("JWT"));
    let claims = data.claims;
    let exp = claims["exp"].as_i64().expect("exp");
    let nbf = claims["nbf"].as_i64().expect("nbf");
    assert_eq!(exp - nbf, 1805, "exp = now + 1800, nbf = now - 5");
    claims
}

fn query_map(seen: &Seen) -> HashMap<String, String> {
    seen.query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------- provider: happy paths

#[tokio::test]
async fn official_create_query_list_send_exact_requests() {
    let (base, mock) = serve(|seen, _| match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/v1/videos/text2video") => json_reply(200, create_ok("867283741759111202", "b1-cat-0")),
        ("GET", "/v1/videos/text2video/867283741759111202") => {
            json_reply(200, envelope(task_succeed("867283741759111202", "b1-cat-0")))
        }
        ("GET", "/v1/videos/text2video") => json_reply(
            200,
            envelope(json!([task_succeed("1", "e1"), {"task_id":"2","task_status":"processing","task_info":{}}])),
        ),
        _ => json_reply(404, error_body(1203, "not found")),
    })
    .await;
    let provider = official(&base);

    let created = provider
        .create(&vidbatch::provider::kling::job(&t2v_item()), "b1-cat-0")
        .await
        .expect("create");
    assert_eq!(created.task_id, "867283741759111202");
    assert_eq!(created.request_id.as_deref(), Some("c0656403-aaaa"));

    let snap = provider
        .query(Kind::Text2Video, "867283741759111202")
        .await
        .expect("query");
    assert_eq!(snap.external_task_id.as_deref(), Some("b1-cat-0"));
    assert_eq!(
        snap.request_id.as_deref(),
        Some("3d67a2e2-cec7-4571-ba0d-556668ff7e82")
    );
    match &snap.status {
        RemoteStatus::Succeeded { videos, units } => {
            assert_eq!(videos.len(), 1);
            assert_eq!(videos[0].url, "https://cdn.klingai.com/bs2/v.mp4");
            assert_eq!(videos[0].duration.as_deref(), Some("5.1"));
            assert_eq!(units.as_deref(), Some("2.5"));
        }
        other => panic!("expected success, got {other:?}"),
    }

    let page = provider.list(Kind::Text2Video, 2, 50).await.expect("list");
    assert_eq!(page.len(), 2);
    assert_eq!(page[1].status, RemoteStatus::Processing);

    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    let create = &seen[0];
    assert_eq!(
        create.header("content-type").as_deref(),
        Some("application/json")
    );
    let claims = verify_jwt(&create.header("authorization").expect("auth header"));
    assert_eq!(claims["iss"], AK);
    assert_eq!(
        claims.as_object().map(|o| o.len()),
        Some(3),
        "only iss, exp, nbf: {claims}"
    );
    assert_eq!(
        create.json(),
        json!({"model_name":"kling-v2-6","prompt":"a cat surfing a wave","negative_prompt":"blurry",
               "cfg_scale":0.5,"mode":"pro","aspect_ratio":"16:9","duration":"5","sound":"off",
               "external_task_id":"b1-cat-0"})
    );
    assert_eq!(seen[1].method, "GET");
    verify_jwt(&seen[1].header("authorization").expect("auth header"));
    assert!(seen[1].body.is_empty());
    let q = query_map(&seen[2]);
    assert_eq!(q.get("pageNum").map(String::as_str), Some("2"));
    assert_eq!(q.get("pageSize").map(String::as_str), Some("50"));
    // One cached token for all three calls.
    assert_eq!(
        seen[0].header("authorization"),
        seen[2].header("authorization")
    );

    // An unknown task id: 404/1203, the task cannot be polled.
    let e = provider
        .query(Kind::Text2Video, "no-such-task")
        .await
        .expect_err("unknown");
    assert_eq!(e.class, ErrorClass::ItemInvalid);
    assert_eq!((e.code, e.http_status), (Some(1203), Some(404)));
}

#[tokio::test]
async fn gateway_create_query_list_with_local_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image_path = dir.path().join("first.png");
    let image_bytes: Vec<u8> = (0u8..=250).collect();
    std::fs::write(&image_path, &image_bytes).expect("write image");

    let prefix = "/v1/ai/ABCDEFGH12345678/kling/videos/image2video";
    let (base, mock) = serve(
        move |seen, _| match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", p) if p == prefix => {
                json_reply(200, create_ok("900000000000000001", "b2-img-0"))
            }
            ("GET", p) if p == format!("{prefix}/900000000000000001") => json_reply(
                200,
                envelope(json!({"task_id":"900000000000000001","task_status":"processing"})),
            ),
            ("GET", p) if p == prefix => json_reply(200, envelope(json!([]))),
            _ => json_reply(404, error_body(1203, "not found")),
        },
    )
    .await;
    let provider = gateway(&base);
    let mut item = t2v_item();
    item.kind = Kind::Image2Video;
    item.image = Some(ImageRef::Path(image_path.clone()));
    item.image_tail = Some(ImageRef::Url("https://example.com/last.jpg".into()));

    let created = provider
        .create(&vidbatch::provider::kling::job(&item), "b2-img-0")
        .await
        .expect("create");
    assert_eq!(created.task_id, "900000000000000001");
    let snap = provider
        .query(Kind::Image2Video, "900000000000000001")
        .await
        .expect("query");
    assert_eq!(snap.status, RemoteStatus::Processing);
    assert!(
        provider
            .list(Kind::Image2Video, 1, 30)
            .await
            .expect("list")
            .is_empty()
    );

    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].path, prefix);
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let body = seen[0].json();
    let expected_b64 = base64::engine::general_purpose::STANDARD.encode(&image_bytes);
    assert_eq!(body["image"], expected_b64.as_str());
    assert!(!expected_b64.starts_with("data:"));
    assert_eq!(body["image_tail"], "https://example.com/last.jpg");
    assert!(
        body.get("aspect_ratio").is_none(),
        "aspect_ratio is t2v only: {body}"
    );
    assert_eq!(body["external_task_id"], "b2-img-0");
    assert_eq!(body["duration"], "5");
    assert_eq!(
        seen[1].header("authorization").as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(seen[2].query.as_deref(), Some("pageNum=1&pageSize=30"));
}

#[tokio::test]
async fn unreadable_local_image_is_item_invalid_and_sends_nothing() {
    let (base, mock) = serve(|_, _| json_reply(200, create_ok("1", "x"))).await;
    let mut item = t2v_item();
    item.kind = Kind::Image2Video;
    item.image = Some(ImageRef::Path(PathBuf::from(
        "/nonexistent/vidbatch/first.png",
    )));
    let e = gateway(&base)
        .create(&vidbatch::provider::kling::job(&item), "x")
        .await
        .expect_err("unreadable image");
    assert_eq!(e.class, ErrorClass::ItemInvalid);
    assert!(
        e.message.contains("/nonexistent/vidbatch/first.png"),
        "{}",
        e.message
    );
    assert!(mock.requests().is_empty());
}

// ---------------------------------------------------------------- provider: errors

#[tokio::test]
async fn business_codes_classify_by_code_not_status() {
    let cases: &[(u16, i64, ErrorClass)] = &[
        (429, 1303, ErrorClass::SlotFull),
        (429, 1102, ErrorClass::BatchFatal),
        (429, 1302, ErrorClass::RetryLater),
        (500, 5000, ErrorClass::Ambiguous),
        (504, 5002, ErrorClass::Ambiguous),
        (400, 1301, ErrorClass::ItemInvalid),
        (401, 1002, ErrorClass::BatchFatal),
    ];
    for &(status, code, class) in cases {
        let (base, _mock) = serve(move |_, _| json_reply(status, error_body(code, "nope"))).await;
        let e = official(&base)
            .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
            .await
            .expect_err("error");
        assert_eq!(e.class, class, "code {code}");
        assert_eq!(e.code, Some(code));
        assert_eq!(e.http_status, Some(status));
        assert_eq!(e.request_id.as_deref(), Some("9984d27b-err"));
        assert_eq!(e.message, "nope");
    }
}

#[tokio::test]
async fn code_5000_is_ambiguous_for_create_but_retry_for_query() {
    let (base, _mock) = serve(|_, _| json_reply(500, error_body(5000, "internal"))).await;
    let p = official(&base);
    assert_eq!(
        p.create(&vidbatch::provider::kling::job(&t2v_item()), "e")
            .await
            .expect_err("create")
            .class,
        ErrorClass::Ambiguous
    );
    assert_eq!(
        p.query(Kind::Text2Video, "1")
            .await
            .expect_err("query")
            .class,
        ErrorClass::RetryLater
    );
    assert_eq!(
        p.list(Kind::Text2Video, 1, 10)
            .await
            .expect_err("list")
            .class,
        ErrorClass::RetryLater
    );
}

#[tokio::test]
async fn non_json_bodies_classify_by_status_without_secrets() {
    let (base, _mock) = serve(|seen, _| {
        if seen.method == "POST" {
            let page = format!(
                "<html><body>502 Bad Gateway {}</body></html>",
                "x".repeat(400)
            );
            (
                502,
                vec![("content-type", "text/html".into())],
                Body::from(page),
            )
        } else if seen.path.ends_with("/echo") {
            // A broken gateway echoing the credential back.
            let echo = format!(
                "unauthorized: {}",
                seen.header("authorization").unwrap_or_default()
            );
            (403, vec![], Body::from(echo))
        } else {
            (401, vec![], Body::empty())
        }
    })
    .await;
    let p = gateway(&base);
    let e = p
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect_err("502");
    assert_eq!(e.class, ErrorClass::Ambiguous);
    assert_eq!(e.http_status, Some(502));
    assert!(
        e.message.contains("502") && e.message.contains("Bad Gateway"),
        "{}",
        e.message
    );
    assert!(
        e.message.len() < 400,
        "body snippet is bounded: {}",
        e.message.len()
    );

    let e = p.query(Kind::Text2Video, "1").await.expect_err("401");
    assert_eq!(e.class, ErrorClass::BatchFatal);
    assert_eq!(e.http_status, Some(401));

    let e = p.query(Kind::Text2Video, "echo").await.expect_err("403");
    assert_eq!(e.class, ErrorClass::BatchFatal);
    assert!(!e.to_string().contains(API_KEY), "{e}");
    assert!(!format!("{e:?}").contains(API_KEY));
}

#[tokio::test]
async fn retry_after_header_is_passed_on() {
    let (base, _mock) = serve(|_, _| {
        let (status, mut headers, body) = json_reply(429, error_body(1302, "too fast"));
        headers.push(("retry-after", "7".into()));
        (status, headers, body)
    })
    .await;
    let e = official(&base)
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect_err("429");
    assert_eq!(e.class, ErrorClass::RetryLater);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn dropped_connection_after_sending_is_ambiguous_for_create_only() {
    let (base, count) = silent_server(false).await;
    let p = official(&base);
    let e = p
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect_err("dropped");
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e}");
    assert!(
        *count.lock().expect("lock") >= 1,
        "the request reached the server"
    );
    let e = p.query(Kind::Text2Video, "1").await.expect_err("dropped");
    assert_eq!(e.class, ErrorClass::RetryLater, "{e}");
}

#[tokio::test]
async fn timeout_after_sending_create_is_ambiguous() {
    let (base, _count) = silent_server(true).await;
    let p = KlingProvider::new(KlingConfig {
        base_url: base,
        style: Style::Official,
        credentials: Credentials::Jwt {
            access_key: AK.into(),
            secret_key: SK.into(),
        },
        request_timeout: Duration::from_millis(300),
        callback_url: None,
    });
    let e = p
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect_err("timeout");
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e}");
}

#[tokio::test]
async fn connection_refused_is_unreachable_even_for_create() {
    // Nothing was sent: safe to retry, and a sign of a wrong address if the
    // API never answered in this run (the engine decides).
    let p = official(&dead_url().await);
    let e = p
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect_err("refused");
    assert_eq!(e.class, ErrorClass::Unreachable, "{e}");
    assert!(!e.message.contains(SK));
}

#[tokio::test]
async fn expired_token_is_resigned_once_then_succeeds() {
    let (base, mock) = serve(|_, index| {
        if index == 0 {
            json_reply(401, error_body(1004, "Authorization has expired"))
        } else {
            json_reply(200, create_ok("555", "e"))
        }
    })
    .await;
    let created = official(&base)
        .create(&vidbatch::provider::kling::job(&t2v_item()), "e")
        .await
        .expect("second try succeeds");
    assert_eq!(created.task_id, "555");
    let seen = mock.requests();
    assert_eq!(seen.len(), 2, "exactly one retry");
    for s in &seen {
        verify_jwt(&s.header("authorization").expect("auth"));
        assert_eq!(s.json()["external_task_id"], "e");
    }
}

#[tokio::test]
async fn token_rejected_twice_is_batch_fatal() {
    let (base, mock) =
        serve(|_, _| json_reply(401, error_body(1003, "Authorization is not yet valid"))).await;
    let e = official(&base)
        .query(Kind::Text2Video, "1")
        .await
        .expect_err("rejected");
    assert_eq!(e.class, ErrorClass::BatchFatal);
    assert_eq!(e.code, Some(1003));
    assert!(e.message.contains("clock"), "{}", e.message);
    assert_eq!(mock.requests().len(), 2);

    // A static key cannot be re-signed: fatal at once.
    let (base, mock) = serve(|_, _| json_reply(401, error_body(1004, "expired"))).await;
    let e = gateway(&base)
        .query(Kind::Text2Video, "1")
        .await
        .expect_err("rejected");
    assert_eq!(e.class, ErrorClass::BatchFatal);
    assert_eq!(mock.requests().len(), 1);
}

// ---------------------------------------------------------------- find_by_external_id

#[tokio::test]
async fn find_by_external_id_path_form() {
    let (base, mock) = serve(|seen, _| {
        if seen.path == "/v1/videos/text2video/b1-cat-0" {
            json_reply(200, envelope(task_succeed("777", "b1-cat-0")))
        } else {
            json_reply(404, error_body(1203, "not found"))
        }
    })
    .await;
    let found = official(&base)
        .find_by_external_id(Kind::Text2Video, "b1-cat-0")
        .await
        .expect("ok");
    let found = found.expect("found");
    assert_eq!(found.task_id, "777");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn find_by_external_id_falls_back_to_query_param() {
    let (base, mock) = serve(|seen, _| {
        let q = query_map(seen);
        if seen.path.ends_with("/kling/videos/text2video")
            && q.get("external_task_id").map(String::as_str) == Some("b1%2Fcat")
        {
            json_reply(200, envelope(task_succeed("778", "b1/cat")))
        } else {
            json_reply(404, error_body(1203, "task not found"))
        }
    })
    .await;
    let found = gateway(&base)
        .find_by_external_id(Kind::Text2Video, "b1/cat")
        .await
        .expect("ok");
    assert_eq!(found.map(|s| s.task_id).as_deref(), Some("778"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].path,
        "/v1/ai/ABCDEFGH12345678/kling/videos/text2video/b1%2Fcat"
    );
    assert_eq!(
        seen[1].path,
        "/v1/ai/ABCDEFGH12345678/kling/videos/text2video"
    );
}

#[tokio::test]
async fn find_by_external_id_not_found_anywhere_is_none() {
    // Path form: 400/1201 (server rejects an external id there); query form: 404 without a code.
    let (base, mock) = serve(|seen, _| {
        if seen.query.is_none() {
            json_reply(400, error_body(1201, "invalid task id"))
        } else {
            (404, vec![], Body::empty())
        }
    })
    .await;
    let found = official(&base)
        .find_by_external_id(Kind::Image2Video, "b1-x-0")
        .await
        .expect("ok");
    assert!(found.is_none());
    // Path form, query form, then one page of the newest tasks (404 here: no list).
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn find_by_external_id_falls_back_to_the_newest_list_page() {
    // Neither lookup form knows external ids, but the list shows task_info.
    let (base, mock) = serve(|seen, _| match seen.query.as_deref() {
        None => json_reply(404, error_body(1203, "not found")),
        Some(q) if q.contains("external_task_id") => json_reply(404, error_body(1203, "not found")),
        Some(_) => json_reply(
            200,
            envelope(json!([
                task_succeed("7", "other"),
                task_succeed("8", "mine")
            ])),
        ),
    })
    .await;
    let found = official(&base)
        .find_by_external_id(Kind::Text2Video, "mine")
        .await
        .expect("ok");
    assert_eq!(found.map(|s| s.task_id).as_deref(), Some("8"));
    let last = mock.requests().pop().unwrap();
    assert!(last.query.unwrap().contains("pageNum=1"));
}

#[tokio::test]
async fn find_by_external_id_never_adopts_another_task() {
    // The path form answers with someone else's task, and the query form is
    // ignored by the server (it returns a list page without our id).
    let (base, mock) = serve(|seen, _| {
        if seen.query.is_none() {
            json_reply(200, envelope(task_succeed("1", "other-ext")))
        } else {
            json_reply(
                200,
                envelope(json!([task_succeed("2", "x"), task_succeed("3", "y")])),
            )
        }
    })
    .await;
    let found = official(&base)
        .find_by_external_id(Kind::Text2Video, "mine")
        .await
        .expect("ok");
    assert!(found.is_none());
    // Path form, query form, then the newest list page (also without our id).
    assert_eq!(mock.requests().len(), 3);

    // But a list page that does hold our id is adopted.
    let (base, _mock) = serve(|seen, _| {
        if seen.query.is_none() {
            json_reply(404, error_body(1203, "not found"))
        } else {
            json_reply(
                200,
                envelope(json!([task_succeed("2", "x"), task_succeed("4", "mine")])),
            )
        }
    })
    .await;
    let found = official(&base)
        .find_by_external_id(Kind::Text2Video, "mine")
        .await
        .expect("ok");
    assert_eq!(found.map(|s| s.task_id).as_deref(), Some("4"));
}

#[tokio::test]
async fn find_by_external_id_propagates_other_errors() {
    let (base, mock) = serve(|_, _| json_reply(503, error_body(5001, "maintenance"))).await;
    let e = official(&base)
        .find_by_external_id(Kind::Text2Video, "mine")
        .await
        .expect_err("error");
    assert_eq!(e.class, ErrorClass::RetryLater);
    assert_eq!(
        mock.requests().len(),
        1,
        "no conclusion drawn from an outage"
    );
}

// ---------------------------------------------------------------- downloads

/// An MP4 `ftyp` box header: downloads refuse bodies that are not a video.
const FTYP: &[u8; 16] = b"\0\0\0\x10ftypisom\0\0\0\0";

fn content(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect();
    let n = FTYP.len().min(len);
    v[..n].copy_from_slice(&FTYP[..n]);
    v
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn downloader(max_attempts: u32) -> Downloader {
    Downloader::new(
        reqwest::Client::new(),
        max_attempts,
        Duration::from_millis(1),
    )
}

/// Serves `data` honouring `Range: bytes=n-`.
async fn video_server(data: Arc<Vec<u8>>) -> (String, Mock) {
    serve(move |seen, _| {
        let range_start = seen
            .header("range")
            .and_then(|r| {
                r.strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .map(str::to_owned)
            })
            .and_then(|s| s.parse::<usize>().ok());
        let total = data.len();
        match range_start {
            Some(start) if start >= total => (
                416,
                vec![("content-range", format!("bytes */{total}"))],
                Body::empty(),
            ),
            Some(start) => (
                206,
                vec![
                    (
                        "content-range",
                        format!("bytes {start}-{}/{total}", total - 1),
                    ),
                    ("content-length", (total - start).to_string()),
                ],
                Body::from(data[start..].to_vec()),
            ),
            None => (
                200,
                vec![("content-length", total.to_string())],
                Body::from(data.to_vec()),
            ),
        }
    })
    .await
}

/// A raw server whose first answer announces the whole file but sends only
/// the first half before closing; later requests get `206` for their Range.
/// Returns the base URL and each request's `range` header.
async fn cutting_video_server(data: Arc<Vec<u8>>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let head = read_request(&mut socket).await;
            let range = head
                .lines()
                .find_map(|l| l.strip_prefix("range:"))
                .map(|r| r.trim().to_owned());
            seen.lock().expect("lock").push(range.clone());
            let total = data.len();
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')))
                .and_then(|s| s.parse::<usize>().ok());
            let _ = match start {
                None => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    socket.write_all(&data[..total / 2]).await
                }
                Some(start) => {
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {start}-{}/{total}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        total - 1,
                        total - start
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    socket.write_all(&data[start..]).await
                }
            };
            let _ = socket.shutdown().await;
        }
    });
    (format!("http://{addr}"), ranges)
}

fn assert_done(dest: &Path, data: &[u8]) {
    assert_eq!(std::fs::read(dest).expect("dest exists"), data);
    let part = vidbatch::download::part_path(dest);
    assert!(!part.exists(), "no .part left behind");
}

#[tokio::test]
async fn download_plain() {
    let data = Arc::new(content(100_000));
    let (base, mock) = video_server(data.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("batch/item/video.mp4");
    let got = downloader(3)
        .fetch(&format!("{base}/v.mp4?sig=x"), &dest)
        .await
        .expect("download");
    assert_eq!(got.bytes, data.len() as u64);
    assert_eq!(got.sha256, sha_hex(&data));
    assert_done(&dest, &data);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header("range").is_none());
}

#[tokio::test]
async fn download_resumes_with_range_after_a_cut_body() {
    let data = Arc::new(content(300_001));
    let (base, ranges) = cutting_video_server(data.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    let got = downloader(3)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("download");
    assert_eq!(got.sha256, sha_hex(&data), "hash covers the resumed file");
    assert_eq!(got.bytes, data.len() as u64);
    assert_done(&dest, &data);
    let ranges = ranges.lock().expect("lock").clone();
    assert_eq!(
        ranges,
        vec![None, Some(format!("bytes={}-", data.len() / 2))],
        "second attempt resumes with Range"
    );
}

#[tokio::test]
async fn download_resumes_a_part_left_by_an_earlier_run() {
    let data = Arc::new(content(50_000));
    let (base, mock) = video_server(data.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    std::fs::write(vidbatch::download::part_path(&dest), &data[..12_345]).expect("part");
    let got = downloader(1)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("download");
    assert_eq!(got.sha256, sha_hex(&data));
    assert_done(&dest, &data);
    assert_eq!(
        mock.requests()[0].header("range").as_deref(),
        Some("bytes=12345-")
    );
}

#[tokio::test]
async fn download_restarts_when_range_is_ignored_or_unsatisfiable() {
    let data = Arc::new(content(10_000));
    // Server that ignores Range and always answers 200 with the whole file.
    let whole = data.clone();
    let (base, _mock) = serve(move |_, _| {
        (
            200,
            vec![("content-length", whole.len().to_string())],
            Body::from(whole.to_vec()),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("a.mp4");
    std::fs::write(
        vidbatch::download::part_path(&dest),
        b"garbage from elsewhere",
    )
    .expect("part");
    let got = downloader(1)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("download");
    assert_eq!(got.sha256, sha_hex(&data));
    assert_done(&dest, &data);

    // A part as long as the file: 416, then a fresh full download.
    let (base, mock) = video_server(data.clone()).await;
    let dest = dir.path().join("b.mp4");
    std::fs::write(vidbatch::download::part_path(&dest), &data[..]).expect("part");
    let got = downloader(1)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("download");
    assert_eq!(got.sha256, sha_hex(&data));
    assert_done(&dest, &data);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("range").as_deref(), Some("bytes=10000-"));
    assert!(seen[1].header("range").is_none());
}

#[tokio::test]
async fn download_403_is_expired_at_once_and_keeps_the_part() {
    for status in [403u16, 404, 410] {
        let (base, mock) = serve(move |_, _| (status, vec![], Body::from("AccessDenied"))).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("video.mp4");
        let part = vidbatch::download::part_path(&dest);
        std::fs::write(&part, b"first half").expect("part");
        let e = downloader(5)
            .fetch(&format!("{base}/v.mp4"), &dest)
            .await
            .expect_err("expired");
        assert!(
            matches!(e, DownloadError::Expired { status: s } if s == status),
            "{e}"
        );
        assert_eq!(mock.requests().len(), 1, "not retried");
        assert_eq!(std::fs::read(&part).expect("part kept"), b"first half");
        assert!(!dest.exists());
    }
}

#[tokio::test]
async fn download_retries_server_errors_then_gives_up() {
    let data = Arc::new(content(5_000));
    let body = data.clone();
    let (base, mock) = serve(move |_, index| {
        if index < 2 {
            (503, vec![], Body::from("busy"))
        } else {
            (
                200,
                vec![("content-length", body.len().to_string())],
                Body::from(body.to_vec()),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    downloader(3)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect("third attempt");
    assert_done(&dest, &data);
    assert_eq!(mock.requests().len(), 3);

    let (base, mock) = serve(|_, _| (500, vec![], Body::from("down"))).await;
    let dest = dir.path().join("never.mp4");
    let e = downloader(2)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect_err("gives up");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 2, .. }),
        "{e}"
    );
    assert_eq!(mock.requests().len(), 2);
    assert!(!dest.exists());
}

#[tokio::test]
async fn download_dead_host_fails_after_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    let e = downloader(2)
        .fetch(&format!("{}/v.mp4", dead_url().await), &dest)
        .await
        .expect_err("dead");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 2, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn download_short_body_keeps_part_for_resume() {
    // Announces 1000 bytes, sends 400 and closes: the .part keeps the 400.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            read_request(&mut socket).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                .await;
            let _ = socket.write_all(&content(1000)[..400]).await;
            let _ = socket.shutdown().await;
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    let e = downloader(1)
        .fetch(&format!("http://{addr}/v.mp4"), &dest)
        .await
        .expect_err("short");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 1, .. }),
        "{e}"
    );
    let part = std::fs::read(vidbatch::download::part_path(&dest)).expect("part kept");
    assert_eq!(part, content(1000)[..400]);
    assert!(!dest.exists());
}

#[tokio::test]
async fn download_50_mb_streamed_in_chunks() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 800; // 52,428,800 bytes
    let chunk_of = |i: usize| -> Bytes {
        let mut c: Vec<u8> = (0..CHUNK).map(|j| ((i * 31 + j) % 253) as u8).collect();
        if i == 0 {
            c[..FTYP.len()].copy_from_slice(FTYP);
        }
        Bytes::from(c)
    };
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(chunk_of(i));
    }
    let expected = hex::encode(expected.finalize());
    let (base, _mock) = serve(move |_, _| {
        let stream =
            futures::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk_of(i))));
        (
            200,
            vec![("content-length", (CHUNK * CHUNKS).to_string())],
            Body::from_stream(stream),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("big.mp4");
    let got = downloader(1)
        .fetch(&format!("{base}/big.mp4"), &dest)
        .await
        .expect("download");
    assert_eq!(got.bytes, (CHUNK * CHUNKS) as u64);
    assert_eq!(got.sha256, expected);
    assert_eq!(
        std::fs::metadata(&dest).expect("dest").len(),
        (CHUNK * CHUNKS) as u64
    );
    assert!(!vidbatch::download::part_path(&dest).exists());
}

#[tokio::test]
async fn download_stalled_body_is_abandoned_and_part_kept() {
    // Announces 1000 bytes, sends 300, then goes silent with the socket open.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            read_request(&mut socket).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                .await;
            let _ = socket.write_all(&content(1000)[..300]).await;
            let _ = socket.flush().await;
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    let e = downloader(1)
        .with_idle_timeout(Duration::from_secs(1))
        .fetch(&format!("http://{addr}/v.mp4"), &dest)
        .await
        .expect_err("stalled");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 1, .. }),
        "{e}"
    );
    let part = std::fs::read(vidbatch::download::part_path(&dest)).expect("part kept");
    assert_eq!(part, content(1000)[..300]);
}

#[tokio::test]
async fn download_other_client_errors_are_not_retried() {
    let (base, mock) = serve(|_, _| (401, vec![], Body::from("no"))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("video.mp4");
    let e = downloader(4)
        .fetch(&format!("{base}/v.mp4"), &dest)
        .await
        .expect_err("401");
    assert!(
        matches!(e, DownloadError::Failed { attempts: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(mock.requests().len(), 1);
}
