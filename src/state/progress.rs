//! What the engine reads from the state: each item's progress, small.
//!
//! A resume of 100,000 items must reach its first request in well under half
//! a second and then hold a few dozen bytes per item. So [`load_progress`]
//! reads one row per item in manifest order (the `seq` index, no sort, no
//! join), without prompt, settings or hashes, and attaches video records only
//! to items that still need them (succeeded, not yet downloaded). The videos
//! of downloaded items stay in the state; the engine checks their files in
//! the background with [`videos_of`].

use std::collections::HashMap;

use rusqlite::Connection;

use super::{ItemRecord, StateError, Status, VideoRecord, schema};
use crate::job::Kind;

/// One item's progress as the engine resumes it: what the state says about
/// its task, nothing about what it asks for. Small (100k are read at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub id: Box<str>,
    pub kind: Kind,
    pub status: Status,
    /// Creation attempt (part of the key).
    pub attempt: u32,
    /// The key of an unsettled create (only for `submitting`).
    pub external_task_id: Option<Box<str>>,
    pub task_id: Option<Box<str>>,
    /// Units charged, where the provider said a number.
    pub charged: Option<f64>,
    /// Unix ms the task was created.
    pub submitted_at: Option<i64>,
    pub est_units: Option<f64>,
    /// The account that sent the current attempt (`None`: the only one).
    pub account: Option<Box<str>>,
    /// Only for items that succeeded and wait for their download.
    pub videos: Vec<VideoRecord>,
}

impl Progress {
    /// A pending item that has never been sent.
    pub fn new(id: &str, kind: Kind) -> Progress {
        Progress {
            id: id.into(),
            kind,
            status: Status::Pending,
            attempt: 1,
            external_task_id: None,
            task_id: None,
            charged: None,
            submitted_at: None,
            est_units: None,
            account: None,
            videos: Vec::new(),
        }
    }

    /// See [`ItemRecord::needs_its_account`].
    pub fn needs_its_account(&self) -> bool {
        self.status == Status::Submitting
            || (self.task_id.is_some() && self.status != Status::Downloaded)
    }
}

impl From<ItemRecord> for Progress {
    fn from(r: ItemRecord) -> Progress {
        let status = r.status();
        Progress {
            kind: Kind::parse(&r.kind).unwrap_or(Kind::Text2Video),
            status,
            attempt: r.attempt,
            external_task_id: r
                .external_task_id
                .filter(|_| status == Status::Submitting)
                .map(String::into_boxed_str),
            charged: r
                .units
                .as_deref()
                .and_then(|u| u.trim().parse::<f64>().ok())
                .filter(|u| u.is_finite()),
            task_id: r.task_id.map(String::into_boxed_str),
            submitted_at: r.submitted_at,
            est_units: r.est_units,
            account: r.account.map(String::into_boxed_str),
            videos: r.videos,
            id: r.id.into_boxed_str(),
        }
    }
}

/// The items the manifest last synced still lists, in its order, as the
/// engine resumes them: no prompt, settings or hashes; videos only for
/// items that succeeded and are not downloaded yet.
pub fn load_progress(conn: &Connection) -> Result<Vec<Progress>, StateError> {
    if schema::version(conn)? < schema::VERSION {
        // A file this build has not migrated yet (read-only callers): the
        // general reader knows every older shape.
        let mut all = Vec::new();
        super::for_each_item(conn, false, |r| {
            all.push(Progress::from(r));
            Ok::<(), StateError>(())
        })?;
        return Ok(all);
    }
    let mut videos = pending_videos(conn)?;
    let mut stmt = conn.prepare(
        "SELECT id, kind, status, attempt,
                CASE WHEN status = 'submitting' THEN external_task_id END,
                task_id, units, submitted_at, est_units, account
         FROM items WHERE listed = 1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut items = Vec::new();
    let text = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Option<Box<str>>> {
        Ok(r.get::<_, Option<String>>(i)?.map(String::into_boxed_str))
    };
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let kind: String = r.get(1)?;
        let status: String = r.get(2)?;
        let status = Status::parse(&status).unwrap_or(Status::Pending);
        items.push(Progress {
            videos: match status {
                Status::Succeeded => videos.remove(&id).unwrap_or_default(),
                _ => Vec::new(),
            },
            id: id.into_boxed_str(),
            kind: Kind::parse(&kind).unwrap_or(Kind::Text2Video),
            status,
            attempt: r.get(3)?,
            external_task_id: text(r, 4)?,
            task_id: text(r, 5)?,
            charged: r
                .get::<_, Option<String>>(6)?
                .and_then(|u| u.trim().parse::<f64>().ok())
                .filter(|u| u.is_finite()),
            submitted_at: r.get(7)?,
            est_units: r.get(8)?,
            account: text(r, 9)?,
        });
    }
    Ok(items)
}

/// The videos of listed items that succeeded and wait for their download.
fn pending_videos(conn: &Connection) -> Result<HashMap<String, Vec<VideoRecord>>, StateError> {
    let mut stmt = conn.prepare(
        "SELECT v.item_id, v.n, v.video_id, v.url, v.duration, v.path, v.bytes, v.sha256
         FROM videos v JOIN items i ON i.id = v.item_id
         WHERE i.listed = 1 AND i.status = 'succeeded'
         ORDER BY v.item_id, v.n",
    )?;
    let mut rows = stmt.query([])?;
    let mut by_item: HashMap<String, Vec<VideoRecord>> = HashMap::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        by_item.entry(id).or_default().push(video(r, 1)?);
    }
    Ok(by_item)
}

/// One item's video records, by its id (the engine's file check).
pub fn videos_of(conn: &Connection, id: &str) -> Result<Vec<VideoRecord>, StateError> {
    let mut stmt = conn.prepare_cached(
        "SELECT n, video_id, url, duration, path, bytes, sha256
         FROM videos WHERE item_id = ?1 ORDER BY n",
    )?;
    let mut rows = stmt.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(video(r, 0)?);
    }
    Ok(out)
}

/// One item's task id, by its id.
pub fn task_id_of(conn: &Connection, id: &str) -> Result<Option<String>, StateError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT task_id FROM items WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// A video record from the columns at `at` on (n, video_id, url, duration,
/// path, bytes, sha256).
fn video(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<VideoRecord> {
    Ok(VideoRecord {
        n: r.get(at)?,
        video_id: r.get(at + 1)?,
        url: r.get(at + 2)?,
        duration: r.get(at + 3)?,
        path: r.get(at + 4)?,
        bytes: r.get::<_, Option<i64>>(at + 5)?.map(|b| b as u64),
        sha256: r.get(at + 6)?,
    })
}
