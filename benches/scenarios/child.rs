//! Running the real `vidbatch run` binary as a child process against an
//! in-process emulator, and reading what it cost.
//!
//! A run to the end goes through the measuring helper (`rusage`), so its
//! rusage (peak RSS, CPU) comes back with its exit status: those figures
//! must be the runner's alone, not the harness's or the emulator's, which
//! share this process.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vidbatch::download::Downloader;
use vidbatch::emulator::{self, EmulatorConfig, EmulatorHandle, RecordedRequest, Stats};

use crate::rusage;

/// The emulator's keys; the child gets them as KLING_ACCESS_KEY/KLING_SECRET_KEY.
pub const AK: &str = "bench-access-key-AK0000000001";
pub const SK: &str = "bench-secret-key-SK0000000001";

pub type BenchResult<T> = Result<T, String>;

/// What a finished child cost.
pub struct ChildRun {
    /// Spawn → exit of `vidbatch`, as the measuring helper saw it.
    pub wall: Duration,
    pub exit: Option<i32>,
    pub max_rss_kib: u64,
    pub cpu: Duration,
}

impl ChildRun {
    /// Peak RSS in MB (10⁶ bytes), the unit of the issue-12 target.
    pub fn max_rss_mb(&self) -> f64 {
        self.max_rss_kib as f64 * 1024.0 / 1e6
    }

    /// CPU seconds (user + system) per 1,000 items.
    pub fn cpu_per_k(&self, n: usize) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / n as f64
    }
}

/// A CSV manifest of `n` text2video items.
pub fn write_manifest(dir: &Path, n: usize) -> BenchResult<PathBuf> {
    let path = dir.join("batch.csv");
    let mut s = String::with_capacity(n * 48 + 32);
    s.push_str("id,prompt,duration\n");
    for i in 0..n {
        let _ = writeln!(s, "clip-{i},\"a calm sea at dawn, shot {i}\",5");
    }
    std::fs::write(&path, s).map_err(|e| format!("write manifest: {e}"))?;
    Ok(path)
}

/// A command that runs `program` with a scrubbed environment (only the two
/// key variables), its stdout/stderr going to log files in `dir`.
fn scrubbed(program: &OsStr, dir: &Path) -> BenchResult<Command> {
    let log = |name: &str| {
        std::fs::File::create(dir.join(name)).map_err(|e| format!("create log {name}: {e}"))
    };
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("KLING_ACCESS_KEY", AK)
        .env("KLING_SECRET_KEY", SK)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?);
    Ok(cmd)
}

/// `--quiet run MANIFEST --output OUT --base-url URL FLAGS…`
fn run_args(manifest: &Path, out: &Path, base_url: &str, flags: &[String]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--quiet".into(),
        "run".into(),
        manifest.into(),
        "--output".into(),
        out.into(),
        "--base-url".into(),
        base_url.into(),
    ];
    v.extend(flags.iter().map(OsString::from));
    v
}

fn vidbatch_bin() -> &'static OsStr {
    OsStr::new(env!("CARGO_BIN_EXE_vidbatch"))
}

/// Spawn `vidbatch run` directly, for a run the caller stops itself
/// (scenario 5); its rusage is not read.
pub fn spawn_run(
    dir: &Path,
    manifest: &Path,
    out: &Path,
    base_url: &str,
    flags: &[String],
) -> BenchResult<Child> {
    scrubbed(vidbatch_bin(), dir)?
        .args(run_args(manifest, out, base_url, flags))
        .spawn()
        .map_err(|e| format!("spawn vidbatch: {e}"))
}

/// Run `vidbatch run` to the end under the measuring helper (see
/// `rusage`), so its peak RSS is its own; an exit other than 0 is an error
/// carrying the tail of its stderr.
pub async fn run_to_end(
    dir: &Path,
    manifest: &Path,
    out: &Path,
    base_url: &str,
    flags: Vec<String>,
) -> BenchResult<ChildRun> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let result = dir.join("rusage.txt");
    let mut helper = scrubbed(me.as_os_str(), dir)?
        .arg(rusage::FLAG)
        .arg(&result)
        .arg("--")
        .arg(vidbatch_bin())
        .args(run_args(manifest, out, base_url, &flags))
        .spawn()
        .map_err(|e| format!("spawn the measuring helper: {e}"))?;
    let status = tokio::task::spawn_blocking(move || helper.wait())
        .await
        .map_err(|e| format!("join: {e}"))?
        .map_err(|e| format!("wait: {e}"))?;
    let run = if status.success() {
        rusage::read_result(&result)
    } else {
        Err(format!("the measuring helper exited with {status}"))
    };
    let stderr_tail = || {
        let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = err.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    };
    match run {
        Ok(run) if run.exit == Some(0) => Ok(run),
        Ok(run) => Err(format!(
            "vidbatch exited with {:?}:\n{}",
            run.exit,
            stderr_tail()
        )),
        Err(e) => Err(format!("{e}:\n{}", stderr_tail())),
    }
}

/// The tuning flags every sized scenario passes (scenario 5 and row (a)
/// choose their own).
pub fn flags(c: usize, rate: f64, poll: Duration, retry_base: Duration) -> Vec<String> {
    vec![
        "--concurrency".into(),
        c.to_string(),
        "--submit-rate".into(),
        format!("{rate}/s"),
        "--poll-interval".into(),
        format!("{}ms", poll.as_millis()),
        "--retry-base".into(),
        format!("{}ms", retry_base.as_millis()),
        // Downloads: the default (`auto`, a pool that grows with the backlog).
    ]
}

/// An emulator that checks the bench's keys.
pub async fn emulator(config: EmulatorConfig) -> BenchResult<EmulatorHandle> {
    emulator::start(EmulatorConfig {
        access_key: Some(AK.into()),
        secret_key: Some(SK.into()),
        ..config
    })
    .await
    .map_err(|e| format!("emulator: {e}"))
}

/// `n` items through `vidbatch run` with explicit flags against an emulator
/// without an account limit; checks that nothing was created twice. The
/// workhorse of scenarios 2 and 3.
pub async fn flagged_run(
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

pub fn tempdir() -> BenchResult<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))
}

fn route(stats: &Stats, r: &str) -> u64 {
    stats.requests_by_route.get(r).copied().unwrap_or(0)
}

/// Create requests sent, whatever their answer.
pub fn creates(stats: &Stats) -> u64 {
    route(stats, "POST /v1/videos/text2video") + route(stats, "POST /v1/videos/image2video")
}

/// Items whose task was created more than once: extra accepted creates, or a
/// repeated external_task_id (the emulator records both).
pub fn duplicates(stats: &Stats, n: usize) -> u64 {
    stats.creates_accepted.saturating_sub(n as u64) + stats.duplicate_external_task_ids.len() as u64
}

/// Creates refused with business code `code`.
pub fn rejected(stats: &Stats, code: i64) -> u64 {
    stats
        .creates_rejected_by_code
        .get(&code)
        .copied()
        .unwrap_or(0)
}

/// Time one download of a finished video, as the "+ last download" term of
/// the bound (the last item cannot be on disk before its bytes are fetched).
pub async fn one_download(out: &Path) -> BenchResult<Duration> {
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

pub fn check(cond: bool, what: &str) -> BenchResult<()> {
    if cond { Ok(()) } else { Err(what.to_owned()) }
}

/// Unix milliseconds, the clock of `RecordedRequest::at`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `b − a` in milliseconds of the same clock, as a duration (0 if b < a).
pub fn ms_between(a: u64, b: u64) -> Duration {
    Duration::from_millis(b.saturating_sub(a))
}

/// Where a run's wall time went, from the emulator's request log (Unix ms).
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub spawn: u64,
    pub first_create: u64,
    pub last_create: u64,
    pub last_request: u64,
    pub end: u64,
}

impl Timeline {
    /// `reqs` logged between `spawn` (taken before the child started) and
    /// `end` (after it was reaped).
    pub fn of(reqs: &[RecordedRequest], spawn: u64, end: u64) -> Timeline {
        let at = |pred: &dyn Fn(&RecordedRequest) -> bool, first: bool| {
            let it = reqs.iter().filter(|r| pred(r)).map(|r| r.at);
            if first { it.min() } else { it.max() }.unwrap_or(spawn)
        };
        Timeline {
            spawn,
            first_create: at(&|r| r.method == "POST", true),
            last_create: at(&|r| r.method == "POST", false),
            last_request: at(&|_| true, false),
            end,
        }
    }

    /// Spawn → first create, first → last create, last create → last
    /// request, last request → exit (seconds).
    pub fn parts(&self) -> [f64; 4] {
        [
            (self.spawn, self.first_create),
            (self.first_create, self.last_create),
            (self.last_create, self.last_request),
            (self.last_request, self.end),
        ]
        .map(|(a, b)| ms_between(a, b).as_secs_f64())
    }
}
