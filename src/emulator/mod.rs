//! A local emulator of the Kling video API, written from `../shared/kling-api.md`
//! on its own (it shares no type with `provider`, so a wrong field name on
//! either side fails a test).
//!
//! [`start`] binds `127.0.0.1:{port}` and returns an [`EmulatorHandle`] with the
//! base URLs, the counters ([`Stats`]) and the request log ([`RecordedRequest`]).
//! `vidbatch emulate` runs the same server until Ctrl-C.
//!
//! What it serves (both path styles at once, one shared account):
//! - official: `POST /v1/videos/{text2video|image2video}`, `GET …/{id}`, `GET …?pageNum=&pageSize=`
//!   and `GET …?external_task_id=`; JWT HS256 auth (codes 1000–1004);
//! - gateway: the same under `/v1/ai/{endpoint}/kling/videos/…`; static Bearer key;
//! - `GET /videos/{video_id}.mp4?exp=…&sig=…`: a real, playable MP4 per video
//!   (Range, Content-Length, optional padding, expiring URLs), and the same
//!   under `/cdn/videos/…`, where the redirect fault points;
//! - `GET /__emulator/stats` ([`Stats`]) and `GET /__emulator/requests` (the log);
//! - task callbacks: a create with `callback_url` gets the task object POSTed
//!   there when it turns `processing` and when it ends (`callbacks.rs`).
//!
//! Choices where the reference is silent (kling-api.md §16), documented here:
//! - unknown `model_name` on the official style → 400/1201 (the gateway style
//!   takes any model name: Cloudsway's endpoint pins the model);
//! - duplicate `external_task_id` → 400/1201 `"external_task_id already exists"`;
//! - unknown task id → 404/1203; the old `model` field is accepted and means
//!   `kling-v1`; `duration` may be a string or an integer; unknown fields are ignored;
//! - a JWT whose signature is right but whose `iss` is not the access key, and a
//!   wrong static gateway key → 401/1000; malformed or badly signed → 401/1002;
//! - list order is newest first; queries are scoped to the kind in the path;
//! - a `callback_url` that is not an absolute http(s) URL → 400/1201 (an empty
//!   one means none); callbacks carry no signature, and are retried twice.
//!
//! Lifecycle and in-flight counting are computed lazily from timestamps (no
//! timer per task), so 100,000 tasks cost a few hundred bytes each and nothing
//! else; the one clock is the callback loop's, a single heap of due times for
//! the tasks that asked for callbacks. Every fault decision is a hash of
//! (seed, fault, key, attempt number) rather than a shared random stream, so
//! the same requests get the same faults whatever order concurrent clients
//! send them in.
//!
//! Ambiguous creates and cut downloads need a connection closed mid-exchange.
//! The server therefore runs on its own [`axum::serve::Listener`] whose
//! connections carry a kill switch (see `conn.rs`): for an ambiguous create the
//! handler creates the task, trips the switch, and hyper's first write fails, so
//! the client sees the connection close with no HTTP response at all.
//!
//! Download faults (`download.rs`) are the ways a CDN lies: an error page or
//! JSON body served as 200, a body cut short, a trickle, a body without end,
//! a redirect. API redirects point at `127.0.0.2`, another origin that no
//! client should follow to. [`EmulatorHandle::heal`] turns faults off, so a
//! test can rerun a batch against the same tasks on a healthy server.

mod auth;
mod callbacks;
mod conn;
mod download;
mod endpoints;
pub mod fal;
mod faults;
mod server;
mod stats;
mod tasks;
mod validate;
mod video;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use stats::{RecordedRequest, Stats};

/// When a task turns from `submitted` to `processing`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProcessingAfter {
    /// This fraction (0..=1) of the task's own latency after create.
    Fraction(f64),
    /// This long after create (capped at the task's latency).
    After(Duration),
}

impl Default for ProcessingAfter {
    fn default() -> Self {
        ProcessingAfter::Fraction(0.25)
    }
}

/// Every knob of the emulator. `Default` gives a lenient, fault-free server.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// JWT issuer expected on the official style (strict when both keys are set).
    pub access_key: Option<String>,
    /// JWT HMAC secret for the official style.
    pub secret_key: Option<String>,
    /// Static Bearer key for the gateway style (strict when set).
    pub api_key: Option<String>,
    /// Time from create to the terminal status.
    pub latency: Duration,
    /// Each task's latency is `latency ± jitter` (uniform, seeded).
    pub jitter: Duration,
    /// When the task turns `processing`.
    pub processing_after: ProcessingAfter,
    /// Prompts containing this end `failed` with a content-risk message.
    pub fail_prompt_substring: Option<String>,
    /// Account concurrency: non-terminal tasks allowed at once (None = unlimited).
    pub concurrency_limit: Option<usize>,
    /// Seed of every fault decision and of the jitter.
    pub seed: u64,
    /// Rate of 500/5000 on create, nothing created.
    pub create_5000_rate: f64,
    /// Rate of creates that create the task, then close the connection unanswered.
    pub create_ambiguous_rate: f64,
    /// Rate of 429/1302 on create, nothing created.
    pub create_1302_rate: f64,
    /// Rate of 503/5001 on single-task queries.
    pub query_5001_rate: f64,
    /// Rate of video downloads cut off after half the bytes.
    pub download_cut_rate: f64,
    /// Rate of video downloads answered 200 `text/html` with an "Access denied" page.
    pub download_html_rate: f64,
    /// Rate of video downloads answered 200 `application/json` with an error body.
    pub download_json_rate: f64,
    /// Rate of whole-file downloads (no `Range`) that announce the full
    /// `Content-Length`, send half and close the connection cleanly.
    pub download_short_rate: f64,
    /// Rate of video downloads sent one byte every `trickle_interval`.
    pub download_trickle_rate: f64,
    /// Pause between two bytes of a trickled download.
    pub trickle_interval: Duration,
    /// Rate of video downloads answered 200 without `Content-Length`: the
    /// video, then zeros without end.
    pub download_endless_rate: f64,
    /// Rate of creates whose task id is 40 KiB of digits.
    pub long_task_id_rate: f64,
    /// Rate of video downloads answered 302 to another path of this server
    /// that serves the video.
    pub redirect_download_rate: f64,
    /// Rate of API calls (create, query, list) answered 307/308 to another
    /// origin (`http://127.0.0.2:{port}`), without carrying them out.
    pub redirect_api_rate: f64,
    /// Rate of task callbacks (to a create's `callback_url`) never sent.
    pub callback_drop_rate: f64,
    /// Videos in each succeeded task's `task_result.videos` (distinct files).
    pub videos_per_task: u32,
    /// Video URLs expire this long after the query that produced them (403 after).
    pub url_ttl: Option<Duration>,
    /// After this many accepted creates, every create gets 429/1102.
    pub balance_exhausted_after_creates: Option<u64>,
    /// Pad each MP4 to this size in bytes (0 = natural size, a few KB).
    pub video_pad_bytes: u64,
    /// Keep a log of every request (turn off for benchmarks).
    pub record_requests: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            access_key: None,
            secret_key: None,
            api_key: None,
            latency: Duration::from_secs(2),
            jitter: Duration::ZERO,
            processing_after: ProcessingAfter::default(),
            fail_prompt_substring: Some("FAIL_ME".to_owned()),
            concurrency_limit: None,
            seed: 0,
            create_5000_rate: 0.0,
            create_ambiguous_rate: 0.0,
            create_1302_rate: 0.0,
            query_5001_rate: 0.0,
            download_cut_rate: 0.0,
            download_html_rate: 0.0,
            download_json_rate: 0.0,
            download_short_rate: 0.0,
            download_trickle_rate: 0.0,
            trickle_interval: Duration::from_secs(1),
            download_endless_rate: 0.0,
            long_task_id_rate: 0.0,
            redirect_download_rate: 0.0,
            redirect_api_rate: 0.0,
            callback_drop_rate: 0.0,
            videos_per_task: 1,
            url_ttl: None,
            balance_exhausted_after_creates: None,
            video_pad_bytes: 0,
            record_requests: true,
        }
    }
}

// Secrets never reach Debug output.
impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("EmulatorConfig")
            .field("port", &self.port)
            .field("access_key", &redact(&self.access_key))
            .field("secret_key", &redact(&self.secret_key))
            .field("api_key", &redact(&self.api_key))
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("processing_after", &self.processing_after)
            .field("fail_prompt_substring", &self.fail_prompt_substring)
            .field("concurrency_limit", &self.concurrency_limit)
            .field("seed", &self.seed)
            .field("create_5000_rate", &self.create_5000_rate)
            .field("create_ambiguous_rate", &self.create_ambiguous_rate)
            .field("create_1302_rate", &self.create_1302_rate)
            .field("query_5001_rate", &self.query_5001_rate)
            .field("download_cut_rate", &self.download_cut_rate)
            .field("download_html_rate", &self.download_html_rate)
            .field("download_json_rate", &self.download_json_rate)
            .field("download_short_rate", &self.download_short_rate)
            .field("download_trickle_rate", &self.download_trickle_rate)
            .field("trickle_interval", &self.trickle_interval)
            .field("download_endless_rate", &self.download_endless_rate)
            .field("long_task_id_rate", &self.long_task_id_rate)
            .field("redirect_download_rate", &self.redirect_download_rate)
            .field("redirect_api_rate", &self.redirect_api_rate)
            .field("callback_drop_rate", &self.callback_drop_rate)
            .field("videos_per_task", &self.videos_per_task)
            .field("url_ttl", &self.url_ttl)
            .field(
                "balance_exhausted_after_creates",
                &self.balance_exhausted_after_creates,
            )
            .field("video_pad_bytes", &self.video_pad_bytes)
            .field("record_requests", &self.record_requests)
            .finish()
    }
}

/// A configuration the emulator refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{name} must be within [0, 1], got {value}")]
    RateOutOfRange { name: &'static str, value: f64 },
    #[error("--access-key and --secret-key must be given together")]
    HalfJwtKeys,
    #[error("processing_after fraction must be within [0, 1], got {0}")]
    ProcessingFraction(f64),
    #[error("concurrency_limit must be at least 1")]
    ZeroConcurrency,
    #[error("videos_per_task must be within 1..={MAX_VIDEOS_PER_TASK}, got {0}")]
    VideosPerTask(u32),
    #[error("trickle_interval must be longer than zero")]
    ZeroTrickleInterval,
}

/// Most videos one task may return.
pub const MAX_VIDEOS_PER_TASK: u32 = 100;

impl EmulatorConfig {
    /// Check the knobs that have a valid range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rates = [
            ("create_5000_rate", self.create_5000_rate),
            ("create_ambiguous_rate", self.create_ambiguous_rate),
            ("create_1302_rate", self.create_1302_rate),
            ("query_5001_rate", self.query_5001_rate),
            ("download_cut_rate", self.download_cut_rate),
            ("download_html_rate", self.download_html_rate),
            ("download_json_rate", self.download_json_rate),
            ("download_short_rate", self.download_short_rate),
            ("download_trickle_rate", self.download_trickle_rate),
            ("download_endless_rate", self.download_endless_rate),
            ("long_task_id_rate", self.long_task_id_rate),
            ("redirect_download_rate", self.redirect_download_rate),
            ("redirect_api_rate", self.redirect_api_rate),
            ("callback_drop_rate", self.callback_drop_rate),
        ];
        for (name, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::RateOutOfRange { name, value });
            }
        }
        if self.access_key.is_some() != self.secret_key.is_some() {
            return Err(ConfigError::HalfJwtKeys);
        }
        if let ProcessingAfter::Fraction(f) = self.processing_after {
            if !(0.0..=1.0).contains(&f) {
                return Err(ConfigError::ProcessingFraction(f));
            }
        }
        if self.concurrency_limit == Some(0) {
            return Err(ConfigError::ZeroConcurrency);
        }
        if !(1..=MAX_VIDEOS_PER_TASK).contains(&self.videos_per_task) {
            return Err(ConfigError::VideosPerTask(self.videos_per_task));
        }
        if self.trickle_interval.is_zero() {
            return Err(ConfigError::ZeroTrickleInterval);
        }
        Ok(())
    }

    /// One line per path style saying how it authenticates (no secrets).
    pub fn auth_summary(&self) -> Vec<String> {
        let official = if self.access_key.is_some() && self.secret_key.is_some() {
            "official style (/v1/videos/...): strict, JWT HS256 signed with the configured secret key, iss = the configured access key".to_owned()
        } else {
            "official style (/v1/videos/...): not strict, accepting any well-formed Bearer token"
                .to_owned()
        };
        let gateway = if self.api_key.is_some() {
            "gateway style (/v1/ai/{endpoint}/kling/videos/...): strict, static Bearer key"
                .to_owned()
        } else {
            "gateway style (/v1/ai/{endpoint}/kling/videos/...): not strict, accepting any well-formed Bearer token".to_owned()
        };
        vec![official, gateway]
    }
}

/// A running emulator. Dropping it stops the server gracefully in the
/// background; [`EmulatorHandle::shutdown`] stops it and waits.
pub struct EmulatorHandle {
    server: conn::Running,
    callbacks: callbacks::Runner,
    shared: Arc<server::Shared>,
}

impl fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

/// Bind `127.0.0.1:{config.port}` and serve in the background.
pub async fn start(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = conn::Running::bind(config.port).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(server::Shared::new(config, addr));
    let server = conn::Running::spawn(listener, server::router(shared.clone()), "emulator")?;
    let callbacks = callbacks::Runner::spawn(shared.clone());
    Ok(EmulatorHandle {
        server,
        callbacks,
        shared,
    })
}

impl EmulatorHandle {
    /// Official-style root, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Gateway-style root; a client appends `/kling/videos/...`.
    pub fn gateway_base_url(&self) -> String {
        format!("http://{}/v1/ai/emulator", self.server.addr())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Same data as `GET /__emulator/stats`.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every request seen so far (empty when `record_requests` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Turn every injected fault off from now on — the server "recovers".
    /// Tasks, URLs, counters and the other settings stay as they are, so a
    /// rerun against the same tasks meets a healthy server.
    pub fn heal(&self) {
        self.shared.heal();
    }

    /// Stop calling back (callbacks in the air are abandoned), stop
    /// accepting, let open exchanges finish (up to 5 s), then stop.
    pub async fn shutdown(self) {
        self.callbacks.shutdown().await;
        self.server.shutdown().await;
    }
}
