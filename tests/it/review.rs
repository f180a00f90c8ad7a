//! Reviewing and scripting a batch: `summary.json`, `status --json`,
//! `report --format json|jsonl`, `ls`, the plain-spoken end-of-run summary
//! and the spreadsheet guard in report.csv. The real binary against the
//! in-process emulator on port 0; every test parses what the commands print.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vidbatch::emulator::EmulatorConfig;

use crate::common::{assert_exit, output, run_cmd, vidbatch};

/// The emulator these tests use: quick tasks, `FAIL_ME` fails.
async fn emulator(config: EmulatorConfig) -> vidbatch::emulator::EmulatorHandle {
    crate::common::emulator(EmulatorConfig {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(50),
        fail_prompt_substring: Some("FAIL_ME".into()),
        ..config
    })
    .await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    assert_exit(o, 0);
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

fn json_lines(o: &Output) -> Vec<Value> {
    assert_exit(o, 0);
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

const FORMULA: &str = r#"=HYPERLINK("http://evil.example","open me")"#;

/// Four items: three that succeed (one prompt is a spreadsheet formula,
/// one asks for kling-v1-6 pro 10 s) and one the emulator fails.
fn manifest(dir: &Path) -> PathBuf {
    let path = dir.join("review.csv");
    let formula = FORMULA.replace('"', "\"\"");
    std::fs::write(
        &path,
        format!(
            "id,prompt,model_name,mode,duration\n\
             sea,A calm sea at dawn,,,\n\
             formula,\"{formula}\",,,\n\
             city,Neon city in the rain,kling-v1-6,pro,10\n\
             refused,please FAIL_ME now,,,\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_leaves_a_summary_json_a_pipeline_can_read() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = output(run_cmd(&manifest(dir.path()), &out, &emu.base_url(), &[])).await;
    assert_exit(&result, 1);
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["exit_code"], 1);
    assert_eq!(s["result"], "items_failed");
    assert_eq!(s["vidbatch_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (s["interrupted"].clone(), s["aborted"].clone()),
        (Value::Bool(false), Value::Null)
    );
    assert_eq!(s["items"], 4);
    assert_eq!(s["by_status"]["downloaded"], 3);
    assert_eq!(s["by_status"]["failed"], 1);
    assert_eq!(s["at_start"]["pending"], 4);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["nothing_to_do"], false);
    // kling-v1 std 5 s = 1 unit (twice, plus the failed one) and kling-v1-6 pro 10 s = 7.
    assert_eq!(s["units"]["estimated"], 10.0);
    assert_eq!(s["units"]["charged_items"], 3);
    let charged: f64 = report_csv(&out)
        .iter()
        .filter_map(|r| r[col("units")].parse::<f64>().ok())
        .sum();
    assert_eq!(s["units"]["charged"], charged);
    // Requests, as the emulator counted them.
    let stats = emu.stats();
    let r = &s["requests"];
    assert_eq!(r["create"], stats.creates_accepted);
    assert_eq!(r["create"], 4);
    assert_eq!(
        r["query"].as_u64().unwrap() + r["lookup"].as_u64().unwrap(),
        stats.queries
    );
    assert_eq!(r["list"], stats.list_queries);
    assert_eq!(r["download"], stats.downloads_started);
    assert_eq!(r["download"], 3);
    assert_eq!(s["videos"]["files"], 3);
    assert_eq!(s["failed_total"], 1);
    assert_eq!(s["failed"][0]["id"], "refused");
    assert!(s["failed"][0]["message"].as_str().unwrap().contains("risk"));
    for f in ["report", "gallery", "batch_dir"] {
        assert!(Path::new(s[f].as_str().unwrap()).exists(), "{f}: {s}");
    }
    assert!(s["started_at"].as_str().unwrap() <= s["finished_at"].as_str().unwrap());
    assert!(s["wall_time_s"].as_f64().unwrap() > 0.0);
    // The printed summary names the flag that retries the failure.
    let text = stdout(&result);
    assert!(text.contains("refused (failed)"), "{text}");
    assert!(text.contains("--retry-failed"), "{text}");
    assert!(text.contains("requests: 4 create"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_counts_match_what_the_emulator_saw_when_it_pushes_back() {
    let emu = emulator(EmulatorConfig {
        concurrency_limit: Some(2),
        query_5001_rate: 0.2,
        seed: 11,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = dir.path().join("twelve.csv");
    let mut rows = String::from("id,prompt\n");
    for i in 0..12 {
        rows.push_str(&format!("clip-{i},a calm sea shot {i}\n"));
    }
    std::fs::write(&m, rows).unwrap();
    let result = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "5"])).await;
    assert_exit(&result, 0);
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let stats = emu.stats();
    let rejected: u64 = stats.creates_rejected_by_code.values().sum();
    assert!(
        stats
            .creates_rejected_by_code
            .get(&1303)
            .copied()
            .unwrap_or(0)
            > 0
    );
    let r = &s["requests"];
    assert_eq!(r["create"], stats.creates_accepted + rejected);
    assert_eq!(
        r["retries"],
        r["create"].as_u64().unwrap() - 12,
        "each create after an item's first"
    );
    assert_eq!(
        r["query"].as_u64().unwrap() + r["lookup"].as_u64().unwrap(),
        stats.queries
    );
    assert_eq!(r["download"], stats.downloads_started);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_report_and_ls_print_what_scripts_parse() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_exit(
        &output(run_cmd(&manifest(dir.path()), &out, &emu.base_url(), &[])).await,
        1,
    );

    let st = json(&vidbatch(&["status", "--json"], &out));
    assert_eq!(st["schema"], vidbatch::state::SCHEMA_VERSION);
    assert_eq!(st["items"], 4);
    assert_eq!(st["by_status"]["downloaded"], 3);
    assert_eq!(st["by_status"]["pending"], 0, "every status is listed");
    assert_eq!(st["in_flight"], 0);
    assert_eq!(st["units"]["estimated"], 10.0);
    assert_eq!(st["units"]["charged_items"], 3);
    assert!(st["first_submitted_at"].is_string() && st["last_finished_at"].is_string());
    assert!(st["first_submitted_at"].as_str() <= st["last_finished_at"].as_str());

    let array = json(&vidbatch(&["report", "--format", "json"], &out));
    let lines = json_lines(&vidbatch(&["report", "--format", "jsonl"], &out));
    assert_eq!(array.as_array().unwrap(), &lines, "same objects either way");
    let ids: Vec<&str> = lines.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["sea", "formula", "city", "refused"], "manifest order");
    let city = &lines[2];
    assert_eq!(city["params"]["model_name"], "kling-v1-6");
    assert_eq!(city["params"]["mode"], "pro");
    assert_eq!(city["params"]["duration"], "10");
    assert_eq!(city["est_units"], 7.0);
    assert_eq!(city["videos"][0]["path"], "videos/city.mp4");
    assert_eq!(lines[1]["prompt"], FORMULA, "JSON carries the exact prompt");
    assert_eq!(lines[3]["status"], "failed");
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("risk")
    );
    assert_eq!(lines[0]["error"], Value::Null);

    // ls: one line per item, filtered by status.
    let failed = vidbatch(&["ls", "--status", "failed"], &out);
    assert_exit(&failed, 0);
    let text = stdout(&failed);
    assert_eq!(text.lines().count(), 1, "{text}");
    let cols: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(&cols[..2], ["refused", "failed"]);
    assert!(cols[2].contains("risk control"), "{text}");
    let some = json_lines(&vidbatch(
        &["ls", "--status", "failed,downloaded", "--json"],
        &out,
    ));
    assert_eq!(some.len(), 4);
    let none = vidbatch(&["ls", "--status", "pending"], &out);
    assert_eq!(stdout(&none), "");
    let bad = vidbatch(&["ls", "--status", "finished"], &out);
    assert_exit(&bad, 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("timed_out"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_since_keeps_only_recently_changed_items() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_exit(
        &output(run_cmd(&manifest(dir.path()), &out, &emu.base_url(), &[])).await,
        1,
    );
    // Two of the items last changed two hours ago.
    let two_hours_ago = vidbatch::state::now_ms() - 2 * 3600 * 1000;
    let conn = rusqlite::Connection::open(out.join("state.db")).unwrap();
    conn.execute(
        "UPDATE items SET updated_at = ?1, finished_at = ?1 WHERE id IN ('sea', 'refused')",
        [two_hours_ago],
    )
    .unwrap();
    drop(conn);
    let recent = vidbatch(&["ls", "--since", "1h"], &out);
    assert_exit(&recent, 0);
    let ids: Vec<String> = stdout(&recent)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["formula", "city"]);
    let all = vidbatch(&["ls", "--since", "3h", "--status", "failed"], &out);
    assert!(stdout(&all).starts_with("refused\tfailed\t"));
    let zero = vidbatch(&["ls", "--since", "0s"], &out);
    assert_exit(&zero, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_csv_neutralises_formulas_and_report_rewrites_csv_and_gallery() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_exit(
        &output(run_cmd(&manifest(dir.path()), &out, &emu.base_url(), &[])).await,
        1,
    );
    let rows = report_csv(&out);
    assert_eq!(&rows[1][col("prompt")], format!("'{FORMULA}"));
    assert_eq!(
        &rows[0][col("prompt")],
        "A calm sea at dawn",
        "plain text untouched"
    );
    std::fs::remove_file(out.join("report.csv")).unwrap();
    std::fs::remove_file(out.join("index.html")).unwrap();
    let rep = vidbatch(&["report"], &out);
    assert_exit(&rep, 0);
    assert_eq!(report_csv(&out).len(), 4);
    assert!(out.join("index.html").exists());
    assert!(stdout(&rep).contains("index.html"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_with_nothing_to_do_says_so_and_sends_nothing() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path());
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 1);
    let before = emu.stats().requests_by_route.values().sum::<u64>();
    let again = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&again, 1);
    assert_eq!(emu.stats().requests_by_route.values().sum::<u64>(), before);
    let text = stdout(&again);
    assert!(
        text.starts_with("nothing to do: 3 of 4 downloaded, 1 failed\n"),
        "{text}"
    );
    assert!(
        text.contains("failed in an earlier run:\n  refused"),
        "{text}"
    );
    assert!(text.contains("--retry-failed"), "{text}");
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["nothing_to_do"], true);
    assert_eq!(s["requests"]["create"], 0);
    assert_eq!(s["requests"]["download"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_says_created_tasks_keep_costing_and_the_rerun_says_what_it_resumed() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(1500),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = dir.path().join("many.csv");
    let mut rows = String::from("id,prompt\n");
    for i in 0..20 {
        rows.push_str(&format!("clip-{i},a calm sea shot {i}\n"));
    }
    std::fs::write(&m, rows).unwrap();
    let child = run_cmd(
        &m,
        &out,
        &emu.base_url(),
        &["--concurrency", "4", "--submit-rate", "40/s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.stats().creates_accepted < 2 {
        assert!(Instant::now() < deadline, "run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let interrupted = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&interrupted, 130);
    let text = stdout(&interrupted);
    assert!(
        text.contains("already sent to the provider keep generating"),
        "{text}"
    );
    assert!(text.contains("costing"), "{text}");
    assert!(
        text.contains("run the same command again to collect them"),
        "{text}"
    );
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (s["exit_code"].clone(), s["result"].clone()),
        (130.into(), "interrupted".into())
    );
    assert_eq!(s["interrupted"], true);
    let in_flight = s["in_flight"].as_u64().unwrap();
    assert!(in_flight > 0, "{s}");

    let resumed = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "4"])).await;
    assert_exit(&resumed, 0);
    let text = stdout(&resumed);
    assert!(text.starts_with("resumed: "), "{text}");
    assert!(text.contains(" in flight"), "{text}");
    assert!(text.contains("pending"), "{text}");
    assert!(text.contains("20 items: 20 downloaded"), "{text}");
    assert!(emu.stats().duplicate_external_task_ids.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_1_batch_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("old");
    std::fs::create_dir_all(&out).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state/v1.db");
    std::fs::copy(fixture, out.join("state.db")).unwrap();
    let st = json(&vidbatch(&["status", "--json"], &out));
    assert_eq!(st["schema"], 1);
    assert_eq!(
        (st["items"].clone(), st["by_status"]["downloaded"].clone()),
        (3.into(), 2.into())
    );
    assert_eq!(st["units"]["charged"], 4.0);
    let lines = json_lines(&vidbatch(&["report", "--format", "jsonl"], &out));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["params"], Value::Null);
    let failed = vidbatch(&["ls", "--status", "failed"], &out);
    assert!(stdout(&failed).starts_with("refused\tfailed\t"));
    assert_exit(&vidbatch(&["report"], &out), 0);
    assert!(out.join("index.html").exists());
}

fn report_csv(out: &Path) -> Vec<csv::StringRecord> {
    let mut rd = csv::Reader::from_path(out.join("report.csv")).expect("report.csv exists");
    rd.records().map(|r| r.unwrap()).collect()
}

fn col(name: &str) -> usize {
    vidbatch::report::csv::COLUMNS
        .iter()
        .position(|c| *c == name)
        .unwrap()
}
