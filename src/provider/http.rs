//! HTTP plumbing every provider shares: Retry-After, credential redaction,
//! capped body reads, path-segment encoding, and telling a TLS failure from
//! a network blip. No provider's names or codes live here.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Idle connections kept per API host. Creates, polls and sweeps need few
/// at once (they are short); a burst may open many more, and an idle
/// connection keeps its read buffer: without a cap a 100k-item run keeps
/// hundreds of them (~15 MB).
pub const MAX_IDLE_PER_HOST: usize = 32;

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
