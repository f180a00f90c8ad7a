//! The `.part` file beside each video: where it lives, reopening it to
//! resume (re-hashing what it holds), and the fsyncs that make a finished
//! video durable before the state says so.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncReadExt as _;

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

/// Current length of the `.part` file (0 when absent).
pub(super) async fn part_len(part: &Path) -> u64 {
    tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Open the part for appending, hashing what it already holds (streamed, so
/// a large part never sits in memory).
pub(super) async fn open_for_append(part: &Path) -> Result<(File, Sha256), DownloadError> {
    let fail = |e| io_error(part, e);
    let mut hasher = Sha256::new();
    let mut existing = File::open(part).await.map_err(fail)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = existing.read(&mut buf).await.map_err(fail)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let file = OpenOptions::new()
        .append(true)
        .open(part)
        .await
        .map_err(fail)?;
    Ok((file, hasher))
}

/// Up to `n` first bytes of the file at `path`.
pub(super) async fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, DownloadError> {
    let fail = |e| io_error(path, e);
    let mut file = File::open(path).await.map_err(fail)?;
    let mut head = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let got = file.read(&mut head[filled..]).await.map_err(fail)?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    head.truncate(filled);
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

/// Make the rename durable: fsync the directory that holds `dest`.
pub(super) async fn sync_parent(dest: &Path) -> Result<(), DownloadError> {
    #[cfg(unix)]
    {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let handle = File::open(&dir).await.map_err(|e| io_error(&dir, e))?;
        handle.sync_all().await.map_err(|e| io_error(&dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dest;
    Ok(())
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
        assert_eq!(read_head(&path, 16).await.ok(), Some(b"abc".to_vec()));
        assert_eq!(read_head(&path, 2).await.ok(), Some(b"ab".to_vec()));
        assert!(read_head(&dir.path().join("none"), 2).await.is_err());
        assert!(remove(&dir.path().join("none")).await.is_ok());
    }
}
