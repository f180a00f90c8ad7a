//! HTTP plumbing of [`KlingProvider`]: URLs, one request with auth and
//! classification, and the [`Provider`] methods built on it.
//!
//! Every failure leaves here as a classified [`ProviderError`] with no secret
//! in it. A 1003/1004 (token not yet valid / expired) is handled here: the
//! token is re-signed and the request sent once more, so the engine never has
//! to know about JWTs; a second rejection means the keys or the clock are
//! wrong and is batch-fatal.

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use super::codes::{self, Op};
use super::lookup::adoptable;
use super::wire::{self, Data, Envelope, Task};
use super::{Credentials, KlingProvider, Style};
use crate::job::{Job, JobFile, Kind};
use crate::provider::http::{
    MAX_BODY_BYTES, encode_segment, is_tls_failure, parse_retry_after, read_capped, redact,
    strip_query,
};
use crate::provider::{Capabilities, Created, ErrorClass, Provider, ProviderError, TaskSnapshot};

/// How much of a non-JSON body goes into an error message.
const SNIPPET_CHARS: usize = 200;

/// A successful call: the envelope's request id and `data`.
pub(super) struct Reply {
    pub(super) request_id: Option<String>,
    pub(super) data: Option<Data<Task>>,
}

pub(super) fn error(class: ErrorClass, message: impl Into<String>) -> ProviderError {
    ProviderError {
        class,
        code: None,
        http_status: None,
        message: message.into(),
        request_id: None,
        retry_after: None,
        hint: None,
    }
}

impl KlingProvider {
    /// `{base}/v1/videos/{kind}` or `{base}/kling/videos/{kind}`.
    pub(super) fn collection_url(&self, kind: Kind) -> String {
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
    pub(super) async fn call(
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
        // Held until the body is read: the connection is busy until then.
        let _turn = self.http.turn().await;
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
                hint: None,
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
                    hint: None,
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
                hint: None,
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
            hint: codes::hint(envelope.code).map(String::from),
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
            hint: None,
        }
    }

    /// GET one task by an id in the path.
    async fn get_task(&self, kind: Kind, id: &str) -> Result<TaskSnapshot, ProviderError> {
        let reply = self
            .call(Op::Query, Method::GET, &self.task_url(kind, id), &[], None)
            .await?;
        snapshot_of(reply)
    }
}

fn snapshot_of(reply: Reply) -> Result<TaskSnapshot, ProviderError> {
    let data = reply
        .data
        .ok_or_else(|| error(ErrorClass::RetryLater, "query answered without data"))?;
    wire::task_snapshot(data, reply.request_id.as_deref()).map_err(|e| {
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
/// A local image as Kling takes it: raw base64, no `data:` prefix.
async fn base64_of(file: JobFile) -> Result<String, ProviderError> {
    match tokio::fs::read(&file.path).await {
        Ok(bytes) => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Err(e) => Err(error(
            ErrorClass::ItemInvalid,
            format!("cannot read image {}: {e}", file.path.display()),
        )),
    }
}

impl Provider for KlingProvider {
    /// Lists take up to 500 tasks a page (kling-api.md §6.2); a task is found
    /// by our `external_task_id`, which a create carries; no cancel endpoint.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list_page_size: Some(500),
            lookup_by_key: true,
            idempotency_key: true,
            cancel: false,
            queues_over_limit: false,
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Option<crate::provider::Callback> {
        super::callback::parse(body)
    }

    async fn create(&self, job: &Job, external_task_id: &str) -> Result<Created, ProviderError> {
        let mut body = job.body_with_files(base64_of).await?;
        body.insert("external_task_id".into(), external_task_id.into());
        if let Some(url) = &self.config.callback_url {
            body.insert("callback_url".into(), url.0.clone().into());
        }
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
                &self.collection_url(job.kind),
                &[],
                Some(Bytes::from(body)),
            )
            .await?;
        let task_id = match &reply.data {
            Some(Data::Object(task)) => task.id().filter(|id| !id.is_empty()).map(str::to_owned),
            _ => None,
        };
        match task_id {
            Some(task_id) if !wire::usable_kling_id(&task_id) => Err(ProviderError {
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
                wire::task_list(data, reply.request_id.as_deref()).map_err(|e| ProviderError {
                    request_id: reply.request_id.clone(),
                    ..error(ErrorClass::RetryLater, e.to_string())
                })
            }
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn urls_by_style() {
        let mut config = super::super::KlingConfig {
            base_url: "https://api-singapore.klingai.com/".into(),
            style: Style::Official,
            credentials: Credentials::ApiKey("k".into()),
            request_timeout: Duration::from_secs(1),
            callback_url: None,
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
        let file = |path: &std::path::Path| JobFile {
            field: "image".into(),
            index: None,
            path: path.to_path_buf(),
        };
        let v = base64_of(file(&path)).await.expect("read");
        assert_eq!(v, "iVBORwA="); // standard alphabet, padded
        assert!(!v.starts_with("data:"));
        let missing = dir.join("missing.png");
        let e = base64_of(file(&missing)).await.expect_err("missing");
        assert_eq!(e.class, ErrorClass::ItemInvalid);
        assert!(
            e.message.contains(&missing.display().to_string()),
            "{}",
            e.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
