//! Shared by the integration tests that drive the real binary against the
//! in-process Kling emulator: keys, a scrubbed `vidbatch run` with
//! test-sized timings, a manifest of N items, and assertions on exits,
//! reports and files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle};

pub(crate) const AK: &str = "test-access-key-AKIDUNIQUE123";
pub(crate) const SK: &str = "test-secret-key-SKUNIQUE456789";

pub(crate) fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("vidbatch")
}

pub(crate) async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    emulator::start(EmulatorConfig {
        access_key: Some(AK.into()),
        secret_key: Some(SK.into()),
        ..config
    })
    .await
    .expect("emulator starts")
}

pub(crate) fn quick() -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(50),
        ..EmulatorConfig::default()
    }
}

/// A CSV manifest of `n` text2video items (ids `clip-0..`).
pub(crate) fn manifest(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("batch.csv");
    let mut s = String::from("id,prompt,duration\n");
    for i in 0..n {
        s.push_str(&format!("clip-{i},\"a calm sea at dawn, shot {i}\",5\n"));
    }
    std::fs::write(&path, s).unwrap();
    path
}

/// `vidbatch run` with a scrubbed environment and test-sized timings.
pub(crate) fn run_cmd(manifest: &Path, out: &Path, base_url: &str, extra: &[&str]) -> Command {
    let mut cmd = run_paced_by_default(manifest, out, base_url);
    cmd.args(["--submit-rate", "200/s"]).args(extra);
    cmd
}

/// [`run_cmd`] without a submit rate or concurrency: the defaults find them.
pub(crate) fn run_paced_by_default(manifest: &Path, out: &Path, base_url: &str) -> Command {
    run_polling_every("50ms", manifest, out, base_url)
}

/// `vidbatch run` with a scrubbed environment, polling every `poll`.
pub(crate) fn run_polling_every(
    poll: &str,
    manifest: &Path,
    out: &Path,
    base_url: &str,
) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .arg("run")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .args(["--base-url", base_url])
        .args(["--poll-interval", poll, "--retry-base", "20ms"])
        .stdin(Stdio::null());
    cmd
}

/// The process ended with `code`; otherwise show what it printed.
pub(crate) fn assert_exit(result: &Output, code: i32) {
    assert_eq!(
        result.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Wait (bounded) until the emulator has accepted `n` creates.
pub(crate) async fn wait_for_creates(emu: &EmulatorHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.stats().creates_accepted < n {
        assert!(Instant::now() < deadline, "run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .unwrap()
}

pub(crate) fn report(out: &Path) -> Vec<csv::StringRecord> {
    let mut rd = csv::Reader::from_path(out.join("report.csv")).expect("report.csv exists");
    rd.records().map(|r| r.unwrap()).collect()
}

/// Report rows with `status`.
pub(crate) fn count_status(out: &Path, status: &str) -> usize {
    report(out)
        .iter()
        .filter(|r| &r[col("status")] == status)
        .count()
}

pub(crate) fn col(rd_headers: &str) -> usize {
    vidbatch::report::csv::COLUMNS
        .iter()
        .position(|c| *c == rd_headers)
        .unwrap()
}

/// Every report row is downloaded, its file is there and hashes to its sha256.
pub(crate) fn assert_all_videos_intact(out: &Path, n: usize) {
    let rows = report(out);
    assert_eq!(rows.len(), n);
    for r in &rows {
        assert_eq!(&r[col("status")], "downloaded", "{r:?}");
        let bytes = std::fs::read(out.join(&r[col("path")])).unwrap();
        assert_eq!(bytes.len().to_string(), &r[col("bytes")]);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), &r[col("sha256")]);
    }
}

/// A read-only command on a batch folder (status, ls, report).
pub(crate) fn vidbatch(args: &[&str], dir: &Path) -> Output {
    let (cmd, rest) = args.split_first().unwrap();
    Command::new(bin())
        .env_clear()
        .arg(cmd)
        .arg(dir)
        .args(rest)
        .output()
        .unwrap()
}
