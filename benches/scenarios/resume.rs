//! Scenario 5 (resume latency) and the run that row (f) of issue 12
//! repeats: from spawning `vidbatch run` on a 100k-item batch that is half
//! done to its first request.
//!
//! The state is built with the library as `vidbatch run` would have left
//! it (`batch::prepare`: every item known, the manifest's fingerprint kept),
//! then half the items downloaded with real files of matching size and hash.
//! The times come from the emulator's request log, so the loop that stops
//! the child does not change them.

use std::path::Path;
use std::time::{Duration, Instant};

use vidbatch::emulator::EmulatorConfig;
use vidbatch::provider::registry::Api;
use vidbatch::state::{Status, Update, VideoRecord};

use crate::Size;
use crate::child::{
    BenchResult, emulator, flags, ms_between, now_ms, spawn_run, tempdir, write_manifest,
};
use crate::table::{Table, secs};

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
        // The run checks a downloaded file's first bytes (an error page
        // saved as .mp4 is fetched again), so the file opens like an MP4.
        let body = format!("\0\0\0\x10ftypisom\0\0\0\0moov clip {i}\n");
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

/// Items the state has as downloaded.
fn downloaded_items(batch: &Path) -> BenchResult<usize> {
    let conn = vidbatch::state::open_ro(batch).map_err(|e| format!("open the state: {e}"))?;
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM items WHERE status = 'downloaded'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("count downloaded items: {e}"))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// What one restart measured.
pub struct ResumeRun {
    /// Spawn → the first request of any kind (a poll or a create).
    pub to_first: Duration,
    /// Spawn → the first create.
    pub to_create: Duration,
    /// Building the half-done state (not part of the figure).
    pub build: Duration,
    pub creates: u64,
}

/// Build an `n`-item half-done batch, then start `vidbatch run` on it and
/// stop it at its first create.
pub async fn resume_run(n: usize) -> BenchResult<ResumeRun> {
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
    // A run that took the files for gone would download them again, and
    // hold its creates behind that backlog: the figure would not be a resume.
    let kept = downloaded_items(&batch)?;
    if kept != n / 2 {
        return Err(format!(
            "the run took {} of {} downloaded files for gone",
            n / 2 - kept.min(n / 2),
            n / 2
        ));
    }
    let stats = emu.stats();
    emu.shutdown().await;
    let first = reqs.iter().map(|r| r.at).min().unwrap_or(spawn_ms);
    let first_create = reqs
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.at)
        .min()
        .unwrap_or(spawn_ms);
    Ok(ResumeRun {
        to_first: ms_between(spawn_ms, first),
        to_create: ms_between(spawn_ms, first_create),
        build,
        creates: stats.creates_accepted,
    })
}

/// The state's size: 100k items, 50k of them done (200 in smoke mode).
pub fn resume_items(size: Size) -> usize {
    if size == Size::Smoke { 200 } else { 100_000 }
}

pub async fn scenario_5(size: Size) -> BenchResult<Table> {
    let n = resume_items(size);
    let r = resume_run(n).await?;
    let mut t = Table::new(
        "5. Resume latency",
        format!(
            "{n}-item state, {} downloaded (files checked), {} pending; state built in {}",
            n / 2,
            n - n / 2,
            secs(r.build)
        ),
        size,
    );
    t.judged(
        "spawn → first request",
        secs(r.to_first),
        "< 1 s".into(),
        format!("{:.3}", r.to_first.as_secs_f64()),
        r.to_first < Duration::from_secs(1),
    );
    t.judged(
        "spawn → first create",
        secs(r.to_create),
        "< 1 s".into(),
        format!("{:.3}", r.to_create.as_secs_f64()),
        r.to_create < Duration::from_secs(1),
    );
    t.info("creates before stop", r.creates.to_string());
    Ok(t)
}
