//! Scenarios 1 (scheduling efficiency) and 6 (the same under faults), and
//! the run that row (b) of issue 12 repeats with a higher submit rate.
//!
//! The figure is wall time against a bound computed from the same
//! parameters: no schedule can create N tasks faster than the rate allows,
//! nor finish them faster than ⌈N/C⌉ back-to-back waves of L, and the last
//! item is not done before its video is on disk.

use std::sync::OnceLock;
use std::time::Duration;

use vidbatch::emulator::{EmulatorConfig, Stats};

use crate::Size;
use crate::child::{
    BenchResult, ChildRun, Timeline, check, creates, duplicates, emulator, flags, ms_between,
    now_ms, one_download, rejected, run_to_end, tempdir, write_manifest,
};
use crate::table::{Table, secs};

/// `--poll-ms M`: the poll interval of scenarios 1 and 6 (to study its effect).
pub static POLL_OVERRIDE: OnceLock<Option<Duration>> = OnceLock::new();

/// A batch of `n` items with task latency `latency` against an account that
/// allows `c` tasks at once, run with `--concurrency c --submit-rate rate/s
/// --poll-interval poll`.
#[derive(Debug, Clone, Copy)]
pub struct SchedParams {
    pub n: usize,
    pub latency: Duration,
    pub c: usize,
    pub rate: f64,
    pub poll: Duration,
}

fn sched_params(size: Size) -> SchedParams {
    let mut p = match size {
        Size::Smoke => SchedParams {
            n: 50,
            latency: Duration::from_millis(200),
            c: 20,
            rate: 200.0,
            poll: Duration::from_millis(50),
        },
        Size::Default | Size::Large => SchedParams {
            n: if size == Size::Large { 20_000 } else { 2_000 },
            latency: Duration::from_millis(500),
            c: 200,
            rate: 400.0,
            poll: Duration::from_millis(50),
        },
    };
    if let Some(Some(poll)) = POLL_OVERRIDE.get() {
        p.poll = *poll;
    }
    p
}

/// The bound without the download: max((N−1)/R, ⌈N/C⌉·L). The
/// limiter has a burst of one, so the last of N creates leaves (N−1)/R after
/// the first; ⌈N/C⌉ waves of L cannot overlap on an account that allows C.
pub fn lower_bound(n: usize, rate: f64, c: usize, latency: Duration) -> Duration {
    let by_rate = n.saturating_sub(1) as f64 / rate;
    let waves = n.div_ceil(c.max(1)) as f64;
    Duration::from_secs_f64(by_rate.max(waves * latency.as_secs_f64()))
}

/// What one scheduling run measured.
pub struct SchedRun {
    pub run: ChildRun,
    pub stats: Stats,
    /// One download of a finished video, timed after the run.
    pub last_download: Duration,
    pub timeline: Timeline,
}

impl SchedRun {
    /// The bound with C = what the account allows (`account`).
    pub fn bound(&self, p: &SchedParams, account: usize) -> Duration {
        lower_bound(p.n, p.rate, account, p.latency) + self.last_download
    }
}

/// Run `p` against an emulator whose account allows `account` tasks at once
/// (faults as `faults` sets them) and check that every item was created
/// exactly once and downloaded.
pub async fn sched_run(
    p: &SchedParams,
    account: usize,
    faults: EmulatorConfig,
) -> BenchResult<SchedRun> {
    sched_run_with(p, account, faults, &[]).await
}

/// [`sched_run`] with `extra` flags after the tuning ones.
pub async fn sched_run_with(
    p: &SchedParams,
    account: usize,
    faults: EmulatorConfig,
    extra: &[String],
) -> BenchResult<SchedRun> {
    let emu = emulator(EmulatorConfig {
        latency: p.latency,
        // The emulator enforces the account limit: a runner that overshoots
        // sees 1303 and it shows in the table.
        concurrency_limit: Some(account),
        // Timestamps split the wall time into startup, pipeline and tail.
        record_requests: true,
        ..faults
    })
    .await?;
    let dir = tempdir()?;
    let manifest = write_manifest(dir.path(), p.n)?;
    let out = dir.path().join("out");
    let spawn_ms = now_ms();
    let run = run_to_end(
        dir.path(),
        &manifest,
        &out,
        &emu.base_url(),
        [
            flags(p.c, p.rate, p.poll, Duration::from_millis(50)),
            extra.to_vec(),
        ]
        .concat(),
    )
    .await?;
    let end_ms = now_ms();
    let stats = emu.stats();
    let reqs = emu.requests();
    let last_download = one_download(&out).await?;
    emu.shutdown().await;
    check(duplicates(&stats, p.n) == 0, "duplicate creates")?;
    check(
        stats.creates_accepted == p.n as u64,
        "not every item created exactly once",
    )?;
    check(
        stats.downloads_completed >= p.n as u64,
        "not every video downloaded",
    )?;
    Ok(SchedRun {
        timeline: Timeline::of(&reqs, spawn_ms, end_ms),
        run,
        stats,
        last_download,
    })
}

pub async fn scenario_1(size: Size) -> BenchResult<Table> {
    let p = sched_params(size);
    let r = sched_run(&p, p.c, EmulatorConfig::default()).await?;
    let bound = r.bound(&p, p.c);
    let ratio = r.run.wall.as_secs_f64() / bound.as_secs_f64();
    let mut t = Table::new(
        "1. Scheduling efficiency",
        format!(
            "N={} L={}ms C={} R={}/s poll={}ms (emulator limit C, no faults)",
            p.n,
            p.latency.as_millis(),
            p.c,
            p.rate,
            p.poll.as_millis()
        ),
        size,
    );
    t.judged(
        "wall time / lower bound",
        secs(r.run.wall),
        format!(
            "{} (incl. last download {})",
            secs(bound),
            secs(r.last_download)
        ),
        format!("{ratio:.3}"),
        ratio <= 1.10,
    );
    // The last create cannot leave before (N−1)/R (burst 1), nor before the
    // last of ceil(N/C) waves starts; it then needs L. The bound
    // leaves that last L out when (N−1)/R dominates.
    let waves = p.n.div_ceil(p.c.max(1)) as f64;
    let tight = Duration::from_secs_f64(
        ((p.n as f64 - 1.0) / p.rate).max((waves - 1.0) * p.latency.as_secs_f64()),
    ) + p.latency
        + r.last_download;
    t.info(
        "wall time / tight bound",
        format!(
            "{} vs {} → {:.3}",
            secs(r.run.wall),
            secs(tight),
            r.run.wall.as_secs_f64() / tight.as_secs_f64()
        ),
    );
    t.info(
        "spawn → first create",
        secs(ms_between(r.timeline.spawn, r.timeline.first_create)),
    );
    t.info(
        "first → last create",
        format!(
            "{} (≥ (N−1)/R = {})",
            secs(ms_between(r.timeline.first_create, r.timeline.last_create)),
            secs(Duration::from_secs_f64((p.n as f64 - 1.0) / p.rate))
        ),
    );
    t.info(
        "last create → last request",
        format!(
            "{} (L = {})",
            secs(ms_between(r.timeline.last_create, r.timeline.last_request)),
            secs(p.latency)
        ),
    );
    t.info(
        "last request → exit",
        secs(ms_between(r.timeline.last_request, r.timeline.end)),
    );
    t.info("creates sent", creates(&r.stats).to_string());
    t.info("1303 answers", rejected(&r.stats, 1303).to_string());
    t.info("single-task queries", r.stats.queries.to_string());
    t.info("list queries", r.stats.list_queries.to_string());
    t.info(
        "max tasks in flight (emulator)",
        r.stats.max_in_flight.to_string(),
    );
    t.info("duplicates", "0".into());
    t.info("child CPU", secs(r.run.cpu));
    t.note("target: ratio ≤ 1.10 (N = 2,000, L = 0.5 s, C = 200, R = 400/s)".into());
    Ok(t)
}

pub async fn scenario_6(size: Size) -> BenchResult<Table> {
    let p = sched_params(size);
    // 1303 pressure: the account allows 10% fewer tasks than the runner is told.
    let account = (p.c * 9 / 10).max(1);
    let r = sched_run(
        &p,
        account,
        EmulatorConfig {
            create_ambiguous_rate: 0.05,
            query_5001_rate: 0.05,
            seed: 6,
            ..EmulatorConfig::default()
        },
    )
    .await?;
    // The account, not the flag, bounds the concurrency here.
    let bound = r.bound(&p, account);
    let ratio = r.run.wall.as_secs_f64() / bound.as_secs_f64();
    let mut t = Table::new(
        "6. Overhead under faults",
        format!(
            "N={} L={}ms C={} (account limit {account}) R={}/s poll={}ms; 5% ambiguous creates, 5% query 5001",
            p.n,
            p.latency.as_millis(),
            p.c,
            p.rate,
            p.poll.as_millis()
        ),
        size,
    );
    t.judged(
        "wall time / lower bound",
        secs(r.run.wall),
        format!("{} (C = account limit)", secs(bound)),
        format!("{ratio:.3}"),
        true,
    );
    // sched_run failed the scenario on any duplicate.
    t.judged("duplicates", "0".into(), "0".into(), String::new(), true);
    t.info(
        "tasks created / items",
        format!("{} / {}", r.stats.creates_accepted, p.n),
    );
    t.info("creates sent", creates(&r.stats).to_string());
    t.info("1303 answers", rejected(&r.stats, 1303).to_string());
    for (k, v) in &r.stats.faults_injected {
        t.info(&format!("fault injected: {k}"), v.to_string());
    }
    t.info("single-task queries", r.stats.queries.to_string());
    t.info("list queries", r.stats.list_queries.to_string());
    t.note("no ratio target; duplicates must be 0 (asserted)".into());
    Ok(t)
}
