//! HTTP plumbing every provider shares: Retry-After, credential redaction,
//! capped body reads, path-segment encoding, and telling a TLS failure from
//! a network blip. No provider's names or codes live here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Requests one provider client has in flight at once (while none waits
/// longer than [`TURN_WAIT`]), and the idle connections it keeps.
///
/// A batch's bursts — every slot freed by a wave of ends asks for its create
/// at once — would otherwise open a connection per request and close most
/// of them right after, a TCP (and TLS) handshake and teardown each: 0.77
/// new connections per item at C=500 (`benches/README.md`, row (e)).
/// Bounded, a burst queues for the connections already open, and all of
/// them are kept. Not more: an idle connection keeps its buffers (grown by
/// the largest answer it carried, such as a 500-task list page), and 128
/// kept connections cost a 100k-item run 8 MB more than 32. Thirty-two
/// answers of ~1 s carry 30 requests a second, more than a batch's creates
/// and polls need outside its bursts.
pub const MAX_IN_FLIGHT: usize = 32;

/// How long a request waits for one of the [`MAX_IN_FLIGHT`] turns before
/// it goes anyway, on a connection of its own: requests that hang until
/// their timeout (a minute by default) must not stop every other one.
pub const TURN_WAIT: Duration = Duration::from_secs(1);

/// An API's HTTP client: rustls trusting both the platform's store (which
/// honours `SSL_CERT_FILE` / `SSL_CERT_DIR`, for private CAs and corporate
/// proxies) and the bundled Mozilla roots; 10 s connect timeout; pooled
/// keep-alive connections, at most [`MAX_IN_FLIGHT`] requests at once; and
/// **no redirects**: a create re-sent wherever a server points could carry
/// our body and key to another origin, so providers report a 3xx as a
/// setup error instead.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    in_flight: Arc<Semaphore>,
}

impl Default for ApiClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiClient {
    pub fn new() -> Self {
        // Building fails only if the TLS backend cannot initialise, which no
        // input can cause; the default client reports the same problem on use.
        let http = super::tls::shared(reqwest::Client::builder())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vidbatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        ApiClient {
            http,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Wait for a turn to send (at most [`TURN_WAIT`]; `None`: send
    /// without one). Hold it until the answer's body is read. Taken before
    /// the request's timeout starts, so waiting is not a timeout.
    pub async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed: `Err` is unreachable.
        match tokio::time::timeout(TURN_WAIT, self.in_flight.acquire()).await {
            Ok(Ok(turn)) => Some(turn),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110: IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Scrub credentials from text a server sent back: known secrets, the word
/// after any `Bearer`, and anything that looks like a JWT (`eyJ...`).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "<redacted>");
    }
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        if word.is_empty() {
            out.push_str(piece);
        } else if after_bearer {
            out.push_str("<redacted>");
            out.push_str(space);
            after_bearer = false;
        } else if word.to_ascii_lowercase().ends_with("bearer") {
            out.push_str(piece);
            after_bearer = true;
        } else if let Some(at) = word.find("eyJ") {
            out.push_str(&word[..at]);
            out.push_str("<redacted>");
            out.push_str(space);
        } else {
            out.push_str(piece);
        }
    }
    out
}

/// Largest API response body read (a 500-task list page is well under 1 MiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Read a body up to `cap` bytes; `Ok(None)` if it is longer, so a hostile or
/// broken server cannot make us buffer without bound.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Bytes>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// A transport error chain that says the TLS handshake or certificate failed.
pub fn is_tls_failure(chain: &str) -> bool {
    let lower = chain.to_ascii_lowercase();
    [
        "certificate",
        "tls handshake",
        "handshake failure",
        "unknownissuer",
        "invalid peer",
        // An http:// server behind an https:// URL.
        "invalidcontenttype",
        "corrupt message",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// A URL without its query string (for messages).
pub fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[tokio::test]
    async fn a_request_waits_for_a_turn_but_not_behind_requests_that_hang() {
        let client = ApiClient::new();
        let mut held = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            held.push(client.turn().await.expect("a free turn"));
        }
        // Every turn is held by a request that does not end: the next one
        // goes without a turn once it has waited TURN_WAIT.
        assert!(client.turn().await.is_none());
        // A turn given back is the next request's.
        held.pop();
        assert!(client.turn().await.is_some());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("866889456698785798"), "866889456698785798");
        assert_eq!(encode_segment("b1/item 7?x#"), "b1%2Fitem%207%3Fx%23");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Foo 1994 08:49:47 GMT", now),
            None
        );
    }

    #[test]
    fn redaction() {
        let r = redact(
            r#"{"auth":"Bearer abc.def.ghi","x":"eyJhbGciOi.x.y"} key=sk-live-123"#,
            &["sk-live-123"],
        );
        assert!(
            !r.contains("abc.def.ghi") && !r.contains("eyJhbGciOi") && !r.contains("sk-live-123"),
            "{r}"
        );
        assert!(r.contains("<redacted>"));
        assert_eq!(
            redact("<html>502 Bad Gateway</html>", &[]),
            "<html>502 Bad Gateway</html>"
        );
        assert_eq!(redact("bearer  tok rest", &[]), "bearer  <redacted> rest");
    }
}
