//! Engine behaviour against a scripted in-memory provider and a local file
//! server: the exactly-once protocol, slot pressure, aborts, resume.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::job::{Job, JobList, Kind};
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
    /// Prefix of the task ids it hands out (tells two accounts' tasks apart).
    id_prefix: String,
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
            queues_over_limit: false,
        }
    }

    async fn create(&self, item: &Job, ext: &str) -> Result<Created, ProviderError> {
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
            let id = format!("{}{:018}", s.id_prefix, s.next);
            let fails = prompt_of(item).is_some_and(|p| p.contains("FAIL"));
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

fn t2v(id: &str, prompt: &str) -> Job {
    let mut job = Job::new(id, Kind::Text2Video);
    job.body.insert("prompt".into(), prompt.into());
    job
}

/// The prompt a test job carries.
fn prompt_of(job: &Job) -> Option<String> {
    job.body
        .get("prompt")
        .and_then(|p| p.as_str())
        .map(str::to_owned)
}

fn fast() -> EngineSettings {
    EngineSettings {
        concurrency: 4,
        concurrency_auto: false,
        submit_rate: crate::settings::Rate { per_second: 1000.0 },
        submit_rate_auto: false,
        poll_interval: Duration::from_millis(5),
        max_poll_interval: Duration::from_millis(20),
        task_timeout: Duration::from_secs(30),
        download_pool: crate::settings::DownloadPool::Fixed(4),
        retry_base: Duration::from_millis(2),
        list_threshold: 1000,
        retry_failed: false,
        resubmit_unknown: false,
    }
}

struct Harness {
    dir: tempfile::TempDir,
    /// Handed to the next run: the provider's callbacks, as the listener
    /// would pass them on.
    callbacks: Mutex<Option<tokio::sync::mpsc::Receiver<crate::provider::Callback>>>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().unwrap(),
            callbacks: Mutex::new(None),
        }
    }

    async fn run(&self, fake: Arc<Fake>, items: Vec<Job>, settings: EngineSettings) -> RunOutcome {
        self.run_with(fake, items, settings, Arc::new(Stop::default()))
            .await
    }

    async fn run_with(
        &self,
        fake: Arc<Fake>,
        items: Vec<Job>,
        settings: EngineSettings,
        interrupt: Arc<Stop>,
    ) -> RunOutcome {
        let accounts = vec![Account::only(fake, &settings)];
        self.run_accounts(accounts, items, settings, interrupt)
            .await
    }

    async fn run_accounts(
        &self,
        accounts: Vec<Account<Fake>>,
        items: Vec<Job>,
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
                prompt: prompt_of(it),
                params_hash: "h".into(),
                ..NewItem::default()
            })
            .collect();
        writer.send_durable(Update::SyncItems(new)).await.unwrap();
        let records = state::load_progress(&state::open_ro(self.dir.path()).unwrap()).unwrap();
        let downloader = Downloader::new(reqwest::Client::new(), 3, Duration::from_millis(2));
        let callbacks = self.callbacks.lock().unwrap().take();
        run(EngineInput {
            accounts,
            downloader,
            records,
            jobs: Arc::new(JobList::new(items)),
            batch_id,
            batch_dir: self.dir.path().to_path_buf(),
            writer,
            events: EventSender::none(),
            settings,
            interrupt,
            max_units: None,
            callbacks,
        })
        .await
    }

    fn records(&self) -> Vec<state::ItemRecord> {
        state::load_items(&state::open_ro(self.dir.path()).unwrap()).unwrap()
    }
}

fn items(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| t2v(&format!("item{i}"), &format!("prompt {i}")))
        .collect()
}

mod creating;
mod polling;
mod pooling;
mod resuming;
