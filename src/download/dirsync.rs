//! Directory fsyncs shared by the renames that finish close together.
//!
//! A video counts as downloaded only once its rename survives a power cut,
//! which takes an fsync of its folder. One fsync covers every rename made in
//! that folder before it started, so downloads that finish together need
//! not pay one each: [`DirSyncs::sync`] joins the next fsync of the folder
//! that starts after the call (group commit, as the state writer does for
//! its rows). While one fsync runs, the renames that finish queue for the
//! next, and that one covers them all. Nobody waits on purpose for company:
//! a rename alone is synced at once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::file::sync_dir;

/// The answer every waiter of one fsync gets (`io::Error` is not `Clone`).
type Outcome = Result<(), (io::ErrorKind, String)>;

/// Folders being synced, each with the callers waiting for its next fsync.
#[derive(Debug, Default)]
pub(super) struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Vec<oneshot::Sender<Outcome>>>>,
    /// fsyncs made (figures and tests: how many renames shared one).
    rounds: std::sync::atomic::AtomicU64,
}

impl DirSyncs {
    /// Return once an fsync of `dir` that started after this call has
    /// finished: every rename into `dir` made before the call is durable.
    pub(super) async fn sync(self: &Arc<Self>, dir: &Path) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            match dirs.get_mut(dir) {
                // A round is running: it takes this waiter after its fsync.
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    dirs.insert(dir.to_path_buf(), vec![tx]);
                    true
                }
            }
        };
        if first {
            let (me, dir) = (self.clone(), dir.to_path_buf());
            // Not awaited: the rounds serve every waiter, this caller's
            // future may be dropped without stranding the others.
            drop(tokio::task::spawn_blocking(move || me.rounds(&dir)));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, message))) => Err(io::Error::new(kind, message)),
            Err(_) => Err(io::Error::other("the folder sync was abandoned")),
        }
    }

    /// fsync `dir` for the waiters queued, again while more queued during
    /// the last one; the folder leaves the map when none did.
    fn rounds(&self, dir: &Path) {
        loop {
            let waiting = {
                let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
                match dirs.get_mut(dir) {
                    Some(w) if !w.is_empty() => std::mem::take(w),
                    _ => {
                        dirs.remove(dir);
                        return;
                    }
                }
            };
            let outcome = sync_dir(dir).map_err(|e| (e.kind(), e.to_string()));
            self.rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for w in waiting {
                let _ = w.send(outcome.clone());
            }
        }
    }

    /// fsyncs of folders made so far.
    pub(super) fn rounds_made(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lone_rename_is_synced_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        syncs.sync(dir.path()).await.expect("sync");
        assert_eq!(syncs.rounds_made(), 1);
        syncs.sync(dir.path()).await.expect("sync");
        assert_eq!(syncs.rounds_made(), 2, "a later call gets a later fsync");
    }

    #[tokio::test]
    async fn renames_that_queue_during_an_fsync_share_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        // An fsync of the folder is under way (its entry is present)...
        syncs
            .dirs
            .lock()
            .unwrap()
            .insert(dir.path().into(), Vec::new());
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let (syncs, dir) = (syncs.clone(), dir.path().to_path_buf());
                tokio::spawn(async move { syncs.sync(&dir).await })
            })
            .collect();
        while syncs.dirs.lock().unwrap()[dir.path()].len() < 50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(syncs.rounds_made(), 0, "nobody is answered before an fsync");
        // ...and when it ends, one more serves all fifty.
        let (s, d) = (syncs.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || s.rounds(&d))
            .await
            .expect("join");
        for w in waiters {
            w.await.expect("join").expect("sync");
        }
        assert_eq!(syncs.rounds_made(), 1);
        assert!(syncs.dirs.lock().unwrap().is_empty(), "the folder is left");
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_synced_fails_every_waiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        let gone = dir.path().join("gone");
        let err = syncs.sync(&gone).await.expect_err("no such folder");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
