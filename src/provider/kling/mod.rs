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
    http: reqwest::Client,
    auth: Arc<auth::Authorizer>,
}

impl KlingProvider {
    /// A provider with its own HTTP client: rustls trusting both the
    /// platform's store (which honours `SSL_CERT_FILE` / `SSL_CERT_DIR`, for
    /// private CAs and corporate proxies) and the bundled Mozilla roots; 10 s
    /// connect timeout; pooled keep-alive connections; and **no redirects**:
    /// a create re-sent wherever a server points could carry our body and key
    /// to another origin, so a 3xx is reported as a setup error instead.
    pub fn new(config: KlingConfig) -> Self {
        // Building fails only if the TLS backend cannot initialise, which no
        // input can cause; the default client reports the same problem on use.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(crate::provider::http::MAX_IDLE_PER_HOST)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vidbatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self::with_client(config, http)
    }

    /// A provider sharing an existing HTTP client (and so its pool).
    pub fn with_client(config: KlingConfig, http: reqwest::Client) -> Self {
        let auth = Arc::new(auth::Authorizer::new(config.credentials.clone()));
        KlingProvider { config, http, auth }
    }

    /// The HTTP client, for downloads that should reuse the same pool.
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
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
