//! The single writer of the state file.
//!
//! A dedicated thread owns the write connection. Updates queue on a channel;
//! the thread takes everything queued (and, when nobody waits for it, what
//! arrives within a few milliseconds: `group.rs`), applies it in one
//! transaction and then acknowledges the updates that asked for it. Waiting for the ack of an
//! `Intent` before a POST is what makes "intent is durable before the create"
//! true; everything else is fire-and-forget and still ordered.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::group::{GROUP_MAX, LINGER, gather};
use super::watch::Watch;
use super::{StateError, Status, VideoRecord};

/// One change to the state.
#[derive(Debug, Clone)]
pub enum Update {
    /// Make the store know the manifest's items (insert new ones, refresh order
    /// and, for items not yet submitted, their parameters).
    SyncItems(Vec<NewItem>),
    /// A manifest sync begins: every item counts as no longer listed until
    /// a `SyncItems` of this sync names it again.
    BeginSync,
    /// About to POST a create for `id` tagged `external_task_id`.
    Intent {
        id: String,
        external_task_id: String,
        attempt: u32,
        /// The account whose credentials send it (`None`: the only one).
        account: Option<String>,
    },
    /// The provider created the task (or we found the one an ambiguous create made).
    Created {
        id: String,
        task_id: String,
        request_id: Option<String>,
        at: i64,
        /// The account the task was made (or found) in; `None` leaves the
        /// recorded one (a rebuilt state learns it here).
        account: Option<String>,
    },
    /// An intent committed ahead of its create, which was never sent (the
    /// run stopped first): the item is pending again, as if it never was.
    Disarmed { id: String },
    /// The create definitely did not happen; the item waits for a later try.
    NotCreated {
        id: String,
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
    },
    /// A plain status change (processing, timed_out, back to submitted, downloaded).
    Status { id: String, status: Status },
    /// The task finished well: its videos (not yet downloaded) and units.
    Succeeded {
        id: String,
        units: Option<String>,
        videos: Vec<VideoRecord>,
        at: i64,
    },
    /// A fresh URL for video `n` (the old one expired).
    VideoUrl { id: String, n: u32, url: String },
    /// Video `n` is on disk.
    Downloaded {
        id: String,
        n: u32,
        path: String,
        bytes: u64,
        sha256: String,
    },
    /// Something went wrong that the user should see in the report, without
    /// changing the status (e.g. a download that will be retried next run).
    Note {
        id: String,
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
    },
    /// The item failed for good (this attempt).
    Failed {
        id: String,
        code: Option<i64>,
        message: String,
        request_id: Option<String>,
        at: i64,
    },
    /// Set a value in the `meta` table.
    SetMeta { key: String, value: String },
    /// Start a new creation attempt for a failed item (`--retry-failed`).
    Retry { id: String, attempt: u32 },
    /// A rebuilt state: these items may have tasks under these external ids
    /// (from the old report, or derived); recovery looks each one up before
    /// anything is created.
    Recover(Vec<RecoverItem>),
    /// The create's outcome cannot be known (a provider without lookup lost
    /// its answer): the item is `unknown` and is not sent again by itself.
    Unknown { id: String, message: String },
    /// Video `n`'s file is gone or changed: forget it on disk before anything
    /// relies on it (the item is `succeeded` again and downloads again).
    VideoGone { id: String, n: u32 },
    /// The item was edited after it was submitted and the user asked for it
    /// again (`--resubmit-changed`): a new attempt with the new parameters.
    Resubmit {
        id: String,
        attempt: u32,
        params_hash: String,
    },
    /// Video `n` is in the object store under `key` (uploaded now, or
    /// found there with the same bytes): a rerun does not upload it again.
    Uploaded(super::uploads::Uploaded),
    /// Video `n` could not be uploaded; the item keeps `downloaded` and
    /// shows the message, a rerun tries again.
    UploadFailed(super::uploads::UploadFailed),
}

/// One item of [`Update::Recover`].
#[derive(Debug, Clone)]
pub struct RecoverItem {
    pub id: String,
    pub external_task_id: String,
    pub attempt: u32,
}

/// A manifest item as the store keeps it.
#[derive(Debug, Clone, Default)]
pub struct NewItem {
    pub id: String,
    pub seq: u64,
    pub kind: String,
    pub prompt: Option<String>,
    pub params_hash: String,
    /// The item's settings as a JSON object (see [`super::ItemRecord::params`]).
    pub params: Option<String>,
    /// Estimated units (`None`: the price table has no price for it).
    pub est_units: Option<f64>,
    /// The whole item as the manifest asks for it now (JSON): what its next
    /// create sends, read from the state when it is sent.
    pub spec: Option<String>,
}

struct Msg {
    update: Option<Update>,
    ack: Option<oneshot::Sender<Result<(), WriteFailure>>>,
}

/// Why an update was not (or may not be) acknowledged.
#[derive(Debug, Clone)]
enum WriteFailure {
    /// The disk is full: nothing more can be recorded, so nothing more may be sent.
    DiskFull(PathBuf),
    /// The state file was deleted or replaced under the run.
    Replaced(String),
    Failed(String),
}

/// Cheap, cloneable handle the engine uses to send updates.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Msg>,
    /// The writer thread, woken when an update someone waits for is queued
    /// while its group lingers ([`super::group`]).
    writer: Option<std::thread::Thread>,
}

impl WriterHandle {
    /// Queue an update; it commits with the next group.
    pub fn send(&self, update: Update) -> Result<(), StateError> {
        self.tx
            .send(Msg {
                update: Some(update),
                ack: None,
            })
            .map_err(|_| StateError::WriterGone)
    }

    /// Queue an update and wait until it is committed.
    pub async fn send_durable(&self, update: Update) -> Result<(), StateError> {
        self.committed(Some(update)).await
    }

    /// Wait until everything sent so far is committed.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.committed(None).await
    }

    async fn committed(&self, update: Option<Update>) -> Result<(), StateError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg {
                update,
                ack: Some(ack),
            })
            .map_err(|_| StateError::WriterGone)?;
        if let Some(writer) = &self.writer {
            writer.unpark();
        }
        Self::wait(done).await
    }

    async fn wait(done: oneshot::Receiver<Result<(), WriteFailure>>) -> Result<(), StateError> {
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WriteFailure::DiskFull(path))) => Err(StateError::DiskFull { path }),
            Ok(Err(WriteFailure::Replaced(message))) => Err(StateError::Replaced { message }),
            Ok(Err(WriteFailure::Failed(message))) => Err(StateError::Corrupt {
                path: "state.db".into(),
                message,
            }),
            Err(_) => Err(StateError::WriterGone),
        }
    }
}

/// The writer thread. Dropping every handle ends it after a final commit.
pub struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// A writer that does not watch its file (tests, tools).
    pub fn start(conn: Connection) -> (Writer, WriterHandle) {
        Self::spawn(conn, None)
    }

    /// The writer of a batch's `state.db` at `path`: after every commit it
    /// checks that `path` is still the file it writes, so a state file
    /// deleted or replaced under the run is noticed at once (and a deleted
    /// one restored from the open connection).
    pub fn start_at(conn: Connection, path: &Path) -> (Writer, WriterHandle) {
        let watch = Watch::new(path);
        Self::spawn(conn, watch)
    }

    fn spawn(conn: Connection, watch: Option<Watch>) -> (Writer, WriterHandle) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("vidbatch-state".into())
            .spawn(move || {
                let mut w = WriterThread {
                    conn,
                    watch,
                    failed: None,
                    refuse_durable: None,
                };
                while let Some(first) = rx.blocking_recv() {
                    let group = gather(&mut rx, first, LINGER, GROUP_MAX, |m| m.ack.is_some());
                    w.commit(group);
                }
                w.close();
            })
            .ok();
        let writer = thread.as_ref().map(|t| t.thread().clone());
        (Writer { thread }, WriterHandle { tx, writer })
    }

    /// Wait for the thread to finish (after every handle is dropped): its
    /// last act is to checkpoint the WAL into `state.db`, so a finished or
    /// interrupted run leaves one complete file.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct WriterThread {
    conn: Connection,
    watch: Option<Watch>,
    /// A write failed: nothing more is applied, every ack fails.
    failed: Option<WriteFailure>,
    /// Writes go on, but durable acks (create intents) fail: nothing more is sent.
    refuse_durable: Option<WriteFailure>,
}

impl WriterThread {
    fn commit(&mut self, group: Vec<Msg>) {
        if self.failed.is_none() {
            self.check_file();
            let mut result = apply_group(&mut self.conn, &group);
            // Deleted between the check and the write (SQLite then refuses
            // to write a moved file): rescue, then write the copy.
            if result.is_err() && self.check_file() {
                result = apply_group(&mut self.conn, &group);
            }
            if let Err(e) = result {
                tracing::error!("state write failed: {e}");
                self.failed = Some(match &e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::DiskFull =>
                    {
                        WriteFailure::DiskFull(
                            self.watch
                                .as_ref()
                                .map(|w| w.path().to_path_buf())
                                .unwrap_or_else(|| "state.db".into()),
                        )
                    }
                    _ => WriteFailure::Failed(e.to_string()),
                });
            }
        }
        let verdict = self.failed.clone().or_else(|| self.refuse_durable.clone());
        for m in group {
            if let Some(ack) = m.ack {
                let _ = ack.send(match &verdict {
                    None => Ok(()),
                    Some(f) => Err(f.clone()),
                });
            }
        }
    }

    /// Is `state.db` still the file this connection writes? See
    /// [`Watch::check`]. True when it rescued the state just now.
    fn check_file(&mut self) -> bool {
        let Some(watch) = &mut self.watch else {
            return false;
        };
        match watch.check(&mut self.conn) {
            Some(moved) => {
                tracing::error!("{}", moved.message);
                self.refuse_durable = Some(WriteFailure::Replaced(moved.message));
                moved.rescued
            }
            None => false,
        }
    }

    fn close(self) {
        if self.failed.is_none() && self.watch.as_ref().is_none_or(Watch::intact) {
            // Fold the WAL into the database file; closing then removes it.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        drop(self.conn);
    }
}

fn apply_group(conn: &mut Connection, group: &[Msg]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for m in group {
        if let Some(u) = &m.update {
            apply(&tx, u)?;
        }
    }
    tx.commit()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn apply(tx: &Transaction<'_>, u: &Update) -> rusqlite::Result<()> {
    let now = now_ms();
    match u {
        Update::SyncItems(items) => {
            // A submitted item keeps what it was submitted with; its settings
            // are filled in only when missing (a schema 1 file) and the
            // manifest still asks for exactly that (same params_hash).
            let mut insert = tx.prepare_cached(
                "INSERT INTO items (id, seq, kind, prompt, params_hash, params, est_units, status, updated_at,
                                    spec, manifest_hash, listed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?5, 1)
                 ON CONFLICT(id) DO UPDATE SET seq = excluded.seq,
                   kind = CASE WHEN items.status = 'pending' THEN excluded.kind ELSE items.kind END,
                   prompt = CASE WHEN items.status = 'pending' THEN excluded.prompt ELSE items.prompt END,
                   params = CASE WHEN items.status = 'pending'
                       OR (items.params IS NULL AND items.params_hash = excluded.params_hash)
                     THEN excluded.params ELSE items.params END,
                   est_units = CASE WHEN items.status = 'pending'
                       OR (items.params IS NULL AND items.params_hash = excluded.params_hash)
                     THEN excluded.est_units ELSE items.est_units END,
                   params_hash = CASE WHEN items.status = 'pending' THEN excluded.params_hash ELSE items.params_hash END,
                   spec = excluded.spec, manifest_hash = excluded.manifest_hash, listed = 1",
            )?;
            for it in items {
                insert.execute(params![
                    it.id,
                    it.seq as i64,
                    it.kind,
                    it.prompt,
                    it.params_hash,
                    it.params,
                    it.est_units,
                    now,
                    it.spec
                ])?;
            }
        }
        Update::BeginSync => {
            tx.execute("UPDATE items SET listed = 0 WHERE listed != 0", [])?;
        }
        Update::Intent {
            id,
            external_task_id,
            attempt,
            account,
        } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'submitting', external_task_id = ?2, attempt = ?3,
                   submit_requests = submit_requests + 1, updated_at = ?4, account = ?5 WHERE id = ?1",
            )?
            .execute(params![id, external_task_id, attempt, now, account])?;
        }
        Update::Created {
            id,
            task_id,
            request_id,
            at,
            account,
        } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'submitted', task_id = ?2, request_id = ?3, submitted_at = ?4,
                   error_code = NULL, error_message = NULL, updated_at = ?5,
                   account = COALESCE(?6, account) WHERE id = ?1",
            )?
            .execute(params![id, task_id, request_id, at, now, account])?;
        }
        Update::Disarmed { id } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'pending', submit_requests = MAX(submit_requests - 1, 0),
                   updated_at = ?2 WHERE id = ?1 AND status = 'submitting'",
            )?
            .execute(params![id, now])?;
        }
        Update::NotCreated {
            id,
            code,
            message,
            request_id,
        } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'pending', error_code = ?2, error_message = ?3, request_id = ?4,
                   updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, code, message, request_id, now])?;
        }
        Update::Status { id, status } => {
            let finished = matches!(status, Status::Downloaded | Status::TimedOut).then_some(now);
            tx.prepare_cached(
                "UPDATE items SET status = ?2, finished_at = COALESCE(?3, finished_at), updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, status.as_str(), finished, now])?;
        }
        Update::Succeeded {
            id,
            units,
            videos,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'succeeded', units = ?2, finished_at = ?3,
                   error_code = NULL, error_message = NULL, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, units, at, now])?;
            tx.prepare_cached("DELETE FROM videos WHERE item_id = ?1")?
                .execute(params![id])?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO videos (item_id, n, video_id, url, duration) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for v in videos {
                ins.execute(params![id, v.n, v.video_id, v.url, v.duration])?;
            }
        }
        Update::VideoUrl { id, n, url } => {
            tx.prepare_cached("UPDATE videos SET url = ?3 WHERE item_id = ?1 AND n = ?2")?
                .execute(params![id, n, url])?;
        }
        Update::Downloaded {
            id,
            n,
            path,
            bytes,
            sha256,
        } => {
            tx.prepare_cached("UPDATE videos SET path = ?3, bytes = ?4, sha256 = ?5 WHERE item_id = ?1 AND n = ?2")?
                .execute(params![id, n, path, *bytes as i64, sha256])?;
        }
        Update::Note {
            id,
            code,
            message,
            request_id,
        } => {
            tx.prepare_cached(
                "UPDATE items SET error_code = ?2, error_message = ?3, request_id = COALESCE(?4, request_id),
                   updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, code, message, request_id, now])?;
        }
        Update::Failed {
            id,
            code,
            message,
            request_id,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'failed', error_code = ?2, error_message = ?3,
                   request_id = COALESCE(?4, request_id), finished_at = ?5, updated_at = ?6 WHERE id = ?1",
            )?
            .execute(params![id, code, message, request_id, at, now])?;
        }
        Update::SetMeta { key, value } => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
        }
        Update::Retry { id, attempt } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'pending', attempt = ?2, task_id = NULL, external_task_id = NULL,
                   units = NULL, error_code = NULL, error_message = NULL, request_id = NULL,
                   submitted_at = NULL, finished_at = NULL, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, attempt, now])?;
            tx.prepare_cached("DELETE FROM videos WHERE item_id = ?1")?
                .execute(params![id])?;
        }
        Update::Recover(items) => {
            let mut up = tx.prepare_cached(
                "UPDATE items SET status = 'submitting', external_task_id = ?2, attempt = ?3,
                   updated_at = ?4 WHERE id = ?1 AND status = 'pending'",
            )?;
            for it in items {
                up.execute(params![it.id, it.external_task_id, it.attempt, now])?;
            }
        }
        Update::Resubmit {
            id,
            attempt,
            params_hash,
        } => {
            apply(
                tx,
                &Update::Retry {
                    id: id.clone(),
                    attempt: *attempt,
                },
            )?;
            tx.prepare_cached("UPDATE items SET params_hash = ?2 WHERE id = ?1")?
                .execute(params![id, params_hash])?;
        }
        Update::Unknown { id, message } => {
            tx.prepare_cached(
                "UPDATE items SET status = 'unknown', error_code = NULL, error_message = ?2,
                   updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, message, now])?;
        }
        Update::Uploaded(u) => super::uploads::apply_uploaded(tx, u, now)?,
        Update::UploadFailed(f) => super::uploads::apply_failed(tx, f, now)?,
        Update::VideoGone { id, n } => {
            tx.prepare_cached(
                "UPDATE videos SET path = NULL, bytes = NULL, sha256 = NULL WHERE item_id = ?1 AND n = ?2",
            )?
            .execute(params![id, n])?;
            tx.prepare_cached(
                "UPDATE items SET status = 'succeeded', updated_at = ?2 WHERE id = ?1 AND status = 'downloaded'",
            )?
            .execute(params![id, now])?;
        }
    }
    Ok(())
}
