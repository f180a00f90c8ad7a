//! `vidbatch run`: the whole batch, exactly once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;

use super::Exit;
use crate::download::Downloader;
use crate::events::EventSender;
use crate::manifest::{self, Item, Manifest};
use crate::provider::kling::{KlingConfig, KlingProvider};
use crate::report::{self, progress};
use crate::scheduler::{self, EngineInput, RunOutcome, Stop};
use crate::settings::{self, Overrides, RunSettings};
use crate::state::{self, BatchLock, NewItem, Update, Writer};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Manifest file (.yaml, .yml or .csv). Running the same command again resumes.
    pub manifest: PathBuf,
    /// Batch folder for state.db, videos/ and report.csv [default: output/<manifest stem>]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// API root, e.g. https://api-singapore.klingai.com (kling) or https://host/v1/ai/ENDPOINT (kling-gateway)
    #[arg(long, env = "VIDBATCH_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// API style: kling (official, JWT from KLING_ACCESS_KEY + KLING_SECRET_KEY) or
    /// kling-gateway (static bearer key KLING_API_KEY) [default: kling]
    #[arg(long, env = "VIDBATCH_PROVIDER", value_parser = ["kling", "kling-gateway"])]
    pub provider: Option<String>,
    /// Most tasks created and not yet finished at once (the account's concurrency) [default: 10]
    #[arg(long, env = "VIDBATCH_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,
    /// Create requests per time, e.g. 10/s, 300/min [default: 5/s]
    #[arg(long, env = "VIDBATCH_SUBMIT_RATE", value_name = "RATE")]
    pub submit_rate: Option<String>,
    /// First status check after this; later checks back off to 30s [default: 5s]
    #[arg(long, env = "VIDBATCH_POLL_INTERVAL", value_name = "DUR")]
    pub poll_interval: Option<String>,
    /// A task unfinished after this is marked timed_out; a rerun polls it again [default: 60m]
    #[arg(long, value_name = "DUR")]
    pub task_timeout: Option<String>,
    /// Parallel video downloads [default: 8]
    #[arg(long, value_name = "N")]
    pub download_concurrency: Option<usize>,
    /// Base delay of exponential backoff on transient errors and full slots [default: 1s]
    #[arg(long, value_name = "DUR")]
    pub retry_base: Option<String>,
    /// Timeout of one API request [default: 60s]
    #[arg(long, value_name = "DUR")]
    pub request_timeout: Option<String>,
    /// Give items that failed in an earlier run a new attempt (a new paid task each)
    #[arg(long)]
    pub retry_failed: bool,
    /// Start the built-in Kling emulator and run against it (offline demo; no keys needed)
    #[arg(long)]
    pub emulator: bool,
}

pub fn run(args: &RunArgs, quiet: bool) -> anyhow::Result<Exit> {
    // The provider style changes what a valid model name is (gateways use free-form names).
    let options = manifest::LoadOptions {
        provider_style: args.provider.clone(),
    };
    let manifest = manifest::load_with(&args.manifest, &options)?;
    let overrides = Overrides {
        output: args.output.clone(),
        base_url: args.base_url.clone(),
        provider: args.provider.clone(),
        concurrency: args.concurrency,
        submit_rate: args.submit_rate.clone(),
        poll_interval: args.poll_interval.clone(),
        task_timeout: args.task_timeout.clone(),
        download_concurrency: args.download_concurrency,
        retry_base: args.retry_base.clone(),
        request_timeout: args.request_timeout.clone(),
        retry_failed: args.retry_failed,
    };
    let settings = settings::resolve(
        &manifest,
        &overrides,
        &|k| std::env::var(k).ok(),
        args.emulator,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let exit = runtime.block_on(run_batch(
        manifest,
        settings,
        args.emulator,
        progress::Mode::detect(quiet),
    ));
    // Tasks still running (e.g. after Ctrl-C) are dropped here; the state is already flushed.
    runtime.shutdown_timeout(Duration::from_millis(100));
    exit
}

async fn run_batch(
    manifest: Manifest,
    mut settings: RunSettings,
    emulator: bool,
    mode: progress::Mode,
) -> anyhow::Result<Exit> {
    let started_at = std::time::SystemTime::now();
    let batch_dir = settings.batch_dir.clone();
    let _lock = BatchLock::acquire(&batch_dir)?;
    let (conn, batch_id) = state::open_rw(&batch_dir)?;
    let (_writer, writer) = Writer::start(conn);
    // Resuming an unchanged manifest skips the sync: the state already holds
    // every item in this order with these parameters.
    let hashes: Vec<String> = manifest.items.iter().map(params_hash).collect();
    let fingerprint = manifest_fingerprint(&manifest.items, &hashes);
    let synced = state::meta(&state::open_ro(&batch_dir)?, MANIFEST_FINGERPRINT)?;
    if synced.as_deref() != Some(fingerprint.as_str()) {
        // In chunks, each committed before the next is built, so the copy the
        // store needs never holds the whole manifest a second time.
        let mut seq = 0u64;
        for (chunk, chunk_hashes) in manifest
            .items
            .chunks(SYNC_CHUNK)
            .zip(hashes.chunks(SYNC_CHUNK))
        {
            writer
                .send_durable(Update::SyncItems(new_items(chunk, chunk_hashes, seq)))
                .await?;
            seq += chunk.len() as u64;
        }
        writer
            .send_durable(Update::SetMeta {
                key: MANIFEST_FINGERPRINT.into(),
                value: fingerprint,
            })
            .await?;
    }
    drop(hashes);
    // The engine needs each item's progress, not its prompt.
    let records = state::load_items_with(&state::open_ro(&batch_dir)?, false)?;

    let _emulator = if emulator {
        let config = crate::emulator::EmulatorConfig {
            access_key: Some("emulator-ak".into()),
            secret_key: Some("emulator-sk".into()),
            ..crate::emulator::EmulatorConfig::default()
        };
        let handle = crate::emulator::start(config)
            .await
            .context("cannot start the built-in emulator")?;
        settings.base_url = match settings.style {
            crate::provider::kling::Style::Official => handle.base_url(),
            crate::provider::kling::Style::Gateway => handle.gateway_base_url(),
        };
        if mode != progress::Mode::Quiet {
            eprintln!("emulator: built-in Kling emulator at {}", settings.base_url);
        }
        Some(handle)
    } else {
        None
    };

    let provider = Arc::new(KlingProvider::new(KlingConfig {
        base_url: settings.base_url.clone(),
        style: settings.style,
        credentials: settings.credentials.clone(),
        request_timeout: settings.request_timeout,
    }));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let downloader = Downloader::new(http, 5, settings.engine.retry_base);

    let (events, rx) = EventSender::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let reporter = tokio::spawn(progress::report(mode, rx, done_rx));

    let interrupt = Arc::new(Stop::default());
    tokio::spawn({
        let interrupt = interrupt.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.stop();
                if tokio::signal::ctrl_c().await.is_ok() {
                    // Second Ctrl-C: quit now. Every committed transaction is
                    // consistent; the rerun settles anything in the air.
                    std::process::exit(Exit::Interrupted as i32);
                }
            }
        }
    });

    let item_ids: Vec<String> = manifest.items.iter().map(|i| i.id.clone()).collect();
    let outcome = scheduler::run(EngineInput {
        provider,
        downloader,
        items: manifest.items,
        records,
        batch_id,
        batch_dir: batch_dir.clone(),
        writer: writer.clone(),
        events,
        settings: settings.engine.clone(),
        interrupt,
    })
    .await;
    writer.flush().await?;
    let _ = done_tx.send(());
    let _ = reporter.await;

    let exit = exit_for(&outcome);
    report::summary::finish_run(&report::summary::FinishedRun {
        batch_dir: &batch_dir,
        item_ids: &item_ids,
        outcome: &outcome,
        exit_code: exit as i32,
        started_at,
    })?;
    Ok(exit)
}

/// The exit code a finished run earns.
pub fn exit_for(outcome: &RunOutcome) -> Exit {
    if outcome.interrupted {
        Exit::Interrupted
    } else if outcome.aborted.is_some() {
        Exit::Aborted
    } else if outcome.all_downloaded() {
        Exit::Success
    } else {
        Exit::ItemsFailed
    }
}

/// Items per `SyncItems` update.
const SYNC_CHUNK: usize = 25_000;

fn new_items(items: &[Item], hashes: &[String], first_seq: u64) -> Vec<NewItem> {
    items
        .iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (it, hash))| NewItem {
            id: it.id.clone(),
            seq: first_seq + i as u64,
            kind: it.kind.as_str().to_string(),
            prompt: it.prompt.clone(),
            params_hash: hash.clone(),
            params: Some(manifest::params::settings_json(it)),
            est_units: manifest::params::estimated_units(it),
        })
        .collect()
}

/// `meta` key of the fingerprint of the manifest last synced into the state.
const MANIFEST_FINGERPRINT: &str = "manifest_fingerprint";

/// The manifest as the state sees it: every item's id and parameters, in order.
fn manifest_fingerprint(items: &[Item], hashes: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (it, hash) in items.iter().zip(hashes) {
        h.update(it.id.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        h.update([0xff]);
    }
    hex::encode(h.finalize())
}

/// A fingerprint of what the item asks for (kept in the state to tell what
/// was submitted). Fields are hashed directly, each tagged and terminated, so
/// 100,000 items cost milliseconds.
fn params_hash(it: &Item) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let image = |i: &Option<manifest::ImageRef>| match i {
        Some(manifest::ImageRef::Path(p)) => Some(format!("path:{}", p.display())),
        Some(manifest::ImageRef::Url(u)) => Some(format!("url:{u}")),
        None => None,
    };
    let camera = it
        .camera_control
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    let cfg = it.cfg_scale.map(|c| c.to_bits().to_string());
    let fields = [
        Some(it.kind.as_str().to_string()),
        it.prompt.clone(),
        it.negative_prompt.clone(),
        image(&it.image),
        image(&it.image_tail),
        it.model_name.clone(),
        it.mode.clone(),
        it.duration.clone(),
        it.aspect_ratio.clone(),
        cfg,
        camera,
        it.sound.clone(),
    ];
    for f in &fields {
        match f {
            Some(v) => {
                h.update([1]);
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        }
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..16])
}
