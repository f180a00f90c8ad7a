//! The Kling emulator's task callbacks (kling-api.md §7), received by a tiny
//! axum server on 127.0.0.1:0. Field names are spelled out from the
//! reference (serde_json::Value, no shared types). Every wait polls for the
//! expected state against a deadline; nothing sleeps a fixed time.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle, ProcessingAfter, Stats};

use crate::receiver::{Hit, Receiver, until};

const T2V: &str = "/v1/videos/text2video";
/// The emulator runs non-strict: any well-formed Bearer token passes.
const ANY: &str = "Bearer anything-goes";

async fn start(config: EmulatorConfig) -> EmulatorHandle {
    emulator::start(config).await.expect("emulator starts")
}

/// One client per test: building one loads the TLS roots, which is slow.
async fn create(http: &reqwest::Client, emu: &EmulatorHandle, body: Value) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{}{T2V}", emu.base_url()))
        .header("Authorization", ANY)
        .json(&body)
        .send()
        .await
        .expect("create exchange");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.json().await.expect("JSON create answer"))
}

async fn create_ok(http: &reqwest::Client, emu: &EmulatorHandle, body: Value) -> String {
    let (status, resp) = create(http, emu, body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    resp["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned()
}

async fn query(http: &reqwest::Client, emu: &EmulatorHandle, task_id: &str) -> Value {
    let resp = http
        .get(format!("{}{T2V}/{task_id}", emu.base_url()))
        .header("Authorization", ANY)
        .send()
        .await
        .expect("query exchange");
    resp.json().await.expect("JSON query answer")
}

fn with_id<'a>(hits: &'a [Hit], task_id: &str) -> Vec<&'a Hit> {
    hits.iter()
        .filter(|h| h.body["task_id"] == task_id)
        .collect()
}

#[tokio::test]
async fn a_task_calls_back_when_processing_then_when_it_ends() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(150),
        processing_after: ProcessingAfter::After(Duration::from_millis(30)),
        url_ttl: Some(Duration::from_secs(30)),
        ..EmulatorConfig::default()
    })
    .await;
    let id = create_ok(
        &http,
        &emu,
        json!({"prompt": "a red fox", "external_task_id": "cb-ext-1",
               "callback_url": format!("{root}/hook")}),
    )
    .await;
    let hits = until("two callbacks", || {
        let h = recv.hits();
        (h.len() >= 2).then_some(h)
    })
    .await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    let (first, last) = (&hits[0], &hits[1]);
    assert_eq!(first.body["task_status"], "processing", "{:?}", first.body);
    assert_eq!(last.body["task_status"], "succeed", "{:?}", last.body);
    assert!(first.at <= last.at);
    for hit in &hits {
        assert_eq!(hit.content_type.as_deref(), Some("application/json"));
        let b = &hit.body;
        // The task object itself, not the code/message/data envelope.
        assert!(b.get("code").is_none() && b.get("data").is_none(), "{b}");
        assert_eq!(b["task_id"], id.as_str());
        assert_eq!(b["task_info"]["external_task_id"], "cb-ext-1");
        assert!(b["created_at"].is_u64() && b["updated_at"].is_u64(), "{b}");
    }
    assert!(
        first.body["task_result"]["videos"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "{:?}",
        first.body
    );
    let end = &last.body;
    assert!(end["updated_at"].as_u64() > first.body["updated_at"].as_u64());

    // A query now agrees with the callback on everything but the URL's expiry.
    let queried = query(&http, &emu, &id).await;
    let data = &queried["data"];
    for field in ["task_status", "task_status_msg", "created_at", "updated_at"] {
        assert_eq!(data[field], end[field], "{field}: {data} vs {end}");
    }
    assert_eq!(data["task_info"], end["task_info"]);
    assert_eq!(data["final_unit_deduction"], end["final_unit_deduction"]);

    let videos = end["task_result"]["videos"].as_array().expect("videos");
    assert_eq!(videos.len(), 1, "{end}");
    assert!(videos[0]["id"].is_string() && videos[0]["duration"].is_string());
    let url = videos[0]["url"].as_str().expect("video url");
    let resp = http.get(url).send().await.expect("download exchange");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    let bytes = resp.bytes().await.expect("video bytes");
    assert_eq!(bytes.get(4..8), Some(&b"ftyp"[..]), "not an MP4");

    let stats = until("callbacks_sent == 2", || {
        let s = emu.stats();
        (s.callbacks_sent == 2).then_some(s)
    })
    .await;
    assert_eq!((stats.callbacks_failed, stats.callbacks_dropped), (0, 0));
    emu.shutdown().await;
}

#[tokio::test]
async fn dropped_callbacks_are_never_sent_and_are_counted() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(50),
        callback_drop_rate: 1.0,
        ..EmulatorConfig::default()
    })
    .await;
    for n in 0..3 {
        create_ok(
            &http,
            &emu,
            json!({"prompt": "x", "external_task_id": format!("drop-{n}"),
                   "callback_url": format!("{root}/hook")}),
        )
        .await;
    }
    // Each task has two changes (processing at 25% of its latency, then the end).
    let stats = until("six dropped callbacks", || {
        let s = emu.stats();
        (s.callbacks_dropped == 6).then_some(s)
    })
    .await;
    assert_eq!(stats.faults_injected.get("callback_drop"), Some(&6));
    assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (0, 0));
    assert!(recv.hits().is_empty(), "{:?}", recv.hits());

    let served: Stats = http
        .get(format!("{}/__emulator/stats", emu.base_url()))
        .send()
        .await
        .expect("stats exchange")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(served.callbacks_dropped, 6);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_task_without_callback_url_never_calls_back() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(50),
        ..EmulatorConfig::default()
    })
    .await;
    let silent = create_ok(&http, &emu, json!({"prompt": "quiet", "callback_url": ""})).await;
    let loud = create_ok(
        &http,
        &emu,
        json!({"prompt": "loud", "callback_url": format!("{root}/hook")}),
    )
    .await;
    // Same latency, created later: its end is the last change of the two,
    // and the loop sends in due order.
    until("the second task's final callback", || {
        let hits = recv.hits();
        with_id(&hits, &loud)
            .iter()
            .any(|h| h.body["task_status"] == "succeed")
            .then_some(())
    })
    .await;
    assert_eq!(
        query(&http, &emu, &silent).await["data"]["task_status"],
        "succeed"
    );
    assert!(with_id(&recv.hits(), &silent).is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_three_attempts_then_the_callback_is_given_up() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(50),
        // No visible processing step: the end is the only change.
        processing_after: ProcessingAfter::Fraction(1.0),
        ..EmulatorConfig::default()
    })
    .await;
    let id = create_ok(
        &http,
        &emu,
        json!({"prompt": "x", "callback_url": format!("{root}/fail")}),
    )
    .await;
    let stats = until("callbacks_failed == 1", || {
        let s = emu.stats();
        (s.callbacks_failed == 1).then_some(s)
    })
    .await;
    assert_eq!(stats.callbacks_sent, 0);
    let hits = recv.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    for pair in hits.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(90));
    }
    assert!(hits.iter().all(|h| h.body["task_id"] == id.as_str()));
    assert!(hits.iter().all(|h| h.body["task_status"] == "succeed"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_callback_url_that_is_not_http_refuses_the_create() {
    let emu = start(EmulatorConfig::default()).await;
    let http = reqwest::Client::new();
    let bad = [
        json!("ftp://x"),
        json!("not a url"),
        json!("http://"),
        json!("/relative/hook"),
        json!("mailto:someone@example.com"),
        json!(42),
    ];
    for url in &bad {
        let (status, body) = create(
            &http,
            &emu,
            json!({"prompt": "x", "external_task_id": "never", "callback_url": url}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["code"], 1201, "{url}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("callback_url"), "{url}: {body}");
        assert!(body.get("data").is_none(), "{body}");
    }
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 0);
    assert_eq!(
        stats.creates_rejected_by_code.get(&1201),
        Some(&(bad.len() as u64))
    );
    assert!(stats.tasks_by_status.values().all(|n| *n == 0), "{stats:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn many_callbacks_due_at_once_all_arrive_through_the_bounded_slots() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(EmulatorConfig {
        latency: Duration::from_millis(200),
        processing_after: ProcessingAfter::Fraction(1.0),
        record_requests: false,
        ..EmulatorConfig::default()
    })
    .await;
    // Far more than the 64 deliveries allowed in the air, all due together.
    let n = 300;
    let creates = (0..n).map(|i| {
        create_ok(
            &http,
            &emu,
            json!({"prompt": "x", "external_task_id": format!("many-{i}"),
                   "callback_url": format!("{root}/hook")}),
        )
    });
    let mut ids = futures::future::join_all(creates).await;
    until("every callback", || {
        (emu.stats().callbacks_sent == n as u64).then_some(())
    })
    .await;
    let mut seen: Vec<String> = recv
        .hits()
        .iter()
        .map(|h| h.body["task_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    seen.sort();
    assert_eq!(seen, ids);
    emu.shutdown().await;
}
