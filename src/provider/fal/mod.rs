//! The fal provider: fal's queue API (`https://queue.fal.run`, providers.md
//! §8a), where one endpoint serves every model and the model id is the path.
//!
//! Why it differs from Kling, and how the engine learns of it
//! ([`crate::provider::Capabilities`]): fal has no list endpoint (tasks are
//! polled one by one), no idempotency key and no lookup by our key (an
//! ambiguous submit cannot be settled by asking; the engine decides), and a
//! cancel that works only while a request is queued. Its status has no
//! failed state: `COMPLETED` only says "read the result", and the result GET
//! carries the video or fal's error. fal's status/result/cancel URLs live
//! under the model's *app root*, not the model path, so the task handle we
//! store is the URLs fal returned at submit (`wire::Handle`), never rebuilt.
//!
//! The request plumbing and the error classification are in `client.rs`,
//! the JSON shapes in `wire.rs`, and why no item has a price in `pricing.rs`.

mod client;
mod image;
pub mod pricing;
mod webhook;
pub mod wire;

use std::time::Duration;

use crate::provider::http::ApiClient;

pub use client::{Op, classify};

/// The fal endpoint and key. `Debug` never prints the key.
#[derive(Clone)]
pub struct FalConfig {
    /// Without a trailing slash, e.g. `https://queue.fal.run`.
    pub base_url: String,
    /// `FAL_KEY`, sent as `Authorization: Key <key>`.
    pub key: String,
    /// Timeout for one API request (submit/status/result/cancel).
    pub request_timeout: Duration,
    /// The model of items that name none (e.g. `fal-ai/kling-video/v2.1/standard/text-to-video`).
    pub default_model: Option<String>,
    /// Sent as every submit's `fal_webhook`: where fal tells us a request
    /// ended (see `webhook.rs`). `None`: requests are only polled.
    pub callback_url: Option<crate::provider::CallbackUrl>,
}

/// fal's public queue root.
pub const DEFAULT_BASE_URL: &str = "https://queue.fal.run";

impl std::fmt::Debug for FalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalConfig")
            .field("base_url", &self.base_url)
            .field("key", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("default_model", &self.default_model)
            .field("callback_url", &self.callback_url)
            .finish()
    }
}

/// The fal implementation of [`crate::provider::Provider`]. Cloning is cheap
/// and clones share the connection pool.
#[derive(Debug, Clone)]
pub struct FalProvider {
    config: FalConfig,
    http: ApiClient,
}

impl FalProvider {
    /// The job for a validated item: its model (the item's, else the
    /// manifest's default) and the model input.
    pub fn job(&self, item: &crate::manifest::Item) -> crate::job::Job {
        wire::job(item, self.config.default_model.as_deref())
    }

    /// A provider with its own HTTP client ([`ApiClient`]: no redirects, a
    /// bound on requests in flight).
    pub fn new(mut config: FalConfig) -> Self {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        FalProvider {
            config,
            http: ApiClient::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_key() {
        let config = FalConfig {
            base_url: format!("{DEFAULT_BASE_URL}/"),
            key: "fal-secret-key-123".into(),
            request_timeout: Duration::from_secs(1),
            default_model: None,
            callback_url: None,
        };
        let provider = FalProvider::new(config.clone());
        for dbg in [format!("{config:?}"), format!("{provider:?}")] {
            assert!(!dbg.contains("fal-secret-key-123"), "{dbg}");
        }
        assert_eq!(provider.config.base_url, DEFAULT_BASE_URL);
    }
}
