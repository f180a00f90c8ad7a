//! `vidbatch run --shard i/N` and `vidbatch merge`, end to end: the real
//! binary against the in-process Kling emulator. Pins that the shards of a
//! manifest split it exactly (every item once, one paid task each), that
//! `auto/N` reads the schedulers' index variables, that a merge is the
//! unsharded batch again, that a reshard never pays twice, and that bad
//! specs and mismatched folders are refused before anything is sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vidbatch::shard::Shard;

use crate::common::*;

/// `vidbatch run --shard SPEC` into `out` (extra environment: `env`).
fn shard_cmd(m: &Path, out: &Path, url: &str, spec: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = run_cmd(m, out, url, &["--shard", spec, "--concurrency", "10"]);
    cmd.envs(env.iter().copied());
    cmd
}

/// `vidbatch merge DIRS... --output OUT`, scrubbed environment.
fn merge_cmd(dirs: &[&Path], out: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .arg("merge")
        .args(dirs)
        .arg("--output")
        .arg(out)
        .stdin(Stdio::null());
    cmd
}

fn ids(out: &Path) -> Vec<String> {
    report(out)
        .iter()
        .map(|r| r[col("id")].to_string())
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ids of `clip-0..n` that hash to shard `index` of `total`.
fn expected(n: usize, index: u64, total: u64) -> BTreeSet<String> {
    (0..n)
        .map(|i| format!("clip-{i}"))
        .filter(|id| Shard::of(id, total) == index)
        .collect()
}

/// Run shards 0..3 of `m` into `root/shard-<i>-of-3`; returns the folders.
async fn run_three_shards(m: &Path, root: &Path, url: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for i in 0..3 {
        let out = root.join(format!("shard-{i}-of-3"));
        let result = output(shard_cmd(m, &out, url, &format!("{i}/3"), &[])).await;
        assert_exit(&result, 0);
        dirs.push(out);
    }
    dirs
}

#[tokio::test(flavor = "multi_thread")]
async fn three_shards_cover_every_item_exactly_once_with_one_task_each() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 30);
    let dirs = run_three_shards(&m, &dir.path().join("out"), &emu.base_url()).await;

    let mut union = BTreeSet::new();
    for (i, d) in dirs.iter().enumerate() {
        let got: BTreeSet<String> = ids(d).into_iter().collect();
        assert_eq!(
            got,
            expected(30, i as u64, 3),
            "shard {i} runs its own items"
        );
        assert!(!got.is_empty(), "30 items leave no shard of 3 empty");
        for id in &got {
            assert!(union.insert(id.clone()), "{id} is in two shards");
        }
        assert_all_videos_intact(d, got.len());
    }
    assert_eq!(union, expected(30, 0, 1), "every item is in some shard");
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 30, "one paid task per item");
    assert!(stats.duplicate_external_task_ids.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_output_a_shard_gets_its_own_folder_under_the_manifests() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 6);
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .env("VIDBATCH_SHARD", "1/2")
        .current_dir(dir.path())
        .args(["run", "batch.csv", "--base-url", &emu.base_url()])
        .args(["--poll-interval", "50ms", "--submit-rate", "200/s"])
        .stdin(Stdio::null());
    let result = output(cmd).await;
    assert_exit(&result, 0);
    let folder = dir.path().join("output/batch/shard-1-of-2");
    let got: BTreeSet<String> = ids(&folder).into_iter().collect();
    assert_eq!(got, expected(6, 1, 2), "VIDBATCH_SHARD counts like --shard");
    assert!(
        !dir.path().join("output/batch/report.csv").exists(),
        "the unsharded folder is left alone"
    );
    drop(m);
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_takes_the_index_from_kubernetes_or_slurm() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 30);
    let want = expected(30, 1, 3);
    for (name, spec, env) in [
        ("explicit", "1/3", vec![]),
        ("k8s", "auto/3", vec![("JOB_COMPLETION_INDEX", "1")]),
        ("slurm", "auto/3", vec![("SLURM_ARRAY_TASK_ID", "1")]),
    ] {
        // An emulator each: every run creates its shard's tasks afresh.
        let emu = emulator(quick()).await;
        let out = dir.path().join(name);
        let result = output(shard_cmd(&m, &out, &emu.base_url(), spec, &env)).await;
        assert_exit(&result, 0);
        let got: BTreeSet<String> = ids(&out).into_iter().collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(emu.stats().creates_accepted, want.len() as u64, "{name}");
    }
}

/// Columns a merged row may differ in from the unsharded run's row, and why:
/// - `video_url`: the provider's download link is signed per query (the
///   unsharded run asked for it at another time);
/// - `path`: the merged report points into the shard folders
///   (`../shard-1-of-3/videos/clip-4.mp4`), the unsharded one into its own;
/// - `submitted_at`, `finished_at`: when each run recorded the task (the
///   unsharded run adopted the shards' tasks later);
/// - `request_id`: the provider's id of the last request about the item
///   (a fresh id per request).
///
/// Everything else — above all `task_id` and `external_task_id`, the proof
/// that both runs mean the same paid tasks, and the files' `sha256` — must
/// be equal.
const MAY_DIFFER: &[&str] = &[
    "video_url",
    "path",
    "submitted_at",
    "finished_at",
    "request_id",
];

fn comparable(out: &Path) -> Vec<Vec<String>> {
    let keep: Vec<usize> = vidbatch::report::csv::COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| !MAY_DIFFER.contains(c))
        .map(|(i, _)| i)
        .collect();
    let mut rows: Vec<Vec<String>> = report(out)
        .iter()
        .map(|r| keep.iter().map(|&i| r[i].to_string()).collect())
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_of_the_shards_is_the_unsharded_batch_and_a_reshard_pays_nothing_twice() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 30);
    let root = dir.path().join("out");
    let dirs = run_three_shards(&m, &root, &emu.base_url()).await;
    let merged = root.join("merged");
    let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let result = output(merge_cmd(&refs, &merged)).await;
    assert_exit(&result, 0);

    // The same manifest unsharded, against the same account: same batch
    // name, so same keys: every task is found, none is created.
    let whole = dir.path().join("whole");
    let result = output(run_cmd(&m, &whole, &emu.base_url(), &[])).await;
    assert_exit(&result, 0);
    assert_eq!(
        emu.stats().creates_accepted,
        30,
        "resharding paid nothing twice"
    );

    assert_eq!(ids(&merged), ids(&whole), "merged rows keep manifest order");
    assert_eq!(comparable(&merged), comparable(&whole));
    // Paths are relative to the merged folder and lead to the shards' files.
    for r in report(&merged) {
        let path = &r[col("path")];
        assert!(path.starts_with("../shard-"), "{path}");
        let bytes = std::fs::read(merged.join(path)).unwrap();
        assert_eq!(bytes.len().to_string(), r[col("bytes")]);
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["items"], 30);
    assert_eq!(summary["by_status"]["downloaded"], 30);
    assert_eq!(
        summary["requests"]["create"], 30,
        "the shards' creates, summed"
    );
    assert_eq!(summary["result"], "done");
    assert_eq!(summary["shards"]["missing"], serde_json::json!([]));
    assert_eq!(summary["batch"]["name"], "batch");
    let gallery = std::fs::read_to_string(merged.join("index.html")).unwrap();
    assert!(
        gallery.contains("../shard-0-of-3/videos/"),
        "gallery points at the shards"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_with_a_shard_missing_names_it_and_exits_1() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 12);
    let root = dir.path().join("out");
    let dirs = run_three_shards(&m, &root, &emu.base_url()).await;
    let merged = root.join("merged");
    let result = output(merge_cmd(&[&dirs[0], &dirs[2]], &merged)).await;
    assert_exit(&result, 1);
    assert!(
        stderr(&result).contains("shard(s) 1/3 not given"),
        "{}",
        stderr(&result)
    );
    let got: BTreeSet<String> = ids(&merged).into_iter().collect();
    let want: BTreeSet<String> = expected(12, 0, 3)
        .union(&expected(12, 2, 3))
        .cloned()
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_refuses_folders_that_do_not_belong_together() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    // Two manifests with the same name (so the same batch name), different items.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ma, mb) = (manifest(&a, 8), manifest(&b, 9));
    let url = emu.base_url();
    let run = |m: &Path, out: PathBuf, spec: &str| output(shard_cmd(m, &out, &url, spec, &[]));
    assert_exit(&run(&ma, a.join("s0"), "0/2").await, 0);
    assert_exit(&run(&mb, b.join("s1"), "1/2").await, 0);
    assert_exit(&run(&ma, a.join("n3"), "1/3").await, 0);
    assert_exit(&output(run_cmd(&ma, &a.join("whole"), &url, &[])).await, 0);

    let merged = dir.path().join("merged");
    for (dirs, says) in [
        (vec![a.join("s0"), b.join("s1")], "different manifests"),
        (vec![a.join("s0"), a.join("s0")], "same shard 0/2"),
        (vec![a.join("s0"), a.join("n3")], "2 shards and 3 shards"),
        (vec![a.join("s0"), a.join("whole")], "not a shard folder"),
        (vec![a.join("s0"), a.join("nowhere")], "not a shard folder"),
    ] {
        let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let result = output(merge_cmd(&refs, &merged)).await;
        assert_exit(&result, 2);
        assert!(
            stderr(&result).contains(says),
            "{says}: {}",
            stderr(&result)
        );
        assert!(!merged.join("report.csv").exists(), "nothing written");
    }
    // Never into a batch folder: its report would be overwritten.
    let before = std::fs::read(a.join("whole/report.csv")).unwrap();
    for into in [a.join("whole"), a.join("s0")] {
        let result = output(merge_cmd(&[&a.join("s0")], &into)).await;
        assert_exit(&result, 2);
        assert!(
            stderr(&result).contains("holds a batch"),
            "{}",
            stderr(&result)
        );
    }
    assert_eq!(std::fs::read(a.join("whole/report.csv")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_shard_specs_exit_2_with_nothing_sent() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 5);
    let out = dir.path().join("out");
    for (spec, env, says) in [
        ("3/3", vec![], "0 to 2"),
        ("0/0", vec![], "1 to 100000"),
        ("x/2", vec![], "`x` is not a whole number"),
        ("1/", vec![], "not a whole number"),
        ("auto/3", vec![], "JOB_COMPLETION_INDEX"),
        (
            "auto/3",
            vec![("JOB_COMPLETION_INDEX", "3")],
            "not a shard of 3",
        ),
        (
            "auto/3",
            vec![("SLURM_ARRAY_TASK_ID", "one")],
            "not a whole number",
        ),
    ] {
        let result = output(shard_cmd(&m, &out, &emu.base_url(), spec, &env)).await;
        assert_exit(&result, 2);
        let err = stderr(&result);
        assert!(err.contains(&format!("--shard `{spec}`")), "{err}");
        assert!(err.contains(says), "{spec}: {err}");
    }
    assert!(emu.stats().requests_by_route.is_empty(), "nothing sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_folder_is_not_continued_as_another_shard_or_unsharded() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 8);
    let out = dir.path().join("s0");
    assert_exit(
        &output(shard_cmd(&m, &out, &emu.base_url(), "0/2", &[])).await,
        0,
    );
    let creates = emu.stats().creates_accepted;
    let result = output(shard_cmd(&m, &out, &emu.base_url(), "1/2", &[])).await;
    assert_exit(&result, 2);
    assert!(
        stderr(&result).contains("holds shard 0/2, not shard 1/2"),
        "{}",
        stderr(&result)
    );
    let result = output(run_cmd(&m, &out, &emu.base_url(), &[])).await;
    assert_exit(&result, 2);
    assert!(
        stderr(&result).contains("not an unsharded batch"),
        "{}",
        stderr(&result)
    );
    assert_eq!(emu.stats().creates_accepted, creates, "nothing sent");
    // The same shard again resumes: nothing to do.
    let result = output(shard_cmd(&m, &out, &emu.base_url(), "0/2", &[])).await;
    assert_exit(&result, 0);
    assert!(String::from_utf8_lossy(&result.stdout).contains("nothing to do"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_that_gets_no_items_is_a_batch_of_none_not_a_lost_state() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 2);
    let empty = (0..10)
        .find(|&i| expected(2, i, 10).is_empty())
        .expect("2 items leave most of 10 shards empty");
    let spec = format!("{empty}/10");
    let out = dir.path().join("empty");
    for _ in 0..2 {
        let result = output(shard_cmd(&m, &out, &emu.base_url(), &spec, &[])).await;
        assert_exit(&result, 0);
        assert!(
            !stderr(&result).contains("rebuilding"),
            "{}",
            stderr(&result)
        );
        assert!(ids(&out).is_empty());
    }
    let other = format!("{}/10", (empty + 1) % 10);
    let result = output(shard_cmd(&m, &out, &emu.base_url(), &other, &[])).await;
    assert_exit(&result, 2);
    assert_eq!(emu.stats().creates_accepted, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_whose_account_runs_dry_exits_3_and_the_merge_says_so() {
    // Two accounts: shard 0's runs out of balance after 2 creates.
    let dry = emulator(vidbatch::emulator::EmulatorConfig {
        balance_exhausted_after_creates: Some(2),
        ..quick()
    })
    .await;
    let fine = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 20);
    let root = dir.path().join("out");
    let (s0, s1) = (root.join("shard-0-of-2"), root.join("shard-1-of-2"));
    let result = output(shard_cmd(&m, &s0, &dry.base_url(), "0/2", &[])).await;
    assert_exit(&result, 3);
    let result = output(shard_cmd(&m, &s1, &fine.base_url(), "1/2", &[])).await;
    assert_exit(&result, 0);

    let merged = root.join("merged");
    let result = output(merge_cmd(&[&s0, &s1], &merged)).await;
    assert_exit(&result, 1);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["result"], "aborted");
    let aborted = summary["aborted"].as_str().unwrap_or_default();
    assert!(aborted.starts_with("shard 0/2: "), "{aborted}");
    assert_eq!(summary["items"], 20);
    assert_eq!(
        summary["by_status"]["downloaded"],
        expected(20, 1, 2).len() as u64 + 2,
        "shard 1 whole, and the 2 tasks shard 0 could pay for"
    );
}
