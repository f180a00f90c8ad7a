//! The Kling provider: official API (`/v1/videos/...`, JWT signed with an
//! access key / secret key) and gateways that pass the same shapes through
//! behind a static bearer key (`{base}/kling/videos/...`).
//!
//! [`KlingProvider`] implements [`crate::provider::Provider`]; the request
//! plumbing is in `client.rs`, signing in `auth.rs`, the create body in
//! `request.rs`, the answers' JSON in `wire.rs`, the error-code table in
//! `codes.rs`, and what the manifest checks and prices per model in
//! `catalog.rs` and `pricing.rs`.

pub mod auth;
mod callback;
pub mod catalog;
mod client;
pub mod codes;
mod lookup;
pub mod pricing;
pub mod request;
pub mod wire;

pub use request::job;

use std::sync::Arc;
use std::time::Duration;

use crate::provider::http::ApiClient;

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
    Jwt {
        access_key: String,
        secret_key: String,
    },
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
    /// Sent as every create's `callback_url`: where the server tells us a
    /// task changed (see `callback.rs`). `None`: tasks are only polled.
    pub callback_url: Option<crate::provider::CallbackUrl>,
}

/// The Kling implementation of [`crate::provider::Provider`]. Cloning is
/// cheap and clones share the connection pool and the cached JWT.
#[derive(Debug, Clone)]
pub struct KlingProvider {
    config: KlingConfig,
    http: ApiClient,
    auth: Arc<auth::Authorizer>,
}

impl KlingProvider {
    /// A provider with its own HTTP client ([`ApiClient`]: no redirects, a
    /// bound on requests in flight).
    pub fn new(config: KlingConfig) -> Self {
        let auth = Arc::new(auth::Authorizer::new(config.credentials.clone()));
        KlingProvider {
            config,
            http: ApiClient::new(),
            auth,
        }
    }

    /// Drop the cached JWT so the next request signs a new one. The client
    /// already does this itself on 1003/1004; this is for callers that learn
    /// of a clock change some other way.
    pub fn invalidate_token(&self) {
        self.auth.invalidate();
    }
}

/// Kling credentials from the environment (`KLING_ACCESS_KEY` +
/// `KLING_SECRET_KEY`, or `KLING_API_KEY` for a gateway); the error says
/// which variables to set.
pub fn credentials_from_env(
    style: Style,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, String> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let (ak, sk, key) = (
        get("KLING_ACCESS_KEY"),
        get("KLING_SECRET_KEY"),
        get("KLING_API_KEY"),
    );
    match (style, ak, sk, key) {
        (Style::Official, Some(access_key), Some(secret_key), _) => Ok(Credentials::Jwt {
            access_key,
            secret_key,
        }),
        (Style::Official, Some(_), None, _) | (Style::Official, None, Some(_), _) => Err("set both KLING_ACCESS_KEY and KLING_SECRET_KEY (only one of them is set)".into()),
        (_, _, _, Some(key)) => Ok(Credentials::ApiKey(key)),
        (Style::Official, None, None, None) => Err("no credentials: set KLING_ACCESS_KEY and KLING_SECRET_KEY (or KLING_API_KEY for a gateway), or try offline with --emulator".into()),
        (Style::Gateway, _, _, None) => Err("the kling-gateway provider needs KLING_API_KEY".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let config = KlingConfig {
            base_url: "http://127.0.0.1:1".into(),
            style: Style::Official,
            credentials: Credentials::Jwt {
                access_key: "AK-visible?".into(),
                secret_key: "SK-secret".into(),
            },
            request_timeout: Duration::from_secs(1),
            callback_url: None,
        };
        let provider = KlingProvider::new(config.clone());
        for dbg in [
            format!("{config:?}"),
            format!("{provider:?}"),
            format!("{:?}", config.credentials),
        ] {
            assert!(
                !dbg.contains("AK-visible?") && !dbg.contains("SK-secret"),
                "{dbg}"
            );
        }
        let key = Credentials::ApiKey("sk-gateway-key".into());
        assert!(!format!("{key:?}").contains("sk-gateway-key"));
    }
}
