//! The upload stage, running beside the engine: each video goes up as soon
//! as its item is `downloaded`, not after the whole batch.
//!
//! Why it listens to [`RunEvent`]s rather than living in the scheduler: the
//! engine's contract with the outside is the event stream, and uploading is
//! none of its business. [`Pipeline::tee`] forwards every event to the
//! progress reporter unchanged and wakes the stage on each transition to
//! `downloaded`. The stage then asks the state (after a writer flush, so
//! the video's path and sha256 are committed) which videos have no upload
//! record, and uploads them — at most `concurrency` at once, each outcome
//! recorded durably through the single state writer.
//!
//! The first scan also picks up videos downloaded by an earlier run. When
//! the engine is done, [`Pipeline::finish`] makes one last scan that also
//! retries what failed during this run (a video whose file the engine was
//! still fetching again, say), then waits for the last upload.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::StorageError;
use super::remote::Remote;
use super::upload::{Done, Tally, one};
use crate::events::RunEvent;
use crate::scheduler::Stop;
use crate::state::uploads::{self, ToUpload, UploadFailed, Uploaded};
use crate::state::{self, Status, Update, WriterHandle};

/// Scans of the state at most this often while downloads keep finishing (a
/// scan reads every video row of the batch: on 100k items, tens of ms).
const SCAN_EVERY: Duration = Duration::from_secs(1);

enum Feed {
    /// Some item became `downloaded`.
    Downloaded,
    /// The engine returned: last scan, then finish.
    EngineDone,
}

/// The running upload stage of an object-store batch.
pub struct Pipeline {
    feed: mpsc::UnboundedSender<Feed>,
    task: JoinHandle<Result<Tally, StorageError>>,
}

impl Pipeline {
    /// Start the stage (it makes its first scan at once).
    pub fn start(
        remote: Remote,
        batch_dir: PathBuf,
        writer: WriterHandle,
        concurrency: usize,
        stop: Arc<Stop>,
    ) -> Pipeline {
        let (feed, rx) = mpsc::unbounded_channel();
        let stage = Stage {
            remote,
            batch_dir,
            writer,
            concurrency: concurrency.max(1),
        };
        let task = tokio::spawn(async move { stage.run(rx, &stop).await });
        Pipeline { feed, task }
    }

    /// Pass `events` on (for the progress reporter), waking the stage on
    /// every item that becomes `downloaded`.
    pub fn tee(
        &self,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
    ) -> mpsc::UnboundedReceiver<RunEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let feed = self.feed.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let RunEvent::Transition {
                    to: Status::Downloaded,
                    ..
                } = &event
                {
                    let _ = feed.send(Feed::Downloaded);
                }
                let _ = tx.send(event);
            }
        });
        rx
    }

    /// The engine is done: upload what is left and report.
    pub async fn finish(self) -> Result<Tally, StorageError> {
        let _ = self.feed.send(Feed::EngineDone);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(StorageError::Upload {
                key: "videos/".into(),
                message: format!("the upload stage stopped: {e}"),
            }),
        }
    }
}

struct Stage {
    remote: Remote,
    batch_dir: PathBuf,
    writer: WriterHandle,
    concurrency: usize,
}

/// A video as uploaded: the same item video with other bytes is another.
type VideoKey = (String, u32, String);

fn video_key(v: &ToUpload) -> VideoKey {
    (v.id.clone(), v.n, v.sha256.clone())
}

impl Stage {
    async fn run(
        &self,
        mut feed: mpsc::UnboundedReceiver<Feed>,
        stop: &Stop,
    ) -> Result<Tally, StorageError> {
        let started = Instant::now();
        let mut tally = Tally::default();
        // Taken in this run (queued, uploading, done or failed).
        let mut taken: HashSet<VideoKey> = HashSet::new();
        let mut failed: HashSet<VideoKey> = HashSet::new();
        let mut queue: VecDeque<ToUpload> = VecDeque::new();
        let mut running = FuturesUnordered::new();
        let mut dirty = true;
        let mut last_scan: Option<Instant> = None;
        let mut engine_done = false;
        let mut last_pass = false;
        loop {
            let due = last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY);
            if dirty && (due || last_pass) && queue.is_empty() {
                self.writer.flush().await?;
                let conn = state::open_ro(&self.batch_dir)?;
                for v in uploads::to_upload(&conn)? {
                    if taken.insert(video_key(&v)) {
                        queue.push_back(v);
                    }
                }
                dirty = false;
                last_scan = Some(Instant::now());
            }
            while running.len() < self.concurrency {
                let Some(v) = queue.pop_front() else { break };
                running.push(async move {
                    let r = one(&self.remote, &self.batch_dir, &v).await;
                    (v, r)
                });
            }
            if engine_done && !dirty && queue.is_empty() && running.is_empty() {
                if last_pass {
                    break;
                }
                // One more scan, retrying what failed during the run.
                for k in &failed {
                    taken.remove(k);
                }
                last_pass = true;
                dirty = true;
                continue;
            }
            let wake = last_scan.map_or_else(Instant::now, |t| t + SCAN_EVERY);
            tokio::select! {
                _ = stop.stopped() => {
                    tally.interrupted = true;
                    break;
                }
                Some((v, result)) = running.next(), if !running.is_empty() => {
                    let key = video_key(&v);
                    let update = self.outcome(&mut tally, v, result);
                    let uploaded = matches!(update, Update::Uploaded(_));
                    self.writer.send_durable(update).await?;
                    if uploaded {
                        // Recorded: no later scan lists it, so forget it
                        // (on 100k videos the set would be most of the memory).
                        failed.remove(&key);
                        taken.remove(&key);
                    } else {
                        failed.insert(key);
                    }
                }
                msg = feed.recv(), if !engine_done => match msg {
                    Some(Feed::Downloaded) => dirty = true,
                    Some(Feed::EngineDone) | None => {
                        engine_done = true;
                        dirty = true;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()), if dirty && queue.is_empty() => {}
            }
        }
        tally.failed = failed.len() as u64;
        tally.seconds = started.elapsed().as_secs_f64();
        Ok(tally)
    }

    /// Count one outcome and say what to record.
    fn outcome(&self, tally: &mut Tally, v: ToUpload, result: Result<Done, String>) -> Update {
        let key = self.remote.url.key(&v.path);
        match result {
            Ok(done) => {
                match done {
                    Done::Uploaded => {
                        tally.uploaded += 1;
                        tally.bytes += v.bytes;
                    }
                    Done::AlreadyThere => tally.already_there += 1,
                }
                Update::Uploaded(Uploaded {
                    id: v.id,
                    n: v.n,
                    key,
                    bytes: v.bytes,
                    sha256: v.sha256,
                })
            }
            Err(message) => {
                tracing::warn!("upload of {key} failed: {message}");
                Update::UploadFailed(UploadFailed {
                    id: v.id,
                    n: v.n,
                    key,
                    message,
                })
            }
        }
    }
}
