//! Integration tests: the emulator's fault modes for downloads and API
//! redirects, driven over HTTP with reqwest (no vidbatch client code), each
//! pinned by what goes over the wire and by its counter in the stats.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle};

const T2V: &str = "/v1/videos/text2video";
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

/// A client that follows no redirect, so each answer is seen as sent.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn create(base: &str, body: Value) -> (StatusCode, Value) {
    let resp = no_redirects()
        .post(format!("{base}{T2V}"))
        .header("Authorization", ANY)
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Create a task and poll (bounded) until it succeeded; returns its data.
async fn finished_task(base: &str, prompt: &str) -> Value {
    let (status, body) = create(base, json!({"prompt": prompt})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    let url = format!("{base}{T2V}/{id}");
    for _ in 0..1000 {
        let body: Value = no_redirects()
            .get(&url)
            .header("Authorization", ANY)
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        if body["data"]["task_status"] == "succeed" {
            return body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("task {id} never succeeded");
}

async fn first_video_url(base: &str, prompt: &str) -> String {
    finished_task(base, prompt).await["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("video url")
        .to_owned()
}

fn fault_count(emu: &EmulatorHandle, name: &str) -> u64 {
    emu.stats().faults_injected.get(name).copied().unwrap_or(0)
}

fn is_mp4(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"ftyp")
}

#[tokio::test]
async fn html_and_json_bodies_come_with_200_instead_of_the_video() {
    for (config, content_type, needle, fault) in [
        (
            EmulatorConfig {
                download_html_rate: 1.0,
                ..fast()
            },
            "text/html; charset=utf-8",
            "Access denied",
            "download_html",
        ),
        (
            EmulatorConfig {
                download_json_rate: 1.0,
                ..fast()
            },
            "application/json",
            "\"code\":1103",
            "download_json",
        ),
    ] {
        let emu = start(config).await;
        let url = first_video_url(&emu.base_url(), "doc").await;
        let resp = no_redirects().get(&url).send().await.expect("download");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], content_type);
        let body = resp.text().await.expect("body");
        assert!(body.contains(needle), "{body}");
        assert_eq!(fault_count(&emu, fault), 1);
        assert_eq!(emu.stats().downloads_started, 0, "no video was served");
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn a_short_body_announces_the_whole_file_and_a_range_gets_the_rest() {
    let emu = start(EmulatorConfig {
        download_short_rate: 1.0,
        video_pad_bytes: 200_000,
        ..fast()
    })
    .await;
    let url = first_video_url(&emu.base_url(), "short").await;
    let mut resp = no_redirects().get(&url).send().await.expect("headers");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "200000");
    let mut got = Vec::new();
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => break "clean end".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(got.len(), 100_000, "half, then the close ({ended})");
    assert!(is_mp4(&got));
    // Only whole-file answers are short: a resume is served in full.
    let resp = no_redirects()
        .get(&url)
        .header("Range", "bytes=100000-")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.expect("rest").len(), 100_000);
    let stats = emu.stats();
    assert_eq!(fault_count(&emu, "download_short"), 1);
    assert_eq!((stats.downloads_started, stats.downloads_completed), (2, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_trickle_sends_one_byte_per_interval() {
    let emu = start(EmulatorConfig {
        download_trickle_rate: 1.0,
        trickle_interval: Duration::from_millis(30),
        ..fast()
    })
    .await;
    let url = first_video_url(&emu.base_url(), "slow").await;
    let mut resp = no_redirects().get(&url).send().await.expect("headers");
    assert_eq!(resp.status(), StatusCode::OK);
    let announced: usize = resp.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("length");
    assert!(announced > 1000, "the whole file is announced");
    let t = Instant::now();
    let mut got = Vec::new();
    while got.len() < 8 {
        let chunk = resp.chunk().await.expect("no error").expect("more bytes");
        assert_eq!(chunk.len(), 1, "one byte at a time");
        got.extend_from_slice(&chunk);
    }
    assert!(
        t.elapsed() >= Duration::from_millis(7 * 30),
        "{:?}",
        t.elapsed()
    );
    assert!(is_mp4(&got), "the bytes are the video's");
    assert_eq!(fault_count(&emu, "download_trickle"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_endless_body_has_no_length_and_does_not_end() {
    let emu = start(EmulatorConfig {
        download_endless_rate: 1.0,
        ..fast()
    })
    .await;
    let url = first_video_url(&emu.base_url(), "endless").await;
    let mut resp = no_redirects().get(&url).send().await.expect("headers");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let mut head = Vec::new();
    let mut got = 0usize;
    // Far past any real video of the emulator (a few KB): it keeps coming.
    while got < 5_000_000 {
        let chunk = resp.chunk().await.expect("no error").expect("never ends");
        if head.len() < 16 {
            head.extend_from_slice(&chunk[..chunk.len().min(16)]);
        }
        got += chunk.len();
    }
    assert!(is_mp4(&head), "it starts as the video");
    drop(resp);
    assert_eq!(fault_count(&emu, "download_endless"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_download_redirect_leads_to_the_same_video_on_this_server() {
    let emu = start(EmulatorConfig {
        redirect_download_rate: 1.0,
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let url = first_video_url(&base, "moved").await;
    let resp = no_redirects().get(&url).send().await.expect("download");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        location.starts_with(&format!("{base}/cdn/videos/")),
        "{location}"
    );
    // Followed, it is the video (the redirect target is never redirected).
    let bytes = reqwest::get(&url)
        .await
        .expect("followed")
        .bytes()
        .await
        .expect("body");
    assert!(is_mp4(&bytes));
    let stats = emu.stats();
    assert_eq!(fault_count(&emu, "redirect_download"), 2);
    assert_eq!(
        stats.requests_by_route.get("GET /cdn/videos/{file}"),
        Some(&1)
    );
    assert_eq!(stats.downloads_completed, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn api_redirects_point_at_another_origin_and_do_nothing() {
    let emu = start(EmulatorConfig {
        redirect_api_rate: 1.0,
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let port = emu.local_addr().port();
    let (status, _) = create(&base, json!({"prompt": "x", "external_task_id": "e1"})).await;
    assert!(
        matches!(status.as_u16(), 307 | 308),
        "create answered {status}"
    );
    let resp = no_redirects()
        .post(format!("{base}{T2V}"))
        .header("Authorization", ANY)
        .json(&json!({"prompt": "x", "external_task_id": "e2"}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        resp.headers()["location"],
        format!("http://127.0.0.2:{port}{T2V}").as_str()
    );
    let resp = no_redirects()
        .get(format!("{base}{T2V}/123?x=1"))
        .header("Authorization", ANY)
        .send()
        .await
        .expect("query");
    assert!(matches!(resp.status().as_u16(), 307 | 308));
    assert_eq!(
        resp.headers()["location"],
        format!("http://127.0.0.2:{port}{T2V}/123?x=1").as_str()
    );
    let stats = emu.stats();
    assert_eq!(
        stats.creates_accepted, 0,
        "a redirected create creates nothing"
    );
    assert_eq!(fault_count(&emu, "redirect_api"), 3);
    // Healed, the same calls are carried out.
    emu.heal();
    let (status, body) = create(&base, json!({"prompt": "x", "external_task_id": "e1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(emu.stats().creates_accepted, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_long_task_id_is_still_a_queryable_id() {
    let emu = start(EmulatorConfig {
        long_task_id_rate: 1.0,
        ..fast()
    })
    .await;
    let base = emu.base_url();
    let (status, body) = create(&base, json!({"prompt": "x", "external_task_id": "long-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    assert_eq!(id.len(), 40 * 1024);
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    let resp = no_redirects()
        .get(format!("{base}{T2V}/{id}"))
        .header("Authorization", ANY)
        .send()
        .await
        .expect("query");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["data"]["task_id"].as_str(), Some(id.as_str()));
    let by_ext: Value = no_redirects()
        .get(format!("{base}{T2V}/long-1"))
        .header("Authorization", ANY)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("JSON");
    assert_eq!(by_ext["data"]["task_id"].as_str(), Some(id.as_str()));
    assert_eq!(fault_count(&emu, "long_task_id"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_task_can_return_several_distinct_videos() {
    let emu = start(EmulatorConfig {
        videos_per_task: 3,
        ..fast()
    })
    .await;
    let task = finished_task(&emu.base_url(), "three").await;
    let videos = task["task_result"]["videos"].as_array().expect("videos");
    assert_eq!(videos.len(), 3, "{task}");
    let mut ids = std::collections::HashSet::new();
    let mut bodies = std::collections::HashSet::new();
    for v in videos {
        assert!(ids.insert(v["id"].as_str().expect("id").to_owned()));
        let bytes = reqwest::get(v["url"].as_str().expect("url"))
            .await
            .expect("download")
            .bytes()
            .await
            .expect("body");
        assert!(is_mp4(&bytes));
        assert!(bodies.insert(bytes), "each video is its own file");
    }
    assert_eq!(emu.stats().videos_created, 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_partial_rate_mixes_answers_and_heal_turns_faults_off() {
    let emu = start(EmulatorConfig {
        download_html_rate: 0.5,
        seed: 11,
        ..fast()
    })
    .await;
    let url = first_video_url(&emu.base_url(), "seeded").await;
    let mut html = Vec::new();
    for _ in 0..16 {
        let resp = no_redirects().get(&url).send().await.expect("download");
        html.push(resp.headers()["content-type"] != "video/mp4");
    }
    assert!(html.contains(&true) && html.contains(&false), "{html:?}");
    let injected = fault_count(&emu, "download_html");
    assert_eq!(injected, html.iter().filter(|h| **h).count() as u64);
    emu.heal();
    for _ in 0..8 {
        let resp = no_redirects().get(&url).send().await.expect("download");
        assert_eq!(resp.headers()["content-type"], "video/mp4", "healed");
    }
    assert_eq!(fault_count(&emu, "download_html"), injected);
    emu.shutdown().await;
}
