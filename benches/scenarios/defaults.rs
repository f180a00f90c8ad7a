//! Row (a) of issue 12: `vidbatch run` with no tuning flag at all against
//! an account that allows 50 tasks at once.
//!
//! Nobody knows their account's limit, so the defaults are what most users
//! run: `--concurrency auto` must find the limit, `--submit-rate auto` must
//! not hold it back, and polls must follow the latency the batch shows. The
//! child gets only `-q`, `--output`, `--base-url`, `--batch` and the key
//! variables.

use std::time::Duration;

use vidbatch::emulator::{EmulatorConfig, Stats};
use vidbatch::settings::AUTO_RATE_CEILING;

use crate::Size;
use crate::child::{
    BenchResult, ChildRun, Timeline, check, duplicates, emulator, now_ms, one_download, run_to_end,
    tempdir, write_manifest,
};
use crate::sched::lower_bound;

/// N items, an account limit of C tasks, tasks of L (no jitter).
#[derive(Debug, Clone, Copy)]
pub struct DefaultsParams {
    pub n: usize,
    pub account: usize,
    pub latency: Duration,
}

/// The N = 500, C = 50, L = 2 s; smoke: 20 items, C = 5, L = 0.3 s.
pub fn defaults_params(size: Size) -> DefaultsParams {
    if size == Size::Smoke {
        DefaultsParams {
            n: 20,
            account: 5,
            latency: Duration::from_millis(300),
        }
    } else {
        DefaultsParams {
            n: 500,
            account: 50,
            latency: Duration::from_secs(2),
        }
    }
}

impl DefaultsParams {
    /// max((N−1)/R, ⌈N/C⌉·L) with C the account's limit and R the ceiling
    /// of `--submit-rate auto` (50/s): at that rate the creates of 500 items
    /// take 10 s, half the 20 s of the ten waves, so R does not bind and the
    /// bound is the waves' (as in the hand measurement, "20 s + last
    /// download").
    pub fn bound_without_download(&self) -> Duration {
        lower_bound(self.n, AUTO_RATE_CEILING, self.account, self.latency)
    }
}

/// What one default-flags run measured.
pub struct DefaultsRun {
    pub run: ChildRun,
    pub stats: Stats,
    pub last_download: Duration,
    pub timeline: Timeline,
}

impl DefaultsRun {
    pub fn bound(&self, p: &DefaultsParams) -> Duration {
        p.bound_without_download() + self.last_download
    }
}

/// One run with default flags; every item created once and downloaded.
pub async fn defaults_run(p: &DefaultsParams, batch: &str) -> BenchResult<DefaultsRun> {
    let emu = emulator(EmulatorConfig {
        latency: p.latency,
        jitter: Duration::ZERO,
        concurrency_limit: Some(p.account),
        // The timestamps split the wall time (a few thousand requests).
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
        vec!["--batch".into(), batch.into()],
    )
    .await?;
    let timeline = Timeline::of(&emu.requests(), spawn_ms, now_ms());
    let stats = emu.stats();
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
    Ok(DefaultsRun {
        run,
        timeline,
        stats,
        last_download,
    })
}
