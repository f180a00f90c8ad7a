//! Noticing a state file deleted or replaced under a running batch.
//!
//! SQLite keeps writing to the file it opened even after someone deletes it
//! (or puts another file in its place): the run would finish, its state would
//! be gone, and the rerun would start from nothing. The writer asks [`Watch`]
//! after every commit whether `state.db` is still the file it writes (device
//! and inode). If it was deleted, a complete copy of what the connection sees
//! is written back (`VACUUM INTO`) and the writer goes on with that; if
//! another file took its place, ours is kept beside it. Either way the run
//! submits nothing more.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::now_ms;

/// The identity of the state file the writer opened.
pub(super) struct Watch {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

/// What [`Watch::check`] found and did.
pub(super) struct Moved {
    pub message: String,
    /// The state was written back (or beside) and the connection switched.
    pub rescued: bool,
}

impl Watch {
    pub fn new(path: &Path) -> Option<Watch> {
        let id = file_id(path)?;
        Some(Watch {
            path: path.to_path_buf(),
            id: Some(id),
        })
    }

    /// Where the state is written now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file is (still) one this writer can checkpoint into.
    pub fn intact(&self) -> bool {
        self.id.is_some()
    }

    /// `None` while `path` is the file `conn` writes.
    pub fn check(&mut self, conn: &mut Connection) -> Option<Moved> {
        let now = file_id(&self.path);
        if now == self.id || self.id.is_none() {
            return None;
        }
        let path = self.path.clone();
        let deleted = now.is_none();
        let target = if deleted {
            path.clone()
        } else {
            with_suffix(&path, &format!(".rescued-{}", now_ms()))
        };
        let rescued = rescue_to(conn, &path, &target, deleted);
        let what = if deleted {
            "was deleted during the run"
        } else {
            "was replaced by another file during the run"
        };
        let message = if rescued {
            format!(
                "{} {what}; this run's state was saved to {} and nothing more is submitted",
                path.display(),
                target.display()
            )
        } else {
            format!(
                "{} {what}, and this run's state could not be saved again; nothing more is submitted",
                path.display()
            )
        };
        self.id = if rescued { file_id(&target) } else { None };
        self.path = target;
        Some(Moved { message, rescued })
    }
}

/// Copy what `conn` sees to `target` and switch `conn` to it. The old
/// file's `-wal`/`-shm` (named after the path, useless once the file is gone)
/// are removed first so the copy never picks them up.
fn rescue_to(conn: &mut Connection, path: &Path, target: &Path, deleted: bool) -> bool {
    let tmp = with_suffix(path, ".rescue-tmp");
    let _ = std::fs::remove_file(&tmp);
    if conn
        .execute("VACUUM INTO ?1", params![tmp.to_string_lossy()])
        .is_err()
    {
        return false;
    }
    let Ok(placeholder) = Connection::open_in_memory() else {
        return false;
    };
    drop(std::mem::replace(conn, placeholder));
    if deleted {
        let _ = std::fs::remove_file(with_suffix(path, "-wal"));
        let _ = std::fs::remove_file(with_suffix(path, "-shm"));
    }
    if std::fs::rename(&tmp, target).is_err() {
        return false;
    }
    match reopen(target) {
        Ok(c) => {
            *conn = c;
            true
        }
        Err(_) => false,
    }
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn reopen(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}
