//! Integration tests: the Kling API emulator, driven over HTTP with reqwest.
//! Field names are spelled out here from kling-api.md (serde_json::Value, no
//! shared types), so a wrong name on the emulator's side fails a test.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle, Stats};

const T2V: &str = "/v1/videos/text2video";
const I2V: &str = "/v1/videos/image2video";
const ANY: &str = "Bearer anything-goes";

fn fast() -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(50),
        ..EmulatorConfig::default()
    }
}

async fn start(config: EmulatorConfig) -> EmulatorHandle {
    emulator::start(config).await.expect("emulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("HTTP exchange");
    let status = resp.status();
    let body = resp.json::<Value>().await.expect("JSON body");
    (status, body)
}

async fn post(url: &str, auth: &str, body: Value) -> (StatusCode, Value) {
    send(client().post(url).header("Authorization", auth).json(&body)).await
}

async fn get(url: &str, auth: &str) -> (StatusCode, Value) {
    send(client().get(url).header("Authorization", auth)).await
}

/// Assert the documented error envelope: code, message, request_id, no data.
fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: i64) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_uuid(&body["request_id"]);
    assert!(body.get("data").is_none(), "errors carry no data: {body}");
}

fn assert_uuid(v: &Value) {
    let s = v.as_str().unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(s).is_ok(),
        "request_id {v} is not a UUID"
    );
}

fn assert_task_id(v: &Value) -> String {
    let id = v.as_str().expect("task_id is a string").to_owned();
    assert_eq!(id.len(), 18, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    id
}

/// Poll a task (bounded) until its status is `want`; returns the envelope.
async fn wait_for(url: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..1000 {
        let (status, body) = get(url, ANY).await;
        if status == StatusCode::OK && body["data"]["task_status"] == want {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("task never reached {want}; last answer {last}");
}

async fn create_ok(base: &str, path: &str, body: Value) -> String {
    let (status, resp) = post(&format!("{base}{path}"), ANY, body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_task_id(&resp["data"]["task_id"])
}

fn jwt(ak: &str, sk: &str, exp_offset: i64, nbf_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let claims = json!({"iss": ak, "exp": now + exp_offset, "nbf": now + nbf_offset});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(sk.as_bytes()),
    )
    .expect("sign JWT");
    format!("Bearer {token}")
}

#[tokio::test]
async fn create_envelope_lifecycle_and_result() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    let (status, body) = post(
        &format!("{base}{T2V}"),
        ANY,
        json!({"model_name": "kling-v1", "prompt": "a red fox", "duration": "10", "mode": "pro",
               "external_task_id": "ext-life-1", "some_future_field": {"x": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "SUCCEED");
    assert_uuid(&body["request_id"]);
    let data = &body["data"];
    let id = assert_task_id(&data["task_id"]);
    assert_eq!(data["task_status"], "submitted");
    assert_eq!(data["task_info"]["external_task_id"], "ext-life-1");
    let created = data["created_at"].as_u64().expect("created_at ms");
    assert!(created > 1_600_000_000_000, "milliseconds: {created}");
    assert_eq!(data["updated_at"].as_u64(), Some(created));

    let done = wait_for(&format!("{base}{T2V}/{id}"), "succeed").await;
    let d = &done["data"];
    assert_eq!(d["task_id"], id.as_str());
    assert_eq!(d["final_unit_deduction"], "7", "kling-v1 pro 10 s");
    assert!(d["updated_at"].as_u64() >= Some(created + 50));
    let videos = d["task_result"]["videos"].as_array().expect("videos array");
    assert_eq!(videos.len(), 1);
    assert!(
        videos[0]["id"]
            .as_str()
            .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
    );
    assert!(
        videos[0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{base}/videos/")))
    );
    assert!(
        videos[0]["duration"]
            .as_str()
            .is_some_and(|s| s.starts_with("10"))
    );
    assert_eq!(d["task_info"]["external_task_id"], "ext-life-1");

    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 1);
    assert_eq!(stats.tasks_by_status.get("succeed"), Some(&1));
    assert_eq!(stats.in_flight_now, 0);
    assert_eq!(stats.max_in_flight, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn status_passes_through_processing() {
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(400),
        processing_after: emulator::ProcessingAfter::After(Duration::from_millis(20)),
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.base_url();
    let id = create_ok(&base, T2V, json!({"prompt": "slow"})).await;
    let url = format!("{base}{T2V}/{id}");
    let processing = wait_for(&url, "processing").await;
    assert!(
        processing["data"]["task_result"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    );
    assert!(processing["data"].get("final_unit_deduction").is_none());
    wait_for(&url, "succeed").await;
    emu.shutdown().await;
}

#[tokio::test]
async fn fail_prompt_ends_failed_with_message() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let id = create_ok(&base, T2V, json!({"prompt": "please FAIL_ME now"})).await;
    let body = wait_for(&format!("{base}{T2V}/{id}"), "failed").await;
    assert_eq!(body["code"], 0);
    assert_eq!(body["message"], "SUCCEED");
    let msg = body["data"]["task_status_msg"].as_str().unwrap_or_default();
    assert!(msg.contains("risk"), "{msg}");
    assert!(
        body["data"]["task_result"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    );
    assert_eq!(emu.stats().tasks_by_status.get("failed"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn query_by_task_id_external_id_and_query_param() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let id = create_ok(
        &base,
        I2V,
        json!({"image": "https://example.com/a.jpg", "external_task_id": "ext-q"}),
    )
    .await;
    for url in [
        format!("{base}{I2V}/{id}"),
        format!("{base}{I2V}/ext-q"),
        format!("{base}{I2V}?external_task_id=ext-q"),
    ] {
        let (status, body) = get(&url, ANY).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        assert_eq!(body["data"]["task_id"], id.as_str(), "{url}");
        assert_eq!(body["data"]["task_info"]["external_task_id"], "ext-q");
    }
    // Unknown ids, and a task asked for under the other kind.
    for url in [
        format!("{base}{I2V}/999999999999999999"),
        format!("{base}{I2V}?external_task_id=nope"),
        format!("{base}{T2V}/{id}"),
    ] {
        let (status, body) = get(&url, ANY).await;
        assert_error(status, &body, 404, 1203);
    }
    let stats = emu.stats();
    assert_eq!(stats.queries, 6);
    assert_eq!(
        stats.requests_by_route.get("GET /v1/videos/{kind}/{id}"),
        Some(&4)
    );
    assert_eq!(
        stats.requests_by_route.get("GET /v1/videos/{kind}"),
        Some(&2)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn list_pages_newest_first_with_limits() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create_ok(&base, T2V, json!({"prompt": format!("p{i}")})).await);
    }
    create_ok(&base, I2V, json!({"image": "https://example.com/x.png"})).await;
    let (status, body) = get(&format!("{base}{T2V}?pageNum=1&pageSize=2"), ANY).await;
    assert_eq!(status, StatusCode::OK);
    let page: Vec<&str> = body["data"]
        .as_array()
        .expect("data is an array")
        .iter()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    assert_eq!(page, vec![ids[4].as_str(), ids[3].as_str()]);
    let (_, last) = get(&format!("{base}{T2V}?pageNum=3&pageSize=2"), ANY).await;
    assert_eq!(last["data"].as_array().map(Vec::len), Some(1));
    let (_, all) = get(&format!("{base}{T2V}"), ANY).await;
    assert_eq!(
        all["data"].as_array().map(Vec::len),
        Some(5),
        "default pageSize 30, kind-scoped"
    );
    for q in [
        "pageNum=0",
        "pageNum=1001",
        "pageSize=0",
        "pageSize=501",
        "pageSize=abc",
    ] {
        let (status, body) = get(&format!("{base}{T2V}?{q}"), ANY).await;
        assert_error(status, &body, 400, 1201);
    }
    let (status, _) = get(&format!("{base}{T2V}?pageNum=1000&pageSize=500"), ANY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(emu.stats().list_queries, 9);
    emu.shutdown().await;
}

#[tokio::test]
async fn gateway_style_serves_the_same_api() {
    let emu = start(EmulatorConfig {
        api_key: Some("gw-key".to_owned()),
        ..fast()
    })
    .await;
    let gw = emu.gateway_base_url();
    assert!(gw.ends_with("/v1/ai/emulator"));
    let auth = "Bearer gw-key";
    let (status, body) = post(
        &format!("{gw}/kling/videos/text2video"),
        auth,
        json!({"model_name": "MaaS_KeLing_V2.6", "prompt": "gw", "external_task_id": "gw-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = assert_task_id(&body["data"]["task_id"]);
    let mut done = Value::Null;
    for _ in 0..1000 {
        let (_, b) = get(&format!("{gw}/kling/videos/text2video/{id}"), auth).await;
        if b["data"]["task_status"] == "succeed" {
            done = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        done["data"]["task_result"]["videos"][0]["url"].is_string(),
        "{done}"
    );
    let (status, body) = get(
        &format!("{gw}/kling/videos/text2video?external_task_id=gw-1"),
        auth,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["task_id"], id.as_str());
    let (status, body) = get(&format!("{gw}/kling/videos/text2video?pageSize=10"), auth).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    // The same account: the official style sees the task too (lenient there).
    let (status, _) = get(&format!("{}{T2V}/{id}", emu.base_url()), ANY).await;
    assert_eq!(status, StatusCode::OK);
    // Wrong or missing static key.
    let (status, body) = get(
        &format!("{gw}/kling/videos/text2video/{id}"),
        "Bearer wrong",
    )
    .await;
    assert_error(status, &body, 401, 1000);
    let (status, body) = send(client().get(format!("{gw}/kling/videos/text2video/{id}"))).await;
    assert_error(status, &body, 401, 1001);
    let stats = emu.stats();
    assert_eq!(
        stats
            .requests_by_route
            .get("POST /v1/ai/{endpoint}/kling/videos/text2video"),
        Some(&1)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn jwt_auth_codes_when_strict() {
    let emu = start(EmulatorConfig {
        access_key: Some("AK123".to_owned()),
        secret_key: Some("SK456".to_owned()),
        ..fast()
    })
    .await;
    let url = format!("{}{T2V}", emu.base_url());
    let body = json!({"prompt": "auth"});
    let good = jwt("AK123", "SK456", 1800, -5);
    let (status, resp) = post(&url, &good, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let (status, resp) = send(client().post(&url).json(&body)).await;
    assert_error(status, &resp, 401, 1001);
    let cases = [
        ("Basic abc".to_owned(), 1002),
        ("Bearer not.a.jwt".to_owned(), 1002),
        ("Bearer".to_owned(), 1002),
        (jwt("AK123", "wrong-secret", 1800, -5), 1002),
        (jwt("AK123", "SK456", 1800, 300), 1003),
        (jwt("AK123", "SK456", -10, -1000), 1004),
        (jwt("someone-else", "SK456", 1800, -5), 1000),
    ];
    for (auth, code) in cases {
        let (status, resp) = post(&url, &auth, body.clone()).await;
        assert_error(status, &resp, 401, code);
        // No secret or token ever echoes back.
        assert!(!resp.to_string().contains("SK456"));
    }
    let (status, resp) = get(&format!("{url}/123"), &jwt("AK123", "SK456", -10, -1000)).await;
    assert_error(status, &resp, 401, 1004);
    let stats = emu.stats();
    assert_eq!(stats.creates_rejected_by_code.get(&1002), Some(&4));
    assert_eq!(stats.creates_rejected_by_code.get(&1001), Some(&1));
    // The request log never holds the Authorization header.
    let log = serde_json::to_string(&emu.requests()).expect("log serialises");
    assert!(!log.contains(good.trim_start_matches("Bearer ")));
    assert!(!log.to_lowercase().contains("authorization"));
    emu.shutdown().await;
}

#[tokio::test]
async fn lenient_mode_accepts_any_bearer_but_not_a_missing_header() {
    let emu = start(fast()).await;
    let url = format!("{}{T2V}", emu.base_url());
    let (status, _) = post(&url, "Bearer whatever", json!({"prompt": "x"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(client().post(&url).json(&json!({"prompt": "x"}))).await;
    assert_error(status, &body, 401, 1001);
    let (status, body) = post(&url, "whatever", json!({"prompt": "x"})).await;
    assert_error(status, &body, 401, 1002);
    emu.shutdown().await;
}

#[tokio::test]
async fn validation_codes_and_messages() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let t2v = format!("{base}{T2V}");
    let i2v = format!("{base}{I2V}");
    let url_img = "https://example.com/i.jpg";
    let cases: Vec<(&str, Value, &str)> = vec![
        (&t2v, json!({"prompt": ""}), "prompt"),
        (&t2v, json!({"model_name": "kling-v1"}), "prompt"),
        (&t2v, json!({"prompt": "x".repeat(2501)}), "prompt"),
        (
            &t2v,
            json!({"prompt": "x", "negative_prompt": "n".repeat(2501)}),
            "negative_prompt",
        ),
        (
            &t2v,
            json!({"prompt": "x", "model_name": "kling-v9"}),
            "model_name",
        ),
        (
            &t2v,
            json!({"prompt": "x", "model_name": "kling-v2-1"}),
            "model_name",
        ),
        (&t2v, json!({"prompt": "x", "cfg_scale": -0.1}), "cfg_scale"),
        (&t2v, json!({"prompt": "x", "mode": "max"}), "mode"),
        (
            &t2v,
            json!({"prompt": "x", "aspect_ratio": "21:9"}),
            "aspect_ratio",
        ),
        (&t2v, json!({"prompt": "x", "duration": "6"}), "duration"),
        (&t2v, json!({"prompt": "x", "duration": 6}), "duration"),
        (
            &t2v,
            json!({"prompt": "x", "camera_control": {"type": "simple", "config": {"pan": 2, "tilt": 3}}}),
            "camera_control",
        ),
        (
            &t2v,
            json!({"prompt": "x", "camera_control": {"type": "simple", "config": {"roll": -11}}}),
            "camera_control",
        ),
        (
            &t2v,
            json!({"prompt": "x", "camera_control": {"type": "forward_up", "config": {"zoom": 2}}}),
            "camera_control",
        ),
        (
            &t2v,
            json!({"prompt": "x", "camera_control": {"type": "spin"}}),
            "camera_control",
        ),
        (&i2v, json!({"prompt": "no image"}), "image"),
        (
            &i2v,
            json!({"image": url_img, "image_tail": url_img, "camera_control": {"type": "down_back"}}),
            "same time",
        ),
        (
            &i2v,
            json!({"image": url_img, "static_mask": url_img, "camera_control": {"type": "down_back"}}),
            "same time",
        ),
        (
            &i2v,
            json!({"image": url_img, "dynamic_masks": (0..7).map(|_| json!({"mask": url_img, "trajectories": [{"x":0,"y":0},{"x":1,"y":1}]})).collect::<Vec<_>>()}),
            "dynamic_masks",
        ),
        (
            &i2v,
            json!({"image": url_img, "dynamic_masks": [{"mask": url_img, "trajectories": [{"x":0,"y":0}]}]}),
            "trajectories",
        ),
        (
            &i2v,
            json!({"image": url_img, "dynamic_masks": [{"mask": url_img, "trajectories": (0..78).map(|i| json!({"x": i, "y": i})).collect::<Vec<_>>()}]}),
            "trajectories",
        ),
        (
            &i2v,
            json!({"image": "data:image/png;base64,iVBORw0KGgo="}),
            "data:",
        ),
    ];
    for (url, body, needle) in &cases {
        let (status, resp) = post(url, ANY, body.clone()).await;
        assert_error(status, &resp, 400, 1201);
        let msg = resp["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "message {msg:?} should mention {needle}"
        );
    }
    // Lenient forms are accepted.
    for (url, body) in [
        (&t2v, json!({"prompt": "x", "duration": 10})),
        (&t2v, json!({"prompt": "x", "model": "kling-v1"})),
        (
            &t2v,
            json!({"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 5}}}),
        ),
        (
            &t2v,
            json!({"prompt": "x", "model_name": "kling-v3", "duration": "15"}),
        ),
        (
            &i2v,
            json!({"image_tail": url_img, "model_name": "kling-v1-5"}),
        ),
        (
            &i2v,
            json!({"image": url_img, "dynamic_masks": [{"mask": url_img, "trajectories": [{"x":0,"y":0},{"x":1,"y":1}]}]}),
        ),
    ] {
        let (status, resp) = post(url, ANY, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body} -> {resp}");
    }
    // Not JSON at all: 1200.
    let (status, resp) = send(
        client()
            .post(&t2v)
            .header("Authorization", ANY)
            .body("{not json"),
    )
    .await;
    assert_error(status, &resp, 400, 1200);
    let stats = emu.stats();
    assert_eq!(
        stats.creates_rejected_by_code.get(&1201),
        Some(&(cases.len() as u64))
    );
    assert_eq!(stats.creates_rejected_by_code.get(&1200), Some(&1));
    assert_eq!(stats.tasks_by_status.values().sum::<u64>(), 6);
    emu.shutdown().await;
}

#[tokio::test]
async fn duplicate_external_task_id_is_rejected_and_counted() {
    let emu = start(fast()).await;
    let url = format!("{}{T2V}", emu.base_url());
    let body = json!({"prompt": "x", "external_task_id": "dup-1"});
    let (status, _) = post(&url, ANY, body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let (status, resp) = post(&url, ANY, body.clone()).await;
        assert_error(status, &resp, 400, 1201);
        assert_eq!(resp["message"], "external_task_id already exists");
    }
    // Unique per account, across kinds and path styles.
    let (status, resp) = post(
        &format!("{}/kling/videos/image2video", emu.gateway_base_url()),
        ANY,
        json!({"image": "https://e.com/a.png", "external_task_id": "dup-1"}),
    )
    .await;
    assert_error(status, &resp, 400, 1201);
    let stats: Stats = client()
        .get(format!("{}/__emulator/stats", emu.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(stats.duplicate_external_task_ids, vec!["dup-1".to_owned()]);
    assert_eq!(stats.creates_per_external_task_id_max, 4);
    assert_eq!(
        stats
            .create_attempts_by_external_task_id
            .as_ref()
            .and_then(|m| m.get("dup-1")),
        Some(&4)
    );
    assert_eq!(stats.creates_accepted, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn concurrency_limit_counts_unfinished_tasks() {
    let emu = start(EmulatorConfig {
        concurrency_limit: Some(2),
        latency: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.base_url();
    create_ok(&base, T2V, json!({"prompt": "a"})).await;
    create_ok(&base, I2V, json!({"image": "https://e.com/a.png"})).await;
    let (status, body) = post(&format!("{base}{T2V}"), ANY, json!({"prompt": "c"})).await;
    assert_error(status, &body, 429, 1303);
    assert_eq!(body["message"], "parallel task over resource pack limit");
    let stats = emu.stats();
    assert_eq!((stats.in_flight_now, stats.max_in_flight), (2, 2));
    assert_eq!(stats.creates_rejected_by_code.get(&1303), Some(&1));
    emu.shutdown().await;

    // A slot frees when the task's terminal time passes (failed ones too).
    // 1 s: long enough that the second create surely lands while the first
    // is in flight, even on a loaded machine.
    let emu = start(EmulatorConfig {
        concurrency_limit: Some(1),
        latency: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.base_url();
    let id = create_ok(&base, T2V, json!({"prompt": "FAIL_ME first"})).await;
    let (status, body) = post(&format!("{base}{T2V}"), ANY, json!({"prompt": "second"})).await;
    assert_error(status, &body, 429, 1303);
    wait_for(&format!("{base}{T2V}/{id}"), "failed").await;
    create_ok(&base, T2V, json!({"prompt": "second"})).await;
    assert_eq!(emu.stats().max_in_flight, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_limit() {
    let emu = start(EmulatorConfig {
        concurrency_limit: Some(5),
        latency: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .await;
    let url = format!("{}{T2V}", emu.base_url());
    let mut handles = Vec::new();
    for i in 0..40 {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            post(
                &url,
                ANY,
                json!({"prompt": "c", "external_task_id": format!("c-{i}")}),
            )
            .await
            .0
        }));
    }
    let mut accepted = 0;
    for h in handles {
        match h.await.expect("task").as_u16() {
            200 => accepted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted, 5);
    let stats = emu.stats();
    assert_eq!(
        (
            stats.creates_accepted,
            stats.max_in_flight,
            stats.in_flight_now
        ),
        (5, 5, 5)
    );
    assert_eq!(stats.creates_rejected_by_code.get(&1303), Some(&35));
    assert!(stats.duplicate_external_task_ids.is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn create_faults_5000_and_1302_create_nothing() {
    let emu = start(EmulatorConfig {
        create_5000_rate: 1.0,
        ..fast()
    })
    .await;
    let url = format!("{}{T2V}", emu.base_url());
    let (status, body) = post(&url, ANY, json!({"prompt": "x", "external_task_id": "f-1"})).await;
    assert_error(status, &body, 500, 5000);
    let (status, body) = get(&format!("{url}?external_task_id=f-1"), ANY).await;
    assert_error(status, &body, 404, 1203);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 0);
    assert_eq!(stats.faults_injected.get("create_5000"), Some(&1));
    emu.shutdown().await;

    let emu = start(EmulatorConfig {
        create_1302_rate: 1.0,
        ..fast()
    })
    .await;
    let (status, body) = post(
        &format!("{}{T2V}", emu.base_url()),
        ANY,
        json!({"prompt": "x"}),
    )
    .await;
    assert_error(status, &body, 429, 1302);
    assert_eq!(emu.stats().creates_accepted, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn seeded_fault_rates_repeat_across_runs() {
    /// Status per external id; `reverse` sends them in the opposite order.
    async fn outcomes(seed: u64, reverse: bool) -> std::collections::BTreeMap<u32, u16> {
        let emu = start(EmulatorConfig {
            create_5000_rate: 0.5,
            seed,
            ..fast()
        })
        .await;
        let url = format!("{}{T2V}", emu.base_url());
        let mut out = std::collections::BTreeMap::new();
        let mut order: Vec<u32> = (0..40).collect();
        if reverse {
            order.reverse();
        }
        for i in order {
            let (status, _) = post(
                &url,
                ANY,
                json!({"prompt": "x", "external_task_id": format!("s-{i}")}),
            )
            .await;
            out.insert(i, status.as_u16());
        }
        emu.shutdown().await;
        out
    }
    let a = outcomes(42, false).await;
    // Same seed, opposite order: the same ids fail.
    let b = outcomes(42, true).await;
    assert_eq!(a, b);
    let fails = a.values().filter(|s| **s == 500).count();
    assert!((5..=35).contains(&fails), "about half fail: {fails}");
    assert_ne!(a, outcomes(43, false).await);
}

#[tokio::test]
async fn ambiguous_create_creates_then_closes_without_answer() {
    let emu = start(EmulatorConfig {
        create_ambiguous_rate: 1.0,
        ..fast()
    })
    .await;
    let url = format!("{}{T2V}", emu.base_url());
    let sent = client()
        .post(&url)
        .header("Authorization", ANY)
        .json(&json!({"prompt": "amb", "external_task_id": "amb-1"}))
        .send()
        .await;
    assert!(
        sent.is_err(),
        "client must see an error, not {:?}",
        sent.map(|r| r.status())
    );
    // The task exists and can be adopted by its external id.
    let (status, body) = get(&format!("{url}?external_task_id=amb-1"), ANY).await;
    assert_eq!(status, StatusCode::OK);
    assert_task_id(&body["data"]["task_id"]);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 1);
    assert_eq!(stats.faults_injected.get("create_ambiguous"), Some(&1));
    let log = emu.requests();
    let create = log
        .iter()
        .find(|r| r.method == "POST")
        .expect("create logged");
    assert!(create.dropped);
    assert_eq!(create.route, "POST /v1/videos/text2video");
    // Blind retry with the same id is a duplicate.
    let (status, body) = post(
        &url,
        ANY,
        json!({"prompt": "amb", "external_task_id": "amb-1"}),
    )
    .await;
    assert_error(status, &body, 400, 1201);
    assert_eq!(
        emu.stats().duplicate_external_task_ids,
        vec!["amb-1".to_owned()]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn query_5001_fault() {
    let emu = start(EmulatorConfig {
        query_5001_rate: 1.0,
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let id = create_ok(&base, T2V, json!({"prompt": "x"})).await;
    let (status, body) = get(&format!("{base}{T2V}/{id}"), ANY).await;
    assert_error(status, &body, 503, 5001);
    assert_eq!(emu.stats().faults_injected.get("query_5001"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn balance_exhausted_after_n_creates() {
    let emu = start(EmulatorConfig {
        balance_exhausted_after_creates: Some(2),
        ..fast()
    })
    .await;
    let base = emu.base_url();
    create_ok(&base, T2V, json!({"prompt": "1"})).await;
    create_ok(&base, T2V, json!({"prompt": "2"})).await;
    for _ in 0..2 {
        let (status, body) = post(&format!("{base}{T2V}"), ANY, json!({"prompt": "3"})).await;
        assert_error(status, &body, 429, 1102);
    }
    assert_eq!(emu.stats().creates_rejected_by_code.get(&1102), Some(&2));
    emu.shutdown().await;
}

async fn finished_video_url(base: &str, prompt: &str) -> String {
    let id = create_ok(base, T2V, json!({"prompt": prompt})).await;
    let body = wait_for(&format!("{base}{T2V}/{id}"), "succeed").await;
    body["data"]["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("video url")
        .to_owned()
}

/// Top-level MP4 box types; sizes must add up to the file length exactly.
fn mp4_boxes(bytes: &[u8]) -> Vec<String> {
    let mut types = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        types.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        assert!(size >= 8, "bad box size at {at}");
        at += size;
    }
    assert_eq!(at, bytes.len(), "box sizes must sum to the file length");
    types
}

#[tokio::test]
async fn videos_are_real_distinct_mp4s_with_ranges() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let url_a = finished_video_url(&base, "a").await;
    let url_b = finished_video_url(&base, "b").await;
    let resp = client().get(&url_a).send().await.expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let a = resp.bytes().await.expect("body");
    assert_eq!(a.len(), len);
    let b = client()
        .get(&url_b)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_ne!(a, b, "bytes differ per video");
    let types = mp4_boxes(&a);
    for needed in ["ftyp", "moov", "mdat", "free"] {
        assert!(types.iter().any(|t| t == needed), "{types:?}");
    }
    // Range: resume from the middle.
    let resp = client()
        .get(&url_a)
        .header("Range", "bytes=100-")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 100-{}/{}", len - 1, len).as_str()
    );
    assert_eq!(resp.bytes().await.expect("body"), a.slice(100..));
    let resp = client()
        .get(&url_a)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.bytes().await.expect("body"), a.slice(10..20));
    let resp = client()
        .get(&url_a)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    // A tampered signature or unknown video.
    let resp = client()
        .get(url_a.replace("sig=", "sig=0"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = client()
        .get(format!("{base}/videos/123.mp4?exp=0&sig=x"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let stats = emu.stats();
    assert_eq!(stats.downloads_started, 4);
    assert_eq!(stats.downloads_completed, 4);
    assert_eq!(stats.downloads_forbidden, 1);
    assert_eq!(stats.requests_by_route.get("GET /videos/{file}"), Some(&7));
    emu.shutdown().await;
}

#[tokio::test]
async fn padded_videos_reach_the_configured_size() {
    let emu = start(EmulatorConfig {
        video_pad_bytes: 1_000_000,
        ..fast()
    })
    .await;
    let url = finished_video_url(&emu.base_url(), "big").await;
    let bytes = client()
        .get(&url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(bytes.len(), 1_000_000);
    assert!(mp4_boxes(&bytes).iter().any(|t| t == "moov"));
    emu.shutdown().await;
}

#[tokio::test]
async fn download_cut_sends_half_then_closes() {
    let emu = start(EmulatorConfig {
        download_cut_rate: 1.0,
        video_pad_bytes: 2_000_000,
        ..fast()
    })
    .await;
    let url = finished_video_url(&emu.base_url(), "cut").await;
    let mut resp = client().get(&url).send().await.expect("headers arrive");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "2000000");
    let mut got = 0usize;
    let err = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => panic!("body ended cleanly after {got} bytes"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        got, 1_000_000,
        "exactly half arrives before the close ({err})"
    );
    // A ranged retry is cut too (rate 1.0), at half of what it asked for.
    let resp = client()
        .get(&url)
        .header("Range", "bytes=1000000-")
        .send()
        .await
        .expect("headers");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(resp.bytes().await.is_err());
    let stats = emu.stats();
    assert_eq!(
        (
            stats.downloads_started,
            stats.downloads_cut,
            stats.downloads_completed
        ),
        (2, 2, 0)
    );
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.route == "GET /videos/{file}" && r.dropped)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn video_urls_expire_and_queries_refresh_them() {
    let emu = start(EmulatorConfig {
        url_ttl: Some(Duration::from_millis(500)),
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let id = create_ok(&base, T2V, json!({"prompt": "ttl"})).await;
    let query = format!("{base}{T2V}/{id}");
    let first = wait_for(&query, "succeed").await["data"]["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    // Poll the old URL (bounded) until it is refused.
    let mut refused = false;
    for _ in 0..1000 {
        let status = client().get(&first).send().await.expect("get").status();
        if status == StatusCode::FORBIDDEN {
            refused = true;
            break;
        }
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the URL never expired");
    let (_, fresh) = get(&query, ANY).await;
    let second = fresh["data"]["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url");
    assert_ne!(first, second);
    let resp = client().get(second).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(emu.stats().downloads_forbidden >= 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_stats_endpoint() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let (status, body) = post(&format!("{base}/v1/videos/omni-video"), ANY, json!({})).await;
    assert_error(status, &body, 404, 1202);
    let (status, body) = get(&format!("{base}/nope"), ANY).await;
    assert_error(status, &body, 404, 1202);
    let (status, body) = send(
        client()
            .delete(format!("{base}{T2V}/1"))
            .header("Authorization", ANY),
    )
    .await;
    assert_error(status, &body, 404, 1202);
    create_ok(&base, T2V, json!({"prompt": "s"})).await;
    let (status, stats) = send(client().get(format!("{base}/__emulator/stats"))).await;
    assert_eq!(status, StatusCode::OK);
    for key in [
        "requests_by_route",
        "creates_accepted",
        "creates_rejected_by_code",
        "duplicate_external_task_ids",
        "creates_per_external_task_id_max",
        "tasks_by_status",
        "in_flight_now",
        "max_in_flight",
        "downloads_started",
        "downloads_completed",
        "queries",
        "list_queries",
    ] {
        assert!(stats.get(key).is_some(), "stats lacks {key}: {stats}");
    }
    assert_eq!(stats["requests_by_route"]["POST /v1/videos/text2video"], 1);
    assert_eq!(stats["requests_by_route"]["(unmatched)"], 3);
    assert_eq!(stats["creates_accepted"], 1);
    let (status, log) = send(client().get(format!("{base}/__emulator/requests"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(log.as_array().is_some_and(|l| l.len() >= 5), "{log}");
    emu.shutdown().await;
}

#[test]
fn emulate_help_documents_every_option() {
    let out = assert_cmd::Command::cargo_bin("vidbatch")
        .expect("binary built")
        .args(["emulate", "--help"])
        .env_clear()
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--port",
        "--access-key",
        "--secret-key",
        "--api-key",
        "--latency",
        "--jitter",
        "--processing-after",
        "--fail-prompt",
        "--concurrency-limit",
        "--seed",
        "--create-5000-rate",
        "--ambiguous-create-rate",
        "--create-1302-rate",
        "--query-5001-rate",
        "--download-cut-rate",
        "--url-ttl",
        "--balance-exhausted-after",
        "--video-size",
        "--no-request-log",
        "--fault-html-body",
        "--fault-json-body",
        "--fault-short-body",
        "--fault-trickle",
        "--trickle-interval",
        "--fault-endless-body",
        "--fault-long-task-id",
        "--fault-redirect-download",
        "--fault-redirect-api",
        "--videos-per-task",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn emulate_prints_its_base_url_first() {
    use std::io::BufRead;
    let bin = assert_cmd::cargo::cargo_bin("vidbatch");
    let mut child = std::process::Command::new(bin)
        .args(["emulate", "--port", "0", "--latency", "100ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line.trim().to_owned();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stats = runtime.block_on(async {
        reqwest::get(format!("{url}/__emulator/stats"))
            .await
            .map(|r| r.status())
    });
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {url:?}");
    assert_eq!(stats.ok(), Some(StatusCode::OK));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("accepting any well-formed Bearer token"),
        "{stderr}"
    );
}
