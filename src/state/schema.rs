//! Schema, versioning and migrations of the state file.
//!
//! `PRAGMA user_version` carries the schema version. Each migration moves the
//! file one version up; the steps a file needs run in one transaction (all
//! or none, one fsync); a file from a newer vidbatch is refused rather than
//! guessed at. State files from every released version
//! must keep opening: add a migration, never edit an old one.

use std::path::Path;

use rusqlite::{Connection, params};

use super::StateError;

/// The schema this build writes.
pub const VERSION: i64 = 5;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE items (
        id               TEXT PRIMARY KEY,
        seq              INTEGER NOT NULL,
        kind             TEXT NOT NULL,
        prompt           TEXT,
        params_hash      TEXT NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',
        attempt          INTEGER NOT NULL DEFAULT 1,
        submit_requests  INTEGER NOT NULL DEFAULT 0,
        external_task_id TEXT,
        task_id          TEXT,
        units            TEXT,
        error_code       INTEGER,
        error_message    TEXT,
        request_id       TEXT,
        submitted_at     INTEGER,
        finished_at      INTEGER,
        updated_at       INTEGER NOT NULL
     );
     CREATE INDEX items_status ON items(status);
     CREATE INDEX items_seq ON items(seq);
     CREATE TABLE videos (
        item_id  TEXT NOT NULL REFERENCES items(id),
        n        INTEGER NOT NULL,
        video_id TEXT,
        url      TEXT,
        duration TEXT,
        path     TEXT,
        bytes    INTEGER,
        sha256   TEXT,
        PRIMARY KEY (item_id, n)
     );",
    // 1 -> 2: what each item asks for (its settings as JSON) and its estimated
    // units, so reports show them without the manifest. Forgetting the
    // manifest fingerprint makes the next run sync once and fill them in.
    "ALTER TABLE items ADD COLUMN params TEXT;
     ALTER TABLE items ADD COLUMN est_units REAL;
     DELETE FROM meta WHERE key = 'manifest_fingerprint';",
    // 2 -> 3: the account (by its name in the accounts file) whose
    // credentials created the item's current task; NULL: the batch's only
    // (default) account. Polls, lookups and URL refreshes use it.
    "ALTER TABLE items ADD COLUMN account TEXT;",
    // 3 -> 4: videos copied to an object store (`--output s3://…`); see
    // `state::uploads`. A table of its own: a local batch never has rows.
    super::uploads::MIGRATION,
    // 4 -> 5: the engine reads what a create sends from the state, not from a
    // manifest held in memory (flat memory at 100k items): `spec` is the item
    // as the manifest last synced asks for it (JSON), `manifest_hash` its
    // parameters' hash (against `params_hash`, what was submitted: an edit
    // after submit), `listed` whether that manifest still has it. Forgetting
    // the fingerprint makes the next run sync once and fill them in.
    "ALTER TABLE items ADD COLUMN spec TEXT;
     ALTER TABLE items ADD COLUMN manifest_hash TEXT;
     ALTER TABLE items ADD COLUMN listed INTEGER NOT NULL DEFAULT 1;
     DELETE FROM meta WHERE key IN ('manifest_fingerprint', 'manifest_seal');",
];

/// Bring a writable connection to [`VERSION`], creating the batch id on
/// first use: `identity` (key, name) when given, else a random key.
pub(super) fn prepare(
    conn: &Connection,
    path: &Path,
    identity: Option<(&str, &str)>,
) -> Result<(), StateError> {
    let corrupt = |e: rusqlite::Error| match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StateError::DiskFull {
                path: path.to_path_buf(),
            }
        }
        _ => StateError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    };
    // WAL: readers (status) never block the writer; FULL: a committed transition
    // survives a power cut, and group commit keeps the fsync count low.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(corrupt)?;
    let mut version = user_version(conn).map_err(corrupt)?;
    if version > VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: VERSION,
        });
    }
    // One transaction for every step a file needs (a new one: all of them
    // and its id): one commit, one fsync, where a step each cost six on a
    // fresh batch's way to its first create. A crash leaves it as it was.
    let tx = conn.unchecked_transaction()?;
    let from = version;
    while version < VERSION {
        tx.execute_batch(MIGRATIONS[version as usize])
            .map_err(corrupt)?;
        version += 1;
    }
    if version != from {
        tx.pragma_update(None, "user_version", version)?;
    }
    let has_id: bool = tx
        .query_row(
            "SELECT COUNT(*) FROM meta WHERE key = 'batch_id'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(corrupt)?
        > 0;
    if !has_id {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let (id, name) = identity.unwrap_or((&random[..12], ""));
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('batch_id', ?1), ('created_at', ?2)",
            params![id, super::writer::now_ms().to_string()],
        )?;
        if !name.is_empty() {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('batch_name', ?1)",
                params![name],
            )?;
        }
    }
    // Nothing written: a commit of nothing, no fsync.
    tx.commit()?;
    Ok(())
}

/// Refuse files this build cannot read.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let version = user_version(conn).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if version > VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: VERSION,
        });
    }
    if version == 0 {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            message: "not a vidbatch state file".into(),
        });
    }
    Ok(())
}

pub(super) fn batch_id(conn: &Connection) -> Result<String, StateError> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'batch_id'", [], |r| {
            r.get(0)
        })?,
    )
}

/// The schema version of an open state file.
pub(super) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    user_version(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}
