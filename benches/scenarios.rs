//! Benchmark scenarios of issue #5: the real `vidbatch run` binary against the
//! in-process emulator, one table per scenario.
//!
//! Every figure is a ratio or a count taken in the same run (wall time against
//! a lower bound computed from the same parameters, requests counted by the
//! emulator, rusage of the child), so it holds on a noisy shared machine.
//!
//! * `cargo bench --bench scenarios` — default sizes (N = 2,000, 1k/10k, …).
//! * `cargo bench --bench scenarios -- --large` — the 20,000 / 100k variants.
//! * `cargo bench --bench scenarios -- --only 1,4` — a subset;
//!   `-- --poll-ms 100` overrides the poll interval of scenarios 1 and 6.
//! * `cargo test --bench scenarios` (no `--bench` argument) — smoke mode: every
//!   scenario at tiny size; asserts correctness only (exit codes, duplicates),
//!   never timing.
//!
//! See benches/README.md for the scenarios, the bounds and the recorded figures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use vidbatch::download::Downloader;
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle, Stats};
use vidbatch::provider::registry::Api;
use vidbatch::state::{Status, Update, VideoRecord};

const AK: &str = "bench-access-key-AK0000000001";
const SK: &str = "bench-secret-key-SK0000000001";

type BenchResult<T> = Result<T, String>;

/// `--poll-ms M`: the poll interval of scenarios 1 and 6 (to study its effect).
static POLL_OVERRIDE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();

/// How big the scenarios are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Size {
    Smoke,
    Default,
    Large,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = if !args.iter().any(|a| a == "--bench") {
        Size::Smoke
    } else if args.iter().any(|a| a == "--large") {
        Size::Large
    } else {
        Size::Default
    };
    let only: Option<Vec<u32>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let poll_ms = args
        .iter()
        .position(|a| a == "--poll-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok());
    let _ = POLL_OVERRIDE.set(poll_ms.map(Duration::from_millis));
    let wanted = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "vidbatch benchmarks — size {size:?}, binary {}",
        env!("CARGO_BIN_EXE_vidbatch")
    );
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let scenarios: [(u32, &str); 6] = [
        (1, "scheduling efficiency"),
        (2, "polling cost"),
        (3, "memory and CPU"),
        (4, "downloads vs curl"),
        (5, "resume latency"),
        (6, "overhead under faults"),
    ];
    for (n, name) in scenarios {
        if !wanted(n) {
            continue;
        }
        let result = runtime.block_on(async {
            match n {
                1 => scenario_1(size).await,
                2 => scenario_2(size).await,
                3 => scenario_3(size).await,
                4 => scenario_4(size).await,
                5 => scenario_5(size).await,
                _ => scenario_6(size).await,
            }
        });
        match result {
            Ok(table) => println!("{table}"),
            Err(e) => {
                println!("\n## {n}. {name}: FAILED — {e}\n");
                failures.push(format!("scenario {n} ({name}): {e}"));
            }
        }
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- tables

/// One printed table: a title, a parameter line and rows of
/// (measure, value, bound/target, ratio, verdict).
struct Table {
    title: String,
    params: String,
    rows: Vec<[String; 5]>,
    notes: Vec<String>,
    smoke: bool,
}

impl Table {
    fn new(title: &str, params: String, size: Size) -> Table {
        Table {
            title: title.to_owned(),
            params,
            rows: Vec::new(),
            notes: Vec::new(),
            smoke: size == Size::Smoke,
        }
    }

    /// A figure with no target.
    fn info(&mut self, what: &str, value: String) {
        self.rows.push([
            what.to_owned(),
            value,
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    /// A figure judged against a target; `pass` says whether it met it.
    fn judged(&mut self, what: &str, value: String, target: String, ratio: String, pass: bool) {
        let verdict = if self.smoke {
            "(smoke)".to_owned()
        } else if pass {
            "pass".to_owned()
        } else {
            "MISS".to_owned()
        };
        self.rows
            .push([what.to_owned(), value, target, ratio, verdict]);
    }

    fn note(&mut self, s: String) {
        self.notes.push(s);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = ["measure", "value", "bound / target", "ratio", "verdict"];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        writeln!(f, "\n## {}", self.title)?;
        writeln!(f, "parameters: {}", self.params)?;
        let line = |cells: [&str; 5]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i].saturating_sub(c.chars().count());
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            }
            s
        };
        writeln!(f, "{}", line(head))?;
        let mut sep = String::from("|");
        for width in w {
            let _ = write!(sep, "{}|", "-".repeat(width + 2));
        }
        writeln!(f, "{sep}")?;
        for r in &self.rows {
            writeln!(
                f,
                "{}",
                line([&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str))
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  - {n}")?;
        }
        Ok(())
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

// ---------------------------------------------------------------- child runs

/// What a finished child cost.
struct ChildRun {
    wall: Duration,
    exit: Option<i32>,
    max_rss_kib: u64,
    cpu: Duration,
}

/// A CSV manifest of `n` text2video items.
fn write_manifest(dir: &Path, n: usize) -> BenchResult<PathBuf> {
    let path = dir.join("batch.csv");
    let mut s = String::with_capacity(n * 48 + 32);
    s.push_str("id,prompt,duration\n");
    for i in 0..n {
        let _ = writeln!(s, "clip-{i},\"a calm sea at dawn, shot {i}\",5");
    }
    std::fs::write(&path, s).map_err(|e| format!("write manifest: {e}"))?;
    Ok(path)
}

/// `vidbatch run` with a scrubbed environment; output to log files in `dir`.
fn spawn_run(
    dir: &Path,
    manifest: &Path,
    out: &Path,
    base_url: &str,
    flags: &[String],
) -> BenchResult<Child> {
    let log = |name: &str| {
        std::fs::File::create(dir.join(name)).map_err(|e| format!("create log {name}: {e}"))
    };
    Command::new(env!("CARGO_BIN_EXE_vidbatch"))
        .env_clear()
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .arg("--quiet")
        .arg("run")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .arg("--base-url")
        .arg(base_url)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        .spawn()
        .map_err(|e| format!("spawn vidbatch: {e}"))
}

/// Reap `child` with wait4 to get its own rusage (peak RSS, CPU).
fn wait_child(child: Child, started: Instant) -> BenchResult<ChildRun> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| format!("pid: {e}"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; both pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    // The child is reaped: dropping the handle must not signal a reused pid.
    drop(child);
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let exit = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(ChildRun {
        wall,
        exit,
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

/// Run the binary to the end; an exit other than 0 is an error carrying the
/// tail of its stderr.
async fn run_to_end(
    dir: &Path,
    manifest: &Path,
    out: &Path,
    base_url: &str,
    flags: Vec<String>,
) -> BenchResult<ChildRun> {
    let started = Instant::now();
    let child = spawn_run(dir, manifest, out, base_url, &flags)?;
    let run = tokio::task::spawn_blocking(move || wait_child(child, started))
        .await
        .map_err(|e| format!("join: {e}"))??;
    if run.exit != Some(0) {
        let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let tail: String = err
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(format!("vidbatch exited with {:?}:\n{tail}", run.exit));
    }
    Ok(run)
}

fn flags(c: usize, rate: f64, poll: Duration, retry_base: Duration) -> Vec<String> {
    vec![
        "--concurrency".into(),
        c.to_string(),
        "--submit-rate".into(),
        format!("{rate}/s"),
        "--poll-interval".into(),
        format!("{}ms", poll.as_millis()),
        "--retry-base".into(),
        format!("{}ms", retry_base.as_millis()),
        "--download-concurrency".into(),
        "16".into(),
    ]
}

async fn emulator(config: EmulatorConfig) -> BenchResult<EmulatorHandle> {
    emulator::start(EmulatorConfig {
        access_key: Some(AK.into()),
        secret_key: Some(SK.into()),
        ..config
    })
    .await
    .map_err(|e| format!("emulator: {e}"))
}

fn tempdir() -> BenchResult<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))
}

fn route(stats: &Stats, r: &str) -> u64 {
    stats.requests_by_route.get(r).copied().unwrap_or(0)
}

fn creates(stats: &Stats) -> u64 {
    route(stats, "POST /v1/videos/text2video") + route(stats, "POST /v1/videos/image2video")
}

/// Items whose task was created more than once: extra accepted creates, or a
/// repeated external_task_id (the emulator records both).
fn duplicates(stats: &Stats, n: usize) -> u64 {
    stats.creates_accepted.saturating_sub(n as u64) + stats.duplicate_external_task_ids.len() as u64
}

fn rejected(stats: &Stats, code: i64) -> u64 {
    stats
        .creates_rejected_by_code
        .get(&code)
        .copied()
        .unwrap_or(0)
}

/// Time one download of a finished video, as the "+ last download" term of
/// the bound (the last item cannot be on disk before its bytes are fetched).
async fn one_download(out: &Path) -> BenchResult<Duration> {
    let mut rd =
        csv::Reader::from_path(out.join("report.csv")).map_err(|e| format!("report.csv: {e}"))?;
    let headers = rd
        .headers()
        .map_err(|e| format!("report.csv: {e}"))?
        .clone();
    let col = headers
        .iter()
        .position(|h| h == "video_url")
        .ok_or("report.csv has no video_url")?;
    let url = rd
        .records()
        .next()
        .ok_or("report.csv is empty")?
        .map_err(|e| format!("report.csv: {e}"))?
        .get(col)
        .ok_or("short report row")?
        .to_owned();
    let dl = Downloader::new(reqwest::Client::new(), 1, Duration::from_millis(10));
    let dir = tempdir()?;
    let t = Instant::now();
    dl.fetch(&url, &dir.path().join("one.mp4"))
        .await
        .map_err(|e| format!("download: {e}"))?;
    Ok(t.elapsed())
}

fn check(cond: bool, what: &str) -> BenchResult<()> {
    if cond { Ok(()) } else { Err(what.to_owned()) }
}

// ---------------------------------------------------------------- scenario 1 and 6

struct SchedParams {
    n: usize,
    latency: Duration,
    c: usize,
    rate: f64,
    poll: Duration,
}

fn sched_params(size: Size) -> SchedParams {
    let mut p = sched_defaults(size);
    if let Some(Some(poll)) = POLL_OVERRIDE.get() {
        p.poll = *poll;
    }
    p
}

fn sched_defaults(size: Size) -> SchedParams {
    match size {
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
    }
}

/// max(N/R, ceil(N/C)·L): no schedule can create N tasks faster than the
/// rate, nor finish them faster than ceil(N/C) back-to-back waves of L.
fn lower_bound(n: usize, rate: f64, c: usize, latency: Duration) -> Duration {
    let by_rate = n as f64 / rate;
    let waves = n.div_ceil(c.max(1)) as f64;
    Duration::from_secs_f64(by_rate.max(waves * latency.as_secs_f64()))
}

async fn scenario_1(size: Size) -> BenchResult<Table> {
    let p = sched_params(size);
    let emu = emulator(EmulatorConfig {
        latency: p.latency,
        // The emulator enforces the account limit: a runner that overshoots
        // would see 1303 and it would show in the table.
        concurrency_limit: Some(p.c),
        // Timestamps split the wall time into startup, pipeline and tail.
        record_requests: true,
        ..EmulatorConfig::default()
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
        flags(p.c, p.rate, p.poll, Duration::from_millis(50)),
    )
    .await?;
    let end_ms = now_ms();
    let stats = emu.stats();
    let reqs = emu.requests();
    let last = one_download(&out).await?;
    emu.shutdown().await;
    let dups = duplicates(&stats, p.n);
    check(dups == 0, "duplicate creates")?;
    let at = |pred: &dyn Fn(&emulator::RecordedRequest) -> bool, first: bool| {
        let it = reqs.iter().filter(|r| pred(r)).map(|r| r.at);
        if first { it.min() } else { it.max() }.unwrap_or(spawn_ms)
    };
    let first_create = at(&|r| r.method == "POST", true);
    let last_create = at(&|r| r.method == "POST", false);
    let last_request = at(&|_| true, false);
    let ms = |a: u64, b: u64| Duration::from_millis(b.saturating_sub(a));
    check(
        stats.creates_accepted == p.n as u64,
        "not every item created once",
    )?;
    check(
        stats.downloads_completed >= p.n as u64,
        "not every video downloaded",
    )?;

    let bound = lower_bound(p.n, p.rate, p.c, p.latency) + last;
    let ratio = run.wall.as_secs_f64() / bound.as_secs_f64();
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
        secs(run.wall),
        format!("{} (incl. last download {})", secs(bound), secs(last)),
        format!("{ratio:.3}"),
        ratio <= 1.10,
    );
    // The last create cannot leave before (N−1)/R (burst 1), nor before the
    // last of ceil(N/C) waves starts; it then needs L. The issue's bound
    // leaves that last L out when N/R dominates.
    let waves = p.n.div_ceil(p.c.max(1)) as f64;
    let tight = Duration::from_secs_f64(
        ((p.n as f64 - 1.0) / p.rate).max((waves - 1.0) * p.latency.as_secs_f64()),
    ) + p.latency
        + last;
    t.info(
        "wall time / tight bound",
        format!(
            "{} vs {} → {:.3}",
            secs(run.wall),
            secs(tight),
            run.wall.as_secs_f64() / tight.as_secs_f64()
        ),
    );
    t.info("spawn → first create", secs(ms(spawn_ms, first_create)));
    t.info(
        "first → last create",
        format!(
            "{} (≥ (N−1)/R = {})",
            secs(ms(first_create, last_create)),
            secs(Duration::from_secs_f64((p.n as f64 - 1.0) / p.rate))
        ),
    );
    t.info(
        "last create → last request",
        format!(
            "{} (L = {})",
            secs(ms(last_create, last_request)),
            secs(p.latency)
        ),
    );
    t.info("last request → exit", secs(ms(last_request, end_ms)));
    t.info("creates sent", creates(&stats).to_string());
    t.info("1303 answers", rejected(&stats, 1303).to_string());
    t.info("single-task queries", stats.queries.to_string());
    t.info("list queries", stats.list_queries.to_string());
    t.info(
        "max tasks in flight (emulator)",
        stats.max_in_flight.to_string(),
    );
    t.info("duplicates", dups.to_string());
    t.info("child CPU", secs(run.cpu));
    t.note("target: ratio ≤ 1.10 (N = 2,000, L = 0.5 s, C = 200, R = 400/s)".into());
    Ok(t)
}

async fn scenario_6(size: Size) -> BenchResult<Table> {
    let p = sched_params(size);
    // 1303 pressure: the account allows 10% fewer tasks than the runner is told.
    let account = (p.c * 9 / 10).max(1);
    let emu = emulator(EmulatorConfig {
        latency: p.latency,
        concurrency_limit: Some(account),
        create_ambiguous_rate: 0.05,
        query_5001_rate: 0.05,
        seed: 6,
        record_requests: false,
        ..EmulatorConfig::default()
    })
    .await?;
    let dir = tempdir()?;
    let manifest = write_manifest(dir.path(), p.n)?;
    let out = dir.path().join("out");
    let run = run_to_end(
        dir.path(),
        &manifest,
        &out,
        &emu.base_url(),
        flags(p.c, p.rate, p.poll, Duration::from_millis(50)),
    )
    .await?;
    let stats = emu.stats();
    let last = one_download(&out).await?;
    emu.shutdown().await;
    let dups = duplicates(&stats, p.n);
    check(dups == 0, "duplicate creates under faults")?;
    check(
        stats.creates_accepted == p.n as u64,
        "not every item created exactly once",
    )?;

    // The account, not the flag, bounds the concurrency here.
    let bound = lower_bound(p.n, p.rate, account, p.latency) + last;
    let ratio = run.wall.as_secs_f64() / bound.as_secs_f64();
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
        secs(run.wall),
        format!("{} (C = account limit)", secs(bound)),
        format!("{ratio:.3}"),
        true,
    );
    t.judged(
        "duplicates",
        dups.to_string(),
        "0".into(),
        String::new(),
        dups == 0,
    );
    t.info(
        "tasks created / items",
        format!("{} / {}", stats.creates_accepted, p.n),
    );
    t.info("creates sent", creates(&stats).to_string());
    t.info("1303 answers", rejected(&stats, 1303).to_string());
    for (k, v) in &stats.faults_injected {
        t.info(&format!("fault injected: {k}"), v.to_string());
    }
    t.info("single-task queries", stats.queries.to_string());
    t.info("list queries", stats.list_queries.to_string());
    t.note("no ratio target; duplicates must be 0 (asserted)".into());
    Ok(t)
}

// ---------------------------------------------------------------- scenario 2

async fn polling_run(
    n: usize,
    c: usize,
    rate: f64,
    latency: Duration,
    poll: Duration,
) -> BenchResult<(Stats, ChildRun)> {
    let emu = emulator(EmulatorConfig {
        latency,
        record_requests: false,
        ..EmulatorConfig::default()
    })
    .await?;
    let dir = tempdir()?;
    let manifest = write_manifest(dir.path(), n)?;
    let out = dir.path().join("out");
    let run = run_to_end(
        dir.path(),
        &manifest,
        &out,
        &emu.base_url(),
        flags(c, rate, poll, Duration::from_millis(50)),
    )
    .await?;
    let stats = emu.stats();
    emu.shutdown().await;
    check(duplicates(&stats, n) == 0, "duplicate creates")?;
    Ok((stats, run))
}

async fn scenario_2(size: Size) -> BenchResult<Table> {
    let smoke = size == Size::Smoke;
    let latency = if smoke {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let poll = latency / 4;
    // Fewer than list_threshold (50) in flight: the engine polls task by task.
    let (n1, c1) = if smoke { (30, 20) } else { (400, 40) };
    // 1,000 in flight: R·L ≥ C keeps the window full.
    let (n2, c2) = if smoke { (120, 60) } else { (2_000, 1_000) };
    let (single, _) = polling_run(n1, c1, 400.0, latency, poll).await?;
    let (list, _) = polling_run(n2, c2, 1_000.0, latency, poll).await?;
    let per = |s: &Stats, n: usize| (s.queries + s.list_queries) as f64 / n as f64;
    let mut t = Table::new(
        "2. Polling cost (status requests per item)",
        format!(
            "L={}ms poll={}ms; single: N={n1} C={c1}; list: N={n2} C={c2} R=1000/s",
            latency.as_millis(),
            poll.as_millis()
        ),
        size,
    );
    t.info(
        "single-task polling",
        format!(
            "{:.3} ({} queries, {} list)",
            per(&single, n1),
            single.queries,
            single.list_queries
        ),
    );
    let lp = per(&list, n2);
    t.judged(
        &format!("list polling, {c2} in flight"),
        format!(
            "{lp:.3} ({} queries, {} list; max in flight {})",
            list.queries, list.list_queries, list.max_in_flight
        ),
        "≤ 0.2".into(),
        format!("{:.3}", lp / 0.2),
        lp <= 0.2,
    );
    t.note(
        "status requests = single-task queries + list pages, from the emulator's counters".into(),
    );
    Ok(t)
}

// ---------------------------------------------------------------- scenario 3

async fn scenario_3(size: Size) -> BenchResult<Table> {
    let sizes: Vec<usize> = match size {
        Size::Smoke => vec![50, 200],
        Size::Default => vec![1_000, 10_000],
        // 20k: the size issue #12 sets the CPU target at.
        Size::Large => vec![1_000, 10_000, 20_000, 100_000],
    };
    let latency = Duration::from_millis(100);
    let (c, rate, poll) = (500, 5_000.0, Duration::from_millis(50));
    let mut t = Table::new(
        "3. Memory and CPU",
        format!(
            "L={}ms C={c} R={rate}/s poll={}ms; peak RSS and CPU (user+sys) of the vidbatch process",
            latency.as_millis(),
            poll.as_millis()
        ),
        size,
    );
    let mut first: Option<(usize, u64)> = None;
    for n in sizes {
        let (stats, run) = polling_run(n, c, rate, latency, poll).await?;
        check(
            stats.creates_accepted == n as u64,
            "not every item created once",
        )?;
        let mib = run.max_rss_kib as f64 / 1024.0;
        let cpu_per_k = run.cpu.as_secs_f64() * 1000.0 / n as f64;
        t.info(
            &format!("N={n}: wall"),
            format!(
                "{} ({:.0} items/s)",
                secs(run.wall),
                n as f64 / run.wall.as_secs_f64()
            ),
        );
        if n == 20_000 {
            t.judged(
                &format!("N={n}: CPU per 1,000 items"),
                format!("{cpu_per_k:.3} s"),
                "≤ 0.5 s".into(),
                format!("{:.2}", cpu_per_k / 0.5),
                cpu_per_k <= 0.5,
            );
        } else {
            t.info(
                &format!("N={n}: CPU per 1,000 items"),
                format!("{cpu_per_k:.3} s"),
            );
        }
        if n >= 100_000 {
            t.judged(
                &format!("N={n}: peak RSS"),
                format!("{mib:.1} MiB"),
                "< 100 MB".into(),
                format!("{:.2}", run.max_rss_kib as f64 * 1024.0 / 100e6),
                (run.max_rss_kib as f64 * 1024.0) < 100e6,
            );
        } else {
            t.info(&format!("N={n}: peak RSS"), format!("{mib:.1} MiB"));
        }
        match first {
            None => first = Some((n, run.max_rss_kib)),
            Some((n0, r0)) => {
                let growth = run.max_rss_kib as f64 / r0.max(1) as f64;
                let items = n as f64 / n0 as f64;
                t.judged(
                    &format!("RSS growth {n0}→{n} vs items ×{items:.0}"),
                    format!("×{growth:.2}"),
                    format!("≪ ×{items:.0}"),
                    format!("{:.3}", growth / items),
                    growth < items / 2.0,
                );
            }
        }
    }
    if size != Size::Large {
        t.note(
            "the 20k row (the CPU target) and the 100k row (the RSS target) run with `-- --large`"
                .into(),
        );
    }
    Ok(t)
}

// ---------------------------------------------------------------- scenario 4

/// Create `n` tasks on a keyless emulator and return their video URLs.
async fn video_urls(emu: &EmulatorHandle, n: usize) -> BenchResult<Vec<String>> {
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let v: serde_json::Value = http
            .post(format!("{base}/v1/videos/text2video"))
            .bearer_auth("bench")
            .json(&serde_json::json!({ "prompt": format!("bench clip {i}") }))
            .send()
            .await
            .map_err(|e| format!("create: {e}"))?
            .json()
            .await
            .map_err(|e| format!("create body: {e}"))?;
        let id = v["data"]["task_id"]
            .as_str()
            .ok_or_else(|| format!("create answered {v}"))?;
        ids.push(id.to_owned());
    }
    let mut urls = Vec::with_capacity(n);
    for id in ids {
        loop {
            let v: serde_json::Value = http
                .get(format!("{base}/v1/videos/text2video/{id}"))
                .bearer_auth("bench")
                .send()
                .await
                .map_err(|e| format!("query: {e}"))?
                .json()
                .await
                .map_err(|e| format!("query body: {e}"))?;
            match v["data"]["task_status"].as_str() {
                Some("succeed") => {
                    let url = v["data"]["task_result"]["videos"][0]["url"]
                        .as_str()
                        .ok_or_else(|| format!("no url in {v}"))?;
                    urls.push(url.to_owned());
                    break;
                }
                Some("failed") | None => return Err(format!("task {id}: {v}")),
                // Still running: the emulator's latency is a few ms.
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    Ok(urls)
}

async fn with_vidbatch(urls: &[String], dest: &Path, par: usize) -> BenchResult<(Duration, u64)> {
    let dl = Arc::new(Downloader::new(
        reqwest::Client::new(),
        1,
        Duration::from_millis(10),
    ));
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(urls.iter().enumerate())
        .map(|(i, url)| {
            let dl = dl.clone();
            let path = dest.join(format!("v{i}.mp4"));
            async move { dl.fetch(url, &path).await }
        })
        .buffer_unordered(par)
        .collect()
        .await;
    let wall = t.elapsed();
    let mut bytes = 0;
    for r in results {
        bytes += r.map_err(|e| format!("download: {e}"))?.bytes;
    }
    Ok((wall, bytes))
}

/// `xargs -P par` over curl; with `same_work`, each file is then also hashed
/// (`sha256sum`) and fsynced (`sync FILE`), as the Downloader does.
async fn with_curl(
    urls: &[String],
    dest: &Path,
    par: usize,
    same_work: bool,
) -> BenchResult<(Duration, u64)> {
    let mut list = String::new();
    for (i, url) in urls.iter().enumerate() {
        let _ = writeln!(list, "{} {url}", dest.join(format!("c{i}.mp4")).display());
    }
    let list_path = dest.join("urls.txt");
    std::fs::write(&list_path, list).map_err(|e| format!("url list: {e}"))?;
    let par = par.to_string();
    let t = Instant::now();
    let mut cmd = tokio::process::Command::new("xargs");
    cmd.args(["-P", &par, "-L", "1", "-a"]).arg(&list_path);
    if same_work {
        cmd.args([
            "sh",
            "-c",
            r#"curl -s -f -o "$0" "$1" && sha256sum "$0" >/dev/null && sync "$0""#,
        ]);
    } else {
        cmd.args(["curl", "-s", "-f", "-o"]);
    }
    let status = cmd.status().await.map_err(|e| format!("xargs curl: {e}"))?;
    let wall = t.elapsed();
    check(status.success(), "curl failed")?;
    let mut bytes = 0;
    for i in 0..urls.len() {
        bytes += std::fs::metadata(dest.join(format!("c{i}.mp4")))
            .map_err(|e| format!("curl output: {e}"))?
            .len();
    }
    Ok((wall, bytes))
}

async fn scenario_4(size: Size) -> BenchResult<Table> {
    let (n, pad) = if size == Size::Smoke {
        (10, 200_000)
    } else {
        (200, 5_000_000)
    };
    let par = 8;
    let emu = emulator::start(EmulatorConfig {
        latency: Duration::from_millis(5),
        video_pad_bytes: pad,
        record_requests: false,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("emulator: {e}"))?;
    let urls = video_urls(&emu, n).await?;
    let dir = tempdir()?;
    let have_curl = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_curl {
        // CI's smoke run must not depend on curl; a real run needs the reference.
        check(size == Size::Smoke, "curl is not installed")?;
        let (wall, bytes) = with_vidbatch(&urls, dir.path(), par).await?;
        emu.shutdown().await;
        check(bytes == n as u64 * pad, "short downloads")?;
        let mut t = Table::new("4. Downloads vs curl", format!("{n} files × {pad} B"), size);
        t.info("vidbatch Downloader::fetch", secs(wall));
        t.note("curl is not installed: comparison skipped".into());
        return Ok(t);
    }
    // Alternate the two twice and keep the best of each: the first pass warms
    // the page cache for both alike.
    let mut best_curl = Duration::MAX;
    let mut best_vb = Duration::MAX;
    let mut best_same = Duration::MAX;
    let mut total = 0;
    for round in 0..2 {
        let d = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&d).map_err(|e| format!("mkdir: {e}"))?;
        let (wc, bc) = with_curl(&urls, &d, par, false).await?;
        let (wv, bv) = with_vidbatch(&urls, &d, par).await?;
        let (ws, bs) = with_curl(&urls, &d, par, true).await?;
        check(
            bc == bv && bs == bv,
            "curl and vidbatch fetched different byte counts",
        )?;
        best_curl = best_curl.min(wc);
        best_same = best_same.min(ws);
        best_vb = best_vb.min(wv);
        total = bv;
        std::fs::remove_dir_all(&d).map_err(|e| format!("cleanup: {e}"))?;
    }
    emu.shutdown().await;
    let mbps = |w: Duration| total as f64 / 1e6 / w.as_secs_f64();
    let ratio = mbps(best_vb) / mbps(best_curl);
    let mut t = Table::new(
        "4. Downloads vs curl",
        format!(
            "{n} files × {pad} B, parallelism {par}, best of 2 alternating rounds, emulator in-process for both"
        ),
        size,
    );
    t.info(
        "curl (xargs -P)",
        format!("{:.0} MB/s ({})", mbps(best_curl), secs(best_curl)),
    );
    t.judged(
        "vidbatch Downloader::fetch",
        format!("{:.0} MB/s ({})", mbps(best_vb), secs(best_vb)),
        "≥ 0.9 × curl".into(),
        format!("{ratio:.3}"),
        ratio >= 0.9,
    );
    t.info(
        "curl + sha256sum + sync FILE (same work)",
        format!(
            "{:.0} MB/s ({}); vidbatch ratio {:.3}",
            mbps(best_same),
            secs(best_same),
            mbps(best_vb) / mbps(best_same)
        ),
    );
    t.note("Downloader also hashes (sha256) and fsyncs every file; plain curl does neither".into());
    Ok(t)
}

// ---------------------------------------------------------------- scenario 5

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A batch directory opened for `manifest` as `vidbatch run` opens it
/// (`batch::prepare`: the state knows every item and the manifest's
/// fingerprint), then the first half of its items downloaded (with real files
/// of matching size and hash), the rest pending.
async fn build_half_done_state(batch: &Path, manifest: &Path, n: usize) -> BenchResult<()> {
    use sha2::{Digest, Sha256};
    let source = vidbatch::batch::source::Source {
        path: manifest.to_path_buf(),
        options: Default::default(),
        shard: None,
    };
    let scanned = source
        .scan(Some(batch))
        .map_err(|e| format!("manifest: {e}"))?;
    let name = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prepared = vidbatch::batch::prepare(
        batch,
        &source,
        &scanned,
        vidbatch::batch::Prepare {
            name: &name,
            name_explicit: false,
            new_batch: false,
            resubmit_changed: false,
            api: Api::Kling,
        },
    )
    .await
    .map_err(|e| format!("open the batch: {e}"))?;
    let videos = batch.join("videos");
    std::fs::create_dir_all(&videos).map_err(|e| format!("mkdir: {e}"))?;
    let handle = prepared.writer;
    let send = |u: Update| handle.send(u).map_err(|e| format!("state write: {e}"));
    let at = i64::try_from(now_ms()).unwrap_or(0);
    for i in 0..n / 2 {
        let id = format!("clip-{i}");
        let body = format!("not really an mp4, clip {i}\n");
        let rel = format!("videos/{id}.mp4");
        std::fs::write(batch.join(&rel), &body).map_err(|e| format!("video file: {e}"))?;
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        send(Update::Intent {
            id: id.clone(),
            external_task_id: format!("bench-{i}"),
            attempt: 1,
            account: None,
        })?;
        send(Update::Created {
            id: id.clone(),
            task_id: format!("task-{i}"),
            request_id: None,
            at,
            account: None,
        })?;
        send(Update::Succeeded {
            id: id.clone(),
            units: Some("1".into()),
            videos: vec![VideoRecord {
                n: 1,
                video_id: Some(format!("video-{i}")),
                url: Some(format!("http://127.0.0.1:9/{id}.mp4")),
                duration: Some("5".into()),
                ..VideoRecord::default()
            }],
            at,
        })?;
        send(Update::Downloaded {
            id: id.clone(),
            n: 1,
            path: rel,
            bytes: body.len() as u64,
            sha256: sha,
        })?;
        send(Update::Status {
            id,
            status: Status::Downloaded,
        })?;
    }
    // The writer commits everything queued before its thread ends; the lock
    // goes with `prepared.lock`, before the run starts.
    drop(handle);
    let writer = prepared.writer_thread;
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| format!("join: {e}"))?;
    Ok(())
}

async fn scenario_5(size: Size) -> BenchResult<Table> {
    let n = if size == Size::Smoke { 200 } else { 100_000 };
    let dir = tempdir()?;
    let batch = dir.path().join("out");
    let manifest = write_manifest(dir.path(), n)?;
    let build_started = Instant::now();
    build_half_done_state(&batch, &manifest, n).await?;
    let build = build_started.elapsed();
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_secs(1),
        record_requests: true,
        ..EmulatorConfig::default()
    })
    .await?;
    let spawn_ms = now_ms();
    let started = Instant::now();
    let mut child = spawn_run(
        dir.path(),
        &manifest,
        &batch,
        &emu.base_url(),
        &flags(10, 5.0, Duration::from_secs(5), Duration::from_secs(1)),
    )?;
    // Stop as soon as a create is recorded; the figures come from the
    // emulator's timestamps, so this loop's cadence does not change them.
    let give_up = Duration::from_secs(60);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let reqs = loop {
        tick.tick().await;
        let reqs = emu.requests();
        if reqs.iter().any(|r| r.method == "POST") {
            break reqs;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("vidbatch exited early with {status}"));
        }
        if started.elapsed() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no create within 60 s".into());
        }
    };
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let stats = emu.stats();
    emu.shutdown().await;
    let first = reqs.iter().map(|r| r.at).min().unwrap_or(spawn_ms);
    let first_create = reqs
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.at)
        .min()
        .unwrap_or(spawn_ms);
    let to_first = Duration::from_millis(first.saturating_sub(spawn_ms));
    let to_create = Duration::from_millis(first_create.saturating_sub(spawn_ms));
    let mut t = Table::new(
        "5. Resume latency",
        format!(
            "{n}-item state, {} downloaded (files checked), {} pending; state built in {}",
            n / 2,
            n - n / 2,
            secs(build)
        ),
        size,
    );
    t.judged(
        "spawn → first request",
        secs(to_first),
        "< 1 s".into(),
        format!("{:.3}", to_first.as_secs_f64()),
        to_first < Duration::from_secs(1),
    );
    t.judged(
        "spawn → first create",
        secs(to_create),
        "< 1 s".into(),
        format!("{:.3}", to_create.as_secs_f64()),
        to_create < Duration::from_secs(1),
    );
    t.info("creates before stop", stats.creates_accepted.to_string());
    Ok(t)
}
