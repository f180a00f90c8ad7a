//! Integration tests: the fal queue emulator over HTTP with reqwest (no
//! vidbatch client code), each pinned by the wire shapes fal documents
//! (providers.md §8a) and by the emulator's counters.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use vidbatch::emulator::fal::{self, FalConfig, FalHandle};

const KLING_T2V: &str = "fal-ai/kling-video/v2.1/standard/text-to-video";
const KLING_I2V: &str = "fal-ai/kling-video/v2.1/standard/image-to-video";
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

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn submit_with(base: &str, model: &str, auth: &str, body: &Value) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{base}/{model}"))
        .header("Authorization", auth)
        .json(body)
        .send()
        .await
        .expect("submit");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn submit(base: &str, model: &str, body: Value) -> Value {
    let (status, json) = submit_with(base, model, KEY, &body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

/// (status, headers, JSON body or Null).
async fn call(
    method: reqwest::Method,
    url: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .request(method, url)
        .header("Authorization", KEY)
        .send()
        .await
        .expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    call(reqwest::Method::GET, url).await
}

fn url(v: &Value, field: &str) -> String {
    v[field].as_str().expect(field).to_owned()
}

/// Poll (bounded) until the status is COMPLETED; returns the last status body.
async fn completed(status_url: &str) -> Value {
    for _ in 0..2000 {
        let (code, _, body) = get(status_url).await;
        assert!(
            code == StatusCode::OK || code == StatusCode::ACCEPTED,
            "{code} {body}"
        );
        if body["status"] == "COMPLETED" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{status_url} never completed");
}

#[tokio::test]
async fn submit_answers_queue_urls_under_the_app_root_only() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let sub = submit(
        &base,
        KLING_T2V,
        json!({"prompt": "a cat", "duration": "5"}),
    )
    .await;
    let id = url(&sub, "request_id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let root = format!("{base}/fal-ai/kling-video/requests/{id}");
    assert_eq!(url(&sub, "response_url"), root);
    assert_eq!(url(&sub, "status_url"), format!("{root}/status"));
    assert_eq!(url(&sub, "cancel_url"), format!("{root}/cancel"));
    assert!(sub["queue_position"].is_u64(), "{sub}");

    let (code, _, _) = get(&format!("{root}/status")).await;
    assert_eq!(code, StatusCode::OK);
    // A client that rebuilds the URLs from the full model path gets 404.
    let wrong = format!("{base}/{KLING_T2V}/requests/{id}");
    assert_eq!(
        get(&format!("{wrong}/status")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&wrong).await.0, StatusCode::NOT_FOUND);
    let put = call(reqwest::Method::PUT, &format!("{wrong}/cancel")).await;
    assert_eq!(put.0, StatusCode::NOT_FOUND);
    // Another app's root does not know the id either.
    let other = format!("{base}/fal-ai/veo3/requests/{id}/status");
    assert_eq!(get(&other).await.0, StatusCode::NOT_FOUND);
    let stats = emu.stats();
    assert_eq!(stats.submits_accepted, 1);
    assert_eq!(stats.requests_by_model.get(KLING_T2V), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_request_runs_to_a_result_whose_video_downloads() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let sub = submit(&base, "fal-ai/veo3", json!({"prompt": "waves"})).await;
    let done = completed(&url(&sub, "status_url")).await;
    assert_eq!(done["response_url"], sub["response_url"]);
    assert!(done["logs"].is_null(), "{done}");
    assert!(done.get("queue_position").is_none(), "{done}");
    let (_, _, with_logs) = get(&format!("{}?logs=1", url(&sub, "status_url"))).await;
    assert!(with_logs["logs"].is_array(), "{with_logs}");

    let (code, _, result) = get(&url(&sub, "response_url")).await;
    assert_eq!(code, StatusCode::OK, "{result}");
    assert_eq!(result["video"]["content_type"], "video/mp4");
    assert!(result["seed"].is_u64(), "{result}");
    let size = result["video"]["file_size"].as_u64().expect("file_size");
    let video_url = url(&result["video"], "url");
    assert!(
        video_url.starts_with(&format!("{base}/files/")),
        "{video_url}"
    );
    // Files are public, as fal's CDN URLs are: no Authorization header.
    let bytes = client().get(&video_url).send().await.expect("download");
    assert_eq!(bytes.status(), StatusCode::OK);
    let bytes = bytes.bytes().await.expect("body");
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(&bytes[4..8], b"ftyp");
    let part = client()
        .get(&video_url)
        .header("Range", "bytes=10-")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("body")[..], bytes[10..]);
    assert_eq!(emu.stats().requests_charged, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_result_of_an_unfinished_request_is_a_400() {
    let emu = start(FalConfig {
        latency: Duration::from_secs(60),
        ..FalConfig::default()
    })
    .await;
    let sub = submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "slow"})).await;
    let (code, _, body) = get(&url(&sub, "status_url")).await;
    assert!(code == StatusCode::OK || code == StatusCode::ACCEPTED);
    assert_eq!(body["status"], "IN_PROGRESS", "{body}");
    let (code, _, body) = get(&url(&sub, "response_url")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"detail": "Request is still in progress"}));
    emu.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_queue_and_all_complete() {
    let emu = start(FalConfig {
        concurrency: 2,
        latency: Duration::from_millis(400),
        ..FalConfig::default()
    })
    .await;
    let base = emu.base_url();
    let mut subs = Vec::new();
    for n in 0..5 {
        subs.push(
            submit(
                &base,
                "fal-ai/wan/v2.2-a14b/text-to-video",
                json!({"prompt": format!("p{n}")}),
            )
            .await,
        );
    }
    let positions: Vec<u64> = subs
        .iter()
        .filter_map(|s| s["queue_position"].as_u64())
        .collect();
    assert_eq!(positions.len(), 5);
    assert_eq!(positions[2..], [0, 1, 2], "three wait behind two running");
    let mut last_position = [u64::MAX; 5];
    let mut saw_queue = false;
    for _ in 0..2000 {
        // One instant's snapshot: polls in a sweep happen at different moments.
        let now = emu.stats().requests_by_status;
        assert!(now.get("IN_PROGRESS").copied().unwrap_or(0) <= 2, "{now:?}");
        let mut completed = 0;
        for (i, s) in subs.iter().enumerate() {
            let (_, _, body) = get(&url(s, "status_url")).await;
            match body["status"].as_str() {
                Some("IN_PROGRESS") => {}
                Some("COMPLETED") => completed += 1,
                Some("IN_QUEUE") => {
                    saw_queue = true;
                    let p = body["queue_position"].as_u64().expect("queue_position");
                    assert!(p <= last_position[i], "position went up for {i}");
                    last_position[i] = p;
                }
                other => panic!("unexpected status {other:?}"),
            }
        }
        if completed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_queue);
    let stats = emu.stats();
    assert_eq!(
        stats.requests_by_status.get("COMPLETED"),
        Some(&5),
        "{stats:?}"
    );
    assert_eq!(stats.max_in_progress, 2);
    assert_eq!(stats.submits_rejected_by_status.len(), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn cancel_works_while_queued_and_not_after_the_start() {
    let emu = start(FalConfig {
        concurrency: 1,
        latency: Duration::from_secs(60),
        ..FalConfig::default()
    })
    .await;
    let base = emu.base_url();
    let running = submit(&base, "fal-ai/veo3", json!({"prompt": "first"})).await;
    let queued = submit(&base, "fal-ai/veo3", json!({"prompt": "second"})).await;
    let (_, _, st) = get(&url(&queued, "status_url")).await;
    assert_eq!(st["status"], "IN_QUEUE");
    assert_eq!(st["queue_position"], 0);

    let (code, _, body) = call(reqwest::Method::PUT, &url(&queued, "cancel_url")).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"status": "CANCELLATION_REQUESTED"}));
    let (_, _, st) = get(&url(&queued, "status_url")).await;
    assert_eq!(
        st["status"], "COMPLETED",
        "a cancelled request ends COMPLETED"
    );
    let (code, headers, body) = get(&url(&queued, "response_url")).await;
    assert!(code.is_client_error(), "{code}");
    assert_eq!(body["error_type"], "request_cancelled");
    assert_eq!(headers["x-fal-error-type"], "request_cancelled");

    let (code, _, body) = call(reqwest::Method::PUT, &url(&running, "cancel_url")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"status": "ALREADY_COMPLETED"}));
    let unknown = format!("{base}/fal-ai/veo3/requests/nope/cancel");
    assert_eq!(
        call(reqwest::Method::PUT, &unknown).await.0,
        StatusCode::NOT_FOUND
    );

    let stats = emu.stats();
    assert_eq!((stats.cancel_requests, stats.cancels_effective), (3, 1));
    assert_eq!(stats.completed_by_outcome.get("cancelled"), Some(&1));
    assert_eq!(
        stats.requests_charged, 0,
        "nothing finished, the cancelled one is free"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_input_is_a_charged_fastapi_422() {
    let emu = start(fast()).await;
    let base = emu.base_url();
    let (code, body) = submit_with(&base, KLING_T2V, KEY, &json!({"duration": "5"})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]})
    );
    let (code, body) = submit_with(&base, KLING_I2V, KEY, &json!({"prompt": "p"})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "image_url"]));
    let (code, _) = submit_with(
        &base,
        KLING_I2V,
        KEY,
        &json!({"prompt": "p", "image_url": "not a url"}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let data_uri = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==";
    let (code, body) = submit_with(
        &base,
        KLING_I2V,
        KEY,
        &json!({"prompt": "p", "image_url": data_uri}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let resp = client()
        .post(format!("{base}/{KLING_T2V}"))
        .header("Authorization", KEY)
        .body("not json")
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let stats = emu.stats();
    assert_eq!(stats.charged_422, 4);
    assert_eq!(stats.submits_accepted, 1);
    assert_eq!(stats.submits_rejected_by_status.get(&422), Some(&4));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_configured_key_is_required_in_the_key_scheme() {
    let emu = start(FalConfig {
        fal_key: Some("id:secret".to_owned()),
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let body = json!({"prompt": "p"});
    for auth in ["Bearer id:secret", "Key id:wrong", "Key "] {
        let (code, json) = submit_with(&base, "fal-ai/veo3", auth, &body).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{auth}");
        assert!(json["detail"].is_string(), "{json}");
    }
    let resp = client()
        .post(format!("{base}/fal-ai/veo3"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (code, sub) = submit_with(&base, "fal-ai/veo3", "Key id:secret", &body).await;
    assert_eq!(code, StatusCode::OK, "{sub}");
    let status = client()
        .get(url(&sub, "status_url"))
        .send()
        .await
        .expect("status");
    assert_eq!(status.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(emu.stats().submits_rejected_by_status.get(&401), Some(&4));
    emu.shutdown().await;
}

#[tokio::test]
async fn submit_faults_create_nothing_except_the_ambiguous_one() {
    let emu = start(FalConfig {
        submit_429_rate: 1.0,
        ..fast()
    })
    .await;
    let (code, body) =
        submit_with(&emu.base_url(), "fal-ai/veo3", KEY, &json!({"prompt": "p"})).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, json!({"detail": "rate limited"}));
    assert_eq!(emu.stats().submits_accepted, 0);
    emu.shutdown().await;

    let emu = start(FalConfig {
        submit_5xx_rate: 1.0,
        ..fast()
    })
    .await;
    let (code, _) = submit_with(&emu.base_url(), "fal-ai/veo3", KEY, &json!({"prompt": "p"})).await;
    assert!(code.is_server_error(), "{code}");
    assert_eq!(emu.stats().submits_accepted, 0);
    emu.shutdown().await;

    let emu = start(FalConfig {
        submit_ambiguous_rate: 1.0,
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let sent = client()
        .post(format!("{base}/fal-ai/veo3"))
        .header("Authorization", KEY)
        .json(&json!({"prompt": "p"}))
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the connection closes without an answer: {sent:?}"
    );
    let stats = emu.stats();
    assert_eq!(stats.submits_accepted, 1, "the request was created");
    assert_eq!(stats.possible_duplicate_submits, 0);
    // A client that blindly resubmits shows up as a possible duplicate.
    let _ = client()
        .post(format!("{base}/fal-ai/veo3"))
        .header("Authorization", KEY)
        .json(&json!({"prompt": "p"}))
        .send()
        .await;
    assert_eq!(emu.stats().possible_duplicate_submits, 1);
    assert_eq!(
        emu.stats().faults_injected.get("submit_ambiguous"),
        Some(&2)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_429_fault_says_when_to_retry() {
    let emu = start(FalConfig {
        submit_429_rate: 1.0,
        ..fast()
    })
    .await;
    let resp = client()
        .post(format!("{}/fal-ai/veo3", emu.base_url()))
        .header("Authorization", KEY)
        .json(&json!({"prompt": "p"}))
        .send()
        .await
        .expect("submit");
    assert!(resp.headers().get("retry-after").is_some());
    emu.shutdown().await;
}

#[tokio::test]
async fn status_5xx_fault() {
    let emu = start(FalConfig {
        status_5xx_rate: 1.0,
        ..fast()
    })
    .await;
    let sub = submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "p"})).await;
    let (code, _, body) = get(&url(&sub, "status_url")).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["detail"].is_string());
    assert_eq!(emu.stats().faults_injected.get("status_5xx"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_failed_request_is_completed_and_its_result_is_the_error() {
    let emu = start(FalConfig {
        result_422_rate: 1.0,
        ..fast()
    })
    .await;
    let sub = submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "p"})).await;
    completed(&url(&sub, "status_url")).await;
    let (code, _, body) = get(&url(&sub, "response_url")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"][0]["loc"].is_array(), "{body}");
    assert_eq!(emu.stats().charged_422, 1);
    emu.shutdown().await;

    let emu = start(FalConfig {
        result_500_rate: 1.0,
        ..fast()
    })
    .await;
    let sub = submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "p"})).await;
    completed(&url(&sub, "status_url")).await;
    let (code, headers, body) = get(&url(&sub, "response_url")).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    let kind = headers["x-fal-error-type"].to_str().expect("ascii");
    assert!(
        ["runner_disconnected", "request_timeout"].contains(&kind),
        "{kind}"
    );
    assert_eq!(body["error_type"], kind);
    assert_eq!(emu.stats().requests_charged, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_fail_me_prompt_ends_in_a_runner_error() {
    let emu = start(fast()).await;
    let sub = submit(
        &emu.base_url(),
        KLING_T2V,
        json!({"prompt": "please FAIL_ME now"}),
    )
    .await;
    completed(&url(&sub, "status_url")).await;
    let (code, headers, body) = get(&url(&sub, "response_url")).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["x-fal-error-type"], "runner_disconnected");
    assert_eq!(body["error_type"], "runner_disconnected");
    assert!(body["detail"].is_string());
    emu.shutdown().await;
}

#[tokio::test]
async fn a_cut_download_announces_the_full_length_and_sends_half() {
    let emu = start(FalConfig {
        download_cut_rate: 1.0,
        ..fast()
    })
    .await;
    let sub = submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "p"})).await;
    completed(&url(&sub, "status_url")).await;
    let (_, _, result) = get(&url(&sub, "response_url")).await;
    let size = result["video"]["file_size"].as_u64().expect("file_size");
    let resp = client()
        .get(url(&result["video"], "url"))
        .send()
        .await
        .expect("headers");
    assert_eq!(resp.content_length(), Some(size));
    let body = resp.bytes().await;
    assert!(body.is_err() || body.is_ok_and(|b| (b.len() as u64) < size));
    assert_eq!(emu.stats().faults_injected.get("download_cut"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn the_per_user_rate_limit_answers_429_when_on() {
    let emu = start(FalConfig {
        rate_limit_per_sec: Some(3),
        ..fast()
    })
    .await;
    let status = format!("{}/fal-ai/veo3/requests/none/status", emu.base_url());
    let mut limited = 0;
    for _ in 0..10 {
        if get(&status).await.0 == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    // Ten calls span at most two one-second windows: at most six pass.
    assert!(limited >= 4, "{limited} limited");
    assert_eq!(emu.stats().rate_limited, limited);
    emu.shutdown().await;
}

#[tokio::test]
async fn stats_are_served_over_http() {
    let emu = start(fast()).await;
    submit(&emu.base_url(), "fal-ai/veo3", json!({"prompt": "p"})).await;
    let (code, _, body) = get(&format!("{}/__emulator/stats", emu.base_url())).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["submits_accepted"], 1);
    assert_eq!(body["requests_by_model"]["fal-ai/veo3"], 1);
    assert_eq!(emu.requests().len(), 2);
    emu.shutdown().await;
}

#[test]
fn emulate_refuses_kling_only_flags_with_api_fal() {
    crate::manifest::vidbatch()
        .args(["emulate", "--api", "fal", "--url-ttl", "1s"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicates::str::contains(
            "--url-ttl cannot be used with --api fal",
        ));
}
