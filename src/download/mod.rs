//! Streaming downloads of finished videos, checked before they count.
//!
//! A video is paid for, so a cut connection must not lose it: bytes stream to
//! `<dest>.part` (memory stays flat whatever the file size), a retry resumes
//! with `Range`, the file's data is made durable and it is renamed into
//! place, and its sha256 is returned for the state — only once the file's
//! data and its rename are durable, so a state record of it never outlives a
//! power cut the file did not survive. The syncs that make data and rename
//! durable are shared by the downloads that finish together (`dirsync.rs`);
//! the file's own bytes cost one blocking trip, not one per chunk (`file.rs`).
//!
//! A server is not trusted to send what it says. An answer counts only if:
//! - its status is 200, or 206 for the range asked (403/404/410 mean the URL
//!   expired: [`DownloadError::Expired`], so the engine asks for a fresh one);
//! - it is a video (`verify.rs`): not declared as HTML/JSON/XML, and its first
//!   bytes are an MP4/MOV/3GP box or a WebM/Matroska header, else
//!   [`DownloadError::NotAVideo`] naming what came — no `.mp4` is written;
//! - its length is the announced one (`Content-Length`, or the
//!   `Content-Range` total); a short body is resumed, a long one restarted;
//! - it fits under [`Limits::max_video_bytes`] (announced or received), else
//!   [`DownloadError::TooLarge`] and the `.part` is removed;
//! - it arrives in time ([`Limits`]): a silent connection or one slower than
//!   the minimum throughput is retried, and the whole download ends at the
//!   deadline however the server behaves.
//!
//! Redirects are the client's ([`http_client`]): at most five, http(s) only.

mod body;
mod client;
mod dirsync;
mod file;
mod limits;
mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use body::{Incoming, Next, Stop};
pub use client::{MAX_REDIRECTS, RedirectRefused, http_client, redirect_policy};
use dirsync::DirSyncs;
pub use file::part_path;
use file::{HeadCheck, PartWriter, Refused};
pub use limits::{
    DEFAULT_DEADLINE, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_VIDEO_BYTES, DEFAULT_MIN_SPEED, Limits,
    MinSpeed, format_size, parse_size,
};
pub use verify::looks_like_video;

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
    /// The server answered, but not with a video (an error page, a JSON
    /// body, unknown bytes). Nothing was saved as the video.
    #[error("{detail}")]
    NotAVideo { detail: String },
    /// Bigger than [`Limits::max_video_bytes`]; the `.part` was removed.
    #[error("{}", too_large(*limit, *announced))]
    TooLarge { limit: u64, announced: Option<u64> },
    /// Still failing after every attempt (network, 5xx, short body, stalled,
    /// deadline).
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

fn too_large(limit: u64, announced: Option<u64>) -> String {
    let what = match announced {
        Some(n) => format!("the server announced {}", format_size(n)),
        None => "the body went past it".to_owned(),
    };
    format!(
        "video larger than the {} limit ({what}); raise --max-video-size to accept it",
        format_size(limit)
    )
}

/// Downloads with bounded retries, Range resume and the checks above.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    max_attempts: u32,
    backoff_base: Duration,
    limits: Limits,
    /// Shared by every clone: the downloads of one run share folder fsyncs.
    syncs: Arc<DirSyncs>,
}

/// Bytes gathered before one write to the `.part` file (a quarter MiB: few
/// blocking trips per video, and 64 downloads at once hold 16 MiB, not 64).
const WRITE_BUFFER: usize = 256 << 10;

/// Attempts in all (with and without progress) per allowed failed attempt.
const MAX_ATTEMPTS_FACTOR: u32 = 10;

/// Longest wait between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How one attempt ended, when it did not finish the file.
enum AttemptError {
    /// Worth another attempt (network, 5xx, 429, short body); the `.part` is
    /// kept, and an attempt that grew it does not use up the budget.
    Retry(String),
    /// Too slow: worth another attempt, but always counted against the budget
    /// (a trickle grows the `.part` too).
    Stalled(String),
    /// No point retrying: return this as is.
    Final(DownloadError),
}

impl From<DownloadError> for AttemptError {
    fn from(e: DownloadError) -> Self {
        AttemptError::Final(e)
    }
}

impl Downloader {
    /// A downloader with the default [`Limits`].
    pub fn new(client: reqwest::Client, max_attempts: u32, backoff_base: Duration) -> Self {
        Downloader {
            client,
            max_attempts,
            backoff_base,
            limits: Limits::default(),
            syncs: Arc::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a connection may stay silent (no headers, no next chunk)
    /// before the attempt is abandoned and retried from the `.part`.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.limits.idle_timeout = idle_timeout;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Folder fsyncs made so far by this downloader and its clones (each
    /// covers the renames that finished while the one before it ran).
    pub fn folder_syncs(&self) -> u64 {
        self.syncs.rounds_made()
    }

    /// Fetch `url` into `dest` (via `dest.part`), resuming a partial file left by
    /// an earlier attempt or run.
    pub async fn fetch(&self, url: &str, dest: &Path) -> Result<Downloaded, DownloadError> {
        let deadline = Instant::now() + self.limits.deadline;
        // The folder is made by the `.part`'s first write, when missing.
        let part = part_path(dest);
        let max_attempts = self.max_attempts.max(1);
        // Attempts that moved the `.part` forward are not failures: a CDN that
        // cuts connections still delivers the file, one resume at a time. Only
        // attempts without progress use up the budget; the total is capped so a
        // server trickling a byte per connection cannot keep us forever.
        let max_total = max_attempts.saturating_mul(MAX_ATTEMPTS_FACTOR);
        let mut attempt = 1;
        let mut total = 1;
        loop {
            let before = file::part_len(&part).await?;
            let (message, stalled) = match self.attempt(url, dest, &part, before, deadline).await {
                Ok(done) => return Ok(done),
                Err(AttemptError::Final(DownloadError::Failed { message, .. })) => {
                    return Err(DownloadError::Failed {
                        attempts: attempt,
                        message,
                    });
                }
                Err(AttemptError::Final(e)) => return Err(e),
                Err(AttemptError::Retry(message)) => (message, false),
                Err(AttemptError::Stalled(message)) => (message, true),
            };
            let progressed = !stalled && file::part_len(&part).await.unwrap_or(0) > before;
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
            if Instant::now() + wait >= deadline {
                return Err(DownloadError::Failed {
                    attempts: attempt,
                    message: format!("{message}; {}", self.deadline_message()),
                });
            }
            tracing::debug!(url = %strip_query(url), attempt, ?wait, %message, "download attempt failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
            total += 1;
        }
    }

    fn deadline_message(&self) -> String {
        format!(
            "not finished within the {} download deadline",
            humantime::format_duration(self.limits.deadline)
        )
    }

    fn deadline_error(&self) -> AttemptError {
        AttemptError::Final(DownloadError::Failed {
            attempts: 0,
            message: self.deadline_message(),
        })
    }

    /// One request: resume (the `.part` holds `have` bytes) or restart the
    /// `.part`, check what comes, stream it into the `.part`, and on a
    /// complete body move it into place.
    async fn attempt(
        &self,
        url: &str,
        dest: &Path,
        part: &Path,
        mut have: u64,
        deadline: Instant,
    ) -> Result<Downloaded, AttemptError> {
        let mut response = self.request(url, have, deadline).await?;
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // The part may already be whole, or longer than a changed file:
            // nothing proves which, so start again from zero.
            tracing::debug!(url = %strip_query(url), have, "416 on resume; restarting from zero");
            have = 0;
            response = self.request(url, 0, deadline).await?;
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
                        file::remove(part).await?;
                        return Err(AttemptError::Retry(format!(
                            "server sent range {other:?} when bytes from {have} were asked; restarting"
                        )));
                    }
                }
            }
            StatusCode::OK => (false, response.content_length()),
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(DownloadError::Expired {
                    status: status.as_u16(),
                }
                .into());
            }
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT =>
            {
                return Err(AttemptError::Retry(format!("HTTP {}", s.as_u16())));
            }
            // The client follows every redirect it may; one that comes back
            // had a Location it could not use (`file:`, unparsable).
            s if s.is_redirection() => {
                return Err(DownloadError::Failed {
                    attempts: 1,
                    message: format!(
                        "HTTP {}: redirect not followed (its Location is not an http(s) URL)",
                        s.as_u16()
                    ),
                }
                .into());
            }
            // 201, 204, other 4xx: not a video, and asking again will not
            // make it one.
            s => {
                return Err(DownloadError::Failed {
                    attempts: 1,
                    message: format!("HTTP {} instead of the video", s.as_u16()),
                }
                .into());
            }
        };
        let limit = self.limits.max_video_bytes;
        if let Some(total) = total.filter(|t| *t > limit) {
            file::remove(part).await?;
            return Err(DownloadError::TooLarge {
                limit,
                announced: Some(total),
            }
            .into());
        }

        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut body = Incoming::new(response.bytes_stream(), &self.limits, deadline);
        let mut head = Vec::new();
        if verify::document_type(content_type.as_deref()).is_some() {
            // Best effort: the snippet only explains the refusal.
            let _ = body.fill(&mut head, verify::SNIFF_LEN).await;
            return Err(not_a_video(content_type.as_deref(), &head));
        }
        if !append {
            // Judge the first bytes before a byte reaches the disk, so a
            // refused body leaves no file (and an earlier `.part` intact).
            if let Err(stop) = body.fill(&mut head, verify::SNIFF_LEN).await {
                return Err(self.stopped(stop, 0));
            }
            if verify::container(&head).is_none() {
                return Err(not_a_video(content_type.as_deref(), &head));
            }
        }

        let (mut out, mut hasher, mut written) = if append {
            let (out, hasher) = PartWriter::resume(part, WRITE_BUFFER).await?;
            (out, hasher, have)
        } else {
            (PartWriter::new(part, false, WRITE_BUFFER), Sha256::new(), 0)
        };
        let mut stop = None;
        let mut chunk = bytes::Bytes::from(head);
        loop {
            if !chunk.is_empty() {
                if written + chunk.len() as u64 > limit {
                    drop(out);
                    file::remove(part).await?;
                    return Err(DownloadError::TooLarge {
                        limit,
                        announced: None,
                    }
                    .into());
                }
                out.write(&chunk).await?;
                hasher.update(&chunk);
                written += chunk.len() as u64;
            }
            chunk = match body.next().await {
                Next::Chunk(c) => c,
                Next::End => break,
                Next::Stop(s) => {
                    stop = Some(s);
                    break;
                }
            };
        }
        // What arrived is kept durable: a later attempt resumes from it.
        if let Some(stop) = stop {
            out.keep().await?;
            return Err(self.stopped(stop, written));
        }
        match total {
            Some(total) if written < total => {
                out.keep().await?;
                return Err(AttemptError::Retry(format!(
                    "short body: {written} of {total} bytes"
                )));
            }
            Some(total) if written > total => {
                drop(out);
                file::remove(part).await?;
                return Err(AttemptError::Retry(format!(
                    "body longer than announced: {written} > {total} bytes"
                )));
            }
            _ => {}
        }
        // A resumed part's start came from an earlier attempt or run: judge
        // it before it becomes the video.
        let check = append.then_some((starts_like_a_video as HeadCheck, verify::SNIFF_LEN));
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Where the filesystem syncs as a whole, the part's data is made
        // durable with the parts that land beside it; else by itself now.
        let unsynced = match out.finish(check).await {
            Ok(unsynced) => unsynced,
            Err(Refused::BadHead) => {
                return Err(AttemptError::Retry(
                    "the partial file kept from before does not start like a video; starting again"
                        .to_owned(),
                ));
            }
            Err(Refused::Io(e)) => return Err(e.into()),
        };
        // Data durable, then the rename, then the folder: one round shared
        // by the downloads that finish together.
        self.syncs
            .land(dir, part, dest, unsynced)
            .await
            .map_err(|e| file::io_error(dest, e))?;
        Ok(Downloaded {
            bytes: written,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// The attempt error for a body abandoned after `written` bytes.
    fn stopped(&self, stop: Stop, written: u64) -> AttemptError {
        match stop {
            Stop::Cut(why) => AttemptError::Retry(format!("{why} after {written} bytes")),
            Stop::Stalled(why) => AttemptError::Stalled(format!("{why} after {written} bytes")),
            Stop::Deadline => self.deadline_error(),
        }
    }

    async fn request(
        &self,
        url: &str,
        from: u64,
        deadline: Instant,
    ) -> Result<reqwest::Response, AttemptError> {
        let mut request = self.client.get(url);
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        let wait_until = deadline.min(Instant::now() + self.limits.idle_timeout);
        match tokio::time::timeout_at(wait_until, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            // A refused redirect will be refused again.
            Ok(Err(e)) if e.is_redirect() => Err(DownloadError::Failed {
                attempts: 1,
                message: describe(&e),
            }
            .into()),
            Ok(Err(e)) => Err(AttemptError::Retry(describe(&e))),
            Err(_) if Instant::now() >= deadline => Err(self.deadline_error()),
            Err(_) => Err(AttemptError::Retry(format!(
                "no response within {:?}",
                self.limits.idle_timeout
            ))),
        }
    }
}

fn starts_like_a_video(head: &[u8]) -> bool {
    verify::container(head).is_some()
}

fn not_a_video(content_type: Option<&str>, head: &[u8]) -> AttemptError {
    AttemptError::Final(DownloadError::NotAVideo {
        detail: verify::refusal(content_type, head),
    })
}

/// An HTTP error with its causes (reqwest's own text omits them), URL
/// queries redacted.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    strip_query(&text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
