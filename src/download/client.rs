//! The HTTP client downloads use. Video URLs point at CDNs that redirect
//! across hosts, so redirects are followed — but at most
//! [`MAX_REDIRECTS`] of them, and only to `http`/`https` URLs: a chain that
//! never ends or leads to `file:`/`ftp:` is an error, not a hang or a read.
//! reqwest drops `Authorization` and cookies on a redirect to another host.

use std::time::Duration;

use reqwest::redirect::Policy;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;

/// Longest wait for a TCP (and TLS) connection to a download host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a redirect was refused (the text reaches the download error).
#[derive(Debug, thiserror::Error)]
pub enum RedirectRefused {
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    #[error("redirect to a non-http(s) URL (scheme `{0}`)")]
    Scheme(String),
}

/// The client for video downloads. Timeouts on reading are the
/// [`Downloader`](super::Downloader)'s own (idle, throughput, deadline), so
/// none is set here beyond the connect timeout.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    crate::provider::tls::shared(reqwest::Client::builder())
        .connect_timeout(CONNECT_TIMEOUT)
        // Enough for the largest download pool; each idle connection keeps
        // its buffers.
        .pool_max_idle_per_host(64)
        .redirect(redirect_policy())
        .build()
}

/// At most [`MAX_REDIRECTS`] hops, each to an http(s) URL.
pub fn redirect_policy() -> Policy {
    Policy::custom(
        |attempt| match decide(attempt.url().scheme(), attempt.previous().len()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        },
    )
}

/// `previous` counts the URLs already requested, the original included, so
/// the n-th redirect sees n of them.
fn decide(scheme: &str, previous: usize) -> Result<(), RedirectRefused> {
    if !matches!(scheme, "http" | "https") {
        return Err(RedirectRefused::Scheme(scheme.chars().take(16).collect()));
    }
    if previous > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_http_redirects_are_followed_and_the_sixth_is_not() {
        for n in 1..=MAX_REDIRECTS {
            assert!(decide("https", n).is_ok(), "redirect {n}");
        }
        assert!(matches!(
            decide("http", MAX_REDIRECTS + 1),
            Err(RedirectRefused::TooMany)
        ));
    }

    #[test]
    fn only_http_and_https_are_followed() {
        for scheme in ["file", "ftp", "data", "javascript"] {
            let e = decide(scheme, 1).expect_err(scheme);
            assert!(e.to_string().contains(scheme), "{e}");
        }
    }

    #[test]
    fn the_client_builds() {
        assert!(http_client().is_ok());
    }
}
