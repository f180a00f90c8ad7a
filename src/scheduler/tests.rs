//! Engine behaviour against a scripted in-memory provider and a local file
//! server: the exactly-once protocol, slot pressure, aborts, resume.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::manifest::{Item, Kind};
use crate::provider::{
    Capabilities, Created, ErrorClass, ProviderError, RemoteStatus, TaskSnapshot, Video,
};
use crate::state::{self, NewItem, Update, Writer};

/// What the next create call does (then the script moves on).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Create the task but lose the answer.
    AmbiguousCreated,
    /// Lose the request before it creates anything.
    AmbiguousLost,
    SlotFull,
    RetryLater,
    Code(i64, ErrorClass),
}

#[derive(Default)]
struct FakeState {
    tasks: HashMap<String, (String, Kind, u32, bool)>, // task_id -> (ext id, kind, polls, fails)
    by_ext: HashMap<String, String>,
    create_posts: Vec<String>,
    script: VecDeque<Fault>,
    next: u64,
    queries: u64,
    lists: u64,
    slot_limit: Option<usize>,
    max_running: usize,
    /// POSTs whose external id already had a task when they arrived.
    duplicate_posts: usize,
    /// Hand out URLs that answer 403 this many times before a good one.
    expired_urls: u32,
    urls_handed: u32,
    /// The list endpoint answers 404/1202.
    list_broken: bool,
    /// Behave like a queue provider: no lookup by our key.
    no_lookup: bool,
}

struct Fake {
    s: Mutex<FakeState>,
    polls_to_finish: u32,
    video_base: String,
}

fn perr(class: ErrorClass, code: Option<i64>) -> ProviderError {
    ProviderError {
        class,
        code,
        http_status: None,
        message: format!("scripted {class:?}"),
        request_id: None,
        retry_after: None,
        // Like a real provider, the fake says what to do about a fatal code.
        hint: (code == Some(1102)).then(|| {
            "the resource pack is used up or expired; buy units, then rerun to continue".into()
        }),
    }
}

impl Fake {
    fn new(video_base: &str, polls_to_finish: u32) -> Fake {
        Fake {
            s: Mutex::new(FakeState::default()),
            polls_to_finish,
            video_base: video_base.into(),
        }
    }
    fn script(&self, faults: &[Fault]) {
        self.s.lock().unwrap().script.extend(faults.iter().copied());
    }
    fn running(s: &FakeState, polls_to_finish: u32) -> usize {
        s.tasks.values().filter(|t| t.2 < polls_to_finish).count()
    }
    fn snapshot(&self, task_id: &str, t: &(String, Kind, u32, bool)) -> TaskSnapshot {
        self.snapshot_with(task_id, t, "")
    }
    fn snapshot_with(
        &self,
        task_id: &str,
        t: &(String, Kind, u32, bool),
        prefix: &str,
    ) -> TaskSnapshot {
        let status = if t.2 < self.polls_to_finish {
            if t.2 == 0 {
                RemoteStatus::Submitted
            } else {
                RemoteStatus::Processing
            }
        } else if t.3 {
            RemoteStatus::Failed {
                message: "content risk".into(),
            }
        } else {
            RemoteStatus::Succeeded {
                videos: vec![Video {
                    id: format!("v{task_id}"),
                    url: format!("{}/{prefix}{task_id}.mp4", self.video_base),
                    duration: Some("5.1".into()),
                }],
                units: Some("1".into()),
            }
        };
        TaskSnapshot {
            task_id: task_id.into(),
            external_task_id: Some(t.0.clone()),
            status,
            request_id: None,
        }
    }
    /// POSTs made with an external id that already had a task: must stay 0.
    fn duplicates(&self) -> usize {
        self.s.lock().unwrap().duplicate_posts
    }
}

impl Provider for Fake {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list_page_size: Some(500),
            lookup_by_key: !self.s.lock().unwrap().no_lookup,
            idempotency_key: true,
            cancel: false,
        }
    }

    async fn create(&self, item: &Item, ext: &str) -> Result<Created, ProviderError> {
        let mut s = self.s.lock().unwrap();
        s.create_posts.push(ext.to_string());
        if s.by_ext.contains_key(ext) {
            s.duplicate_posts += 1;
            return Err(perr(ErrorClass::ItemInvalid, Some(1201)));
        }
        let fault = s.script.pop_front();
        if let Some(limit) = s.slot_limit
            && Self::running(&s, self.polls_to_finish) >= limit
        {
            return Err(perr(ErrorClass::SlotFull, Some(1303)));
        }
        let make = |s: &mut FakeState| {
            s.next += 1;
            let id = format!("{:018}", s.next);
            let fails = item.prompt.as_deref().is_some_and(|p| p.contains("FAIL"));
            s.tasks
                .insert(id.clone(), (ext.to_string(), item.kind, 0, fails));
            s.by_ext.insert(ext.to_string(), id.clone());
            let running = Self::running(s, self.polls_to_finish);
            s.max_running = s.max_running.max(running);
            id
        };
        match fault {
            None => Ok(Created {
                task_id: make(&mut s),
                request_id: Some("req".into()),
            }),
            Some(Fault::AmbiguousCreated) => {
                make(&mut s);
                Err(perr(ErrorClass::Ambiguous, None))
            }
            Some(Fault::AmbiguousLost) => Err(perr(ErrorClass::Ambiguous, Some(5000))),
            Some(Fault::SlotFull) => Err(perr(ErrorClass::SlotFull, Some(1303))),
            Some(Fault::RetryLater) => Err(perr(ErrorClass::RetryLater, Some(1302))),
            Some(Fault::Code(code, class)) => Err(perr(class, Some(code))),
        }
    }

    async fn query(&self, _kind: Kind, task_id: &str) -> Result<TaskSnapshot, ProviderError> {
        let mut s = self.s.lock().unwrap();
        s.queries += 1;
        let Some(t) = s.tasks.get_mut(task_id) else {
            return Err(perr(ErrorClass::ItemInvalid, Some(1203)));
        };
        t.2 += 1;
        let t = t.clone();
        let prefix = if t.2 >= self.polls_to_finish && s.urls_handed < s.expired_urls {
            s.urls_handed += 1;
            "expired-"
        } else {
            ""
        };
        Ok(self.snapshot_with(task_id, &t, prefix))
    }

    async fn find_by_external_id(
        &self,
        _kind: Kind,
        ext: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        let s = self.s.lock().unwrap();
        Ok(s.by_ext.get(ext).map(|id| self.snapshot(id, &s.tasks[id])))
    }

    async fn list(
        &self,
        kind: Kind,
        page: u32,
        size: u32,
    ) -> Result<Vec<TaskSnapshot>, ProviderError> {
        let mut s = self.s.lock().unwrap();
        s.lists += 1;
        if s.list_broken {
            return Err(perr(ErrorClass::ItemInvalid, Some(1202)));
        }
        let mut ids: Vec<String> = s
            .tasks
            .iter()
            .filter(|(_, t)| t.1 == kind)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_by(|a, b| b.cmp(a)); // newest first
        let page: Vec<String> = ids
            .into_iter()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .collect();
        let mut out = Vec::new();
        for id in page {
            let t = s.tasks.get_mut(&id).unwrap();
            t.2 += 1;
            let t = t.clone();
            out.push(self.snapshot(&id, &t));
        }
        Ok(out)
    }
}

/// Serves `/<name>` with bytes derived from the name, after an MP4 `ftyp`
/// box (downloads refuse bodies that are not a video).
async fn file_server() -> String {
    use axum::{Router, extract::Path as AxPath, routing::get};
    let app = Router::new().route(
        "/{name}",
        get(|AxPath(name): AxPath<String>| async move {
            if name.starts_with("expired-") {
                return Err(axum::http::StatusCode::FORBIDDEN);
            }
            let mut body = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
            body.extend(format!("video bytes of {name}").repeat(100).into_bytes());
            Ok(([(axum::http::header::CONTENT_TYPE, "video/mp4")], body))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn t2v(id: &str, prompt: &str) -> Item {
    Item {
        id: id.into(),
        origin: format!("test:{id}"),
        kind: Kind::Text2Video,
        prompt: Some(prompt.into()),
        negative_prompt: None,
        image: None,
        image_tail: None,
        model_name: None,
        mode: None,
        duration: None,
        aspect_ratio: None,
        cfg_scale: None,
        camera_control: None,
        sound: None,
        extra: None,
    }
}

fn fast() -> EngineSettings {
    EngineSettings {
        concurrency: 4,
        submit_rate: crate::settings::Rate { per_second: 1000.0 },
        poll_interval: Duration::from_millis(5),
        max_poll_interval: Duration::from_millis(20),
        task_timeout: Duration::from_secs(30),
        download_concurrency: 4,
        retry_base: Duration::from_millis(2),
        list_threshold: 1000,
        retry_failed: false,
        resubmit_unknown: false,
    }
}

struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, fake: Arc<Fake>, items: Vec<Item>, settings: EngineSettings) -> RunOutcome {
        self.run_with(fake, items, settings, Arc::new(Stop::default()))
            .await
    }

    async fn run_with(
        &self,
        fake: Arc<Fake>,
        items: Vec<Item>,
        settings: EngineSettings,
        interrupt: Arc<Stop>,
    ) -> RunOutcome {
        let (conn, batch_id) = state::open_rw(self.dir.path()).unwrap();
        let (_w, writer) = Writer::start(conn);
        let new: Vec<NewItem> = items
            .iter()
            .enumerate()
            .map(|(i, it)| NewItem {
                id: it.id.clone(),
                seq: i as u64,
                kind: "text2video".into(),
                prompt: it.prompt.clone(),
                params_hash: "h".into(),
                ..NewItem::default()
            })
            .collect();
        writer.send_durable(Update::SyncItems(new)).await.unwrap();
        let records = state::load_items(&state::open_ro(self.dir.path()).unwrap()).unwrap();
        let downloader = Downloader::new(reqwest::Client::new(), 3, Duration::from_millis(2));
        run(EngineInput {
            provider: fake,
            downloader,
            items,
            records,
            batch_id,
            batch_dir: self.dir.path().to_path_buf(),
            writer,
            events: EventSender::none(),
            settings,
            interrupt,
            spend: None,
        })
        .await
    }

    fn records(&self) -> Vec<ItemRecord> {
        state::load_items(&state::open_ro(self.dir.path()).unwrap()).unwrap()
    }
}

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| t2v(&format!("item{i}"), &format!("prompt {i}")))
        .collect()
}

#[tokio::test]
async fn every_item_is_created_once_polled_and_downloaded() {
    let fake = Arc::new(Fake::new(&file_server().await, 2));
    let h = Harness::new();
    let out = h.run(fake.clone(), items(10), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake.s.lock().unwrap().create_posts.len(), 10);
    for r in h.records() {
        assert_eq!(r.status(), Status::Downloaded);
        let v = &r.videos[0];
        let bytes = std::fs::read(h.dir.path().join(v.path.as_ref().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, v.bytes.unwrap());
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            *v.sha256.as_ref().unwrap()
        );
    }
    assert!(
        !h.dir.path().join("videos").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "part"))
    );
}

#[tokio::test]
async fn ambiguous_creates_are_settled_by_external_id_never_duplicated() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[
        Fault::AmbiguousCreated,
        Fault::AmbiguousLost,
        Fault::AmbiguousCreated,
        Fault::AmbiguousLost,
    ]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(6), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake.duplicates(), 0);
    let s = fake.s.lock().unwrap();
    assert_eq!(s.by_ext.len(), 6, "one task per item");
    assert_eq!(
        s.create_posts.len(),
        8,
        "the two lost requests were sent again, the created ones were adopted"
    );
}

#[tokio::test]
async fn a_full_account_slows_the_batch_but_never_fails_an_item() {
    let fake = Arc::new(Fake::new(&file_server().await, 3));
    fake.s.lock().unwrap().slot_limit = Some(2);
    let h = Harness::new();
    let out = h
        .run(
            fake.clone(),
            items(8),
            EngineSettings {
                concurrency: 6,
                ..fast()
            },
        )
        .await;
    assert!(out.all_downloaded(), "{out:?}");
    assert!(out.failures.is_empty());
    assert_eq!(fake.duplicates(), 0);
    assert!(fake.s.lock().unwrap().max_running <= 2);
}

#[tokio::test]
async fn transient_errors_back_off_and_succeed() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::RetryLater, Fault::RetryLater, Fault::SlotFull]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(3), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
}

#[tokio::test]
async fn an_invalid_item_fails_alone_and_the_batch_goes_on() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::Code(1301, ErrorClass::ItemInvalid)]);
    let h = Harness::new();
    let mut its = items(4);
    its.push(t2v("risky", "please FAIL remotely"));
    let out = h
        .run(
            fake.clone(),
            its,
            EngineSettings {
                concurrency: 1,
                ..fast()
            },
        )
        .await;
    assert_eq!(out.counts.get(&Status::Failed), Some(&2), "{out:?}");
    assert_eq!(out.counts.get(&Status::Downloaded), Some(&3));
    let recs = h.records();
    let rejected = recs.iter().find(|r| r.id == "item0").unwrap();
    assert_eq!(
        (rejected.status(), rejected.error_code),
        (Status::Failed, Some(1301))
    );
    let risky = recs.iter().find(|r| r.id == "risky").unwrap();
    assert_eq!(risky.error_message.as_deref(), Some("content risk"));
}

#[tokio::test]
async fn balance_exhausted_stops_submitting_and_finishes_what_is_in_flight() {
    let fake = Arc::new(Fake::new(&file_server().await, 2));
    fake.script(&[Fault::Code(1102, ErrorClass::BatchFatal)]);
    let h = Harness::new();
    let out = h
        .run(
            fake.clone(),
            items(5),
            EngineSettings {
                concurrency: 1,
                ..fast()
            },
        )
        .await;
    assert!(
        out.aborted
            .as_deref()
            .unwrap_or("")
            .contains("resource pack"),
        "{out:?}"
    );
    assert_eq!(out.counts.get(&Status::Pending), Some(&5));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        1,
        "no create after the fatal answer"
    );
}

#[tokio::test]
async fn resume_settles_interrupted_creates_before_submitting_anything_new() {
    let server = file_server().await;
    let fake = Arc::new(Fake::new(&server, 1));
    let h = Harness::new();
    // An earlier run crashed with two items mid-create: one reached the
    // provider, one did not.
    let (conn, batch_id) = state::open_rw(h.dir.path()).unwrap();
    let (_w, writer) = Writer::start(conn);
    let its = items(3);
    let new: Vec<NewItem> = its
        .iter()
        .enumerate()
        .map(|(i, it)| NewItem {
            id: it.id.clone(),
            seq: i as u64,
            kind: "text2video".into(),
            prompt: None,
            params_hash: "h".into(),
            ..NewItem::default()
        })
        .collect();
    writer.send(Update::SyncItems(new)).unwrap();
    for id in ["item0", "item1"] {
        let ext = ids::external_task_id(&batch_id, id, 1);
        writer
            .send_durable(Update::Intent {
                id: id.into(),
                external_task_id: ext,
                attempt: 1,
            })
            .await
            .unwrap();
    }
    let ext0 = ids::external_task_id(&batch_id, "item0", 1);
    fake.create(&its[0], &ext0).await.unwrap();
    fake.s.lock().unwrap().create_posts.clear();
    drop(writer);

    let out = h.run(fake.clone(), its, fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert!(
        !s.create_posts.contains(&ext0),
        "the task that existed was adopted, not created again"
    );
    assert_eq!(s.create_posts.len(), 2);
    drop(s);
    assert_eq!(fake.duplicates(), 0);
}

#[tokio::test]
async fn a_second_run_of_a_finished_batch_sends_nothing() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    assert!(h.run(fake.clone(), items(3), fast()).await.all_downloaded());
    let counts = |f: &Fake| {
        let s = f.s.lock().unwrap();
        (s.create_posts.len(), s.queries, s.lists)
    };
    let before = counts(&fake);
    assert!(h.run(fake.clone(), items(3), fast()).await.all_downloaded());
    let after = counts(&fake);
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_deleted_video_is_fetched_again_on_the_next_run() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    assert!(h.run(fake.clone(), items(2), fast()).await.all_downloaded());
    std::fs::remove_file(h.dir.path().join("videos/item1.mp4")).unwrap();
    let out = h.run(fake.clone(), items(2), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert!(h.dir.path().join("videos/item1.mp4").exists());
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        2,
        "no new task for a lost file"
    );
}

#[tokio::test]
async fn a_task_that_never_ends_times_out_and_is_polled_again_next_run() {
    let fake = Arc::new(Fake::new(&file_server().await, 1_000_000));
    let h = Harness::new();
    let settings = EngineSettings {
        task_timeout: Duration::from_millis(50),
        ..fast()
    };
    let out = h.run(fake.clone(), items(1), settings.clone()).await;
    assert_eq!(out.counts.get(&Status::TimedOut), Some(&1), "{out:?}");
    let queries = fake.s.lock().unwrap().queries;
    let _ = h.run(fake.clone(), items(1), settings).await;
    let s = fake.s.lock().unwrap();
    assert!(s.queries > queries, "polled again");
    assert_eq!(s.create_posts.len(), 1, "never resubmitted");
}

#[tokio::test]
async fn many_tasks_in_flight_are_polled_with_list_sweeps() {
    let fake = Arc::new(Fake::new(&file_server().await, 3));
    let h = Harness::new();
    let settings = EngineSettings {
        concurrency: 60,
        list_threshold: 10,
        ..fast()
    };
    let out = h.run(fake.clone(), items(60), settings).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert!(s.lists > 0);
    assert!(
        s.queries < 60,
        "single queries only for stragglers: {}",
        s.queries
    );
}

#[tokio::test]
async fn interrupt_returns_promptly_and_leaves_the_batch_resumable() {
    let fake = Arc::new(Fake::new(&file_server().await, 1_000_000));
    let h = Harness::new();
    let stop = Arc::new(Stop::default());
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stopper.stop();
    });
    let out = h.run_with(fake.clone(), items(5), fast(), stop).await;
    assert!(out.interrupted);
    let posts = fake.s.lock().unwrap().create_posts.len();
    // Second run with tasks that now finish: nothing is created twice.
    let fake2 = Arc::new(Fake::new(&file_server().await, 1));
    {
        let s1 = fake.s.lock().unwrap();
        let mut s2 = fake2.s.lock().unwrap();
        s2.tasks = s1
            .tasks
            .iter()
            .map(|(k, v)| (k.clone(), (v.0.clone(), v.1, 1_000_000, v.3)))
            .collect();
        s2.by_ext = s1.by_ext.clone();
        s2.next = s1.next;
    }
    let out = h.run(fake2.clone(), items(5), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake2.duplicates(), 0);
    assert_eq!(posts + fake2.s.lock().unwrap().create_posts.len(), 5);
}

#[tokio::test]
async fn an_expired_video_url_is_refreshed_by_querying_the_task_again() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.s.lock().unwrap().expired_urls = 2;
    let h = Harness::new();
    let out = h.run(fake.clone(), items(1), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    let r = &h.records()[0];
    assert!(
        !r.videos[0].url.as_deref().unwrap().contains("expired-"),
        "the fresh URL is recorded"
    );
    let s = fake.s.lock().unwrap();
    assert_eq!(
        (s.urls_handed, s.create_posts.len()),
        (2, 1),
        "two refreshes, one task"
    );
}

#[tokio::test]
async fn retry_failed_makes_a_new_attempt_under_a_new_external_id() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::Code(1301, ErrorClass::ItemInvalid)]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(1), fast()).await;
    assert_eq!(out.counts.get(&Status::Failed), Some(&1));
    let again = h.run(fake.clone(), items(1), fast()).await;
    assert_eq!(
        again.counts.get(&Status::Failed),
        Some(&1),
        "without the flag a failed item stays failed"
    );
    assert_eq!(fake.s.lock().unwrap().create_posts.len(), 1);
    let retried = h
        .run(
            fake.clone(),
            items(1),
            EngineSettings {
                retry_failed: true,
                ..fast()
            },
        )
        .await;
    assert!(retried.all_downloaded(), "{retried:?}");
    let s = fake.s.lock().unwrap();
    assert_eq!(s.create_posts.len(), 2);
    assert!(
        s.create_posts[0].ends_with("-1") && s.create_posts[1].ends_with("-2"),
        "{:?}",
        s.create_posts
    );
    drop(s);
    let r = &h.records()[0];
    assert_eq!((r.attempt, r.submit_requests), (2, 2));
}

#[tokio::test]
async fn without_lookup_a_lost_create_is_unknown_never_resent_until_asked() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.s.lock().unwrap().no_lookup = true;
    // One create made but its answer lost, one lost before it made anything:
    // from here the two are indistinguishable.
    fake.script(&[Fault::AmbiguousCreated, Fault::AmbiguousLost]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(4), fast()).await;
    assert_eq!(out.counts.get(&Status::Unknown), Some(&2), "{out:?}");
    assert_eq!(out.counts.get(&Status::Downloaded), Some(&2));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        4,
        "nothing resent"
    );
    assert!(
        out.failures
            .iter()
            .any(|f| f.status == Status::Unknown && f.message.contains("--resubmit-unknown"))
    );
    let again = h.run(fake.clone(), items(4), fast()).await;
    assert_eq!(again.counts.get(&Status::Unknown), Some(&2));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        4,
        "not on a rerun either"
    );
    let asked = h
        .run(
            fake.clone(),
            items(4),
            EngineSettings {
                resubmit_unknown: true,
                ..fast()
            },
        )
        .await;
    assert!(asked.all_downloaded(), "{asked:?}");
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        6,
        "exactly one new create per unknown item"
    );
}

#[tokio::test]
async fn without_a_usable_list_endpoint_polling_falls_back_to_single_queries() {
    let fake = Arc::new(Fake::new(&file_server().await, 4));
    fake.s.lock().unwrap().list_broken = true;
    let h = Harness::new();
    let settings = EngineSettings {
        concurrency: 30,
        list_threshold: 5,
        ..fast()
    };
    let out = h.run(fake.clone(), items(30), settings).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert_eq!(s.lists, 1, "one failed sweep, then single queries only");
}

#[test]
fn video_paths_stay_inside_the_videos_folder() {
    assert_eq!(video_rel_path("cat", 1, 1), "videos/cat.mp4");
    assert_eq!(video_rel_path("cat", 2, 3), "videos/cat.videos/2.mp4");
    // The second video of `cat` and the only video of an item `cat-2` (or
    // `cat.videos`) never share a file.
    assert_ne!(video_rel_path("cat", 2, 2), video_rel_path("cat-2", 1, 1));
    assert_ne!(
        video_rel_path("cat", 1, 2),
        video_rel_path("cat.videos", 1, 1)
    );
    assert!(!video_rel_path("cat.videos", 1, 2).starts_with(&video_rel_path("cat", 1, 2)));
    assert_eq!(
        video_rel_path("../../etc/passwd", 1, 1),
        "videos/_.._.._etc_passwd.mp4"
    );
    assert_eq!(video_rel_path("", 1, 1), "videos/_.mp4");
}
