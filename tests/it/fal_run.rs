//! `vidbatch run --provider fal` end to end: the real binary against the
//! in-process fal queue emulator. fal cannot look a request up by a key of
//! ours, so an ambiguous submit must never be resent by itself: the item
//! becomes `unknown`, and `--resubmit-unknown` sends it again exactly once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vidbatch::emulator::fal::{FalConfig, FalHandle};

use crate::common::{assert_exit, bin, col, output, report};

const FAL_KEY: &str = "fal-test-key-UNIQUE-0042";

async fn fal(config: FalConfig) -> FalHandle {
    vidbatch::emulator::fal::start(FalConfig {
        fal_key: Some(FAL_KEY.into()),
        ..config
    })
    .await
    .expect("fal emulator starts")
}

/// Quick requests, room for 8 at once.
fn quick() -> FalConfig {
    FalConfig {
        latency: Duration::from_millis(200),
        concurrency: 8,
        ..FalConfig::default()
    }
}

/// Items on two models: Kling text-to-video and a model whose id has
/// sub-paths (its status URL lives under the app root, not the model path).
fn manifest(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("fal.yaml");
    let mut s = String::from(
        "provider: fal\ndefaults:\n  model_name: fal-ai/kling-video/v2.1/standard/text-to-video\n  duration: \"5\"\nitems:\n",
    );
    for i in 0..n {
        if i % 2 == 0 {
            s.push_str(&format!(
                "  - id: k{i}\n    prompt: a calm sea at dawn, shot {i}\n"
            ));
        } else {
            s.push_str(&format!(
                "  - id: w{i}\n    model_name: fal-ai/wan/v2.2-a14b/text-to-video\n    prompt: a paper boat on a pond, shot {i}\n"
            ));
        }
    }
    std::fs::write(&path, s).unwrap();
    path
}

fn run_fal(manifest: &Path, out: &Path, emu: &FalHandle, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("FAL_KEY", FAL_KEY)
        .arg("run")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .args(["--provider", "fal", "--base-url", &emu.base_url()])
        .args(["--poll-interval", "50ms", "--retry-base", "20ms"])
        .args(["--submit-rate", "200/s", "-q"])
        .args(extra)
        .stdin(Stdio::null());
    cmd
}

fn statuses(out: &Path) -> Vec<String> {
    report(out)
        .iter()
        .map(|r| r[col("status")].to_string())
        .collect()
}

fn count(out: &Path, status: &str) -> usize {
    statuses(out).iter().filter(|s| *s == status).count()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_fal_demo_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fal-example");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/fal-example.yaml");
    let result = Command::new(bin())
        .env_clear()
        .args(["run", "--emulator", "-q", "-o"])
        .arg(&out)
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&result, 0);
    let rows = report(&out);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(&r[col("status")], "downloaded", "{r:?}");
        let bytes = std::fs::read(out.join(&r[col("path")])).unwrap();
        assert_eq!(&bytes[4..8], b"ftyp", "a real MP4");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_models_text_and_image_queue_over_the_limit_without_error() {
    // Concurrency 1 at the account: the other requests wait IN_QUEUE.
    let emu = fal(FalConfig {
        concurrency: 1,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 4);
    // Plus one image-to-video item with a local image (sent as a data URI).
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/images/gradient.png");
    let mut text = std::fs::read_to_string(&m).unwrap();
    text.push_str(&format!(
        "  - id: img\n    model_name: fal-ai/kling-video/v2.1/standard/image-to-video\n    image: {}\n    prompt: the colours drift\n",
        image.display()
    ));
    std::fs::write(&m, text).unwrap();
    let result = output(run_fal(&m, &out, &emu, &["--concurrency", "5"])).await;
    assert_exit(&result, 0);
    assert_eq!(count(&out, "downloaded"), 5);
    let stats = emu.stats();
    assert_eq!(stats.submits_accepted, 5, "one submit per item");
    assert_eq!(stats.possible_duplicate_submits, 0);
    assert!(stats.max_in_progress <= 1);
    assert_eq!(
        stats.requests_by_model.len(),
        3,
        "three models: {:?}",
        stats.requests_by_model
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_submit_is_unknown_never_resent_and_resent_once_on_request() {
    let emu = fal(FalConfig {
        submit_ambiguous_rate: 0.5,
        seed: 7,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 8);
    let first = output(run_fal(&m, &out, &emu, &[])).await;
    assert_exit(&first, 1);
    let unknown = count(&out, "unknown");
    assert!(
        unknown > 0 && unknown < 8,
        "the seed makes some ambiguous: {unknown}"
    );
    assert!(
        said(&first).contains("--resubmit-unknown"),
        "{}",
        said(&first)
    );
    let accepted = emu.stats().submits_accepted;
    assert_eq!(accepted, 8, "the ambiguous ones were created too");
    // A plain rerun sends nothing.
    let again = output(run_fal(&m, &out, &emu, &[])).await;
    assert_exit(&again, 1);
    assert_eq!(emu.stats().submit_attempts, 8);
    // Asked for: exactly one new submit per unknown item (the seed decides
    // per attempt, so some may come back unknown again; each is sent once).
    let asked = output(run_fal(&m, &out, &emu, &["--resubmit-unknown"])).await;
    assert!(
        matches!(asked.status.code(), Some(0 | 1)),
        "{}",
        said(&asked)
    );
    assert_eq!(emu.stats().submit_attempts, 8 + unknown as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_422_result_fails_the_item_with_fals_detail() {
    let emu = fal(FalConfig {
        result_422_rate: 1.0,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 2);
    let result = output(run_fal(&m, &out, &emu, &[])).await;
    assert_exit(&result, 1);
    for r in report(&out) {
        assert_eq!(&r[col("status")], "failed", "{r:?}");
        assert!(!r[col("error_message")].is_empty(), "{r:?}");
    }
    assert_eq!(emu.stats().submits_accepted, 2, "not resubmitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_run_then_resume_sends_no_request_twice() {
    let emu = fal(FalConfig {
        latency: Duration::from_millis(500),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 12);
    let mut child = run_fal(
        &m,
        &out,
        &emu,
        &["--concurrency", "3", "--submit-rate", "10/s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.stats().submits_accepted < 4 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let resumed = output(run_fal(&m, &out, &emu, &["--concurrency", "3"])).await;
    assert!(
        matches!(resumed.status.code(), Some(0 | 1)),
        "{}",
        said(&resumed)
    );
    let stats = emu.stats();
    assert_eq!(stats.possible_duplicate_submits, 0, "nothing sent twice");
    // Whatever a crash left mid-submit is `unknown`; everything else is done.
    let (done, unknown) = (count(&out, "downloaded"), count(&out, "unknown"));
    assert_eq!(done + unknown, 12, "{:?}", statuses(&out));
    assert!(unknown <= 3, "at most the submits in the air: {unknown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_fal_key_stops_the_batch_and_never_shows_the_key() {
    let emu = fal(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 2);
    let mut cmd = run_fal(&m, &out, &emu, &[]);
    cmd.env("FAL_KEY", "wrong-key-SECRET-9999");
    let result = output(cmd).await;
    assert_exit(&result, 3);
    assert!(!said(&result).contains("wrong-key-SECRET-9999"));
    assert!(said(&result).contains("FAL_KEY"), "{}", said(&result));
    assert_eq!(emu.stats().submits_accepted, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_queued_requests_while_the_run_goes_on() {
    // One at a time, slowly: most requests wait IN_QUEUE.
    let emu = fal(FalConfig {
        latency: Duration::from_millis(1500),
        concurrency: 1,
        ..FalConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 4);
    let child = run_fal(&m, &out, &emu, &["--concurrency", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.stats().submits_accepted < 4 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The run writes each task's handle just after fal answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = Command::new(bin())
        .env_clear()
        .env("FAL_KEY", FAL_KEY)
        .arg("cancel")
        .arg(&out)
        .output()
        .unwrap();
    assert_exit(&cancel, 0);
    let text = String::from_utf8_lossy(&cancel.stdout).to_string();
    let effective = emu.stats().cancels_effective;
    assert!(effective >= 1, "queued requests were cancelled: {text}");
    assert!(
        text.contains(&format!("cancelled {effective} of")),
        "{text}"
    );
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // Cancelled requests end failed; nothing was submitted again.
    assert_exit(&run, 1);
    assert_eq!(count(&out, "failed") as u64, effective);
    assert_eq!(emu.stats().submit_attempts, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn kling_has_no_cancel_and_cancel_says_so() {
    let emu = crate::common::emulator(crate::common::quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = crate::common::manifest(dir.path(), 2);
    assert_exit(
        &output(crate::common::run_cmd(&m, &out, &emu.base_url(), &[])).await,
        0,
    );
    let cancel = Command::new(bin())
        .env_clear()
        .env("KLING_ACCESS_KEY", crate::common::AK)
        .env("KLING_SECRET_KEY", crate::common::SK)
        .arg("cancel")
        .arg(&out)
        .output()
        .unwrap();
    assert_exit(&cancel, 0);
    assert!(
        String::from_utf8_lossy(&cancel.stdout).contains("kling has no cancel"),
        "{}",
        String::from_utf8_lossy(&cancel.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn any_other_field_is_the_models_input_passed_through_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("wan.yaml");
    std::fs::write(
        &m,
        "provider: fal\nmodel: fal-ai/wan/v2.2-a14b/text-to-video\ndefaults:\n  resolution: 720p\n  num_frames: 81\nitems:\n  - id: boat\n    prompt: a paper boat\n    enable_safety_checker: false\n    duration: 8s\n  - id: other\n    model: fal-ai/veo3\n    prompt: a fox\n    resolution: 1080p\n",
    )
    .unwrap();
    let manifest = vidbatch::manifest::load(&m).expect("a fal manifest takes any field");
    let boat = &manifest.items[0];
    assert_eq!(
        boat.model_name.as_deref(),
        Some("fal-ai/wan/v2.2-a14b/text-to-video")
    );
    let input = vidbatch::provider::fal::wire::job(boat, None).body;
    assert_eq!(input["prompt"], "a paper boat");
    assert_eq!(input["resolution"], "720p", "from defaults");
    assert_eq!(input["num_frames"], 81, "numbers stay numbers");
    assert_eq!(input["enable_safety_checker"], false);
    assert_eq!(input["duration"], "8s", "no Kling rule on a fal model");
    let other = &manifest.items[1];
    assert_eq!(other.model_name.as_deref(), Some("fal-ai/veo3"));
    assert_eq!(
        vidbatch::provider::fal::wire::job(other, None).body["resolution"],
        "1080p"
    );
    // And it runs.
    let emu = fal(quick()).await;
    let out = dir.path().join("out");
    let result = output(run_fal(&m, &out, &emu, &[])).await;
    assert_exit(&result, 0);
    assert_eq!(count(&out, "downloaded"), 2);
    // Our own fields are still checked: a typo is not a model input.
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "provider: fal\nitems:\n  - prompt: a fox\n    modle: fal-ai/veo3\n",
    )
    .unwrap();
    let err = vidbatch::manifest::load(&typo).unwrap_err();
    let said = format!("{err} {err:?}");
    assert!(
        said.contains("did you mean `model`") && said.contains("typo.yaml:4:5"),
        "{said}"
    );
    // A Kling manifest still refuses fields it does not know.
    let kling = dir.path().join("kling.yaml");
    std::fs::write(&kling, "items:\n  - prompt: a fox\n    resolution: 1080p\n").unwrap();
    assert!(vidbatch::manifest::load(&kling).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_file_in_a_models_image_field_is_sent_as_a_data_uri() {
    // `image_url` is the model's own field, not ours: a local path there is
    // read, checked and inlined. The emulator accepts only an http(s) URL or
    // a decodable data:image URI, so a raw path would fail with 422.
    let emu = fal(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/images/gradient.png"),
        dir.path().join("first.png"),
    )
    .unwrap();
    let m = dir.path().join("i2v.yaml");
    std::fs::write(
        &m,
        "provider: fal\nmodel: fal-ai/kling-video/v2.1/standard/image-to-video\nitems:\n  - id: drift\n    prompt: the colours drift\n    image_url: first.png\n    tail_image_url: https://example.com/last.png\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let result = output(run_fal(&m, &out, &emu, &[])).await;
    assert_exit(&result, 0);
    assert_eq!(statuses(&out), ["downloaded"]);
    assert_eq!(emu.stats().submits_accepted, 1);
}

#[test]
fn a_missing_local_file_in_a_models_image_field_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("i2v.yaml");
    std::fs::write(
        &m,
        "provider: fal\nmodel: fal-ai/kling-video/v2.1/pro/image-to-video\nitems:\n  - id: drift\n    prompt: p\n    image_url: https://example.com/a.png\n    end_image_url: frames/missing.png\n",
    )
    .unwrap();
    let result = Command::new(bin())
        .env_clear()
        .arg("validate")
        .arg(&m)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&result, 2);
    let said = said(&result);
    assert!(
        said.contains("i2v.yaml:7")
            && said.contains("end_image_url")
            && said.contains("missing.png"),
        "{said}"
    );
}
