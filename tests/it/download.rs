//! `vidbatch run` end to end when the video server misbehaves: the real
//! binary against the in-process emulator on port 0, one scenario per way a
//! CDN can let a paid video down. Each asserts what the user sees (exit
//! code, report row), what the emulator counted (never a second create), and
//! what is on disk (no `.mp4` that is not a video); then a rerun against the
//! healed server fetches what was refused, still without a new create.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle};

const AK: &str = "test-access-key-AKIDUNIQUE123";
const SK: &str = "test-secret-key-SKUNIQUE456789";

async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    emulator::start(EmulatorConfig {
        access_key: Some(AK.into()),
        secret_key: Some(SK.into()),
        latency: Duration::from_millis(150),
        ..config
    })
    .await
    .expect("emulator starts")
}

/// A CSV manifest of `n` text2video items (ids `clip-0..`).
fn manifest(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("batch.csv");
    let mut s = String::from("id,prompt,duration\n");
    for i in 0..n {
        s.push_str(&format!("clip-{i},\"a quiet harbour, shot {i}\",5\n"));
    }
    std::fs::write(&path, s).expect("manifest");
    path
}

/// One `vidbatch run` (scrubbed environment, test-sized timings), waited for.
async fn run(manifest: &Path, out: &Path, emu: &EmulatorHandle, extra: &[&str]) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("vidbatch"));
    cmd.env_clear()
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .arg("run")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .args(["--base-url", &emu.base_url()])
        .args(["--poll-interval", "50ms", "--retry-base", "20ms"])
        .args(["--submit-rate", "200/s"])
        .args(extra)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .expect("join")
}

fn assert_exit(result: &Output, code: i32) {
    assert_eq!(
        result.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Report rows as (status, error_message), in manifest order.
fn report(out: &Path) -> Vec<(String, String)> {
    let col = |name: &str| {
        vidbatch::report::csv::COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column")
    };
    let mut rd = csv::Reader::from_path(out.join("report.csv")).expect("report.csv");
    rd.records()
        .map(|r| {
            let r = r.expect("row");
            (
                r[col("status")].to_owned(),
                r[col("error_message")].to_owned(),
            )
        })
        .collect()
}

/// Every video the state records: (path, bytes, sha256), path relative to `out`.
fn recorded_videos(out: &Path) -> Vec<(String, Option<u64>, Option<String>)> {
    let db = rusqlite::Connection::open_with_flags(
        out.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("state.db");
    let mut q = db
        .prepare("SELECT path, bytes, sha256 FROM videos ORDER BY item_id, n")
        .expect("query");
    q.query_map([], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get(1)?,
            r.get(2)?,
        ))
    })
    .expect("rows")
    .map(|r| r.expect("row"))
    .collect()
}

/// Files under `out/videos`, as paths relative to it (none when the folder
/// is missing); several videos of one task live in `<id>.videos/`.
fn files_in_videos(out: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, names: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.expect("entry");
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().expect("type").is_dir() {
                walk(&e.path(), &format!("{name}/"), names);
            } else {
                names.push(name);
            }
        }
    }
    let mut names = Vec::new();
    walk(&out.join("videos"), "", &mut names);
    names.sort();
    names
}

fn is_video(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"ftyp")
}

/// Every item downloaded; every recorded file exists, is a video, and has
/// the recorded size and sha256; no `.part` left; `files` files in all.
fn assert_all_downloaded(out: &Path, items: usize, files: usize) {
    let rows = report(out);
    assert_eq!(rows.len(), items);
    for (status, error) in &rows {
        assert_eq!(status, "downloaded", "{error}");
    }
    let videos = recorded_videos(out);
    assert_eq!(videos.len(), files);
    let mut shas = std::collections::HashSet::new();
    for (path, bytes, sha) in &videos {
        let data = std::fs::read(out.join(path)).expect("recorded file exists");
        assert!(is_video(&data), "{path} is a video");
        assert_eq!(Some(data.len() as u64), *bytes, "{path}");
        assert_eq!(Some(hex::encode(Sha256::digest(&data))), *sha, "{path}");
        assert!(
            shas.insert(sha.clone()),
            "{path}: each video is its own file"
        );
    }
    let on_disk = files_in_videos(out);
    assert_eq!(on_disk.len(), files, "{on_disk:?}");
    assert!(on_disk.iter().all(|f| f.ends_with(".mp4")), "{on_disk:?}");
}

fn fault_count(emu: &EmulatorHandle, name: &str) -> u64 {
    emu.stats().faults_injected.get(name).copied().unwrap_or(0)
}

/// The run refuses what the server sends for every item, leaves them
/// `succeeded` with `error` in the report and no `.mp4`; after `heal`, a
/// rerun downloads them all without a new create.
async fn refused_then_healed(
    config: EmulatorConfig,
    extra: &[&str],
    error: &str,
) -> (EmulatorHandle, PathBuf, tempfile::TempDir) {
    let emu = emulator(config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    let result = run(&m, &out, &emu, extra).await;
    assert_exit(&result, 1);
    for (status, message) in report(&out) {
        assert_eq!(status, "succeeded", "not downloaded: {message}");
        assert!(message.contains(error), "report says: {message}");
    }
    assert!(
        files_in_videos(&out).iter().all(|f| !f.ends_with(".mp4")),
        "{:?}",
        files_in_videos(&out)
    );
    assert!(
        recorded_videos(&out)
            .iter()
            .all(|(_, _, sha)| sha.is_none())
    );
    assert_eq!(emu.stats().creates_accepted, 3);

    emu.heal();
    let result = run(&m, &out, &emu, extra).await;
    assert_exit(&result, 0);
    assert_eq!(emu.stats().creates_accepted, 3, "no create on the rerun");
    assert!(emu.stats().duplicate_external_task_ids.is_empty());
    assert_all_downloaded(&out, 3, 3);
    (emu, out, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_denied_page_is_not_saved_as_a_video() {
    let config = EmulatorConfig {
        download_html_rate: 1.0,
        ..EmulatorConfig::default()
    };
    let (emu, _out, _dir) = refused_then_healed(
        config,
        &[],
        "got text/html (\"<!DOCTYPE html> <html><head><title>Access denied",
    )
    .await;
    // One fresh URL per item was asked for and refused the same way.
    assert_eq!(fault_count(&emu, "download_html"), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_error_body_is_not_saved_as_a_video() {
    let config = EmulatorConfig {
        download_json_rate: 1.0,
        ..EmulatorConfig::default()
    };
    let (emu, _out, _dir) =
        refused_then_healed(config, &[], "got application/json (\"{\\\"code\\\":1103").await;
    assert_eq!(fault_count(&emu, "download_json"), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_without_end_stops_at_the_size_cap() {
    let config = EmulatorConfig {
        download_endless_rate: 1.0,
        ..EmulatorConfig::default()
    };
    let t = Instant::now();
    let (emu, out, _dir) = refused_then_healed(
        config,
        &["--max-video-size", "1MB"],
        "video larger than the 1 MB limit",
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(fault_count(&emu, "download_endless"), 3, "not retried");
    assert!(files_in_videos(&out).iter().all(|f| !f.ends_with(".part")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickle_is_given_up_within_the_throughput_window() {
    let config = EmulatorConfig {
        download_trickle_rate: 1.0,
        trickle_interval: Duration::from_millis(50),
        ..EmulatorConfig::default()
    };
    let t = Instant::now();
    let (emu, _out, _dir) = refused_then_healed(
        config,
        &[
            "--download-min-speed",
            "1KiB/300ms",
            "--download-timeout",
            "20s",
        ],
        "stalled",
    )
    .await;
    // Five attempts of ~300 ms each per video, in parallel, twice over.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(fault_count(&emu, "download_trickle"), 3 * 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickle_without_a_minimum_meets_the_deadline() {
    let config = EmulatorConfig {
        download_trickle_rate: 1.0,
        trickle_interval: Duration::from_millis(20),
        ..EmulatorConfig::default()
    };
    let t = Instant::now();
    let (_emu, out, _dir) = refused_then_healed(
        config,
        &["--download-min-speed", "off", "--download-timeout", "1s"],
        "not finished within the 1s download deadline",
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The rerun resumed what the trickle had delivered, then completed.
    assert!(files_in_videos(&out).iter().all(|f| !f.ends_with(".part")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_body_is_resumed_and_verified() {
    let emu = emulator(EmulatorConfig {
        download_short_rate: 1.0,
        video_pad_bytes: 300_000,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let result = run(&manifest(dir.path(), 3), &out, &emu, &[]).await;
    assert_exit(&result, 0);
    assert_all_downloaded(&out, 3, 3);
    for (_, bytes, _) in recorded_videos(&out) {
        assert_eq!(bytes, Some(300_000));
    }
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 3);
    assert_eq!(fault_count(&emu, "download_short"), 3);
    // Each video: a short whole answer, then a Range answer with the rest.
    assert_eq!((stats.downloads_started, stats.downloads_completed), (6, 3));
    let resumed = emu
        .requests()
        .iter()
        .filter(|r| r.route == "GET /videos/{file}" && r.status == 206)
        .count();
    assert_eq!(resumed, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirected_download_is_followed_to_the_video() {
    let emu = emulator(EmulatorConfig {
        redirect_download_rate: 1.0,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let result = run(&manifest(dir.path(), 3), &out, &emu, &[]).await;
    assert_exit(&result, 0);
    assert_all_downloaded(&out, 3, 3);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 3);
    assert_eq!(fault_count(&emu, "redirect_download"), 3);
    assert_eq!(
        stats.requests_by_route.get("GET /cdn/videos/{file}"),
        Some(&3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_video_of_a_task_is_downloaded_to_its_own_file() {
    let emu = emulator(EmulatorConfig {
        videos_per_task: 3,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let result = run(&manifest(dir.path(), 4), &out, &emu, &[]).await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!((stats.creates_accepted, stats.videos_created), (4, 12));
    assert_eq!(stats.downloads_completed, 12);
    assert_all_downloaded(&out, 4, 12);
}
