//! Streaming downloads of finished videos.
//!
//! A video is paid for, so a cut connection must not lose it: bytes stream to
//! `<dest>.part` (memory stays flat whatever the file size), a retry resumes
//! with `Range`, the length is checked against `Content-Length`, the file is
//! fsynced and renamed into place, and its sha256 is returned for the state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use sha2::{Digest as _, Sha256};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
    /// Longest silence tolerated while waiting for headers or the next chunk:
    /// a stalled CDN connection must become a retry, not a hung worker.
    idle_timeout: Duration,
}

/// Bytes gathered before one write to the `.part` file.
const WRITE_BUFFER: usize = 1 << 20;

/// Attempts in all (with and without progress) per allowed failed attempt.
const MAX_ATTEMPTS_FACTOR: u32 = 10;

/// Current length of the `.part` file (0 when absent).
async fn part_len(part: &Path) -> u64 {
    tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Default for [`Downloader::with_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How one attempt ended, when it did not finish the file.
enum AttemptError {
    /// Worth another attempt (network, 5xx, 429, short body); the `.part` is kept.
    Retry(String),
    /// No point retrying: return this as is.
    Final(DownloadError),
}

impl Downloader {
    pub fn new(client: reqwest::Client, max_attempts: u32, backoff_base: Duration) -> Self {
        Downloader {
            client,
            max_attempts,
            backoff_base,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// How long a connection may stay silent (no headers, no next chunk)
    /// before the attempt is abandoned and retried from the `.part`.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Fetch `url` into `dest` (via `dest.part`), resuming a partial file left by
    /// an earlier attempt or run.
    pub async fn fetch(&self, url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
        let part = part_path(dest);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(parent, e))?;
        }
        let max_attempts = self.max_attempts.max(1);
        // Attempts that moved the `.part` forward are not failures: a CDN that
        // cuts connections still delivers the file, one resume at a time. Only
        // attempts without progress use up the budget; the total is capped so a
        // server trickling a byte per connection cannot keep us forever.
        let max_total = max_attempts.saturating_mul(MAX_ATTEMPTS_FACTOR);
        let mut attempt = 1;
        let mut total = 1;
        loop {
            let before = part_len(&part).await;
            match self.attempt(url, dest, &part).await {
                Ok(done) => return Ok(done),
                Err(AttemptError::Final(DownloadError::Failed { message, .. })) => {
                    return Err(DownloadError::Failed {
                        attempts: attempt,
                        message,
                    });
                }
                Err(AttemptError::Final(e)) => return Err(e),
                Err(AttemptError::Retry(message)) => {
                    let progressed = part_len(&part).await > before;
                    if progressed && total < max_total {
                        total += 1;
                        tracing::debug!(url = %strip_query(url), %message, "download cut after progress; resuming");
                        continue;
                    }
                    if attempt >= max_attempts || total >= max_total {
                        return Err(DownloadError::Failed {
                            attempts: attempt,
                            message,
                        });
                    }
                    let wait = backoff(self.backoff_base, attempt);
                    tracing::debug!(url = %strip_query(url), attempt, ?wait, %message, "download attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    total += 1;
                }
            }
        }
    }

    /// One request: resume or restart the `.part`, stream the body into it,
    /// and on a complete body move it into place.
    async fn attempt(
        &self,
        url: &str,
        dest: &Path,
        part: &Path,
    ) -> Result<Downloaded, AttemptError> {
        let mut have = match tokio::fs::metadata(part).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(AttemptError::Final(io_error(part, e))),
        };
        let mut response = self.request(url, have).await?;
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // The part may already be whole, or longer than a changed file:
            // nothing proves which, so start again from zero.
            tracing::debug!(url = %strip_query(url), have, "416 on resume; restarting from zero");
            have = 0;
            response = self.request(url, 0).await?;
        }
        let status = response.status();
        let (append, total) = match status {
            StatusCode::PARTIAL_CONTENT => {
                match parse_content_range(response.headers().get(CONTENT_RANGE)) {
                    // Without a total in the header, the length still follows from ours.
                    Some((start, total)) if start == have => (
                        have > 0,
                        total.or_else(|| response.content_length().map(|n| have + n)),
                    ),
                    other => {
                        // A range we did not ask for: the bytes cannot be placed.
                        truncate(part).await?;
                        return Err(AttemptError::Retry(format!(
                            "server sent range {other:?} when bytes from {have} were asked; restarting"
                        )));
                    }
                }
            }
            s if s.is_success() => (false, response.content_length()),
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(AttemptError::Final(DownloadError::Expired {
                    status: status.as_u16(),
                }));
            }
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                return Err(AttemptError::Retry(format!("HTTP {}", s.as_u16())));
            }
            s => {
                return Err(AttemptError::Final(DownloadError::Failed {
                    attempts: 1,
                    message: format!("HTTP {}", s.as_u16()),
                }));
            }
        };

        let (file, mut hasher, mut written) = if append {
            let (file, hasher) = open_for_append(part).await?;
            (file, hasher, have)
        } else {
            let file = File::create(part)
                .await
                .map_err(|e| AttemptError::Final(io_error(part, e)))?;
            (file, Sha256::new(), 0)
        };
        // Body chunks are small (a few KB); unbuffered, every one would be its
        // own trip to tokio's blocking pool, serialised per file.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);

        let mut body = response.bytes_stream();
        let mut cut: Option<String> = None;
        loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, body.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) => {
                    cut = Some(format!(
                        "no data for {:?} after {written} bytes",
                        self.idle_timeout
                    ));
                    break;
                }
            };
            match chunk {
                Ok(chunk) => {
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| AttemptError::Final(io_error(part, e)))?;
                    hasher.update(&chunk);
                    written += chunk.len() as u64;
                }
                Err(e) => {
                    cut = Some(format!(
                        "body cut after {written} bytes: {}",
                        strip_query(&e.to_string())
                    ));
                    break;
                }
            }
        }
        // What arrived is kept durable either way: a later attempt resumes from it.
        file.flush()
            .await
            .map_err(|e| AttemptError::Final(io_error(part, e)))?;
        file.get_ref()
            .sync_all()
            .await
            .map_err(|e| AttemptError::Final(io_error(part, e)))?;
        drop(file);
        if let Some(message) = cut {
            return Err(AttemptError::Retry(message));
        }
        match total {
            Some(total) if written < total => {
                return Err(AttemptError::Retry(format!(
                    "short body: {written} of {total} bytes"
                )));
            }
            Some(total) if written > total => {
                truncate(part).await?;
                return Err(AttemptError::Retry(format!(
                    "body longer than announced: {written} > {total} bytes"
                )));
            }
            _ => {}
        }

        tokio::fs::rename(part, dest)
            .await
            .map_err(|e| AttemptError::Final(io_error(dest, e)))?;
        sync_parent(dest).await.map_err(AttemptError::Final)?;
        Ok(Downloaded {
            bytes: written,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    async fn request(&self, url: &str, from: u64) -> Result<reqwest::Response, AttemptError> {
        let mut request = self.client.get(url);
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        match tokio::time::timeout(self.idle_timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(AttemptError::Retry(strip_query(&e.to_string()))),
            Err(_) => Err(AttemptError::Retry(format!(
                "no response within {:?}",
                self.idle_timeout
            ))),
        }
    }
}

/// `<dest>.part`, beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Open the part for appending, hashing what it already holds (streamed, so
/// a large part never sits in memory).
async fn open_for_append(part: &Path) -> Result<(File, Sha256), AttemptError> {
    let fail = |e| AttemptError::Final(io_error(part, e));
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

async fn truncate(part: &Path) -> Result<(), AttemptError> {
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AttemptError::Final(io_error(part, e))),
    }
}

/// Make the rename durable: fsync the directory that holds `dest`.
async fn sync_parent(dest: &Path) -> Result<(), DownloadError> {
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

/// `bytes start-end/total` → (start, total if known).
fn parse_content_range(value: Option<&reqwest::header::HeaderValue>) -> Option<(u64, Option<u64>)> {
    let value = value?.to_str().ok()?.trim();
    let rest = value.strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

/// Exponential backoff from `base` with up to 50% random jitter, capped.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter_ms = (exp.as_millis() / 2) as u64;
    let jitter = if jitter_ms > 0 {
        rand::rng().random_range(0..=jitter_ms)
    } else {
        0
    };
    exp + Duration::from_millis(jitter)
}

/// Signed CDN URLs carry their signature in the query: keep it out of messages.
fn strip_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        match word.find('?') {
            Some(at) if word.contains("://") => {
                out.push_str(&word[..at]);
                out.push_str("?<redacted>");
                out.push_str(&piece[word.len()..]);
            }
            _ => out.push_str(piece),
        }
    }
    out
}

fn io_error(path: &Path, source: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn part_path_is_beside_dest() {
        assert_eq!(
            part_path(Path::new("/o/b/item.mp4")),
            PathBuf::from("/o/b/item.mp4.part")
        );
        assert_eq!(part_path(Path::new("v.mp4")), PathBuf::from("v.mp4.part"));
    }

    #[test]
    fn content_range_forms() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            parse_content_range(Some(&h("bytes 100-199/200"))),
            Some((100, Some(200)))
        );
        assert_eq!(
            parse_content_range(Some(&h("bytes 0-9/*"))),
            Some((0, None))
        );
        assert_eq!(parse_content_range(Some(&h("bytes */200"))), None);
        assert_eq!(parse_content_range(Some(&h("bytes 9-1/20"))), None);
        assert_eq!(parse_content_range(None), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=5u32 {
            let exp = base * (1 << (attempt - 1));
            let got = backoff(base, attempt);
            assert!(
                got >= exp && got <= exp + exp / 2,
                "attempt {attempt}: {got:?}"
            );
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF + MAX_BACKOFF / 2);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn url_queries_are_hidden() {
        assert_eq!(
            strip_query("error for url (https://cdn.x/v.mp4?sig=abc&exp=1) x"),
            "error for url (https://cdn.x/v.mp4?<redacted> x"
        );
        assert_eq!(strip_query("plain text? yes"), "plain text? yes");
    }
}
