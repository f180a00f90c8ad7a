//! The Kling provider: official API (`/v1/videos/...`, JWT signed with an
//! access key / secret key) and gateways that pass the same shapes through
//! behind a static bearer key (`{base}/kling/videos/...`).

use std::time::Duration;

/// Which URL layout and auth the server expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `{base}/v1/videos/{kind}`; JWT (HS256) from access key + secret key.
    Official,
    /// `{base}/kling/videos/{kind}` (e.g. base `https://host/v1/ai/{endpoint}`); static bearer key.
    Gateway,
}

/// Credentials. `Debug` never prints the secrets.
#[derive(Clone)]
pub enum Credentials {
    Jwt { access_key: String, secret_key: String },
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Jwt { .. } => f.write_str("Credentials::Jwt(<redacted>)"),
            Credentials::ApiKey(_) => f.write_str("Credentials::ApiKey(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KlingConfig {
    /// Without a trailing slash, e.g. `https://api-singapore.klingai.com`.
    pub base_url: String,
    pub style: Style,
    pub credentials: Credentials,
    /// Timeout for one API request (create/query/list).
    pub request_timeout: Duration,
}

/// The Kling implementation of [`crate::provider::Provider`].
#[derive(Debug, Clone)]
pub struct KlingProvider {
    _config: KlingConfig,
}

impl KlingProvider {
    pub fn new(config: KlingConfig) -> Self {
        KlingProvider { _config: config }
    }
}
