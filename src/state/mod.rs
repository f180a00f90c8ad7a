//! The durable state of one batch: `output/<batch>/state.db` (SQLite, WAL).
//!
//! Why SQLite: crash safety that is proven rather than hand-rolled, concurrent
//! readers (`vidbatch status` while a run is going), and a file users can
//! query. Every transition of every item lands here before the step that
//! depends on it (above all: the intent to create a task is durable before the
//! POST that creates it), which is what makes resume exactly-once.
//!
//! One thread owns the write connection ([`Writer`]); the engine sends it
//! [`Update`]s and waits for an acknowledgement only where ordering matters.
//! Updates that arrive together commit in one transaction (group commit), so
//! thousands of transitions per second stay durable with few fsyncs.
//!
//! Secrets never go in the store: it holds ids, statuses, URLs and results.

mod group;
mod progress;
mod read;
mod schema;
pub mod uploads;
mod watch;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use progress::{Progress, load_progress, task_id_of, videos_of};
pub use read::{Overview, overview};
/// Version of the state file layout this build writes (shown by `vidbatch --version`).
pub use schema::VERSION as SCHEMA_VERSION;
pub use writer::{NewItem, Update, Writer, WriterHandle, now_ms};

/// Where an item is in its life. Stored as the lowercase name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Not yet submitted (or a create that was definitely not made).
    #[default]
    Pending,
    /// Intent recorded, create may be in the air: settle by external_task_id.
    Submitting,
    /// Created; the provider has not started it.
    Submitted,
    Processing,
    /// The provider finished it; videos not (all) downloaded yet.
    Succeeded,
    /// Every video is on disk with its sha256.
    Downloaded,
    Failed,
    /// Polled past the per-task deadline; a later run polls it again.
    TimedOut,
    /// A create may have reached a provider that cannot be asked about it
    /// (no lookup by our key): it may have been created — and charged. It is
    /// never sent again unless the user says so (`--resubmit-unknown`).
    Unknown,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Submitting,
        Status::Submitted,
        Status::Processing,
        Status::Succeeded,
        Status::Downloaded,
        Status::Failed,
        Status::TimedOut,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Submitting => "submitting",
            Status::Submitted => "submitted",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Downloaded => "downloaded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A task exists remotely and has not ended (it holds an account slot).
    pub fn is_in_flight(self) -> bool {
        matches!(self, Status::Submitted | Status::Processing)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One downloaded (or to-be-downloaded) video of an item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VideoRecord {
    /// 1-based index within the task's videos.
    pub n: u32,
    pub video_id: Option<String>,
    pub url: Option<String>,
    pub duration: Option<String>,
    /// Relative to the batch directory, e.g. `videos/cat.mp4`.
    pub path: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
}

/// Everything the store knows about one item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemRecord {
    pub id: String,
    /// Position in the manifest the last run read (report order).
    pub seq: u64,
    pub kind: String,
    pub prompt: Option<String>,
    /// sha256 of the item's parameters, to notice a manifest edited under a batch.
    pub params_hash: String,
    pub status: Option<Status>,
    /// Creation attempt (part of the external_task_id); grows only when a
    /// created task failed and the user asked to retry failed items.
    pub attempt: u32,
    /// POST requests made for this item, all attempts.
    pub submit_requests: u32,
    pub external_task_id: Option<String>,
    pub task_id: Option<String>,
    pub units: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub request_id: Option<String>,
    /// Unix milliseconds.
    pub submitted_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Last change of any kind (Unix ms).
    pub updated_at: Option<i64>,
    /// The item's settings as validated, a JSON object (`model_name`, `mode`,
    /// `duration`, ...; everything but id and prompt). `None` in files from
    /// schema 1 until a run syncs the manifest again.
    pub params: Option<String>,
    /// Units the price table estimates for this item (`None`: not priced).
    pub est_units: Option<f64>,
    /// The account (by name) whose credentials sent the current attempt's
    /// create; `None`: the batch's only account, or never sent.
    pub account: Option<String>,
    pub videos: Vec<VideoRecord>,
}

impl ItemRecord {
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::Pending)
    }

    /// Its task can only be settled, polled or refreshed with the account
    /// that created it: an unsettled create, or a task not yet downloaded.
    pub fn needs_its_account(&self) -> bool {
        let status = self.status();
        status == Status::Submitting || (self.task_id.is_some() && status != Status::Downloaded)
    }

    /// Units charged, where the provider's `final_unit_deduction` is a number.
    pub fn units_charged(&self) -> Option<f64> {
        self.units
            .as_deref()
            .and_then(|u| u.trim().parse::<f64>().ok())
            .filter(|u| u.is_finite())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another vidbatch run holds the lock on {}; wait for it to finish (or stop it) and run again", path.display())]
    Locked { path: PathBuf },
    #[error("cannot create the output folder {}: {source}; choose another with -o/--output", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no batch state at {} (run `vidbatch run` first)", path.display())]
    Missing { path: PathBuf },
    #[error("state file {} was written by a newer vidbatch (schema {found}, this one knows up to {known})", path.display())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state file {} is corrupt or unreadable: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("the disk holding {} is full: free some space, then run the same command again (nothing more was submitted)", path.display())]
    DiskFull { path: PathBuf },
    #[error("{message}")]
    Replaced { message: String },
    #[error("state database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the state writer stopped unexpectedly")]
    WriterGone,
    #[error("cannot write in the output folder {}: {source}; choose another with -o/--output", path.parent().unwrap_or(path).display())]
    LockIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state file of a batch directory.
pub fn db_path(batch_dir: &Path) -> PathBuf {
    batch_dir.join("state.db")
}

/// An exclusive hold on a batch directory: one runner per batch.
/// Released when dropped (and by the OS if the process dies).
#[derive(Debug)]
pub struct BatchLock {
    _file: std::fs::File,
}

impl BatchLock {
    pub fn acquire(batch_dir: &Path) -> Result<BatchLock, StateError> {
        use fs4::fs_std::FileExt;
        std::fs::create_dir_all(batch_dir).map_err(|source| StateError::CreateDir {
            path: batch_dir.to_path_buf(),
            source,
        })?;
        let path = batch_dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| StateError::LockIo {
                path: path.clone(),
                source,
            })?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(BatchLock { _file: file }),
            Ok(false) => Err(StateError::Locked {
                path: batch_dir.to_path_buf(),
            }),
            Err(source) if source.kind() == std::io::ErrorKind::WouldBlock => {
                Err(StateError::Locked {
                    path: batch_dir.to_path_buf(),
                })
            }
            Err(source) => Err(StateError::LockIo { path, source }),
        }
    }
}

/// Open (creating or migrating) the state of a batch for writing.
/// Returns the connection for the writer thread and the batch id.
pub fn open_rw(batch_dir: &Path) -> Result<(Connection, String), StateError> {
    open_rw_with(batch_dir, None)
}

/// [`open_rw`] for a named batch: a new state gets `key` as its batch id and
/// `name` as its name; an existing one keeps its own.
pub fn open_rw_named(
    batch_dir: &Path,
    key: &str,
    name: &str,
) -> Result<(Connection, String), StateError> {
    open_rw_with(batch_dir, Some((key, name)))
}

fn open_rw_with(
    batch_dir: &Path,
    identity: Option<(&str, &str)>,
) -> Result<(Connection, String), StateError> {
    let path = db_path(batch_dir);
    let corrupt = |e: rusqlite::Error| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StateError::DiskFull { path: path.clone() }
        }
        _ => StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        },
    };
    let conn = Connection::open(&path).map_err(corrupt)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    schema::prepare(&conn, &path, identity)?;
    let batch_id = schema::batch_id(&conn)?;
    Ok((conn, batch_id))
}

/// Open the state of a batch read-only (works while a run is writing it).
pub fn open_ro(batch_dir: &Path) -> Result<Connection, StateError> {
    let path = db_path(batch_dir);
    if !path.exists() {
        return Err(StateError::Missing { path });
    }
    let conn = Connection::open_with_flags(
        &path,
        // A connection is used by one thread at a time (it is `Send`,
        // not `Sync`): SQLite's own per-call mutex is pure cost.
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StateError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    schema::check_version(&conn, &path)?;
    Ok(conn)
}

/// Every item the store knows, in manifest order, with its videos.
pub fn load_items(conn: &Connection) -> Result<Vec<ItemRecord>, StateError> {
    load_items_with(conn, true)
}

/// [`load_items`], leaving out the prompts when `prompts` is false (the
/// engine does not need them; on 100k items they are most of the memory).
pub fn load_items_with(conn: &Connection, prompts: bool) -> Result<Vec<ItemRecord>, StateError> {
    let mut items = Vec::new();
    for_each_item(conn, prompts, |r| {
        items.push(r);
        Ok::<(), StateError>(())
    })?;
    Ok(items)
}

/// [`for_each_item`] of the items the manifest last synced still lists
/// (what a run reports), with prompts and settings.
pub fn for_each_listed<E: From<StateError>>(
    conn: &Connection,
    f: impl FnMut(ItemRecord) -> Result<(), E>,
) -> Result<(), E> {
    let read = Read {
        prompts: true,
        listed_only: true,
    };
    visit(conn, read, f)
}

/// What [`visit`] reads.
#[derive(Clone, Copy)]
struct Read {
    prompts: bool,
    listed_only: bool,
}

/// Visit every item, in manifest order, with its videos — one at a time, so a
/// report of 100k items never holds them all.
pub fn for_each_item<E: From<StateError>>(
    conn: &Connection,
    prompts: bool,
    f: impl FnMut(ItemRecord) -> Result<(), E>,
) -> Result<(), E> {
    let read = Read {
        prompts,
        listed_only: false,
    };
    visit(conn, read, f)
}

fn visit<E: From<StateError>>(
    conn: &Connection,
    read: Read,
    mut f: impl FnMut(ItemRecord) -> Result<(), E>,
) -> Result<(), E> {
    // Schema 1 files (read-only readers do not migrate) lack the v2 columns.
    let version = schema::version(conn).map_err(StateError::from)?;
    let v2 = version >= 2;
    let sql = format!(
        "SELECT i.id, i.seq, i.kind, CASE WHEN ?1 THEN i.prompt END, i.params_hash, i.status,
                i.attempt, i.submit_requests, i.external_task_id, i.task_id, i.units,
                i.error_code, i.error_message, i.request_id, i.submitted_at, i.finished_at,
                v.n, v.video_id, v.url, v.duration, v.path, v.bytes, v.sha256,
                i.updated_at, {}, {}
         FROM items i LEFT JOIN videos v ON v.item_id = i.id {}
         ORDER BY i.seq, i.id, v.n",
        if v2 {
            "i.params, i.est_units"
        } else {
            "NULL, NULL"
        },
        if version >= 3 { "i.account" } else { "NULL" },
        if read.listed_only && version >= 5 {
            "WHERE i.listed = 1"
        } else {
            ""
        }
    );
    let mut stmt = conn.prepare(&sql).map_err(StateError::from)?;
    let mut rows = stmt.query([read.prompts]).map_err(StateError::from)?;
    let mut current: Option<ItemRecord> = None;
    while let Some(r) = rows.next().map_err(StateError::from)? {
        let id: String = r.get(0).map_err(StateError::from)?;
        if current.as_ref().is_some_and(|c| c.id != id)
            && let Some(done) = current.take()
        {
            f(done)?;
        }
        if current.is_none() {
            let status: String = r.get(5).map_err(StateError::from)?;
            current = Some(ItemRecord {
                id,
                seq: r.get::<_, i64>(1).map_err(StateError::from)? as u64,
                kind: r.get(2).map_err(StateError::from)?,
                prompt: r.get(3).map_err(StateError::from)?,
                params_hash: r.get(4).map_err(StateError::from)?,
                status: Status::parse(&status),
                attempt: r.get(6).map_err(StateError::from)?,
                submit_requests: r.get(7).map_err(StateError::from)?,
                external_task_id: r.get(8).map_err(StateError::from)?,
                task_id: r.get(9).map_err(StateError::from)?,
                units: r.get(10).map_err(StateError::from)?,
                error_code: r.get(11).map_err(StateError::from)?,
                error_message: r.get(12).map_err(StateError::from)?,
                request_id: r.get(13).map_err(StateError::from)?,
                submitted_at: r.get(14).map_err(StateError::from)?,
                finished_at: r.get(15).map_err(StateError::from)?,
                updated_at: r.get(23).map_err(StateError::from)?,
                params: r.get(24).map_err(StateError::from)?,
                est_units: r.get(25).map_err(StateError::from)?,
                account: r.get(26).map_err(StateError::from)?,
                videos: Vec::new(),
            });
        }
        if let (Some(item), Some(n)) = (
            current.as_mut(),
            r.get::<_, Option<u32>>(16).map_err(StateError::from)?,
        ) {
            item.videos.push(VideoRecord {
                n,
                video_id: r.get(17).map_err(StateError::from)?,
                url: r.get(18).map_err(StateError::from)?,
                duration: r.get(19).map_err(StateError::from)?,
                path: r.get(20).map_err(StateError::from)?,
                bytes: r
                    .get::<_, Option<i64>>(21)
                    .map_err(StateError::from)?
                    .map(|b| b as u64),
                sha256: r.get(22).map_err(StateError::from)?,
            });
        }
    }
    if let Some(done) = current {
        f(done)?;
    }
    Ok(())
}

/// Counts by status (for `vidbatch status`), cheap even on 100k items.
pub fn count_by_status(conn: &Connection) -> Result<Vec<(Status, u64)>, StateError> {
    let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM items GROUP BY status")?;
    let mut counts: Vec<(Status, u64)> = Vec::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (s, n) = row?;
        if let Some(st) = Status::parse(&s) {
            counts.push((st, n as u64));
        }
    }
    counts.sort();
    Ok(counts)
}

/// A value from the `meta` table.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StateError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

#[cfg(test)]
mod tests;
