//! HTTP plumbing of [`KlingProvider`]: URLs, one request with auth and
//! classification, and the [`Provider`] methods built on it.
//!
//! Every failure leaves here as a classified [`ProviderError`] with no secret
//! in it. A 1003/1004 (token not yet valid / expired) is handled here: the
//! token is re-signed and the request sent once more, so the engine never has
//! to know about JWTs; a second rejection means the keys or the clock are
//! wrong and is batch-fatal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use super::codes::{self, Op};
use super::wire::{self, CreateBody, Envelope};
use super::{Credentials, KlingProvider, Style};
use crate::manifest::{ImageRef, Item, Kind};
use crate::provider::{Created, ErrorClass, Provider, ProviderError, TaskSnapshot};

/// How much of a non-JSON body goes into an error message.
const SNIPPET_CHARS: usize = 200;

/// A successful call: the envelope's request id and `data`.
struct Reply {
    request_id: Option<String>,
    data: Option<Value>,
}

fn error(class: ErrorClass, message: impl Into<String>) -> ProviderError {
    ProviderError {
        class,
        code: None,
        http_status: None,
        message: message.into(),
        request_id: None,
        retry_after: None,
    }
}

impl KlingProvider {
    /// `{base}/v1/videos/{kind}` or `{base}/kling/videos/{kind}`.
    fn collection_url(&self, kind: Kind) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        let prefix = match self.config.style {
            Style::Official => "v1/videos",
            Style::Gateway => "kling/videos",
        };
        format!("{base}/{prefix}/{}", kind.as_str())
    }

    fn task_url(&self, kind: Kind, id: &str) -> String {
        format!("{}/{}", self.collection_url(kind), encode_segment(id))
    }

    /// Secrets to scrub from anything a server echoes back into an error.
    fn secrets(&self) -> Vec<&str> {
        match &self.config.credentials {
            Credentials::Jwt {
                access_key,
                secret_key,
            } => vec![access_key, secret_key],
            Credentials::ApiKey(key) => vec![key],
        }
    }

    /// One call, re-signed and repeated once if the token was rejected.
    async fn call(
        &self,
        op: Op,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Reply, ProviderError> {
        match self
            .call_once(op, method.clone(), url, query, body.clone())
            .await
        {
            Err(e) if e.class == ErrorClass::AuthExpired && self.auth.can_resign() => {
                tracing::debug!(code = ?e.code, "Kling rejected the token; re-signing and retrying once");
                self.auth.invalidate();
                match self.call_once(op, method, url, query, body).await {
                    Err(e) if e.class == ErrorClass::AuthExpired => Err(credentials_rejected(e)),
                    other => other,
                }
            }
            Err(e) if e.class == ErrorClass::AuthExpired => Err(credentials_rejected(e)),
            other => other,
        }
    }

    async fn call_once(
        &self,
        op: Op,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<Bytes>,
    ) -> Result<Reply, ProviderError> {
        let authorization = self
            .auth
            .header_value()
            .map_err(|e| error(ErrorClass::BatchFatal, e.to_string()))?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.config.request_timeout)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%method, url, error = %e, "Kling request failed in transport");
                return Err(self.transport_error(op, &e, None));
            }
        };
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            // Never followed: a create re-sent to wherever a server points
            // could land at another origin with our body and key.
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| wire::bounded(l, 300))
                .unwrap_or_else(|| "nowhere".into());
            return Err(ProviderError {
                class: ErrorClass::Setup,
                code: None,
                http_status: Some(status),
                message: format!(
                    "{method} {} answered HTTP {status}, a redirect to {location}; vidbatch does not follow redirects of API calls: set the base URL to where the API really is",
                    strip_query(url)
                ),
                request_id: None,
                retry_after: None,
            });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                // Far larger than any Kling answer: garbage, treated like a 5xx
                // (ambiguous for a create, retry for a query).
                tracing::debug!(%method, url, status, "Kling response body over the size cap");
                return Err(ProviderError {
                    class: codes::by_status(Some(500), op),
                    code: None,
                    http_status: Some(status),
                    message: format!(
                        "HTTP {status}, response body larger than {MAX_BODY_BYTES} bytes"
                    ),
                    request_id: None,
                    retry_after,
                });
            }
            Err(e) => {
                tracing::debug!(%method, url, status, error = %e, "Kling response body cut off");
                let mut err = self.transport_error(op, &e, Some(status));
                err.retry_after = retry_after;
                return Err(err);
            }
        };
        let Some(envelope) = Envelope::parse(&bytes) else {
            tracing::debug!(%method, url, status, "Kling answered with a non-JSON body");
            let snippet: String = String::from_utf8_lossy(&bytes)
                .chars()
                .take(SNIPPET_CHARS)
                .collect();
            return Err(ProviderError {
                class: codes::non_api_body(status, op),
                code: None,
                http_status: Some(status),
                message: format!(
                    "{method} {} answered HTTP {status} with a body that is not the Kling API's: {:?}",
                    strip_query(url),
                    redact(snippet.trim(), &self.secrets())
                ),
                request_id: None,
                retry_after,
            });
        };
        tracing::debug!(%method, url, status, code = ?envelope.code, request_id = ?envelope.request_id, "Kling request");
        let http_ok = (200..300).contains(&status);
        // Accept a 2xx with code 0, or with no code at all but a data member
        // (some gateways drop the code on success).
        let success = http_ok
            && (envelope.code == Some(0) || (envelope.code.is_none() && envelope.data.is_some()));
        if success {
            return Ok(Reply {
                request_id: envelope.request_id,
                data: envelope.data,
            });
        }
        let message = match envelope.message {
            Some(m) if !m.is_empty() => redact(&m, &self.secrets()),
            _ => format!("HTTP {status}"),
        };
        let class = codes::classify(envelope.code, Some(status), op);
        let message = if class == ErrorClass::Setup {
            // Name the URL: the fix is in the base URL.
            format!("{method} {} answered: {message}", strip_query(url))
        } else {
            message
        };
        Err(ProviderError {
            class,
            code: envelope.code,
            http_status: Some(status),
            message,
            request_id: envelope.request_id,
            retry_after,
        })
    }

    /// A failure below HTTP. Refused or unresolvable connections sent nothing,
    /// so even a create is safely retried; anything later (timeout, reset,
    /// connection closed before or during the response) may have reached the
    /// server, so a create is ambiguous. A body cut off after a 4xx status
    /// line is classified by that status: the server had already refused.
    fn transport_error(
        &self,
        op: Op,
        e: &reqwest::Error,
        http_status: Option<u16>,
    ) -> ProviderError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let class = if e.is_builder() {
            ErrorClass::BatchFatal
        } else if let Some(status @ 400..=499) = http_status {
            codes::by_status(Some(status), op)
        } else if is_tls_failure(&message) {
            // A private CA or an intercepting proxy: retrying cannot help.
            message.push_str(
                " (TLS failed: if a private CA or a proxy signs this server's certificate, point SSL_CERT_FILE or SSL_CERT_DIR at it)",
            );
            ErrorClass::Setup
        } else if e.is_connect() {
            ErrorClass::Unreachable
        } else if op != Op::Create {
            ErrorClass::RetryLater
        } else {
            ErrorClass::Ambiguous
        };
        ProviderError {
            class,
            code: None,
            http_status,
            message: redact(&message, &self.secrets()),
            request_id: None,
            retry_after: None,
        }
    }

    /// GET one task by an id in the path.
    async fn get_task(&self, kind: Kind, id: &str) -> Result<TaskSnapshot, ProviderError> {
        let reply = self
            .call(Op::Query, Method::GET, &self.task_url(kind, id), &[], None)
            .await?;
        snapshot_of(reply)
    }

    /// The `?external_task_id=` form that gateways document.
    async fn find_by_query_param(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        let query = [("external_task_id", external_task_id.to_owned())];
        let reply = match self
            .call(
                Op::Query,
                Method::GET,
                &self.collection_url(kind),
                &query,
                None,
            )
            .await
        {
            Ok(r) => r,
            Err(e) if codes::is_not_found(e.code, e.http_status) => return Ok(None),
            Err(e) => return Err(e),
        };
        let request_id = reply.request_id.as_deref();
        match &reply.data {
            // A server that ignores the parameter answers with a page of the
            // list: only a task carrying our external id may be adopted.
            Some(list @ Value::Array(_)) => {
                let tasks = wire::task_list(list, request_id)
                    .map_err(|e| error(ErrorClass::RetryLater, e.to_string()))?;
                Ok(tasks
                    .into_iter()
                    .find(|t| t.external_task_id.as_deref() == Some(external_task_id)))
            }
            Some(task) => {
                let snapshot = wire::task_snapshot(task, request_id)
                    .map_err(|e| error(ErrorClass::RetryLater, e.to_string()))?;
                Ok(adoptable(snapshot, external_task_id))
            }
            None => Ok(None),
        }
    }
}

/// How many newest list pages a lookup by external id scans when the server
/// answers neither lookup form: a create whose answer was lost is recent.
const LOOKUP_LIST_PAGES: u32 = 2;

impl KlingProvider {
    /// Last resort for servers without external-id lookups: look for a task
    /// carrying `external_task_id` among the newest ones. A server without a
    /// list endpoint (404/1202...) leaves the earlier "not found" standing.
    async fn find_in_recent_list(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        for page in 1..=LOOKUP_LIST_PAGES {
            let tasks = match self.list(kind, page, 500).await {
                Ok(tasks) => tasks,
                Err(e) if matches!(e.class, ErrorClass::ItemInvalid | ErrorClass::Setup) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let short = tasks.len() < 500;
            if let Some(t) = tasks
                .into_iter()
                .find(|t| t.external_task_id.as_deref() == Some(external_task_id))
            {
                return Ok(Some(t));
            }
            if short {
                break;
            }
        }
        Ok(None)
    }
}

/// A task found under `external_task_id` is ours unless it says it belongs to
/// another external id. A task that carries none is adopted: the server
/// resolved our id to it, and our ids never look like Kling task ids.
fn adoptable(snapshot: TaskSnapshot, external_task_id: &str) -> Option<TaskSnapshot> {
    match snapshot.external_task_id.as_deref() {
        Some(other) if other != external_task_id => {
            tracing::warn!(
                asked = external_task_id,
                got = other,
                task_id = %snapshot.task_id,
                "Kling returned a task with a different external_task_id; not adopting it"
            );
            None
        }
        _ => Some(snapshot),
    }
}

/// A transport error chain that says the TLS handshake or certificate failed.
fn is_tls_failure(chain: &str) -> bool {
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
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn snapshot_of(reply: Reply) -> Result<TaskSnapshot, ProviderError> {
    let data = reply
        .data
        .ok_or_else(|| error(ErrorClass::RetryLater, "query answered without data"))?;
    wire::task_snapshot(&data, reply.request_id.as_deref()).map_err(|e| {
        // An unusable id will not get better by asking again.
        let class = match e {
            wire::WireError::UnusableTaskId(_) => ErrorClass::ItemInvalid,
            _ => ErrorClass::RetryLater,
        };
        ProviderError {
            request_id: reply.request_id.clone(),
            ..error(class, e.to_string())
        }
    })
}

/// After a re-signed token was rejected again nothing will work until the
/// user fixes the keys or the clock.
fn credentials_rejected(e: ProviderError) -> ProviderError {
    ProviderError {
        class: ErrorClass::BatchFatal,
        message: format!(
            "credentials rejected even after re-signing (check the clock and the keys): {}",
            e.message
        ),
        ..e
    }
}

/// An image as Kling takes it: a URL as is, a local file as raw base64
/// (standard alphabet, padded, no `data:` prefix), read at submit time.
async fn image_value(image: &ImageRef) -> Result<String, ProviderError> {
    match image {
        ImageRef::Url(url) => Ok(url.clone()),
        ImageRef::Path(path) => match tokio::fs::read(path).await {
            Ok(bytes) => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Err(e) => Err(error(
                ErrorClass::ItemInvalid,
                format!("cannot read image {}: {e}", path.display()),
            )),
        },
    }
}

async fn optional_image(image: Option<&ImageRef>) -> Result<Option<String>, ProviderError> {
    match image {
        Some(i) => image_value(i).await.map(Some),
        None => Ok(None),
    }
}

impl Provider for KlingProvider {
    async fn create(&self, item: &Item, external_task_id: &str) -> Result<Created, ProviderError> {
        let (image, image_tail) = match item.kind {
            Kind::Image2Video => (
                optional_image(item.image.as_ref()).await?,
                optional_image(item.image_tail.as_ref()).await?,
            ),
            Kind::Text2Video => (None, None),
        };
        let body = CreateBody::new(item, external_task_id, image, image_tail);
        let body = serde_json::to_vec(&body).map_err(|e| {
            error(
                ErrorClass::ItemInvalid,
                format!("cannot encode request body: {e}"),
            )
        })?;
        let reply = self
            .call(
                Op::Create,
                Method::POST,
                &self.collection_url(item.kind),
                &[],
                Some(Bytes::from(body)),
            )
            .await?;
        let task_id = reply
            .data
            .as_ref()
            .and_then(|d| d.get("task_id"))
            .and_then(|t| match t {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        match task_id {
            Some(task_id) if !crate::provider::usable_task_id(&task_id) => Err(ProviderError {
                request_id: reply.request_id,
                ..error(
                    ErrorClass::ItemInvalid,
                    format!(
                        "the server accepted the create but returned an unusable task id ({} bytes); it cannot be polled, and it is not created again (external_task_id {external_task_id})",
                        task_id.len()
                    ),
                )
            }),
            Some(task_id) => Ok(Created {
                task_id,
                request_id: reply.request_id,
            }),
            // "Success" without an id: the task may exist; settle by external id.
            None => Err(ProviderError {
                request_id: reply.request_id,
                ..error(ErrorClass::Ambiguous, "create succeeded without a task_id")
            }),
        }
    }

    /// An unknown task id answers 404/1203, classified `ItemInvalid`: the
    /// task is gone (or never was) and polling it again cannot help.
    async fn query(&self, kind: Kind, task_id: &str) -> Result<TaskSnapshot, ProviderError> {
        self.get_task(kind, task_id).await
    }

    /// kling-api.md §6.1 says the path accepts either id, so the path form is
    /// asked first; gateways document `?external_task_id=` instead, so a
    /// "not found" there (404/1203, or 1200/1201 from a server that rejects an
    /// external id in the path) is followed by the query-parameter form
    /// before concluding that no task exists. A task that names a different
    /// external id is never adopted. Any other failure is returned as is: the
    /// caller must not conclude "not created" from an error.
    async fn find_by_external_id(
        &self,
        kind: Kind,
        external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        match self.get_task(kind, external_task_id).await {
            Ok(snapshot) => {
                if let Some(found) = adoptable(snapshot, external_task_id) {
                    return Ok(Some(found));
                }
            }
            Err(e) if codes::is_not_found(e.code, e.http_status) => {}
            Err(e) => return Err(e),
        }
        if let Some(found) = self.find_by_query_param(kind, external_task_id).await? {
            return Ok(Some(found));
        }
        self.find_in_recent_list(kind, external_task_id).await
    }

    async fn list(
        &self,
        kind: Kind,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<TaskSnapshot>, ProviderError> {
        let query = [
            ("pageNum", page.to_string()),
            ("pageSize", page_size.to_string()),
        ];
        let reply = self
            .call(
                Op::List,
                Method::GET,
                &self.collection_url(kind),
                &query,
                None,
            )
            .await?;
        match reply.data {
            Some(data) => {
                wire::task_list(&data, reply.request_id.as_deref()).map_err(|e| ProviderError {
                    request_id: reply.request_id.clone(),
                    ..error(ErrorClass::RetryLater, e.to_string())
                })
            }
            None => Ok(Vec::new()),
        }
    }
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved).
fn encode_segment(s: &str) -> String {
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

/// `Retry-After` as delta-seconds or an HTTP date (IMF-fixdate).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), for dates after 1970.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// Scrub credentials from text a server sent back: known secrets, the word
/// after any `Bearer`, and anything that looks like a JWT (`eyJ...`).
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
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
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Read a body up to `cap` bytes; `Ok(None)` if it is longer, so a hostile or
/// broken server cannot make us buffer without bound.
async fn read_capped(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
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

    #[test]
    fn urls_by_style() {
        let mut config = super::super::KlingConfig {
            base_url: "https://api-singapore.klingai.com/".into(),
            style: Style::Official,
            credentials: Credentials::ApiKey("k".into()),
            request_timeout: Duration::from_secs(1),
        };
        let p = KlingProvider::new(config.clone());
        assert_eq!(
            p.collection_url(Kind::Text2Video),
            "https://api-singapore.klingai.com/v1/videos/text2video"
        );
        assert_eq!(
            p.task_url(Kind::Image2Video, "a/b"),
            "https://api-singapore.klingai.com/v1/videos/image2video/a%2Fb"
        );
        config.base_url = "https://genaiapi.cloudsway.net/v1/ai/ABCDEF".into();
        config.style = Style::Gateway;
        let p = KlingProvider::new(config);
        assert_eq!(
            p.task_url(Kind::Text2Video, "1"),
            "https://genaiapi.cloudsway.net/v1/ai/ABCDEF/kling/videos/text2video/1"
        );
    }

    #[tokio::test]
    async fn image_as_raw_base64_and_missing_file_is_item_invalid() {
        let dir = std::env::temp_dir().join(format!("vidbatch-kling-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("i.png");
        std::fs::write(&path, [0x89, b'P', b'N', b'G', 0]).expect("write");
        let v = image_value(&ImageRef::Path(path.clone()))
            .await
            .expect("read");
        assert_eq!(v, "iVBORwA="); // standard alphabet, padded
        assert!(!v.starts_with("data:"));
        let v = image_value(&ImageRef::Url("https://e.x/a.jpg".into()))
            .await
            .expect("url");
        assert_eq!(v, "https://e.x/a.jpg");
        let missing = dir.join("missing.png");
        let e = image_value(&ImageRef::Path(missing.clone()))
            .await
            .expect_err("missing");
        assert_eq!(e.class, ErrorClass::ItemInvalid);
        assert!(
            e.message.contains(&missing.display().to_string()),
            "{}",
            e.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
