//! `--webhook-url`: the provider's callbacks get a finished task queried at
//! once; lost callbacks cost only time (the polls finish the batch); bad
//! flags stop the run before anything is sent.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vidbatch::emulator::EmulatorConfig;

use crate::common::*;

/// A port nothing listens on (the next bind may take it; fine for tests).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `vidbatch run` polling every `poll`, with callbacks to a listener of its own.
fn run_with_callbacks(manifest: &Path, out: &Path, base_url: &str, poll: &str) -> Command {
    let port = free_port();
    let mut cmd = run_polling_every(poll, manifest, out, base_url);
    cmd.args(["--submit-rate", "200/s"])
        .args(["--webhook-url", &format!("http://127.0.0.1:{port}/hooks/")])
        .args(["--webhook-listen", &format!("127.0.0.1:{port}")]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_finish_a_batch_whose_polls_would_take_minutes() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(100),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // An hour between polls: the first look at a task would come minutes
    // after its end (a twentieth of the interval), the run would not end
    // inside the test's patience.
    let cmd = run_with_callbacks(&manifest(dir.path(), 6), &out, &emu.base_url(), "1h");
    let result = tokio::time::timeout(Duration::from_secs(60), output(cmd))
        .await
        .expect("the callbacks finish the batch");
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 6);
    assert!(stats.callbacks_sent >= 6, "{stats:?}");
    // One query a task, each the answer to its callback.
    assert!(stats.queries <= 6 && stats.list_queries == 0, "{stats:?}");
    assert_all_videos_intact(&out, 6);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("callbacks to http://127.0.0.1:"),
        "{stderr}"
    );
    // The token in the address is this run's secret: not printed, not kept.
    let state = std::fs::read(out.join("state.db")).unwrap();
    assert!(!String::from_utf8_lossy(&state).contains("/hooks/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_callbacks_cost_only_time_the_polls_finish_the_batch() {
    let emu = emulator(EmulatorConfig {
        callback_drop_rate: 1.0,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cmd = run_with_callbacks(&manifest(dir.path(), 8), &out, &emu.base_url(), "50ms");
    let result = output(cmd).await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 8);
    assert!(stats.duplicate_external_task_ids.is_empty());
    assert_eq!(stats.callbacks_sent, 0);
    assert_all_videos_intact(&out, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_webhook_flags_exit_2_before_anything_is_sent() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), 2);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (flags, says) in [
        (
            vec!["--webhook-url", "ftp://example.com/x"],
            "--webhook-url",
        ),
        (
            vec!["--webhook-url", "https://example.com/x?k=v"],
            "--webhook-url",
        ),
        (vec!["--webhook-listen", "127.0.0.1:9"], "--webhook-url"),
        (
            vec![
                "--webhook-url",
                "http://example.com/h",
                "--webhook-listen",
                "nowhere",
            ],
            "--webhook-listen",
        ),
        (
            vec![
                "--webhook-url",
                "http://example.com/h",
                "--webhook-listen",
                &taken,
            ],
            "--webhook-listen",
        ),
    ] {
        let out = dir.path().join("out");
        let result = output(run_cmd(&manifest, &out, &emu.base_url(), &flags)).await;
        assert_exit(&result, 2);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
    assert_eq!(emu.stats().creates_accepted, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn fal_webhooks_finish_a_batch_whose_polls_would_take_minutes() {
    use vidbatch::emulator::fal::{self, FalConfig};
    const KEY: &str = "fal-test-key-WEBHOOK-7";
    let emu = fal::start(FalConfig {
        fal_key: Some(KEY.into()),
        latency: Duration::from_millis(100),
        concurrency: 8,
        ..FalConfig::default()
    })
    .await
    .expect("fal emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("fal.yaml");
    let mut yaml = String::from(
        "provider: fal\ndefaults:\n  model_name: fal-ai/kling-video/v2.1/standard/text-to-video\n  duration: \"5\"\nitems:\n",
    );
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - id: k{i}\n    prompt: a calm sea at dawn, shot {i}\n"
        ));
    }
    std::fs::write(&manifest, yaml).unwrap();
    let out = dir.path().join("out");
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("FAL_KEY", KEY)
        .arg("run")
        .arg(&manifest)
        .arg("--output")
        .arg(&out)
        .args(["--provider", "fal", "--base-url", &emu.base_url()])
        .args(["--poll-interval", "1h", "--submit-rate", "200/s", "-q"])
        .args(["--webhook-url", &format!("http://127.0.0.1:{port}/f")])
        .args(["--webhook-listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null());
    let result = tokio::time::timeout(Duration::from_secs(60), output(cmd))
        .await
        .expect("the webhooks finish the batch");
    assert_exit(&result, 0);
    assert!(emu.stats().webhooks_sent >= 4, "{:?}", emu.stats());
    assert_eq!(count_status(&out, "downloaded"), 4);
}
