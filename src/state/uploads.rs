//! Which videos are in the object store (`--output s3://…`).
//!
//! One row per video in table `uploads` (schema 4): the key it was stored
//! under, the bytes and sha256 it was stored with, and when — or the last
//! error. A row counts as uploaded only for the sha256 it names, so a video
//! downloaded again with different bytes is not taken as stored. The row is
//! written through the single writer after the object exists, so a crash
//! between the two leaves an object without a row: the next run finds the
//! object, checks it has the same bytes and records it, uploading nothing.

use rusqlite::{Connection, Transaction, params};

use super::StateError;

/// Schema 3 -> 4.
pub(super) const MIGRATION: &str = "CREATE TABLE uploads (
        item_id     TEXT NOT NULL,
        n           INTEGER NOT NULL,
        key         TEXT NOT NULL,
        bytes       INTEGER,
        sha256      TEXT,
        uploaded_at INTEGER,
        error       TEXT,
        PRIMARY KEY (item_id, n)
     );";

/// Prefix of the item's `error_message` while an upload of it failed; an
/// upload that then succeeds clears only a message of this kind.
pub const ERROR_PREFIX: &str = "upload failed: ";

/// [`super::Update::Uploaded`].
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub id: String,
    pub n: u32,
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
}

/// [`super::Update::UploadFailed`].
#[derive(Debug, Clone)]
pub struct UploadFailed {
    pub id: String,
    pub n: u32,
    pub key: String,
    pub message: String,
}

/// A downloaded video that the object store does not have (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToUpload {
    pub id: String,
    pub n: u32,
    /// Relative to the batch folder, e.g. `videos/cat.mp4`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Every video of a `downloaded` item without an upload row for its sha256,
/// in manifest order.
pub fn to_upload(conn: &Connection) -> Result<Vec<ToUpload>, StateError> {
    let mut stmt = conn.prepare(
        "SELECT v.item_id, v.n, v.path, v.bytes, v.sha256
         FROM videos v JOIN items i ON i.id = v.item_id
         LEFT JOIN uploads u ON u.item_id = v.item_id AND u.n = v.n
              AND u.sha256 = v.sha256 AND u.uploaded_at IS NOT NULL
         WHERE i.status = 'downloaded' AND v.path IS NOT NULL AND v.sha256 IS NOT NULL
               AND v.bytes IS NOT NULL AND u.item_id IS NULL
         ORDER BY i.seq, i.id, v.n",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ToUpload {
            id: r.get(0)?,
            n: r.get(1)?,
            path: r.get(2)?,
            bytes: r.get::<_, i64>(3)? as u64,
            sha256: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Videos recorded as uploaded.
pub fn uploaded_count(conn: &Connection) -> Result<u64, StateError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM uploads WHERE uploaded_at IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

pub(super) fn apply_uploaded(tx: &Transaction<'_>, u: &Uploaded, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO uploads (item_id, n, key, bytes, sha256, uploaded_at, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
    )?
    .execute(params![u.id, u.n, u.key, u.bytes as i64, u.sha256, now])?;
    tx.prepare_cached(
        "UPDATE items SET error_code = NULL, error_message = NULL, updated_at = ?3
         WHERE id = ?1 AND substr(error_message, 1, length(?2)) = ?2",
    )?
    .execute(params![u.id, ERROR_PREFIX, now])?;
    Ok(())
}

pub(super) fn apply_failed(
    tx: &Transaction<'_>,
    f: &UploadFailed,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO uploads (item_id, n, key, bytes, sha256, uploaded_at, error)
         VALUES (?1, ?2, ?3, NULL, NULL, NULL, ?4)",
    )?
    .execute(params![f.id, f.n, f.key, f.message])?;
    tx.prepare_cached(
        "UPDATE items SET error_code = NULL, error_message = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![f.id, format!("{ERROR_PREFIX}{}", f.message), now])?;
    Ok(())
}
