//! The fal emulator's webhooks (providers.md §8a: `?fal_webhook=<url>` on a
//! submit, one POST of `{request_id, gateway_request_id, status, payload,
//! error?}` when the request ends), received by a tiny axum server on
//! 127.0.0.1:0. Field names are spelled out from the documentation
//! (serde_json::Value, no shared types). Every wait polls for the expected
//! state against a deadline; nothing sleeps a fixed time.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use vidbatch::emulator::fal::{self, FalConfig, FalHandle, FalStats};

use crate::receiver::{Hit, Receiver, until};

const T2V: &str = "fal-ai/kling-video/v2.1/standard/text-to-video";
const KEY: &str = "Key anything-goes";

fn fast() -> FalConfig {
    FalConfig {
        latency: Duration::from_millis(50),
        ..FalConfig::default()
    }
}

async fn start(config: FalConfig) -> FalHandle {
    fal::start(config).await.expect("fal emulator starts")
}

async fn submit(
    http: &reqwest::Client,
    emu: &FalHandle,
    hook: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut url = reqwest::Url::parse(&format!("{}/{T2V}", emu.base_url())).expect("submit URL");
    if let Some(hook) = hook {
        url.query_pairs_mut().append_pair("fal_webhook", hook);
    }
    let resp = http
        .post(url)
        .header("Authorization", KEY)
        .json(&body)
        .send()
        .await
        .expect("submit exchange");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Submit; the (request_id, response_url) of the accepted request.
async fn submit_ok(
    http: &reqwest::Client,
    emu: &FalHandle,
    hook: Option<&str>,
    prompt: &str,
) -> (String, String) {
    let (status, resp) = submit(http, emu, hook, json!({"prompt": prompt})).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let field = |f: &str| resp[f].as_str().expect(f).to_owned();
    (field("request_id"), field("response_url"))
}

/// (HTTP status, JSON body) of a GET with the key.
async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = http
        .get(url)
        .header("Authorization", KEY)
        .send()
        .await
        .expect("GET exchange");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn with_id<'a>(hits: &'a [Hit], id: &str) -> Vec<&'a Hit> {
    hits.iter().filter(|h| h.body["request_id"] == id).collect()
}

async fn stats_when(emu: &FalHandle, what: &str, ok: impl Fn(&FalStats) -> bool) -> FalStats {
    until(what, || Some(emu.stats()).filter(|s| ok(s))).await
}

#[tokio::test]
async fn a_finished_request_posts_its_result_to_the_webhook_unpolled() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(fast()).await;
    // A query of its own, to see the URL arrive decoded and intact.
    let target = format!("{root}/hook?token=a%2Fb&x=1");
    let (id, response_url) = submit_ok(&http, &emu, Some(&target), "a red fox").await;

    // Nobody polls: the end alone sends it.
    let hits = until("the webhook", || {
        Some(recv.hits()).filter(|h| !h.is_empty())
    })
    .await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit.target, "/hook?token=a%2Fb&x=1");
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    let b = &hit.body;
    assert_eq!(b["request_id"], id.as_str(), "{b}");
    assert_eq!(b["gateway_request_id"], id.as_str(), "{b}");
    assert_eq!(b["status"], "OK", "{b}");
    assert!(b.get("error").is_none(), "{b}");

    let (code, result) = get(&http, &response_url).await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(b["payload"], result, "the payload is the result GET's JSON");
    let video = b["payload"]["video"]["url"].as_str().expect("video url");
    let resp = http.get(video).send().await.expect("download exchange");
    assert_eq!(resp.status().as_u16(), 200, "{video}");
    let bytes = resp.bytes().await.expect("video bytes");
    assert_eq!(bytes.get(4..8), Some(&b"ftyp"[..]), "not an MP4");
    assert_eq!(
        b["payload"]["video"]["file_size"].as_u64(),
        Some(bytes.len() as u64)
    );

    let stats = stats_when(&emu, "webhooks_sent == 1", |s| s.webhooks_sent == 1).await;
    assert_eq!((stats.webhooks_failed, stats.webhooks_dropped), (0, 0));
    assert_eq!(stats.status_requests, 0, "the webhook came unpolled");
    assert_eq!(recv.hits().len(), 1, "a terminal webhook only, once");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_request_that_ends_in_an_error_posts_an_error_webhook() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let hook = format!("{root}/hook");
    // The fail prompt: a runner error (500); and, on a second emulator, a
    // model-rejected input (422).
    let emu = start(fast()).await;
    let rejecting = start(FalConfig {
        result_422_rate: 1.0,
        ..fast()
    })
    .await;
    let (runner, runner_url) = submit_ok(&http, &emu, Some(&hook), "x FAIL_ME").await;
    let (input, input_url) = submit_ok(&http, &rejecting, Some(&hook), "x").await;
    let hits = until("two webhooks", || {
        Some(recv.hits()).filter(|h| h.len() >= 2)
    })
    .await;
    for (id, url, code) in [(&runner, &runner_url, 500), (&input, &input_url, 422)] {
        let mine = with_id(&hits, id);
        assert_eq!(mine.len(), 1, "{hits:?}");
        let b = &mine[0].body;
        assert_eq!(b["status"], "ERROR", "{b}");
        assert_eq!(b["gateway_request_id"], id.as_str(), "{b}");
        assert_eq!(b["error"], format!("Invalid status code: {code}"), "{b}");
        let (status, result) = get(&http, url).await;
        assert_eq!(status, code, "{result}");
        assert_eq!(b["payload"], result, "the payload is the error detail");
        assert!(b["payload"]["detail"].is_string() || b["payload"]["detail"].is_array());
    }
    assert_eq!(
        with_id(&hits, &runner)[0].body["payload"]["error_type"],
        "runner_disconnected"
    );
    emu.shutdown().await;
    rejecting.shutdown().await;
}

#[tokio::test]
async fn dropped_webhooks_are_never_sent_and_are_counted() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(FalConfig {
        webhook_drop_rate: 1.0,
        concurrency: 3,
        ..fast()
    })
    .await;
    let hook = format!("{root}/hook");
    for n in 0..3 {
        submit_ok(&http, &emu, Some(&hook), &format!("drop {n}")).await;
    }
    let stats = stats_when(&emu, "three dropped webhooks", |s| s.webhooks_dropped == 3).await;
    assert_eq!(stats.faults_injected.get("webhook_drop"), Some(&3));
    assert_eq!((stats.webhooks_sent, stats.webhooks_failed), (0, 0));
    assert_eq!(stats.requests_by_status.get("COMPLETED"), Some(&3));
    assert!(recv.hits().is_empty(), "{:?}", recv.hits());

    let (code, served) = get(&http, &format!("{}/__emulator/stats", emu.base_url())).await;
    assert_eq!(code, 200);
    assert_eq!(served["webhooks_dropped"], 3, "{served}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_submit_without_fal_webhook_sends_none() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(fast()).await;
    let (silent, silent_url) = submit_ok(&http, &emu, None, "quiet").await;
    let hook = format!("{root}/hook");
    let (loud, _) = submit_ok(&http, &emu, Some(&hook), "loud").await;
    // Same latency, submitted later (concurrency 2, both run at once): its
    // end is the later one, and the loop sends in due order.
    until("the second request's webhook", || {
        (!with_id(&recv.hits(), &loud).is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        get(&http, &format!("{silent_url}/status")).await.1["status"],
        "COMPLETED"
    );
    assert!(with_id(&recv.hits(), &silent).is_empty());
    assert_eq!(recv.hits().len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_fal_webhook_that_is_not_an_http_url_refuses_the_submit() {
    let http = reqwest::Client::new();
    let emu = start(fast()).await;
    let bad = [
        "",
        "ftp://x/hook",
        "not a url",
        "http://",
        "/relative/hook",
        "mailto:someone@example.com",
    ];
    for hook in bad {
        let (status, body) = submit(&http, &emu, Some(hook), json!({"prompt": "x"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{hook:?}: {body}");
        let detail = body["detail"].as_array().expect("a detail list");
        assert_eq!(detail.len(), 1, "{body}");
        assert_eq!(detail[0]["loc"], json!(["query", "fal_webhook"]), "{body}");
        assert!(detail[0]["msg"].is_string() && detail[0]["type"].is_string());
    }
    // Every problem is listed: a bad body too.
    let (status, body) = submit(&http, &emu, Some("ftp://x"), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .map(|d| d.iter().map(|p| &p["loc"]).collect())
        .unwrap_or_default();
    assert_eq!(
        locs,
        vec![&json!(["query", "fal_webhook"]), &json!(["body", "prompt"])]
    );
    let stats = emu.stats();
    assert_eq!(stats.submits_accepted, 0);
    assert_eq!(
        stats.submits_rejected_by_status.get(&422),
        Some(&(bad.len() as u64 + 1))
    );
    assert!(stats.requests_by_status.is_empty(), "{stats:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_three_attempts_then_the_webhook_is_given_up() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let emu = start(fast()).await;
    let (id, _) = submit_ok(&http, &emu, Some(&format!("{root}/fail")), "x").await;
    let stats = stats_when(&emu, "webhooks_failed == 1", |s| s.webhooks_failed == 1).await;
    assert_eq!((stats.webhooks_sent, stats.webhooks_dropped), (0, 0));
    let hits = recv.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    for pair in hits.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(90));
    }
    assert!(hits.iter().all(|h| h.body["request_id"] == id.as_str()));
    assert!(hits.iter().all(|h| h.body["status"] == "OK"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_request_sends_none_and_the_ones_behind_it_move_up() {
    let (recv, root) = Receiver::start().await;
    let http = reqwest::Client::new();
    let latency = Duration::from_millis(400);
    let emu = start(FalConfig {
        latency,
        concurrency: 1,
        ..FalConfig::default()
    })
    .await;
    let hook = format!("{root}/hook");
    let t0 = Instant::now();
    let (first, _) = submit_ok(&http, &emu, Some(&hook), "first").await;
    let (cancelled, cancelled_url) = submit_ok(&http, &emu, Some(&hook), "second").await;
    let (third, _) = submit_ok(&http, &emu, Some(&hook), "third").await;
    let resp = http
        .put(format!("{cancelled_url}/cancel"))
        .header("Authorization", KEY)
        .send()
        .await
        .expect("cancel exchange");
    assert_eq!(resp.status().as_u16(), 202);
    // Planned: first ends at 1x latency, the third at 3x; after the cancel
    // the third ends at 2x, and its webhook must leave then, not at 3x.
    let hits = until("the third request's webhook", || {
        let h = recv.hits();
        (!with_id(&h, &third).is_empty()).then_some(h)
    })
    .await;
    let at = with_id(&hits, &third)[0].at.duration_since(t0);
    assert!(at < latency * 5 / 2, "sent {at:?} after the submits");
    assert_eq!(with_id(&hits, &first).len(), 1, "{hits:?}");
    assert!(with_id(&hits, &cancelled).is_empty(), "{hits:?}");
    let stats = stats_when(&emu, "webhooks_sent == 2", |s| s.webhooks_sent == 2).await;
    assert_eq!(stats.completed_by_outcome.get("cancelled"), Some(&1));
    emu.shutdown().await;
}
