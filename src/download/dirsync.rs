//! Finished parts moved into place durably, in groups.
//!
//! A video counts as downloaded only once its bytes and its name survive a
//! power cut: the part's data synced, then renamed to the video's name,
//! then its folder fsynced. Per video that is an `fdatasync` (a disk write
//! and a cache flush each) and an fsync of the folder — most of a run's
//! CPU when videos finish by the hundred a second. Downloads that finish
//! together need not pay each: [`DirSyncs::land`] joins the next round of
//! the video's folder that starts after the call, and one round serves
//! every part queued for it —
//! 1. one `syncfs` of the folder's filesystem makes the data of every part
//!    written before it durable (on filesystems where that is known to be
//!    what it does: [`syncs_as_a_whole`]; elsewhere each part was `fdatasync`ed
//!    by its own download, as before). A failed write-back is reported by
//!    `syncfs` only once, to whoever asks first, so each part's own
//!    descriptor (open since before its bytes were written) is asked too
//!    (`sync_file_range`, which waits without a disk flush): a part whose
//!    write-back failed is not renamed;
//! 2. each part is renamed to its video (data first, name after, so a power
//!    cut leaves a video whole or absent, never torn);
//! 3. one fsync of the folder makes every rename durable.
//!
//! While one round runs, the parts that finish queue for the next (group
//! commit, as the state writer does for its rows). Nobody waits on purpose
//! for company: a part alone lands at once.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::file::sync_dir;

/// The answer one waiter gets (`io::Error` is not `Clone`).
type Outcome = Result<(), (io::ErrorKind, String)>;

fn outcome(r: io::Result<()>) -> Outcome {
    r.map_err(|e| (e.kind(), e.to_string()))
}

/// A part waiting to become its video.
#[derive(Debug)]
struct Landing {
    part: PathBuf,
    dest: PathBuf,
    /// The part, open since before its bytes were written, when its data
    /// is left to the round (`None`: its download ran `fdatasync`).
    unsynced: Option<std::fs::File>,
    answer: oneshot::Sender<Outcome>,
}

/// Folders with a round under way, each with the parts queued for its next.
#[derive(Debug, Default)]
pub(super) struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Vec<Landing>>>,
    /// Rounds made (figures and tests: how many parts shared one).
    rounds: std::sync::atomic::AtomicU64,
}

impl DirSyncs {
    /// Move `part` (in `dir`) to `dest` (in `dir`) once its data is durable
    /// (`unsynced`: the part's file, open since before it was written, when
    /// the round is to make it so; `None`: already durable), and return once
    /// the rename is durable too. On an error the part stays where it is.
    pub(super) async fn land(
        self: &Arc<Self>,
        dir: &Path,
        part: &Path,
        dest: &Path,
        unsynced: Option<std::fs::File>,
    ) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        let landing = Landing {
            part: part.to_path_buf(),
            dest: dest.to_path_buf(),
            unsynced,
            answer: tx,
        };
        let first = {
            let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            match dirs.get_mut(dir) {
                // A round is running: the next one takes this part.
                Some(waiting) => {
                    waiting.push(landing);
                    false
                }
                None => {
                    dirs.insert(dir.to_path_buf(), vec![landing]);
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
            Err(_) => Err(io::Error::other("the move into place was abandoned")),
        }
    }

    /// Land the parts queued for `dir`, again while more queued during the
    /// last round; the folder leaves the map when none did.
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
            // Counted before its waiters hear back, so one that asks how
            // many rounds were made after its answer counts its own.
            self.rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            round(dir, waiting);
        }
    }

    /// Rounds made so far.
    pub(super) fn rounds_made(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One round: the data of the parts not yet synced, their renames, the
/// folder; each waiter answered with what happened to its own part.
fn round(dir: &Path, waiting: Vec<Landing>) {
    let data = if waiting.iter().any(|l| l.unsynced.is_some()) {
        outcome(sync_filesystem(dir))
    } else {
        Ok(())
    };
    let renamed: Vec<(oneshot::Sender<Outcome>, Outcome)> = waiting
        .into_iter()
        .map(|l| {
            let durable = match (&l.unsynced, &data) {
                (None, _) => Ok(()),
                (Some(_), Err(e)) => Err(e.clone()),
                // The sync of the whole reports a failed write-back only
                // once, to whoever asks first; the part's own descriptor
                // hears of any that hit it since it was opened.
                (Some(file), Ok(())) => outcome(written_back(file)),
            };
            let landed = durable.and_then(|()| outcome(std::fs::rename(&l.part, &l.dest)));
            (l.answer, landed)
        })
        .collect();
    let folder = if renamed.iter().any(|(_, o)| o.is_ok()) {
        outcome(sync_dir(dir))
    } else {
        Ok(())
    };
    for (answer, landed) in renamed {
        let _ = answer.send(landed.and(folder.clone()));
    }
}

/// Whether `part`'s filesystem is one on which `syncfs` writes every file's
/// dirty data and metadata to stable storage, as `fdatasync` of each would:
/// the common local ones. Then its data may be left to the round's shared
/// sync; else its download `fdatasync`s it. Network and FUSE filesystems
/// are left out (what their sync of the whole reaches is up to the server
/// or the daemon), and so is anything unknown or unaskable. One `fstatfs`,
/// on the blocking trip that writes the part's last bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn syncs_as_a_whole(part: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    const LOCAL: [u64; 6] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
    ];
    // SAFETY: the descriptor is open for the whole call and `st` a zeroed
    // `statfs` that the call fills in; nothing is kept past the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(part.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    LOCAL.contains(&(st.f_type as u64))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn syncs_as_a_whole(_part: &std::fs::File) -> bool {
    false
}

/// `syncfs` of the filesystem holding `dir`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let folder = std::fs::File::open(dir)?;
    // SAFETY: the descriptor is open for the whole call.
    if unsafe { libc::syncfs(folder.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// After [`sync_filesystem`]: did the write-back of `file`'s pages fail
/// since it was opened? Waits for any still under way; no disk flush (the
/// sync of the whole made it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn written_back(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for the whole call; 0, 0 is the whole file.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Never reached: without [`syncs_as_a_whole`] every part is synced on its own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn sync_filesystem(_dir: &Path) -> io::Result<()> {
    Err(io::Error::other("no shared sync on this platform"))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn written_back(file: &std::fs::File) -> io::Result<()> {
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part with `bytes` beside `dest`, in `dir`, and its open file.
    fn part(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, PathBuf, std::fs::File) {
        use std::io::Write as _;
        let dest = dir.join(name);
        let part = super::super::file::part_path(&dest);
        let mut file = std::fs::File::create(&part).expect("create part");
        file.write_all(bytes).expect("write part");
        (part, dest, file)
    }

    /// Pretend a round for `dir` is under way: parts queue for the next.
    fn round_under_way(syncs: &DirSyncs, dir: &Path) {
        syncs.dirs.lock().unwrap().insert(dir.into(), Vec::new());
    }

    /// Run the rounds of `dir` (as the round under way would on its end).
    async fn run_rounds(syncs: &Arc<DirSyncs>, dir: &Path) {
        let (s, d) = (syncs.clone(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || s.rounds(&d))
            .await
            .expect("join");
    }

    #[tokio::test]
    async fn a_lone_part_lands_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        // Left to the round, or synced first, as a download does.
        let unsynced = |f: std::fs::File| {
            if syncs_as_a_whole(&f) {
                Some(f)
            } else {
                f.sync_data().expect("fdatasync");
                None
            }
        };
        let (p, d, f) = part(dir.path(), "a.mp4", b"a");
        syncs
            .land(dir.path(), &p, &d, unsynced(f))
            .await
            .expect("land");
        assert_eq!(std::fs::read(&d).ok(), Some(b"a".to_vec()));
        assert!(!p.exists());
        assert_eq!(syncs.rounds_made(), 1);
        let (p, d, f) = part(dir.path(), "b.mp4", b"b");
        syncs
            .land(dir.path(), &p, &d, unsynced(f))
            .await
            .expect("land");
        assert_eq!(syncs.rounds_made(), 2, "a later call gets a later round");
    }

    #[tokio::test]
    async fn parts_that_queue_during_a_round_share_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        // A round for the folder is under way (its entry is present)...
        round_under_way(&syncs, dir.path());
        let waiters: Vec<_> = (0..50)
            .map(|i| {
                let (syncs, dir) = (syncs.clone(), dir.path().to_path_buf());
                let (p, d, f) = part(&dir, &format!("{i}.mp4"), b"v");
                tokio::spawn(async move { syncs.land(&dir, &p, &d, Some(f)).await })
            })
            .collect();
        while syncs.dirs.lock().unwrap()[dir.path()].len() < 50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(syncs.rounds_made(), 0, "nobody is answered before a round");
        assert!(!dir.path().join("0.mp4").exists(), "nothing moved yet");
        // ...and when it ends, one more serves all fifty.
        run_rounds(&syncs, dir.path()).await;
        for w in waiters {
            w.await.expect("join").expect("land");
        }
        assert_eq!(syncs.rounds_made(), 1);
        assert!(dir.path().join("49.mp4").exists());
        assert!(syncs.dirs.lock().unwrap().is_empty(), "the folder is left");
    }

    #[tokio::test]
    async fn a_part_that_cannot_move_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        round_under_way(&syncs, dir.path());
        let (p, d, f) = part(dir.path(), "ok.mp4", b"v");
        let gone = dir.path().join("gone.mp4.part");
        let (s1, s2, dir1, dir2) = (
            syncs.clone(),
            syncs.clone(),
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
        );
        let ok = tokio::spawn(async move { s1.land(&dir1, &p, &d, Some(f)).await });
        let missing =
            tokio::spawn(async move { s2.land(&dir2, &gone, &dir2.join("gone.mp4"), None).await });
        while syncs.dirs.lock().unwrap()[dir.path()].len() < 2 {
            tokio::task::yield_now().await;
        }
        run_rounds(&syncs, dir.path()).await;
        assert!(ok.await.expect("join").is_ok());
        let err = missing.await.expect("join").expect_err("no such part");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_synced_fails_its_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let syncs = Arc::new(DirSyncs::default());
        let gone = dir.path().join("gone");
        let err = syncs
            .land(&gone, &gone.join("v.part"), &gone.join("v"), None)
            .await
            .expect_err("no such folder");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_filesystem_not_known_to_sync_as_a_whole_is_synced_file_by_file() {
        let proc_file = std::fs::File::open("/proc/self/status").expect("procfs");
        assert!(!syncs_as_a_whole(&proc_file));
    }
}
