//! The progress ETA against a real resumed run: the in-process engine and
//! emulator (fixed 1 s latency), events stamped as they arrive, the ETA
//! recomputed from those recorded events by the same pure functions the
//! reporter uses, and compared with when the run actually ended.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vidbatch::batch;
use vidbatch::batch::source::Source;
use vidbatch::download::Downloader;
use vidbatch::emulator::{self, EmulatorConfig};
use vidbatch::events::{EventSender, RunEvent};
use vidbatch::provider::kling::{Credentials, KlingConfig, KlingProvider, Style};
use vidbatch::provider::registry::Api;
use vidbatch::report::progress::Tally;
use vidbatch::scheduler::{self, EngineInput, RunOutcome, Stop};
use vidbatch::settings::{EngineSettings, Rate};
use vidbatch::state::{Status, now_ms};

const AK: &str = "eta-test-ak";
const SK: &str = "eta-test-sk-0123456789";

fn manifest_of(dir: &Path, n: usize) -> Source {
    let p = dir.join("m.csv");
    let mut s = String::from("id,prompt\n");
    for i in 0..n {
        s.push_str(&format!("clip-{i},a calm sea at dawn {i}\n"));
    }
    std::fs::write(&p, s).unwrap();
    Source {
        path: p,
        options: Default::default(),
        shard: None,
    }
}

/// One engine run over the batch in `dir`, opened as `vidbatch run` opens it.
async fn run_engine(
    dir: &Path,
    source: Source,
    base_url: &str,
    events: EventSender,
    interrupt: Arc<Stop>,
) -> RunOutcome {
    let scanned = source.scan(Some(dir)).unwrap();
    let prepared = batch::prepare(
        dir,
        &source,
        &scanned,
        batch::Prepare {
            name: "eta-test",
            name_explicit: false,
            new_batch: false,
            resubmit_changed: false,
            api: Api::Kling,
        },
    )
    .await
    .unwrap();
    let provider = Arc::new(KlingProvider::new(KlingConfig {
        base_url: base_url.to_string(),
        style: Style::Official,
        credentials: Credentials::Jwt {
            access_key: AK.into(),
            secret_key: SK.into(),
        },
        request_timeout: Duration::from_secs(10),
        callback_url: None,
    }));
    let settings = EngineSettings {
        concurrency: 2,
        submit_rate: Rate { per_second: 50.0 },
        poll_interval: Duration::from_millis(100),
        max_poll_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(20),
        ..EngineSettings::default()
    };
    let outcome = scheduler::run(EngineInput {
        accounts: vec![scheduler::Account::only(provider, &settings)],
        downloader: Downloader::new(reqwest::Client::new(), 3, Duration::from_millis(20)),
        records: prepared.records,
        jobs: Arc::new(
            batch::jobs::StateJobs::open(dir, Box::new(vidbatch::provider::kling::job)).unwrap(),
        ),
        batch_id: prepared.batch_id,
        batch_dir: dir.to_path_buf(),
        writer: prepared.writer.clone(),
        events,
        settings,
        interrupt,
        max_units: None,
        callbacks: None,
    })
    .await;
    // Everything is committed; the lock goes with `prepared`. (Not joined:
    // after an interrupt the engine's tasks may still hold a writer handle
    // until the runtime ends them, as `vidbatch run` lets it.)
    prepared.writer.flush().await.unwrap();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eta_after_a_resume_is_within_a_factor_of_two_of_the_real_remaining_time() {
    let emu = emulator::start(EmulatorConfig {
        access_key: Some(AK.into()),
        secret_key: Some(SK.into()),
        latency: Duration::from_secs(1),
        jitter: Duration::ZERO,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 8;

    // First run: stop (as Ctrl-C does) once two tasks are created, leaving
    // them in flight in the state file.
    let (events, mut rx) = EventSender::channel();
    let stop = Arc::new(Stop::default());
    let first = tokio::spawn({
        let (dir, url, stop) = (dir.path().to_path_buf(), emu.base_url(), stop.clone());
        let manifest = manifest_of(&dir, n);
        async move { run_engine(&dir, manifest, &url, events, stop).await }
    });
    let mut created = 0;
    while let Some(ev) = rx.recv().await {
        if matches!(
            ev,
            RunEvent::Transition {
                to: Status::Submitted,
                ..
            }
        ) {
            created += 1;
            if created == 2 {
                stop.stop();
            }
        }
    }
    assert!(first.await.unwrap().interrupted);

    // Resume, recording every event with its arrival time.
    let (events, mut rx) = EventSender::channel();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            seen.push((now_ms(), ev));
        }
        seen
    });
    let outcome = run_engine(
        dir.path(),
        manifest_of(dir.path(), n),
        &emu.base_url(),
        events,
        Arc::new(Stop::default()),
    )
    .await;
    let end = now_ms();
    assert!(outcome.all_downloaded(), "{outcome:?}");
    let seen = recorder.await.unwrap();
    match &seen[0].1 {
        RunEvent::Started {
            in_flight_since, ..
        } => assert_eq!(
            in_flight_since.len(),
            2,
            "the resumed tasks come with their age"
        ),
        other => panic!("first event: {other:?}"),
    }

    // Replay: the ETA the reporter showed after each event.
    let mut tally = Tally::default();
    let mut shown = Vec::new();
    for (at, ev) in &seen {
        tally.observe(ev, *at);
        if let Some(eta) = tally.eta {
            shown.push((*at, eta));
        }
    }
    let (first_at, _) = *shown.first().expect("an ETA once a task finished");
    let mid = first_at + (end - first_at) / 2;
    let checks = [
        shown[0],
        *shown.iter().find(|(at, _)| *at >= mid).unwrap_or(&shown[0]),
    ];
    for (at, eta) in checks {
        let actual = Duration::from_millis((end - at) as u64);
        let ratio = eta.as_secs_f64() / actual.as_secs_f64().max(0.001);
        assert!(
            (0.5..=2.0).contains(&ratio),
            "ETA {eta:?} at +{} ms vs {actual:?} actually left (ratio {ratio:.2}); shown: {shown:?}",
            at - seen[0].0
        );
    }
}
