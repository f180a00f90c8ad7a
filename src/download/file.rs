//! The `.part` file beside each video: where it lives, writing it, reopening
//! it to resume (re-hashing what it holds), and moving it into place.
//!
//! Every disk operation is a blocking system call, run on tokio's blocking
//! pool; each trip there costs a thread hand-off, so a download makes as few
//! as it can: body chunks gather in memory ([`PartWriter`]) and reach the
//! disk one buffer at a time, and the end of a download — last bytes (and,
//! where the filesystem's sync cannot be shared, `fdatasync`) — is one trip.
//! Making the data durable, the rename and the directory fsync that makes
//! the rename durable are shared with the downloads that finish beside it
//! ([`super::dirsync`]).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::DownloadError;

/// `<dest>.part`, beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Current length of the `.part` file (0 when absent); an unreadable one is
/// an error, not "absent", so a resume never silently starts over a file it
/// cannot see.
pub(super) async fn part_len(part: &Path) -> Result<u64, DownloadError> {
    match tokio::fs::metadata(part).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error(part, e)),
    }
}

/// Run `f` on the blocking pool; a lost task is an I/O error on `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DownloadError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| io_error(path, e)),
        Err(e) => Err(io_error(path, std::io::Error::other(e))),
    }
}

/// Bytes on their way into a `.part` file: gathered in memory, written a
/// buffer at a time. The file is opened by the first write — truncated for a
/// fresh start, appended to for a resume — so a body refused before its
/// first buffer never touches an earlier `.part`.
pub(super) struct PartWriter {
    path: PathBuf,
    append: bool,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    capacity: usize,
}

/// What [`PartWriter::finish`] checks before the part may become the video.
pub(super) type HeadCheck = fn(&[u8]) -> bool;

/// Why a finished part may not become the video.
pub(super) enum Refused {
    /// The head check failed: the `.part` was removed.
    BadHead,
    Io(DownloadError),
}

impl PartWriter {
    /// A writer that starts `part` afresh (`append` false) or adds to it,
    /// writing once `capacity` bytes have gathered.
    pub(super) fn new(part: &Path, append: bool, capacity: usize) -> Self {
        PartWriter {
            path: part.to_path_buf(),
            append,
            file: None,
            buf: Vec::new(),
            capacity,
        }
    }

    /// A writer appending to `part`, and the hash of what it already holds
    /// (read in the same blocking trip, streamed: a large part never sits in
    /// memory).
    pub(super) async fn resume(
        part: &Path,
        capacity: usize,
    ) -> Result<(Self, Sha256), DownloadError> {
        let path = part.to_path_buf();
        let (file, hasher) = blocking(part, move || {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)?;
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                hasher.update(&chunk[..n]);
            }
            Ok((file, hasher))
        })
        .await?;
        let mut w = PartWriter::new(part, true, capacity);
        w.file = Some(file);
        Ok((w, hasher))
    }

    /// Add `bytes`; a full buffer goes to the disk.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.capacity {
            let (file, mut buf, ()) = self.in_blocking(|_, _| Ok(())).await?;
            buf.clear();
            self.file = Some(file);
            self.buf = buf;
        }
        Ok(())
    }

    /// Write what is gathered and make it durable, leaving the `.part` for a
    /// later attempt to resume from.
    pub(super) async fn keep(mut self) -> Result<(), DownloadError> {
        self.in_blocking(|file, _| file.sync_data()).await?;
        Ok(())
    }

    /// Write what is gathered, in one blocking trip, and make it durable
    /// there — unless the part's filesystem syncs as a whole
    /// ([`super::dirsync::syncs_as_a_whole`]): then the part's file comes
    /// back (open since before its bytes were written, so it hears of their
    /// write-back failing) for the round that lands it to sync with the
    /// parts beside it. With `check`, the file's first `head_len` bytes are
    /// judged first (a resumed part whose start came from an earlier run);
    /// a part that fails is removed.
    ///
    /// Moving the part into place is the caller's ([`super::dirsync`]).
    pub(super) async fn finish(
        mut self,
        check: Option<(HeadCheck, usize)>,
    ) -> Result<Option<std::fs::File>, Refused> {
        let (file, _, fit) = self
            .in_blocking(move |file, part| {
                let shared = super::dirsync::syncs_as_a_whole(file);
                if !shared {
                    file.sync_data()?;
                }
                if let Some((check, len)) = check
                    && !check(&read_head(part, len)?)
                {
                    std::fs::remove_file(part)?;
                    return Ok(None);
                }
                Ok(Some(shared))
            })
            .await
            .map_err(Refused::Io)?;
        match fit {
            Some(shared) => Ok(shared.then_some(file)),
            None => Err(Refused::BadHead),
        }
    }

    /// One blocking trip: open the file if this is its first, write the
    /// gathered bytes, then `then`. Hands back the file and the (written)
    /// buffer for reuse.
    async fn in_blocking<T: Send + 'static>(
        &mut self,
        then: impl FnOnce(&mut std::fs::File, &Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<(std::fs::File, Vec<u8>, T), DownloadError> {
        let (file, buf, path, append) = (
            self.file.take(),
            std::mem::take(&mut self.buf),
            self.path.clone(),
            self.append,
        );
        blocking(&self.path, move || {
            let mut file = match file {
                Some(f) => f,
                None => open_part(&path, append)?,
            };
            file.write_all(&buf)?;
            let out = then(&mut file, &path)?;
            Ok((file, buf, out))
        })
        .await
    }
}

/// Open `part` for writing, creating its folder (durably) when missing.
fn open_part(part: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let open = || {
        let mut o = std::fs::OpenOptions::new();
        if append {
            o.append(true);
        } else {
            o.write(true).create(true).truncate(true);
        }
        o.open(part)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !append => {
            if let Some(dir) = part.parent().filter(|d| !d.as_os_str().is_empty()) {
                make_dirs(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// `create_dir_all`, and each new folder's entry in its parent made durable
/// (a video renamed into a folder that a power cut forgets is lost too).
fn make_dirs(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
                make_dirs(parent)?;
            }
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                // Made by a download beside this one; its parent is synced
                // below all the same, so neither relies on the other.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// fsync a directory: the entries made or renamed in it are durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Up to `n` first bytes of the file at `path`.
fn read_head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Remove `part` if it exists.
pub(super) async fn remove(part: &Path) -> Result<(), DownloadError> {
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(part, e)),
    }
}

pub(super) fn io_error(path: &Path, source: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_path_is_beside_dest() {
        assert_eq!(
            part_path(Path::new("/o/b/item.mp4")),
            PathBuf::from("/o/b/item.mp4.part")
        );
        assert_eq!(part_path(Path::new("v.mp4")), PathBuf::from("v.mp4.part"));
    }

    #[tokio::test]
    async fn head_of_short_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(read_head(&path, 16).ok(), Some(b"abc".to_vec()));
        assert_eq!(read_head(&path, 2).ok(), Some(b"ab".to_vec()));
        assert!(read_head(&dir.path().join("none"), 2).is_err());
        assert!(remove(&dir.path().join("none")).await.is_ok());
    }

    #[tokio::test]
    async fn a_part_reaches_the_disk_a_buffer_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("videos/deep/v.mp4");
        let part = part_path(&dest);
        let mut w = PartWriter::new(&part, false, 4);
        w.write(b"ab").await.expect("write");
        assert!(!part.exists(), "nothing on disk before a buffer fills");
        w.write(b"cdef").await.expect("write");
        assert_eq!(std::fs::read(&part).ok(), Some(b"abcdef".to_vec()));
        w.write(b"g").await.expect("write");
        assert!(w.finish(None).await.is_ok());
        assert_eq!(std::fs::read(&part).ok(), Some(b"abcdefg".to_vec()));
        assert!(!dest.exists(), "moving it into place is the caller's");
    }

    #[tokio::test]
    async fn a_resumed_part_is_hashed_appended_to_and_judged_at_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("v.mp4");
        let part = part_path(&dest);
        std::fs::write(&part, b"abc").expect("write");
        let (mut w, hasher) = PartWriter::resume(&part, 1 << 20).await.expect("resume");
        assert_eq!(hasher.finalize().to_vec(), Sha256::digest(b"abc").to_vec());
        w.write(b"def").await.expect("write");
        let refused = w.finish(Some((|h| h.starts_with(b"xyz"), 3))).await;
        assert!(matches!(refused, Err(Refused::BadHead)));
        assert!(
            !part.exists() && !dest.exists(),
            "a part that fails is removed"
        );

        std::fs::write(&part, b"abc").expect("write");
        let (mut w, _) = PartWriter::resume(&part, 1 << 20).await.expect("resume");
        w.write(b"def").await.expect("write");
        assert!(w.finish(Some((|h| h == b"abc", 3))).await.is_ok());
        assert_eq!(std::fs::read(&part).ok(), Some(b"abcdef".to_vec()));
    }
}
