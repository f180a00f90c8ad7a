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

#[tokio::test(flavor = "multi_thread")]
async fn auto_presses_past_the_limit_once_per_window_and_converges_to_it() {
    const LIMIT: usize = 7;
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(500),
        jitter: Duration::ZERO,
        concurrency_limit: Some(LIMIT),
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m = manifest(dir.path(), 80);
    let mut cmd = run_paced_by_default(&m, &out, &emu.base_url());
    cmd.args(["--retry-base", "200ms"]);
    assert_exit(&output(cmd).await, 0);
    assert_eq!(emu.stats().creates_accepted, 80);
    assert_eq!(
        emu.stats().max_in_flight,
        LIMIT as u64,
        "the account never held more than its limit"
    );

    // The creates in the order the account answered them: true = "full".
    let mut creates: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.code.is_some())
        .collect();
    creates.sort_by_key(|r| r.at);
    let full: Vec<bool> = creates.iter().map(|r| r.code == Some(1303)).collect();
    let first_full = full.iter().position(|&f| f).expect("it found the limit");
    assert!(
        first_full <= 3 * LIMIT,
        "it grew to the limit early: first 'full' at create {first_full}"
    );
    // Past the limit is one probe, then a window of creates the account
    // takes: never two "full" answers without a window between them.
    let mut accepted_since = usize::MAX;
    for (i, &is_full) in full.iter().enumerate() {
        if is_full {
            assert!(
                accepted_since >= LIMIT - 1,
                "a second 'full' {accepted_since} creates after the last (create {i}): {full:?}"
            );
            accepted_since = 0;
        } else {
            accepted_since = accepted_since.saturating_add(1);
        }
    }
    let conn = vidbatch::state::open_ro(&out).unwrap();
    let learned = vidbatch::state::meta(&conn, "learned_concurrency").unwrap();
    let learned: std::collections::HashMap<String, usize> =
        serde_json::from_str(&learned.expect("learned")).unwrap();
    assert!(
        (LIMIT..=LIMIT + 1).contains(&learned[""]),
        "it settled at the limit: {learned:?}"
    );
    emu.shutdown().await;
}
