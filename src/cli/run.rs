//! `vidbatch run`: the whole batch, exactly once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;

use super::Exit;
use crate::batch::{self, changes};
use crate::download::Downloader;
use crate::events::EventSender;
use crate::manifest;
use crate::report::{self, progress};
use crate::scheduler::{self, EngineInput, RunOutcome, Stop};
use crate::settings::{self, Overrides, RunSettings};
use crate::state::{Update, Writer};
use crate::storage::{self, remote::Remote};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Manifest file (.yaml, .yml or .csv). Running the same command again resumes.
    pub manifest: PathBuf,
    /// Batch folder for state.db, videos/ and report.csv, or s3://bucket/prefix
    /// [default: output/<manifest stem>]
    #[arg(short, long, value_name = "DIR|URL")]
    pub output: Option<PathBuf>,
    /// Local working folder (state.db, staged videos) of an s3:// --output
    /// [default: $XDG_CACHE_HOME/vidbatch/s3/<bucket>/<prefix>]
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// API root, e.g. https://api-singapore.klingai.com (kling) or https://host/v1/ai/ENDPOINT (kling-gateway)
    /// (not with --emulator, which brings its own; VIDBATCH_BASE_URL counts too)
    #[arg(
        long,
        env = "VIDBATCH_BASE_URL",
        value_name = "URL",
        conflicts_with = "emulator"
    )]
    pub base_url: Option<String>,
    /// API style: kling (official, JWT from KLING_ACCESS_KEY + KLING_SECRET_KEY) or
    /// kling-gateway (static bearer key KLING_API_KEY) [default: kling]
    #[arg(long, env = "VIDBATCH_PROVIDER", value_parser = ["kling", "kling-gateway", "fal"])]
    pub provider: Option<String>,
    /// Most tasks created and not yet finished at once (the account's concurrency), or
    /// auto: find it (start low, grow while creates succeed, settle where the account says
    /// "full"; remembered for the next run of the batch) [default: auto]
    #[arg(long, env = "VIDBATCH_CONCURRENCY", value_name = "N|auto")]
    pub concurrency: Option<String>,
    /// Create requests per time, e.g. 10/s, 300/min, or auto: from 20/s, faster while creates
    /// succeed (up to 50/s), half on "too fast" [default: auto]
    #[arg(long, env = "VIDBATCH_SUBMIT_RATE", value_name = "RATE")]
    pub submit_rate: Option<String>,
    /// First status check after this; later checks back off to 30s [default: 5s]
    #[arg(long, env = "VIDBATCH_POLL_INTERVAL", value_name = "DUR")]
    pub poll_interval: Option<String>,
    /// A task unfinished after this is marked timed_out; a rerun polls it again [default: 60m]
    #[arg(long, value_name = "DUR")]
    pub task_timeout: Option<String>,
    /// Parallel video downloads, or auto: 8, plus one for each finished video waiting
    /// for a download, at most 64 [default: auto]
    #[arg(long, value_name = "N|auto")]
    pub download_concurrency: Option<String>,
    /// Base delay of exponential backoff on transient errors and full slots [default: 1s]
    #[arg(long, value_name = "DUR")]
    pub retry_base: Option<String>,
    /// Timeout of one API request [default: 60s]
    #[arg(long, value_name = "DUR")]
    pub request_timeout: Option<String>,
    /// Give items that failed in an earlier run a new attempt (a new paid task each)
    #[arg(long)]
    pub retry_failed: bool,
    /// Send again the items whose create outcome is unknown (a provider that cannot
    /// look a task up lost the answer): a new paid task each if the lost one was made
    #[arg(long)]
    pub resubmit_unknown: bool,
    /// Create again the items edited in the manifest after they were submitted
    /// (a new paid task each; the earlier videos move to videos/replaced/)
    #[arg(long)]
    pub resubmit_changed: bool,
    /// Largest video accepted, e.g. 500MB, 4GiB; a larger body is refused [default: 4GiB]
    #[arg(long, env = "VIDBATCH_MAX_VIDEO_SIZE", value_name = "SIZE")]
    pub max_video_size: Option<String>,
    /// Longest one video download may take, every retry included [default: 30m]
    #[arg(long, value_name = "DUR")]
    pub download_timeout: Option<String>,
    /// A download slower than this is stalled and retried: SIZE/DUR, or off [default: 16KiB/30s]
    #[arg(long, value_name = "SIZE/DUR")]
    pub download_min_speed: Option<String>,
    /// Public address the provider calls when a task changes (your host, a port forward
    /// or a tunnel to --webhook-listen); tasks are noticed at once instead of at the next
    /// poll, which goes on as before (Kling's callback_url, fal's fal_webhook)
    #[arg(long, env = "VIDBATCH_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Where to listen for those calls [default: 127.0.0.1:8787]
    #[arg(long, env = "VIDBATCH_WEBHOOK_LISTEN", value_name = "ADDR")]
    pub webhook_listen: Option<String>,
    /// Start the built-in Kling emulator and run against it (offline demo; no keys needed)
    #[arg(long)]
    pub emulator: bool,
    /// The batch's name; every task's key derives from it, so the same name finds the
    /// same tasks from any folder or machine [default: the manifest's file stem]
    #[arg(long, env = "VIDBATCH_BATCH", value_name = "NAME")]
    pub batch: Option<String>,
    /// Generate (and pay for) every item again, as a new batch named <name>-<UTC time>
    /// in a new folder
    #[arg(long, conflicts_with = "batch")]
    pub new_batch: bool,
    /// Spend cap: never submit an item whose estimated units would take the batch's
    /// estimated-plus-charged total past N; items held back stay pending (exit 1)
    #[arg(long, env = "VIDBATCH_MAX_UNITS", value_name = "N")]
    pub max_units: Option<f64>,
    /// Spread the batch over several accounts of the provider, named in FILE with the
    /// environment variables holding their credentials (see README: Account pools)
    #[arg(
        long,
        env = "VIDBATCH_ACCOUNTS",
        value_name = "FILE",
        conflicts_with = "emulator"
    )]
    pub accounts: Option<PathBuf>,
    /// Run only shard i of N: the items whose id hashes to i (0 ≤ i < N), in their own
    /// folder output/<stem>/shard-<i>-of-<N>; auto/N takes i from JOB_COMPLETION_INDEX
    /// (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID (Slurm array). See docs/scale.md
    #[arg(
        long,
        env = "VIDBATCH_SHARD",
        value_name = "i/N",
        conflicts_with = "new_batch"
    )]
    pub shard: Option<String>,
}

pub fn run(args: &RunArgs, quiet: bool) -> anyhow::Result<Exit> {
    let shard = args
        .shard
        .as_deref()
        .map(|spec| crate::shard::Shard::parse(spec, &|k| std::env::var(k).ok()))
        .transpose()?;
    // An object-store --output is checked (nothing sent) before anything else;
    // the batch then works in a local folder as always.
    let (output, remote) = storage::resolve(
        args.output.as_deref(),
        args.state.as_deref(),
        shard.map(|s| s.dir_name()).as_deref(),
        &|k| std::env::var(k).ok(),
    )?;
    // The provider style changes what a valid model name is (gateways use free-form names).
    let options = manifest::LoadOptions {
        provider_style: args.provider.clone(),
    };
    let pool = super::pool::load(args.accounts.as_deref())?;
    // A shard runs its items only, under the manifest's batch name (same task keys).
    let source = batch::source::Source {
        path: args.manifest.clone(),
        options,
        shard,
    };
    let overrides = Overrides {
        output: output.or_else(|| {
            shard.map(|s| settings::default_batch_dir(&args.manifest).join(s.dir_name()))
        }),
        base_url: args.base_url.clone(),
        provider: args.provider.clone(),
        concurrency: args.concurrency.clone(),
        submit_rate: args.submit_rate.clone(),
        poll_interval: args.poll_interval.clone(),
        task_timeout: args.task_timeout.clone(),
        download_concurrency: args.download_concurrency.clone(),
        retry_base: args.retry_base.clone(),
        request_timeout: args.request_timeout.clone(),
        retry_failed: args.retry_failed,
        resubmit_unknown: args.resubmit_unknown,
        batch: args.batch.clone(),
        new_batch: args.new_batch,
        max_units: args.max_units,
        max_video_size: args.max_video_size.clone(),
        download_timeout: args.download_timeout.clone(),
        download_min_speed: args.download_min_speed.clone(),
        pool: pool.is_some(),
        webhook_url: args.webhook_url.clone(),
        webhook_listen: args.webhook_listen.clone(),
    };
    // Checked item by item without keeping them; not read at all when the
    // batch's state holds exactly these files (a resume).
    let scanned = source.scan(seal_dir(&overrides, &args.manifest).as_deref())?;
    if let Some(selection) = &scanned.selection
        && !quiet
    {
        crate::errln!(
            "shard {}: {} of the manifest's {} items",
            selection.shard,
            scanned.items,
            selection.manifest_items
        );
    }
    let settings = settings::resolve(
        &scanned.head,
        &overrides,
        &|k| std::env::var(k).ok(),
        args.emulator,
    )?;
    // The certificate store is read while the state is prepared.
    crate::provider::tls::warm_up();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut writer_thread = None;
    let launch = Launch {
        source,
        scanned,
        settings,
        pool,
        emulator: args.emulator,
        mode: progress::Mode::detect(quiet),
        resubmit_changed: args.resubmit_changed,
        remote,
    };
    let exit = runtime.block_on(run_batch(launch, &mut writer_thread));
    // Tasks still running (e.g. after Ctrl-C) are dropped here; the state is already flushed.
    runtime.shutdown_timeout(Duration::from_millis(100));
    // With every handle gone the writer checkpoints the WAL into state.db and
    // closes it: the folder holds one complete file.
    if let Some(w) = writer_thread {
        w.join();
    }
    exit
}

/// Where the state of the batch a run continues would be, when it can hold
/// a seal of the manifest (`--new-batch` always starts a new folder).
fn seal_dir(overrides: &Overrides, manifest: &std::path::Path) -> Option<PathBuf> {
    if overrides.new_batch {
        return None;
    }
    Some(
        overrides
            .output
            .clone()
            .unwrap_or_else(|| settings::default_batch_dir(manifest)),
    )
}

/// What one run of a batch starts from, parsed and checked.
struct Launch {
    source: batch::source::Source,
    scanned: batch::source::Scanned,
    settings: RunSettings,
    /// The accounts file's accounts, when one was given.
    pool: Option<Vec<crate::accounts::AccountSpec>>,
    emulator: bool,
    mode: progress::Mode,
    resubmit_changed: bool,
    /// The object store the batch is copied to (`--output s3://…`).
    remote: Option<Remote>,
}

async fn run_batch(launch: Launch, writer_thread: &mut Option<Writer>) -> anyhow::Result<Exit> {
    let Launch {
        source,
        scanned,
        mut settings,
        pool,
        emulator,
        mode,
        resubmit_changed: args_resubmit_changed,
        remote,
    } = launch;
    if let Some(remote) = &remote {
        storage::remote::probe(remote).await?;
    }
    let started_at = std::time::SystemTime::now();
    let batch_dir = settings.batch_dir.clone();
    let (settings_new_batch, batch_name) = (settings.new_batch, settings.batch_name.clone());
    // Lock, state (or its rebuild), manifest sync, edits, records: one
    // owner, the same for the tests and the benchmarks.
    let prepared = match batch::prepare(
        &batch_dir,
        &source,
        &scanned,
        batch::Prepare {
            name: &settings.batch_name,
            name_explicit: settings.batch_name_explicit,
            new_batch: settings.new_batch,
            resubmit_changed: args_resubmit_changed,
            api: settings.api,
        },
    )
    .await
    {
        Ok(prepared) => prepared,
        // Said as any manifest problem is (every problem listed, exit 2).
        Err(batch::BatchError::Manifest(e)) => return Err(e.into()),
        Err(e) => return Err(e.into()),
    };
    let _lock = prepared.lock;
    *writer_thread = Some(prepared.writer_thread);
    let (writer, batch_id, records) = (prepared.writer, prepared.batch_id, prepared.records);
    let (rebuilt, changed, resubmitted) =
        (prepared.rebuilt, prepared.changed, prepared.resubmitted);
    if let Some(rebuilt) = &rebuilt
        && mode != progress::Mode::Quiet
    {
        crate::errln!(
            "note: {} held a batch ({}) but no usable state.db; rebuilding it: every item's task is looked up at the provider before anything is created, so nothing is paid twice{}",
            batch_dir.display(),
            rebuilt.evidence.join(", "),
            if rebuilt.moved_aside.is_empty() {
                String::new()
            } else {
                format!(
                    " (unusable state files kept as {})",
                    rebuilt
                        .moved_aside
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    // The engine needs each item's progress, not its prompt; and where the
    // batch's automatic bounds settled last time.
    let learned = super::pool::learned(&crate::state::open_ro(&batch_dir)?)?;

    let _emulator = if emulator {
        Some(start_emulator(&mut settings, mode).await?)
    } else {
        None
    };
    let env = |k: &str| std::env::var(k).ok();
    let accounts = super::pool::accounts(&settings, pool.as_deref(), &records, &learned, &env)?;
    // Which API and where: `vidbatch cancel` talks to the same one (never a secret).
    for (key, value) in [
        ("provider", provider_name(&settings)),
        ("base_url", settings.base_url.clone()),
    ] {
        writer.send(Update::SetMeta {
            key: key.into(),
            value,
        })?;
    }
    let http = crate::download::http_client().context("cannot build the HTTP client")?;
    let downloader =
        Downloader::new(http, 5, settings.engine.retry_base).with_limits(settings.download);

    let interrupt = Arc::new(Stop::default());
    let signalled = Arc::new(std::sync::OnceLock::<Exit>::new());
    spawn_signal_handler(interrupt.clone(), signalled.clone());

    let (events, rx) = EventSender::channel();
    // An object-store batch uploads each video as soon as it is downloaded.
    let uploads = remote.clone().map(|remote| {
        storage::pipeline::Pipeline::start(
            remote,
            batch_dir.clone(),
            writer.clone(),
            settings.engine.download_pool.base(),
            interrupt.clone(),
        )
    });
    let rx = match &uploads {
        Some(pipeline) => pipeline.tee(rx),
        None => rx,
    };
    let (done_tx, done_rx) = oneshot::channel();
    let reporter = tokio::spawn(progress::report(mode, rx, done_rx));

    // Each item in its provider's request shape, read from the state when
    // it is sent; the engine sees only jobs.
    let provider = accounts[0].provider.clone();
    let jobs = Arc::new(batch::jobs::StateJobs::open(
        &batch_dir,
        Box::new(move |item| provider.job(item)),
    )?);
    // Callbacks, where asked for: the listener reads the provider's bodies.
    let (listener, callbacks) = match &settings.webhook {
        Some(hook) => {
            let provider = accounts[0].provider.clone();
            let parse: crate::webhook::Parse = Arc::new(move |body| {
                crate::provider::Provider::parse_callback(provider.as_ref(), body)
            });
            let (listener, rx) =
                crate::webhook::start(hook.listen, hook.token().to_string(), parse).await?;
            if mode != progress::Mode::Quiet {
                crate::errln!(
                    "listening on {} for the provider's callbacks to {}/…",
                    listener.addr(),
                    hook.public_url()
                );
            }
            (Some(listener), Some(rx))
        }
        None => (None, None),
    };
    let outcome = scheduler::run(EngineInput {
        accounts,
        downloader,
        records,
        jobs,
        batch_id,
        batch_dir: batch_dir.clone(),
        writer: writer.clone(),
        events,
        settings: settings.engine.clone(),
        interrupt: interrupt.clone(),
        max_units: settings.max_units,
        callbacks,
    })
    .await;
    if let Some(listener) = listener {
        listener.shutdown();
    }
    super::pool::remember(&writer, learned, &outcome.learned)?;
    writer.flush().await?;
    let _ = done_tx.send(());
    let _ = reporter.await;
    let uploads = match (uploads, &remote) {
        (Some(pipeline), Some(remote)) => {
            let tally = pipeline.finish().await?;
            crate::outln!("{}", tally.line(remote));
            Some(tally)
        }
        _ => None,
    };

    let exit = match (exit_for(&outcome), signalled.get()) {
        (Exit::Interrupted, Some(signal)) => *signal,
        // Stopped during the upload stage: as interrupted as the engine would be.
        (_, Some(signal)) if uploads.as_ref().is_some_and(|t| t.interrupted) => *signal,
        (Exit::Success, _) if uploads.as_ref().is_some_and(|t| t.failed > 0) => Exit::ItemsFailed,
        (exit, _) => exit,
    };
    if settings_new_batch {
        crate::outln!(
            "new batch `{batch_name}`: every item was generated (and paid for) again, as --new-batch asked"
        );
    }
    changes::print_changed(&changed, &resubmitted);
    if let Some(cap) = &outcome.cap {
        let held = cap.held_over_cap + cap.held_unpriced;
        crate::outln!(
            "spend cap --max-units {}: {:.1} units estimated+charged{}",
            cap.max_units,
            cap.committed_units,
            if held > 0 {
                format!(
                    "; {held} item(s) held back and still pending ({} over the cap, {} without a known price): raise the cap and run the same command to submit them",
                    cap.held_over_cap, cap.held_unpriced
                )
            } else {
                String::new()
            }
        );
    }
    report::summary::finish_run(&report::summary::FinishedRun {
        batch_dir: &batch_dir,
        outcome: &outcome,
        exit_code: exit as i32,
        started_at,
        batch: report::summary::BatchNotes {
            name: batch_name,
            new_batch: settings_new_batch,
            rebuilt_state: rebuilt.is_some(),
            changed_kept: changed
                .iter()
                .map(|c| c.id.clone())
                .filter(|id| !resubmitted.contains(id))
                .collect(),
            resubmitted,
        },
    })?;
    if let Some(remote) = &remote {
        storage::upload::batch_files(remote, &batch_dir).await?;
    }
    Ok(exit)
}

/// The built-in emulator of the batch's API, held (not used) so that it
/// lives as long as the run; dropping it stops the server.
type BuiltIn = Box<dyn std::any::Any + Send>;

/// Start the built-in emulator of `settings.api` and point the run at it.
async fn start_emulator(
    settings: &mut RunSettings,
    mode: progress::Mode,
) -> anyhow::Result<BuiltIn> {
    let (handle, name) = match settings.api {
        settings::Api::Kling => {
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
            (Box::new(handle) as BuiltIn, "Kling")
        }
        settings::Api::Fal => {
            let config = crate::emulator::fal::FalConfig {
                fal_key: Some("emulator-fal-key".into()),
                ..crate::emulator::fal::FalConfig::default()
            };
            let handle = crate::emulator::fal::start(config)
                .await
                .context("cannot start the built-in emulator")?;
            settings.base_url = handle.base_url();
            (Box::new(handle) as BuiltIn, "fal queue")
        }
    };
    if mode != progress::Mode::Quiet {
        crate::errln!(
            "emulator: built-in {name} emulator at {}",
            settings.base_url
        );
    }
    Ok(handle)
}

/// The `--provider` name of `settings`' choice.
fn provider_name(settings: &RunSettings) -> String {
    match (settings.api, settings.style) {
        (settings::Api::Fal, _) => "fal",
        (settings::Api::Kling, crate::provider::kling::Style::Official) => "kling",
        (settings::Api::Kling, crate::provider::kling::Style::Gateway) => "kling-gateway",
    }
    .to_string()
}

/// Ctrl-C, SIGTERM (`docker stop`, systemd, `timeout`) and SIGHUP all stop
/// the run the same way: no new creates, state flushed, report written, exit
/// 130 / 143 / 129. A second signal quits at once: every committed
/// transaction is consistent and the rerun settles anything in the air.
fn spawn_signal_handler(interrupt: Arc<Stop>, signalled: Arc<std::sync::OnceLock<Exit>>) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let exit = next_signal().await;
            seen += 1;
            let _ = signalled.set(exit);
            interrupt.stop();
            if seen >= 2 {
                std::process::exit(exit as i32);
            }
        }
    });
}

#[cfg(unix)]
async fn next_signal() -> Exit {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Exit::Interrupted;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Exit::Interrupted,
        _ = term.recv() => Exit::Terminated,
        _ = hup.recv() => Exit::HungUp,
    }
}

#[cfg(not(unix))]
async fn next_signal() -> Exit {
    let _ = tokio::signal::ctrl_c().await;
    Exit::Interrupted
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
