//! "Never pay twice, never lose a paid result" against what a user's machine
//! does to a batch: a lost or replaced state file, deleted videos, another
//! output folder, a wrong base URL, signals, closed pipes. Each test is one
//! scenario: what the user does, what they see, what the emulator's counters
//! say (never a create beyond the first per item) and what is on disk.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vidbatch::emulator::EmulatorConfig;

use crate::common::{
    assert_all_videos_intact, assert_exit, col, emulator, manifest, output, quick, report, run_cmd,
    wait_for_creates,
};

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn remove(path: &Path) {
    if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
}

// ---- 1. the state file ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_run_leaves_one_complete_state_db_without_a_wal() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 4);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    let wal = out.join("state.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL is checkpointed into state.db on exit"
    );
    // Copy the folder with state.db alone: the copy knows the whole batch.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(out.join("state.db"), copy.join("state.db")).unwrap();
    let status = Command::new(crate::common::bin())
        .args(["status", "--json"])
        .arg(&copy)
        .output()
        .unwrap();
    let status = if status.status.success() {
        status
    } else {
        Command::new(crate::common::bin())
            .arg("status")
            .arg(&copy)
            .output()
            .unwrap()
    };
    let text = stdout_of(&status);
    assert!(text.contains("downloaded"), "{text}");
    assert!(text.contains('4'), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_state_after_a_finished_batch_pays_for_nothing_again() {
    for damage in [
        "delete state.db",
        "delete state.db and its wal",
        "truncate state.db",
    ] {
        let emu = emulator(quick()).await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let m = manifest(dir.path(), 5);
        assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
        let db = out.join("state.db");
        match damage {
            "delete state.db" => remove(&db),
            "delete state.db and its wal" => {
                remove(&db);
                remove(&out.join("state.db-wal"));
            }
            _ => std::fs::File::create(&db).unwrap().set_len(0).unwrap(),
        }
        let rerun = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
        assert_exit(&rerun, 0);
        assert!(
            stderr_of(&rerun).contains("rebuilding"),
            "{damage}: the user is told what happened: {}",
            stderr_of(&rerun)
        );
        assert_eq!(
            emu.stats().creates_accepted,
            5,
            "{damage}: no item is created twice"
        );
        assert_all_videos_intact(&out, 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_state_file_stops_with_exit_3_and_says_what_to_do() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    std::fs::write(out.join("state.db"), b"garbage that is no database at all").unwrap();
    let rerun = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&rerun, 3);
    let err = stderr_of(&rerun);
    assert!(
        err.contains("move it aside") && err.contains("nothing is paid twice"),
        "{err}"
    );
    assert_eq!(emu.stats().creates_accepted, 3, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_db_deleted_mid_run_is_noticed_and_nothing_more_is_submitted() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(700),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 20);
    let child = run_cmd(
        &m,
        &out,
        &emu.base_url(),
        &["--concurrency", "2", "--submit-rate", "20/s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_creates(&emu, 2).await;
    std::fs::remove_file(out.join("state.db")).unwrap();
    let first = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&first, 3);
    let said = format!("{}{}", stdout_of(&first), stderr_of(&first));
    assert!(said.contains("was deleted during the run"), "{said}");
    assert!(out.join("state.db").exists(), "the state was put back");
    let created = emu.stats().creates_accepted;
    assert!(created < 20, "submitting stopped ({created} created)");
    // The same command finishes the batch; nothing is created twice.
    let rerun = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "4"])).await;
    assert_exit(&rerun, 0);
    assert_eq!(emu.stats().creates_accepted, 20);
    assert_all_videos_intact(&out, 20);
}

// ---- 2. files are the truth ------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_video_that_cannot_be_fetched_again_is_not_reported_downloaded() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    let url = emu.base_url();
    assert_exit(&output(run_cmd(&m, &out, &url, &[])).await, 0);
    std::fs::remove_file(out.join("videos/clip-1.mp4")).unwrap();
    // Before any run: the report already tells the truth.
    let offline = Command::new(crate::common::bin())
        .args(["report", "--format", "jsonl"])
        .arg(&out)
        .output()
        .unwrap();
    let line = stdout_of(&offline)
        .lines()
        .find(|l| l.contains("\"clip-1\""))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("\"succeeded\""), "{line}");
    emu.shutdown().await; // the server is gone: the video cannot be fetched
    let rerun = output(run_cmd(&m, &out, &url, &[])).await;
    assert_ne!(rerun.status.code(), Some(0), "{}", stderr_of(&rerun));
    let again = output(run_cmd(&m, &out, &url, &[])).await;
    assert_ne!(again.status.code(), Some(0));
    let rows = report(&out);
    let row = rows.iter().find(|r| &r[col("id")] == "clip-1").unwrap();
    assert_eq!(&row[col("status")], "succeeded", "{row:?}");
    assert_eq!(
        &row[col("sha256")],
        "",
        "no hash for a file that is not there"
    );
    assert!(!out.join("videos/clip-1.mp4").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_replaced_by_garbage_of_the_same_size_is_found_by_verify_and_fetched_again() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    let video = out.join("videos/clip-2.mp4");
    let size = std::fs::metadata(&video).unwrap().len() as usize;
    std::fs::write(&video, vec![b'x'; size]).unwrap();
    let verify = Command::new(crate::common::bin())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert_exit(&verify, 1);
    let said = stdout_of(&verify);
    assert!(
        said.contains("clip-2") && said.contains("differs from the recorded sha256"),
        "{said}"
    );
    // The next run downloads it again; nothing is created again.
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    assert_eq!(emu.stats().creates_accepted, 3);
    assert_all_videos_intact(&out, 3);
    let clean = Command::new(crate::common::bin())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert_exit(&clean, 0);
}

// ---- 3. file names -----------------------------------------------------------

fn validate(dir: &Path, csv: &str) -> std::process::Output {
    let m = dir.join("ids.csv");
    std::fs::write(&m, csv).unwrap();
    Command::new(crate::common::bin())
        .arg("validate")
        .arg(&m)
        .output()
        .unwrap()
}

#[test]
fn ids_too_long_in_bytes_for_a_file_name_are_refused_before_anything_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    let emoji = "🎬".repeat(70); // 70 characters, 280 bytes
    let cjk = "猫".repeat(90); // 90 characters, 270 bytes
    let out = validate(
        dir.path(),
        &format!("id,prompt\n{emoji},a\n{cjk},b\nfine,c\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("ids.csv:2") && err.contains("280 bytes"),
        "{err}"
    );
    assert!(
        err.contains("ids.csv:3") && err.contains("270 bytes"),
        "{err}"
    );
}

#[test]
fn windows_reserved_names_and_case_twins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = validate(
        dir.path(),
        "id,prompt\nCON,a\nlpt1.take2,b\ntrailing.,c\nClip,d\nclip,e\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("ids.csv:2") && err.contains("reserved"),
        "{err}"
    );
    assert!(
        err.contains("ids.csv:3") && err.contains("reserved"),
        "{err}"
    );
    assert!(
        err.contains("ids.csv:4") && err.contains("dot or a space"),
        "{err}"
    );
    assert!(
        err.contains("ids.csv:6") && err.contains("letter case"),
        "{err}"
    );
}

// ---- 5. setup errors ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_path_in_the_base_url_stops_the_batch_and_fails_no_item() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 6);
    let wrong = format!("{}/api/v2", emu.base_url());
    let started = Instant::now();
    let first = output(run_cmd(&m, &out, &wrong, &[])).await;
    assert_exit(&first, 3);
    assert!(started.elapsed() < Duration::from_secs(20));
    let said = stdout_of(&first) + &stderr_of(&first);
    assert!(
        said.contains("--base-url") && said.contains("/api/v2"),
        "{said}"
    );
    assert!(
        report(&out).iter().all(|r| &r[col("status")] == "pending"),
        "items stay pending"
    );
    assert_eq!(emu.stats().creates_accepted, 0);
    // Fixed: the same batch runs to the end.
    let fixed = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&fixed, 0);
    assert_eq!(emu.stats().creates_accepted, 6);
    assert_all_videos_intact(&out, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_port_stops_the_batch_in_seconds_with_no_item_failed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 40);
    let started = Instant::now();
    let result = output(run_cmd(
        &m,
        &out,
        &format!("http://127.0.0.1:{port}"),
        &["--retry-base", "200ms"],
    ))
    .await;
    assert_exit(&result, 3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let said = stdout_of(&result) + &stderr_of(&result);
    assert!(
        said.contains(&port.to_string()) && said.contains("--base-url"),
        "{said}"
    );
    assert!(report(&out).iter().all(|r| &r[col("status")] == "pending"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_behind_an_https_url_is_a_setup_error_not_a_retry() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    let https = emu.base_url().replace("http://", "https://");
    let started = Instant::now();
    let result = output(run_cmd(&m, &out, &https, &[])).await;
    assert_exit(&result, 3);
    assert!(started.elapsed() < Duration::from_secs(15));
    let said = stdout_of(&result) + &stderr_of(&result);
    assert!(
        said.contains("TLS") && said.contains("SSL_CERT_FILE"),
        "{said}"
    );
    assert_eq!(emu.stats().creates_accepted, 0);
}

/// A server whose every answer is a redirect to another origin.
async fn redirecting_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "http://127.0.0.2:9/steal")],
            "",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_redirect_is_never_followed_and_names_its_target() {
    let (url, server) = redirecting_server().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 2);
    let result = output(run_cmd(&m, &out, &url, &[])).await;
    assert_exit(&result, 3);
    let said = stdout_of(&result) + &stderr_of(&result);
    assert!(said.contains("http://127.0.0.2:9/steal"), "{said}");
    assert!(said.contains("does not follow redirects"), "{said}");
    server.abort();
}

// ---- 7. signals and closed pipes ------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_sigterm_and_sighup_save_state_and_the_rerun_finishes() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143), ("-HUP", 129)] {
        let emu = emulator(EmulatorConfig {
            latency: Duration::from_millis(600),
            ..quick()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let m = manifest(dir.path(), 20);
        let child = run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_creates(&emu, 3).await;
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let stopped = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_exit(&stopped, code);
        assert!(
            out.join("report.csv").exists(),
            "{signal}: the report is written"
        );
        let result = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
        assert_exit(&result, 0);
        assert_eq!(emu.stats().creates_accepted, 20, "{signal}");
        assert_all_videos_intact(&out, 20);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_or_stderr_neither_panics_nor_hangs() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 4);
    for (which, verbose) in [("stdout", false), ("stderr", true)] {
        let out = dir.path().join(which);
        let mut cmd = run_cmd(
            &m,
            &out,
            &emu.base_url(),
            if verbose { &["-v"] } else { &[] },
        );
        if which == "stdout" {
            cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        } else {
            cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        // The reading end is closed before the run writes anything.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{which} closed: the run hangs");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0), "{which} closed: {status:?}");
        assert_all_videos_intact(&out, 4);
    }
    assert_eq!(
        emu.stats().creates_accepted,
        4,
        "one create per item in each folder"
    );
}

// ---- 8. the same manifest into another folder --------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_same_manifest_into_another_folder_pays_nothing_again() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 5);
    let first = dir.path().join("first");
    assert_exit(&output(run_cmd(&m, &first, &emu.base_url(), &[])).await, 0);
    let second = dir.path().join("elsewhere/typo");
    let again = output(run_cmd(&m, &second, &emu.base_url(), &[])).await;
    assert_exit(&again, 0);
    assert_eq!(
        emu.stats().creates_accepted,
        5,
        "the second folder adopted the tasks the first one paid for"
    );
    assert_all_videos_intact(&second, 5);
    // A deliberate second generation is one flag, and says so.
    let fresh = output(run_cmd(
        &m,
        &dir.path().join("third"),
        &emu.base_url(),
        &["--new-batch"],
    ))
    .await;
    assert_exit(&fresh, 0);
    assert_eq!(emu.stats().creates_accepted, 10);
    assert!(
        stdout_of(&fresh).contains("new batch"),
        "{}",
        stdout_of(&fresh)
    );
}

// ---- spend control (issue 9) ---------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn max_units_never_lets_creates_pass_the_cap_and_holds_the_rest_pending() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Default model kling-v1, std, 5 s: 1 unit each by the price table.
    let m = manifest(dir.path(), 10);
    let planned = plan_json(&m, &out, &["--max-units", "4"]);
    assert_eq!(planned["spend_cap"]["would_submit"], 4);
    assert_eq!(planned["spend_cap"]["held_over_cap"], 6);
    let capped = output(run_cmd(&m, &out, &emu.base_url(), &["--max-units", "4"])).await;
    assert_exit(&capped, 1);
    assert_eq!(emu.stats().creates_accepted, 4, "the cap holds");
    let said = stdout_of(&capped);
    assert!(said.contains("6 item(s) held back"), "{said}");
    let rows = report(&out);
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| &r[col("status")] == "pending")
        .collect();
    assert_eq!(pending.len(), 6);
    assert!(pending[0][col("error_message")].contains("--max-units"));
    // A higher cap on the same batch counts what was already spent, and
    // plan agrees with the run.
    let planned = plan_json(&m, &out, &["--max-units", "7"]);
    assert_eq!(planned["spend_cap"]["already_committed"], 4.0);
    assert_eq!(planned["spend_cap"]["would_submit"], 3);
    let more = output(run_cmd(&m, &out, &emu.base_url(), &["--max-units", "7"])).await;
    assert_exit(&more, 1);
    assert_eq!(emu.stats().creates_accepted, 7);
    let all = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&all, 0);
    assert_eq!(emu.stats().creates_accepted, 10);
}

fn plan_json(m: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(crate::common::bin())
        .args(["plan", "--json", "-o"])
        .arg(out)
        .arg(m)
        .args(extra)
        .output()
        .unwrap();
    assert_exit(&o, 0);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifest_can_carry_the_cap() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = dir.path().join("capped.yaml");
    std::fs::write(
        &m,
        "limits:\n  max_units: 2\nitems:\n  - {id: a, prompt: one}\n  - {id: b, prompt: two}\n  - {id: c, prompt: three}\n",
    )
    .unwrap();
    assert_eq!(plan_json(&m, &out, &[])["spend_cap"]["would_submit"], 2);
    let run = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&run, 1);
    assert_eq!(emu.stats().creates_accepted, 2);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["spend_cap"]["held_over_cap"], 1, "{summary}");
}

// ---- edits after submit (issue 9) -------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_item_edited_after_submit_is_listed_and_only_resubmitted_on_request() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 3);
    assert_exit(&output(run_cmd(&m, &out, &emu.base_url(), &[])).await, 0);
    let first_video = std::fs::read(out.join("videos/clip-1.mp4")).unwrap();
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("shot 1\"", "shot 1, now at dusk\"");
    std::fs::write(&m, text).unwrap();
    // Edited: listed, nothing sent.
    let listed = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&listed, 0);
    let said = stdout_of(&listed);
    assert!(
        said.contains("changed after submit") && said.contains("clip-1"),
        "{said}"
    );
    assert_eq!(emu.stats().creates_accepted, 3);
    assert_eq!(
        plan_json(&m, &out, &[])["changed_after_submit"],
        serde_json::json!(["clip-1"])
    );
    // Asked for: exactly one new create; the earlier video is kept.
    let again = output(run_cmd(&m, &out, &emu.base_url(), &["--resubmit-changed"])).await;
    assert_exit(&again, 0);
    assert!(
        stdout_of(&again).contains("resubmitted 1 changed item"),
        "{}",
        stdout_of(&again)
    );
    assert_eq!(emu.stats().creates_accepted, 4);
    assert_eq!(
        std::fs::read(out.join("videos/replaced/attempt-1/clip-1.mp4")).unwrap(),
        first_video
    );
    assert_all_videos_intact(&out, 3);
    // And then it is no longer "changed".
    let settled = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert!(!stdout_of(&settled).contains("changed after submit"));
    assert_eq!(emu.stats().creates_accepted, 4);
}

// ---- 5b. a full disk -----------------------------------------------------------

/// A small tmpfs mounted for one test; unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` where this machine does not let the test mount (not root, no tmpfs).
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| SmallDisk(at.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_batch_says_so_and_the_rerun_pays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "1200k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let emu = emulator(EmulatorConfig {
        video_pad_bytes: 300_000,
        ..quick()
    })
    .await;
    let out = disk.0.join("out");
    let m = manifest(dir.path(), 8);
    let full = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "8"])).await;
    assert_exit(&full, 3);
    let said = stdout_of(&full) + &stderr_of(&full);
    assert!(said.contains("full"), "{said}");
    assert!(!said.contains("corrupt"), "{said}");
    // Space freed: the same command finishes, nothing is created twice.
    disk.grow("50m");
    let rerun = output(run_cmd(&m, &out, &emu.base_url(), &["--concurrency", "8"])).await;
    assert_exit(&rerun, 0);
    assert_eq!(emu.stats().creates_accepted, 8);
    assert_all_videos_intact(&out, 8);
}

// ---- 6. hostile server strings ----------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_task_id_fails_its_item_only_and_never_blocks_the_rest() {
    let emu = emulator(EmulatorConfig {
        long_task_id_rate: 0.5,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 8);
    let first = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    let poisoned = emu
        .stats()
        .faults_injected
        .get("long_task_id")
        .copied()
        .unwrap_or(0);
    assert!(
        poisoned > 0 && poisoned < 8,
        "the seed poisons some: {poisoned}"
    );
    assert_exit(&first, 1);
    let rows = report(&out);
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| &r[col("status")] == "failed")
        .collect();
    assert_eq!(failed.len() as u64, poisoned);
    for r in &failed {
        assert!(
            r[col("error_message")].contains("unusable task id"),
            "{r:?}"
        );
        assert!(r[col("task_id")].len() <= 256, "nothing huge is stored");
    }
    assert_eq!(
        rows.iter()
            .filter(|r| &r[col("status")] == "downloaded")
            .count() as u64,
        8 - poisoned
    );
    // Every rerun goes on (exit 1, not an abort) and creates nothing again.
    let again = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&again, 1);
    assert_eq!(emu.stats().creates_accepted, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emulator_api_redirect_to_another_origin_stops_the_batch_with_nothing_sent_there() {
    let emu = emulator(EmulatorConfig {
        redirect_api_rate: 1.0,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 4);
    let result = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&result, 3);
    let said = stdout_of(&result) + &stderr_of(&result);
    assert!(said.contains("127.0.0.2"), "names the target: {said}");
    assert_eq!(emu.stats().creates_accepted, 0);
    assert!(report(&out).iter().all(|r| &r[col("status")] == "pending"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_output_folder_names_the_folder_and_the_flag() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let m = manifest(dir.path(), 2);
    let result = output(run_cmd(&m, &file.join("out"), &emu.base_url(), &[])).await;
    assert_exit(&result, 3);
    let err = stderr_of(&result);
    assert!(
        err.contains("output folder") && err.contains("-o/--output") && !err.contains(".lock"),
        "{err}"
    );
    assert_eq!(emu.stats().creates_accepted, 0);
}
