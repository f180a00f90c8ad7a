//! Opening a batch folder for a run: the lock, the state file, the batch's
//! identity — and what to do when the folder holds a batch whose state is
//! gone.
//!
//! The promise "never pay twice" cannot rest on `state.db` alone: users
//! delete it, copy a folder without its `-wal`, truncate it, or run the same
//! manifest from another folder. So the key every create carries derives from
//! the batch's *name* (by default the manifest's file stem), the item id and
//! the attempt ([`crate::scheduler::ids`]) — never from a random id of one
//! folder. A second folder, a rebuilt state or another machine asks for the
//! same keys, and the provider refuses a second create under a key it knows;
//! the engine then looks the task up and adopts it.
//!
//! A folder that holds our files but no usable state is *rebuilt*, never
//! restarted: the unusable files are moved aside, every item is marked
//! `submitting` under its key (from the old `report.csv` when there is one,
//! which also knows later attempts), and recovery looks each one up before
//! anything is created.

pub mod changes;
pub mod jobs;
mod prepare;
pub mod source;
pub mod sync;

pub use prepare::{Prepare, Prepared, prepare};

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::state::{self, BatchLock, StateError};

/// Why a batch folder cannot be opened for this run.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    State(#[from] StateError),
    /// The manifest, read again to be synced, is no longer what was checked.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The folder holds another shard (or an unsharded batch).
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    /// `--batch NAME` names another batch than the folder holds.
    #[error("{} holds batch `{found}`, not `{wanted}`: choose another folder with -o for batch `{wanted}`, or drop --batch to continue `{found}`", dir.display())]
    OtherBatch {
        dir: PathBuf,
        found: String,
        wanted: String,
    },
    /// `--new-batch` into a folder that already holds one.
    #[error("{} already holds a batch; --new-batch starts a new one in a new folder: drop -o (it then uses output/<new name>) or choose an empty folder", dir.display())]
    NewBatchHere { dir: PathBuf },
    /// A video of an item resubmitted after an edit could not be moved
    /// aside (to `videos/replaced/`) before its new attempt.
    #[error("cannot keep {} as {}", from.display(), to.display())]
    KeepAside {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    /// A state file exists and cannot be read.
    #[error("{} cannot be read ({message}). Nothing was sent. If the disk is fine, move it aside (mv {} {}.broken) and run the same command again: vidbatch then rebuilds the state by looking every item's task up at the provider, so nothing is paid twice", path.display(), path.display(), path.display())]
    Unreadable { path: PathBuf, message: String },
}

/// An open batch, ready for the writer.
pub struct Opened {
    pub lock: BatchLock,
    pub conn: Connection,
    pub batch_id: String,
    /// Set when the folder held a batch without a usable state.
    pub rebuilt: Option<Rebuilt>,
}

/// What a rebuild found and did, for the summary and for recovery.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// What showed that a batch had been here.
    pub evidence: Vec<String>,
    /// Unusable state files, kept under new names.
    pub moved_aside: Vec<PathBuf>,
    /// Item id → (external_task_id, attempt) from the old report.
    pub known: HashMap<String, (String, u32)>,
}

/// The batch id (the key prefix of every external_task_id) of a batch name.
pub fn batch_key(name: &str) -> String {
    let digest = Sha256::digest(format!("vidbatch-batch-v1\n{name}").as_bytes());
    hex::encode(&digest[..6])
}

/// A batch name names a folder (with `--new-batch`) and goes into the state.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err("a batch name must have 1 to 100 characters".into());
    }
    if name.starts_with('.')
        || name.chars().any(|c| {
            c.is_control() || matches!(c, '/' | '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*')
        })
    {
        return Err(format!(
            "`{name}` cannot be a batch name (it names a folder: no / \\ : < > \" | ? *, no leading dot)"
        ));
    }
    Ok(())
}

/// The name `--new-batch` gives: `<base>-20261202T031500Z` (UTC, now).
pub fn new_name(base: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    format!("{base}-{stamp}")
}

/// Open `dir` for a run of batch `name` (`explicit`: the user named it).
pub fn open(dir: &Path, name: &str, explicit: bool, new_batch: bool) -> Result<Opened, BatchError> {
    let lock_existed = dir.join(".lock").exists();
    let lock = BatchLock::acquire(dir)?;
    let db = state::db_path(dir);
    let probe = probe(&db)?;
    let key = batch_key(name);
    if probe == Probe::Usable {
        if new_batch {
            return Err(BatchError::NewBatchHere {
                dir: dir.to_path_buf(),
            });
        }
        let (conn, batch_id) = state::open_rw_named(dir, &key, name)?;
        if explicit {
            let found = state::meta(&conn, "batch_name")?;
            if let Some(found) = found.filter(|f| f != name) {
                return Err(BatchError::OtherBatch {
                    dir: dir.to_path_buf(),
                    found,
                    wanted: name.to_string(),
                });
            }
        }
        return Ok(Opened {
            lock,
            conn,
            batch_id,
            rebuilt: None,
        });
    }
    let evidence = evidence(dir, lock_existed);
    if evidence.is_empty() {
        // Nothing of ours here: a new batch (an empty shell of a file is
        // replaced by a proper one).
        if probe == Probe::Empty {
            let _ = std::fs::remove_file(&db);
        }
        let (conn, batch_id) = state::open_rw_named(dir, &key, name)?;
        return Ok(Opened {
            lock,
            conn,
            batch_id,
            rebuilt: None,
        });
    }
    if new_batch {
        return Err(BatchError::NewBatchHere {
            dir: dir.to_path_buf(),
        });
    }
    let mut rebuilt = Rebuilt {
        evidence,
        ..Rebuilt::default()
    };
    let stamp = crate::state::now_ms();
    for suffix in ["", "-wal", "-shm"] {
        let from = with_suffix(&db, suffix);
        if from.exists() {
            let to = with_suffix(&db, &format!("{suffix}.lost-{stamp}"));
            std::fs::rename(&from, &to).map_err(|e| BatchError::Unreadable {
                path: from.clone(),
                message: format!("cannot move it aside: {e}"),
            })?;
            rebuilt.moved_aside.push(to);
        }
    }
    rebuilt.known = known_tasks(&dir.join("report.csv"));
    let (conn, batch_id) = state::open_rw_named(dir, &key, name)?;
    Ok(Opened {
        lock,
        conn,
        batch_id,
        rebuilt: Some(rebuilt),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Missing or zero bytes.
    Absent,
    /// A SQLite file without a vidbatch state in it (e.g. the shell left when
    /// its WAL was deleted before a checkpoint).
    Empty,
    Usable,
}

fn probe(db: &Path) -> Result<Probe, BatchError> {
    let len = match std::fs::metadata(db) {
        Ok(m) => m.len(),
        Err(_) => return Ok(Probe::Absent),
    };
    if len == 0 {
        return Ok(Probe::Absent);
    }
    let unreadable = |message: String| BatchError::Unreadable {
        path: db.to_path_buf(),
        message,
    };
    let mut header = [0u8; 16];
    std::fs::File::open(db)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| unreadable(e.to_string()))?;
    if &header != b"SQLite format 3\0" {
        return Err(unreadable("not an SQLite file".into()));
    }
    let conn = Connection::open(db).map_err(|e| unreadable(e.to_string()))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| unreadable(e.to_string()))?;
    if version == 0 {
        return Ok(Probe::Empty);
    }
    let items: i64 = conn
        .query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))
        .map_err(|e| unreadable(e.to_string()))?;
    // The fingerprint is written only after every item is durable, so a
    // state that has one and no items synced an empty list (a shard that got
    // no items): that is a batch, not a shell.
    let synced: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM meta WHERE key = ?1",
            [sync::MANIFEST_FINGERPRINT],
            |r| r.get(0),
        )
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(if items > 0 || synced > 0 {
        Probe::Usable
    } else {
        Probe::Empty
    })
}

/// Our files in `dir`, each a sign that a batch ran here.
fn evidence(dir: &Path, lock_existed: bool) -> Vec<String> {
    let mut found = Vec::new();
    if lock_existed {
        found.push(".lock".to_string());
    }
    for f in ["state.db-wal", "report.csv", "summary.json", "index.html"] {
        if dir.join(f).exists() {
            found.push(f.to_string());
        }
    }
    if let Ok(mut entries) = std::fs::read_dir(dir.join("videos"))
        && entries.next().is_some()
    {
        found.push("videos/".to_string());
    }
    found
}

/// Item id → (external_task_id, attempt) from an old `report.csv`, which
/// knows keys of earlier batches (random ids) and of later attempts.
fn known_tasks(report: &Path) -> HashMap<String, (String, u32)> {
    let mut known = HashMap::new();
    let Ok(mut reader) = csv::ReaderBuilder::new().flexible(true).from_path(report) else {
        return known;
    };
    let Ok(headers) = reader.headers().cloned() else {
        return known;
    };
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(id), Some(ext)) = (col("id"), col("external_task_id")) else {
        return known;
    };
    let attempts = col("attempts");
    for row in reader.records().flatten() {
        let (Some(item), Some(key)) = (row.get(id), row.get(ext)) else {
            continue;
        };
        // Cells may carry the spreadsheet guard; our keys never start with one.
        let key = key.trim_start_matches('\'');
        if item.is_empty() || key.is_empty() || key.len() > 256 {
            continue;
        }
        let attempt = attempts
            .and_then(|a| row.get(a))
            .and_then(|a| a.parse().ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1);
        known.insert(
            item.trim_start_matches('\'').to_string(),
            (key.to_string(), attempt),
        );
    }
    known
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_a_pure_function_of_the_name() {
        assert_eq!(batch_key("example"), batch_key("example"));
        assert_ne!(batch_key("example"), batch_key("example2"));
        assert_eq!(batch_key("x").len(), 12);
    }

    #[test]
    fn a_fresh_folder_opens_a_named_batch() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), "demo", false, false).unwrap();
        assert_eq!(opened.batch_id, batch_key("demo"));
        assert!(opened.rebuilt.is_none());
    }

    #[test]
    fn our_files_without_a_state_are_rebuilt_not_restarted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("videos")).unwrap();
        std::fs::write(dir.path().join("videos/a.mp4"), b"x").unwrap();
        std::fs::write(
            dir.path().join("report.csv"),
            "id,kind,status,task_id,external_task_id,attempts\na,text2video,downloaded,1,vb-old-a-2,2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("state.db-wal"), b"orphan").unwrap();
        let opened = open(dir.path(), "demo", false, false).unwrap();
        let rebuilt = opened.rebuilt.expect("rebuilt");
        assert!(rebuilt.evidence.contains(&"videos/".to_string()));
        assert_eq!(rebuilt.known.get("a"), Some(&("vb-old-a-2".to_string(), 2)));
        assert_eq!(rebuilt.moved_aside.len(), 1, "the orphan WAL is kept aside");
        assert_eq!(std::fs::read(&rebuilt.moved_aside[0]).unwrap(), b"orphan");
    }

    #[test]
    fn a_garbage_state_file_stops_with_instructions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.db"), b"this is not a database").unwrap();
        let err = open(dir.path(), "demo", false, false).err().expect("error");
        let text = err.to_string();
        assert!(text.contains("move it aside"), "{text}");
        assert!(matches!(err, BatchError::Unreadable { .. }));
    }

    #[test]
    fn new_batch_refuses_a_folder_that_holds_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.csv"), "id\n").unwrap();
        assert!(matches!(
            open(dir.path(), "demo-2", true, true),
            Err(BatchError::NewBatchHere { .. })
        ));
    }
}
