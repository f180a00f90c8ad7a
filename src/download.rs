//! Streaming downloads of finished videos.
//!
//! A video is paid for, so a cut connection must not lose it: bytes stream to
//! `<dest>.part` (memory stays flat whatever the file size), a retry resumes
//! with `Range`, the length is checked against `Content-Length`, the file is
//! fsynced and renamed into place, and its sha256 is returned for the state.

use std::path::Path;
use std::time::Duration;

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL no longer serves the file (403/404/410): query the task for a fresh URL.
    #[error("video URL expired or gone (HTTP {status})")]
    Expired { status: u16 },
    /// Still failing after every attempt (network, 5xx, short body).
    #[error("download failed after {attempts} attempt(s): {message}")]
    Failed { attempts: u32, message: String },
    /// Local disk problem: not retried.
    #[error("cannot write {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Downloads with bounded retries and Range resume.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    max_attempts: u32,
    backoff_base: Duration,
}

impl Downloader {
    pub fn new(client: reqwest::Client, max_attempts: u32, backoff_base: Duration) -> Self {
        Downloader {
            client,
            max_attempts,
            backoff_base,
        }
    }

    /// Fetch `url` into `dest` (via `dest.part`), resuming a partial file left by
    /// an earlier attempt or run.
    pub async fn fetch(&self, url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
        let _ = (
            &self.client,
            self.max_attempts,
            self.backoff_base,
            url,
            dest,
        );
        todo!("download::fetch")
    }
}
