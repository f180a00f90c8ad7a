//! `--concurrency auto` (the default): the engine finds the account's limit
//! itself. "Slot full" costs nothing, so it probes one slot past what it
//! holds, settles at the account's limit, and remembers it for the next run.

use std::time::Duration;

use vidbatch::emulator::EmulatorConfig;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn auto_concurrency_settles_at_the_accounts_limit_and_remembers_it() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_secs(1),
        concurrency_limit: Some(7),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 40);
    // A create refused as "full" waits (backs off from --retry-base) for a
    // slot; 200 ms keeps those waits few while tasks take 1 s.
    let mut cmd = run_paced_by_default(&m, &out, &emu.base_url());
    cmd.args(["--retry-base", "200ms"]);
    let result = output(cmd).await;
    assert_exit(&result, 0);
    assert_all_videos_intact(&out, 40);
    let stats = emu.stats();
    assert_eq!(stats.creates_accepted, 40, "one paid task per item");
    assert_eq!(stats.max_in_flight, 7, "it grew to the account's limit");
    let full = stats
        .creates_rejected_by_code
        .get(&1303)
        .copied()
        .unwrap_or(0);
    assert!(full >= 1, "it probed past the limit (free)");
    assert!(full <= 20, "and did not keep knocking: {full} × 1303");

    // The limit found is kept with the batch, for its next run to start at.
    let conn = vidbatch::state::open_ro(&out).unwrap();
    let learned = vidbatch::state::meta(&conn, "learned_concurrency").unwrap();
    let learned: std::collections::HashMap<String, usize> =
        serde_json::from_str(&learned.expect("learned")).unwrap();
    assert!((7..=8).contains(&learned[""]), "{learned:?}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_concurrency_stays_a_hard_ceiling() {
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(200),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 30);
    let mut cmd = run_paced_by_default(&m, &out, &emu.base_url());
    cmd.args(["--concurrency", "3"]);
    assert_exit(&output(cmd).await, 0);
    assert!(emu.stats().max_in_flight <= 3);
    let mut bad = run_paced_by_default(&m, &dir.path().join("o2"), &emu.base_url());
    bad.args(["--concurrency", "lots"]);
    let result = output(bad).await;
    assert_exit(&result, 2);
    assert!(String::from_utf8_lossy(&result.stderr).contains("or `auto`"));
    emu.shutdown().await;
}
