//! Account pools: one batch over two accounts, each an emulator with its own
//! keys. A request sent with the wrong account's key would be refused (the
//! emulators check their keys strictly) and a task polled at the wrong
//! account would not be found there — so the request logs prove that every
//! task was created, polled and downloaded with its own account.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use vidbatch::emulator::{EmulatorConfig, EmulatorHandle};

use crate::common::{
    assert_all_videos_intact, assert_exit, bin, col, count_status, manifest, output, report,
};

const KEYS: [(&str, &str); 2] = [
    ("pool-ak-A-UNIQUE111", "pool-sk-A-UNIQUE222"),
    ("pool-ak-B-UNIQUE333", "pool-sk-B-UNIQUE444"),
];

/// Quick tasks, 3 in flight per account, every request recorded.
fn base() -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(150),
        jitter: Duration::from_millis(50),
        concurrency_limit: Some(3),
        record_requests: true,
        ..EmulatorConfig::default()
    }
}

/// Account `n`: an emulator that accepts only that account's keys.
async fn account(n: usize, config: EmulatorConfig) -> EmulatorHandle {
    vidbatch::emulator::start(EmulatorConfig {
        access_key: Some(KEYS[n].0.into()),
        secret_key: Some(KEYS[n].1.into()),
        ..config
    })
    .await
    .expect("emulator starts")
}

/// An accounts file naming the two emulators, 3 tasks in flight each.
fn accounts_file(dir: &Path, a: &EmulatorHandle, b: &EmulatorHandle) -> PathBuf {
    let path = dir.join("accounts.yaml");
    std::fs::write(
        &path,
        format!(
            "accounts:\n  - name: studio-a\n    access_key_env: AK_A\n    secret_key_env: SK_A\n    base_url: {}\n    concurrency: 3\n  - name: studio-b\n    access_key_env: AK_B\n    secret_key_env: SK_B\n    base_url: {}\n    concurrency: 3\n",
            a.base_url(),
            b.base_url()
        ),
    )
    .unwrap();
    path
}

/// `vidbatch run --accounts` with only the pool's variables set (no usual
/// KLING_* credentials at all).
fn run_pool(manifest: &Path, out: &Path, accounts: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("AK_A", KEYS[0].0)
        .env("SK_A", KEYS[0].1)
        .env("AK_B", KEYS[1].0)
        .env("SK_B", KEYS[1].1)
        .arg("run")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .arg("--accounts")
        .arg(accounts)
        .args(["--poll-interval", "50ms", "--retry-base", "20ms"])
        .args(["--submit-rate", "200/s"])
        .stdin(Stdio::null());
    cmd
}

/// Start `cmd`, and kill -9 it once the two accounts accepted `n` creates.
async fn kill_after_creates(mut cmd: Command, a: &EmulatorHandle, b: &EmulatorHandle, n: u64) {
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while a.stats().creates_accepted + b.stats().creates_accepted < n {
        assert!(std::time::Instant::now() < deadline, "run made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Report rows' task ids by account name.
fn tasks_of(out: &Path, account: &str) -> BTreeSet<String> {
    report(out)
        .iter()
        .filter(|r| &r[col("account")] == account)
        .map(|r| r[col("task_id")].to_string())
        .collect()
}

/// The task ids and our keys of an account's rows (a task is looked up by
/// either).
fn handles_of(out: &Path, account: &str) -> BTreeSet<String> {
    report(out)
        .iter()
        .filter(|r| &r[col("account")] == account)
        .flat_map(|r| {
            [
                r[col("task_id")].to_string(),
                r[col("external_task_id")].to_string(),
            ]
        })
        .collect()
}

/// Every request `emu` saw was accepted as authentic, and every task it was
/// asked about is one of `tasks` (task ids, or our keys for lookups).
fn only_own_requests(emu: &EmulatorHandle, tasks: &BTreeSet<String>) {
    let log = emu.requests();
    assert!(!log.is_empty());
    for r in &log {
        assert!(
            !matches!(r.code, Some(1000..=1004)),
            "a request with another account's key: {r:?}"
        );
        if r.route.ends_with("{kind}/{id}") {
            let id = r.path.rsplit('/').next().unwrap();
            assert!(
                tasks.contains(id),
                "polled a task of another account: {r:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_spread_over_two_accounts_uses_each_tasks_own_account() {
    let (a, b) = (account(0, base()).await, account(1, base()).await);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 20);
    let accounts = accounts_file(dir.path(), &a, &b);
    let result = output(run_pool(&m, &out, &accounts)).await;
    assert_exit(&result, 0);
    assert_all_videos_intact(&out, 20);

    let (on_a, on_b) = (tasks_of(&out, "studio-a"), tasks_of(&out, "studio-b"));
    assert_eq!(on_a.len() + on_b.len(), 20, "every row names its account");
    assert!(!on_a.is_empty() && !on_b.is_empty(), "both accounts used");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.creates_accepted as usize, on_a.len());
    assert_eq!(sb.creates_accepted as usize, on_b.len());
    assert!(sa.max_in_flight <= 3 && sb.max_in_flight <= 3);
    only_own_requests(&a, &handles_of(&out, "studio-a"));
    only_own_requests(&b, &handles_of(&out, "studio-b"));

    // `status` shows the accounts by name, never a key.
    let status = Command::new(bin())
        .env_clear()
        .args(["status", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let st: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        st["by_account"]["studio-a"]["downloaded"].as_u64(),
        Some(on_a.len() as u64)
    );
    let everything = format!(
        "{text}{}{}",
        String::from_utf8_lossy(&result.stdout),
        std::fs::read_to_string(out.join("report.csv")).unwrap()
    );
    for (ak, sk) in KEYS {
        assert!(!everything.contains(ak) && !everything.contains(sk));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_out_of_balance_is_drained_and_the_other_finishes_the_batch() {
    let a = account(
        0,
        EmulatorConfig {
            balance_exhausted_after_creates: Some(4),
            ..base()
        },
    )
    .await;
    let b = account(1, base()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 20);
    let accounts = accounts_file(dir.path(), &a, &b);
    let result = output(run_pool(&m, &out, &accounts)).await;
    assert_exit(&result, 0);
    assert_all_videos_intact(&out, 20);

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        sa.creates_accepted, 4,
        "a got nothing after its balance ran out"
    );
    assert_eq!(sb.creates_accepted, 16, "b took the rest");
    assert!(sa.duplicate_external_task_ids.is_empty() && sb.duplicate_external_task_ids.is_empty());
    assert_eq!(tasks_of(&out, "studio-a").len(), 4);
    only_own_requests(&b, &handles_of(&out, "studio-b"));

    let said = String::from_utf8_lossy(&result.stdout);
    assert!(said.contains("account `studio-a` was drained"), "{said}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["drained_accounts"][0]["account"], "studio-a");
    assert!(
        summary["drained_accounts"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("1102")
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_account_out_of_balance_stops_the_batch_with_exit_3() {
    let config = || EmulatorConfig {
        balance_exhausted_after_creates: Some(2),
        ..base()
    };
    let (a, b) = (account(0, config()).await, account(1, config()).await);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 12);
    let accounts = accounts_file(dir.path(), &a, &b);
    let result = output(run_pool(&m, &out, &accounts)).await;
    assert_exit(&result, 3);
    let (done, pending) = (
        count_status(&out, "downloaded"),
        count_status(&out, "pending"),
    );
    assert_eq!(
        (done, pending),
        (4, 8),
        "what was created finished; the rest waits"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_accounts_file_or_a_missing_variable_sends_nothing_and_exits_2() {
    let (a, b) = (account(0, base()).await, account(1, base()).await);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 3);
    // A secret pasted where a variable name belongs: refused, never echoed.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "accounts:\n  - name: studio-a\n    api_key: sk-live-PASTED-SECRET\n",
    )
    .unwrap();
    let result = output(run_pool(&m, &dir.path().join("o1"), &bad)).await;
    assert_exit(&result, 2);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(said.contains("bad.yaml:3:5: accounts[0].api_key"), "{said}");
    assert!(!said.contains("PASTED-SECRET"), "{said}");

    // A variable the file names but the environment lacks.
    let accounts = accounts_file(dir.path(), &a, &b);
    let mut cmd = run_pool(&m, &dir.path().join("o2"), &accounts);
    cmd.env_remove("SK_B");
    let result = output(cmd).await;
    assert_exit(&result, 2);
    let said = String::from_utf8_lossy(&result.stderr);
    assert!(
        said.contains("studio-b") && said.contains("SK_B is not set"),
        "{said}"
    );
    assert_eq!(a.stats().creates_accepted + b.stats().creates_accepted, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// Two accounts with 600 ms tasks and a 12-item manifest, whose first run
/// was killed with -9 once the accounts had accepted `creates` creates.
async fn killed_run(creates: u64) -> (EmulatorHandle, EmulatorHandle, TempDir, PathBuf, PathBuf) {
    let slow = || EmulatorConfig {
        latency: Duration::from_millis(600),
        ..base()
    };
    let (a, b) = (account(0, slow()).await, account(1, slow()).await);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 12);
    let accounts = accounts_file(dir.path(), &a, &b);
    let out = dir.path().join("out");
    kill_after_creates(run_pool(&m, &out, &accounts), &a, &b, creates).await;
    (a, b, dir, m, accounts)
}

/// The rerun finished all 12 items with one create each, across both accounts.
fn finished_once(a: &EmulatorHandle, b: &EmulatorHandle, out: &Path, result: &Output) {
    assert_exit(result, 0);
    assert_all_videos_intact(out, 12);
    let (sa, sb) = (a.stats(), b.stats());
    let creates = sa.creates_accepted + sb.creates_accepted;
    assert_eq!(creates, 12, "nothing paid twice");
    assert!(sa.duplicate_external_task_ids.is_empty() && sb.duplicate_external_task_ids.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_resume_polls_each_task_with_its_own_account_and_pays_nothing_twice() {
    let (a, b, dir, m, accounts) = killed_run(4).await;
    let out = dir.path().join("out");
    let result = output(run_pool(&m, &out, &accounts)).await;
    finished_once(&a, &b, &out, &result);
    only_own_requests(&a, &handles_of(&out, "studio-a"));
    only_own_requests(&b, &handles_of(&out, "studio-b"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_state_is_rebuilt_by_asking_every_account_and_nothing_is_paid_twice() {
    let (a, b, dir, m, accounts) = killed_run(6).await;
    let out = dir.path().join("out");
    // The state is gone: which account made which task is known nowhere.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let result = output(run_pool(&m, &out, &accounts)).await;
    finished_once(&a, &b, &out, &result);
    // Each task was adopted under the account that had made it.
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(tasks_of(&out, "studio-a").len() as u64, sa.creates_accepted);
    assert_eq!(tasks_of(&out, "studio-b").len() as u64, sb.creates_accepted);
    a.shutdown().await;
    b.shutdown().await;
}
