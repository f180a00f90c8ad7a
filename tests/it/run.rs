//! `vidbatch run` end to end: the real binary against the in-process emulator
//! on port 0. Asserts on what the emulator saw, the files, the report and the
//! exit code.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vidbatch::emulator::EmulatorConfig;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_to_the_end_with_one_create_per_item() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 12),
        &out,
        &emu.base_url(),
        &["--concurrency", "5"],
    ))
    .await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 12);
    assert!(stats.duplicate_external_task_ids.is_empty());
    assert!(
        stats.max_in_flight <= 5,
        "in-flight bound held: {}",
        stats.max_in_flight
    );
    assert_all_videos_intact(&out, 12);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("12 downloaded"), "{stdout}");
    assert!(stdout.contains("report.csv"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_run_then_the_same_command_finishes_without_duplicates() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(800),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 40);
    let mut child = run_cmd(
        &m,
        &out,
        &emu.base_url(),
        &["--concurrency", "10", "--submit-rate", "40/s"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for_creates(&emu, 15).await;
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    let result = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "10"])).await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!(
        stats.creates_accepted, 40,
        "one task per item across both runs"
    );
    assert!(
        stats.duplicate_external_task_ids.is_empty(),
        "{:?}",
        stats.duplicate_external_task_ids
    );
    assert_all_videos_intact(&out, 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_creates_and_5xx_never_cause_a_duplicate() {
    let emu = emulator(EmulatorConfig {
        create_ambiguous_rate: 0.05,
        create_5000_rate: 0.05,
        query_5001_rate: 0.05,
        seed: 7,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 60),
        &out,
        &emu.base_url(),
        &["--concurrency", "20"],
    ))
    .await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 60);
    assert!(
        stats.duplicate_external_task_ids.is_empty(),
        "{:?}",
        stats.duplicate_external_task_ids
    );
    assert_all_videos_intact(&out, 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_account_1303_never_fails_an_item() {
    let emu = emulator(EmulatorConfig {
        concurrency_limit: Some(3),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 15),
        &out,
        &emu.base_url(),
        &["--concurrency", "10"],
    ))
    .await;
    assert_exit(&result, 0);
    let stats = emu.stats();
    assert!(
        stats
            .creates_rejected_by_code
            .get(&1303)
            .copied()
            .unwrap_or(0)
            > 0,
        "the emulator did push back"
    );
    assert_eq!(stats.creates_accepted, 15);
    assert_all_videos_intact(&out, 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_downloads_resume_and_still_verify() {
    let emu = emulator(EmulatorConfig {
        download_cut_rate: 0.5,
        seed: 3,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 8),
        &out,
        &emu.base_url(),
        &[],
    ))
    .await;
    assert_exit(&result, 0);
    assert_all_videos_intact(&out, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_balance_aborts_with_exit_3_and_says_what_to_fix() {
    let emu = emulator(EmulatorConfig {
        balance_exhausted_after_creates: Some(3),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 10),
        &out,
        &emu.base_url(),
        &["--concurrency", "2"],
    ))
    .await;
    assert_eq!(result.status.code(), Some(3));
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(
        text.contains("1102") && text.contains("resource pack"),
        "{text}"
    );
    let downloaded = count_status(&out, "downloaded");
    let pending = count_status(&out, "pending");
    assert_eq!(downloaded, 3, "what was in flight finished");
    assert_eq!(pending, 7);
    // Intents committed ahead of creates that were never sent are taken
    // back: the refused item is the only pending one with a request made.
    let attempts: Vec<String> = report(&out)
        .iter()
        .filter(|r| &r[col("status")] == "pending")
        .map(|r| r[col("attempts")].to_string())
        .collect();
    assert_eq!(
        attempts.iter().filter(|a| *a == "0").count(),
        6,
        "{attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_tasks_are_reported_and_exit_1() {
    let emu = emulator(EmulatorConfig {
        fail_prompt_substring: Some("FAIL_ME".into()),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "id,prompt\nok,a fine prompt\nbad,please FAIL_ME now\n").unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_eq!(result.status.code(), Some(1));
    let rows = report(&out);
    assert_eq!(&rows[0][col("status")], "downloaded");
    assert_eq!(&rows[1][col("status")], "failed");
    assert!(!rows[1][col("error_message")].is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_style_works_with_a_static_key() {
    let emu = emulator(EmulatorConfig {
        api_key: Some("gw-key-123".into()),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = run_cmd(
        &manifest(dir.path(), 3),
        &out,
        &emu.gateway_base_url(),
        &["--provider", "kling-gateway"],
    );
    cmd.env_remove("KLING_ACCESS_KEY")
        .env_remove("KLING_SECRET_KEY")
        .env("KLING_API_KEY", "gw-key-123");
    let result = output(cmd).await;
    assert_exit(&result, 0);
    assert_all_videos_intact(&out, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_manifest_exits_2_and_sends_nothing() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "id,prompt,duration\na,ok,5\nb,,7\n").unwrap();
    let result = output(run_cmd(&m, &dir.path().join("out"), &emu.base_url(), &[])).await;
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("m.csv:3"), "located: {stderr}");
    assert_eq!(emu.stats().requests_by_route.values().sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_runner_on_the_same_batch_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let _held = vidbatch::state::BatchLock::acquire(&out).unwrap();
    let result = output(run_cmd(
        &manifest(dir.path(), 1),
        &out,
        "http://127.0.0.1:9",
        &[],
    ))
    .await;
    assert_eq!(result.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&result.stderr).contains("another vidbatch run"));
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_state_report_or_logs() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(
        &manifest(dir.path(), 2),
        &out,
        &emu.base_url(),
        &["-vv"],
    ))
    .await;
    assert_exit(&result, 0);
    let mut haystacks = vec![result.stdout.clone(), result.stderr.clone()];
    for f in ["state.db", "state.db-wal", "report.csv"] {
        if let Ok(b) = std::fs::read(out.join(f)) {
            haystacks.push(b);
        }
    }
    for h in haystacks {
        let text = String::from_utf8_lossy(&h);
        assert!(
            !text.contains(SK) && !text.contains(AK),
            "a credential leaked"
        );
        assert!(!text.contains("eyJ"), "a JWT leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_report_work_offline_from_the_state_file() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        output(run_cmd(
            &manifest(dir.path(), 3),
            &out,
            &emu.base_url(),
            &[]
        ))
        .await
        .status
        .code(),
        Some(0)
    );
    std::fs::remove_file(out.join("report.csv")).unwrap();
    let status = Command::new(bin())
        .env_clear()
        .arg("status")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("downloaded  3"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let rep = Command::new(bin())
        .env_clear()
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(rep.status.code(), Some(0));
    assert_eq!(report(&out).len(), 3);
    let missing = Command::new(bin())
        .env_clear()
        .arg("status")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn the_offline_demo_runs_from_the_example_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/example.yaml");
    let result = Command::new(bin())
        .env_clear()
        .current_dir(dir.path())
        .arg("run")
        .arg(&example)
        .args(["--emulator", "--poll-interval", "200ms", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert_exit(&result, 0);
    let rows = report(&out);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| &r[col("status")] == "downloaded"));
}

#[test]
fn missing_credentials_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let result = Command::new(bin())
        .env_clear()
        .arg("run")
        .arg(manifest(dir.path(), 1))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("KLING_ACCESS_KEY") && stderr.contains("--emulator"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_added_to_the_manifest_are_run_by_the_next_run_and_nothing_else() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    // Same manifest again: nothing to do, nothing sent.
    let before = emu.stats().creates_accepted;
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    assert_eq!(emu.stats().creates_accepted, before);
    // Two more rows: only they are created.
    let m = manifest(dir.path(), 5);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    assert_eq!(emu.stats().creates_accepted, 5);
    assert_all_videos_intact(&out, 5);
}
