//! A local emulator of fal's queue API (`queue.fal.run`), written from fal's
//! documentation as summarised in `../shared/providers.md` §8a and its
//! 2026-12 update — not from any client — so a fal provider built against it
//! meets the documented wire shapes and traps, not a copy of its own guesses.
//!
//! What it serves ([`start`] binds `127.0.0.1:{port}`; `vidbatch emulate
//! --api fal` runs the same server until Ctrl-C):
//! - `POST {base}/{model_id…}`: submit (model ids have slashes). Answers
//!   `{request_id, response_url, status_url, cancel_url, queue_position}`.
//! - `GET {base}/{owner}/{app}/requests/{id}/status[?logs=1]`,
//!   `GET {base}/{owner}/{app}/requests/{id}` (the result) and
//!   `PUT {base}/{owner}/{app}/requests/{id}/cancel`: only under the model's
//!   *app root* (its first two path segments). A client that rebuilds these
//!   URLs from the full model path gets 404 — fal's "subpath trap".
//! - `GET {base}/files/{request_id}.mp4`: the video (a real MP4, `Range`).
//! - `GET {base}/__emulator/stats` ([`FalStats`]), `GET {base}/__emulator/requests`.
//! - webhooks: a submit with `?fal_webhook=<url>` gets `{request_id,
//!   gateway_request_id, status: "OK"|"ERROR", payload, error?}` POSTed
//!   there the moment the request ends (`webhooks.rs`), as fal does.
//!
//! Choices where the documentation is silent or loose, written down here:
//! - auth is `Authorization: Key <FAL_KEY>`; strict (exact key) when a key is
//!   configured, otherwise any non-empty `Key …` passes. `Bearer` never passes.
//!   Refusals are 401 `{"detail": …}`;
//! - status answers HTTP 200 in every state; `queue_position` only while
//!   `IN_QUEUE`; `logs` is `null` unless `?logs=1`, then a list of lines;
//! - the result GET before completion answers 400
//!   `{"detail":"Request is still in progress"}`;
//! - failure is `COMPLETED` on the status endpoint; the result GET then
//!   answers 422 `{"detail":[…]}` (input rejected by the model; charged) or
//!   500 `{"detail":…, "error_type":…}` with `X-Fal-Error-Type:
//!   runner_disconnected | request_timeout` (not charged);
//! - cancel answers 202 `{"status":"CANCELLATION_REQUESTED"}` while queued
//!   (the request then is `COMPLETED` and its result is 400 with
//!   `error_type: "request_cancelled"`; not charged) and 400
//!   `{"status":"ALREADY_COMPLETED"}` once started;
//! - unknown request ids (or a known id under another app) → 404 `{"detail":"Request not found"}`;
//! - `fal_webhook` must be one absolute http(s) URL; anything else is a 422
//!   `{"detail":[{"loc":["query","fal_webhook"],…}]}` and creates nothing.
//!   A cancelled request sends no webhook; the rest are in `webhooks.rs`.
//!
//! Requests over the account concurrency limit queue, never get refused;
//! their start and end times follow from the queue order (`queue.rs`), so no
//! timer runs per request. Every fault is a seeded hash of (fault, body,
//! attempt) as in the Kling emulator (`../faults.rs`), so the same inputs meet
//! the same faults in any order. The ambiguous submit reuses the Kling
//! emulator's killable connections: the request is created, then the
//! connection closes before a byte of the answer is written.

mod endpoints;
mod files;
mod queue;
mod server;
mod stats;
mod validate;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use super::stats::RecordedRequest;
pub use stats::FalStats;

/// Every knob of the fal emulator. `Default` gives a lenient, fault-free
/// server with fal's starting concurrency of 2.
#[derive(Clone)]
pub struct FalConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The `FAL_KEY` expected after `Authorization: Key ` (strict when set).
    pub fal_key: Option<String>,
    /// Account concurrency: requests in progress at once; the rest queue.
    pub concurrency: usize,
    /// How long a request runs once started.
    pub latency: Duration,
    /// Each request runs `latency ± jitter` (uniform, seeded).
    pub jitter: Duration,
    /// Prompts containing this end COMPLETED with a 500 runner error result.
    pub fail_prompt_substring: Option<String>,
    /// Seed of every fault decision and of the jitter.
    pub seed: u64,
    /// Rate of submits that create the request, then drop the connection unanswered.
    pub submit_ambiguous_rate: f64,
    /// Rate of submits answered 429 (Retry-After), nothing created.
    pub submit_429_rate: f64,
    /// Rate of submits answered 500, nothing created.
    pub submit_5xx_rate: f64,
    /// Rate of status calls answered 500.
    pub status_5xx_rate: f64,
    /// Rate of requests that end with a 422 result (charged).
    pub result_422_rate: f64,
    /// Rate of requests that end with a 500 runner-error result.
    pub result_500_rate: f64,
    /// Rate of video downloads cut after half the bytes (full Content-Length).
    pub download_cut_rate: f64,
    /// Rate of webhooks (to a submit's `fal_webhook`) never sent.
    pub webhook_drop_rate: f64,
    /// Per-user limit on API requests per second (fal: 10); None = off.
    pub rate_limit_per_sec: Option<u32>,
    /// Pad each MP4 to this many bytes (0 = natural size, a few KB).
    pub video_pad_bytes: u64,
    /// Keep a log of every request (turn off for long runs).
    pub record_requests: bool,
}

impl Default for FalConfig {
    fn default() -> Self {
        FalConfig {
            port: 0,
            fal_key: None,
            concurrency: 2,
            latency: Duration::from_secs(2),
            jitter: Duration::ZERO,
            fail_prompt_substring: Some("FAIL_ME".to_owned()),
            seed: 0,
            submit_ambiguous_rate: 0.0,
            submit_429_rate: 0.0,
            submit_5xx_rate: 0.0,
            status_5xx_rate: 0.0,
            result_422_rate: 0.0,
            result_500_rate: 0.0,
            download_cut_rate: 0.0,
            webhook_drop_rate: 0.0,
            rate_limit_per_sec: None,
            video_pad_bytes: 0,
            record_requests: true,
        }
    }
}

// The key never reaches Debug output.
impl fmt::Debug for FalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalConfig")
            .field("port", &self.port)
            .field("fal_key", &self.fal_key.as_ref().map(|_| "<redacted>"))
            .field("concurrency", &self.concurrency)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("fail_prompt_substring", &self.fail_prompt_substring)
            .field("seed", &self.seed)
            .field("submit_ambiguous_rate", &self.submit_ambiguous_rate)
            .field("submit_429_rate", &self.submit_429_rate)
            .field("submit_5xx_rate", &self.submit_5xx_rate)
            .field("status_5xx_rate", &self.status_5xx_rate)
            .field("result_422_rate", &self.result_422_rate)
            .field("result_500_rate", &self.result_500_rate)
            .field("download_cut_rate", &self.download_cut_rate)
            .field("webhook_drop_rate", &self.webhook_drop_rate)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("video_pad_bytes", &self.video_pad_bytes)
            .field("record_requests", &self.record_requests)
            .finish()
    }
}

/// A configuration the fal emulator refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FalConfigError {
    #[error("{name} must be within [0, 1], got {value}")]
    RateOutOfRange { name: &'static str, value: f64 },
    #[error("concurrency must be within 1..={MAX_CONCURRENCY}, got {0}")]
    Concurrency(usize),
    #[error("the rate limit must be at least 1 request per second")]
    ZeroRateLimit,
    #[error("the fal key must not be empty")]
    EmptyKey,
}

/// The most concurrent requests the emulator plans for (fal's accounts top out at 40).
pub const MAX_CONCURRENCY: usize = 10_000;

impl FalConfig {
    /// Check the knobs that have a valid range.
    pub fn validate(&self) -> Result<(), FalConfigError> {
        let rates = [
            ("submit_ambiguous_rate", self.submit_ambiguous_rate),
            ("submit_429_rate", self.submit_429_rate),
            ("submit_5xx_rate", self.submit_5xx_rate),
            ("status_5xx_rate", self.status_5xx_rate),
            ("result_422_rate", self.result_422_rate),
            ("result_500_rate", self.result_500_rate),
            ("download_cut_rate", self.download_cut_rate),
            ("webhook_drop_rate", self.webhook_drop_rate),
        ];
        for (name, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(FalConfigError::RateOutOfRange { name, value });
            }
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(FalConfigError::Concurrency(self.concurrency));
        }
        if self.rate_limit_per_sec == Some(0) {
            return Err(FalConfigError::ZeroRateLimit);
        }
        if self.fal_key.as_deref() == Some("") {
            return Err(FalConfigError::EmptyKey);
        }
        Ok(())
    }

    /// How it authenticates, in one line (no secret).
    pub fn auth_summary(&self) -> String {
        if self.fal_key.is_some() {
            "auth: strict, Authorization: Key <the configured key>".to_owned()
        } else {
            "auth: not strict, accepting any Authorization: Key <non-empty>".to_owned()
        }
    }
}

/// A running fal emulator. Dropping it stops the server in the background;
/// [`FalHandle::shutdown`] stops it and waits.
pub struct FalHandle {
    server: super::conn::Running,
    webhooks: super::callbacks::Runner,
    shared: Arc<server::Shared>,
}

impl fmt::Debug for FalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalHandle")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

/// Bind `127.0.0.1:{config.port}` and serve in the background.
pub async fn start(config: FalConfig) -> std::io::Result<FalHandle> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = super::conn::Running::bind(config.port).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(server::Shared::new(config, addr));
    let server =
        super::conn::Running::spawn(listener, server::router(shared.clone()), "fal emulator")?;
    let webhooks = super::callbacks::Runner::spawn(shared.clone());
    Ok(FalHandle {
        server,
        webhooks,
        shared,
    })
}

impl FalHandle {
    /// The queue root, e.g. `http://127.0.0.1:PORT` (stands for `https://queue.fal.run`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Same data as `GET /__emulator/stats`.
    pub fn stats(&self) -> FalStats {
        self.shared.stats()
    }

    /// Every request seen so far (empty when `record_requests` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Stop sending webhooks (those in the air are abandoned), stop
    /// accepting, let open exchanges finish (up to 5 s), then stop.
    pub async fn shutdown(self) {
        self.webhooks.shutdown().await;
        self.server.shutdown().await;
    }
}
