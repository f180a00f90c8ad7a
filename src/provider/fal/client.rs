//! HTTP plumbing of [`FalProvider`]: one request with auth and capped body,
//! the classification of fal's answers, and the [`Provider`] methods.
//!
//! Every failure leaves here as a classified [`ProviderError`] with no key in
//! it. The key only goes to the base URL's origin or to `*.fal.run`: a
//! status or result URL pointing anywhere else is refused at submit, so a
//! hostile answer cannot harvest `FAL_KEY` on the first poll.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::Value;

use super::FalProvider;
use super::image::data_uri_of;
use super::webhook;
use super::wire::{self, Handle, QueueStatus};
use crate::job::{Job, Kind};
use crate::provider::http::{
    MAX_BODY_BYTES, encode_segment, is_tls_failure, parse_retry_after, read_capped, redact,
    strip_query,
};
use crate::provider::{
    CancelOutcome, Capabilities, Created, ErrorClass, Provider, ProviderError, RemoteStatus,
    TaskSnapshot,
};

/// How much of a non-JSON body goes into an error message.
const SNIPPET_CHARS: usize = 200;

/// Which call failed: the same HTTP status means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Submit,
    Status,
    Result,
    Cancel,
}

/// The class of a non-2xx answer fal (or whatever stands at the URL) gave.
/// The result and cancel calls look at some statuses first (a failed
/// request's result, "already completed"); this is what is left.
pub fn classify(op: Op, status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::BatchFatal,
        408 | 429 => ErrorClass::RetryLater,
        // No such route: a wrong base URL or model path. Under a URL fal
        // itself returned, it is the request that is gone.
        404 | 405 if op == Op::Submit => ErrorClass::Setup,
        400..=499 => ErrorClass::ItemInvalid,
        // A 5xx to a submit may come after the request was queued.
        _ if op == Op::Submit => ErrorClass::Ambiguous,
        _ => ErrorClass::RetryLater,
    }
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

/// An HTTP answer read in full (capped).
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    error_type: Option<String>,
    json: Option<Value>,
    snippet: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl FalProvider {
    fn secrets(&self) -> [&str; 1] {
        [self.config.key.as_str()]
    }

    /// `{base}/{model}`, every segment of the model path percent-encoded.
    fn submit_url(&self, model: &str) -> Option<String> {
        let segments: Vec<&str> = model.trim_matches('/').split('/').collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            return None;
        }
        let path: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
        Some(format!("{}/{}", self.config.base_url, path.join("/")))
    }

    /// Whether `url` may receive the key: the base URL's origin, or fal's own hosts.
    fn trusted(&self, url: &str) -> bool {
        let (Ok(u), Ok(base)) = (
            reqwest::Url::parse(url),
            reqwest::Url::parse(&self.config.base_url),
        ) else {
            return false;
        };
        if u.origin() == base.origin() {
            return true;
        }
        let host = u.host_str().unwrap_or_default();
        u.scheme() == "https" && (host == "fal.run" || host.ends_with(".fal.run"))
    }

    async fn send(
        &self,
        op: Op,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ProviderError> {
        // Held until the body is read: the connection is busy until then.
        let _turn = self.http.turn().await;
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.config.request_timeout)
            .header(AUTHORIZATION, format!("Key {}", self.config.key))
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(op, &e, None)),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if (300..400).contains(&status) {
            let location = header(LOCATION.as_str())
                .map(|l| wire::bounded(strip_query(&l)))
                .unwrap_or_else(|| "nowhere".into());
            return Err(ProviderError {
                http_status: Some(status),
                ..error(
                    ErrorClass::Setup,
                    format!(
                        "{method} {} answered HTTP {status}, a redirect to {location}; vidbatch does not follow redirects of API calls: set the base URL to where the API really is",
                        strip_query(url)
                    ),
                )
            });
        }
        let retry_after =
            header(RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let error_type = header("x-fal-error-type");
        let bytes = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(ProviderError {
                    http_status: Some(status),
                    retry_after,
                    ..error(
                        classify(op, 500),
                        format!("HTTP {status}, response body larger than {MAX_BODY_BYTES} bytes"),
                    )
                });
            }
            Err(e) => {
                let mut err = self.transport_error(op, &e, Some(status));
                err.retry_after = retry_after;
                return Err(err);
            }
        };
        tracing::debug!(%method, url = strip_query(url), status, "fal request");
        let json = serde_json::from_slice::<Value>(&bytes).ok();
        let snippet = if json.is_none() {
            let text: String = String::from_utf8_lossy(&bytes)
                .chars()
                .take(SNIPPET_CHARS)
                .collect();
            redact(text.trim(), &self.secrets())
        } else {
            String::new()
        };
        Ok(Answer {
            status,
            retry_after,
            error_type,
            json,
            snippet,
        })
    }

    /// A non-2xx answer (or a 2xx that is not fal's JSON) as an error.
    fn http_error(&self, op: Op, method: &Method, url: &str, a: &Answer) -> ProviderError {
        let status = a.status;
        let class = if a.ok() {
            ErrorClass::Setup
        } else {
            classify(op, status)
        };
        let text = a
            .json
            .as_ref()
            .and_then(|j| wire::error_text(j, a.error_type.as_deref()))
            .map(|t| redact(&t, &self.secrets()));
        let message = match (&text, class) {
            (_, ErrorClass::Setup) | (None, _) if a.json.is_none() => format!(
                "{method} {} answered HTTP {status} with a body that is not fal's API: {:?}",
                strip_query(url),
                a.snippet
            ),
            (Some(t), ErrorClass::Setup) => {
                format!("{method} {} answered HTTP {status}: {t}", strip_query(url))
            }
            (Some(t), _) => format!("HTTP {status}: {t}"),
            (None, _) => format!("{method} {} answered HTTP {status}", strip_query(url)),
        };
        let hint = (class == ErrorClass::BatchFatal)
            .then(|| "check FAL_KEY: fal refused the key (Authorization: Key …)".to_owned());
        ProviderError {
            class,
            code: None,
            http_status: Some(status),
            message,
            request_id: None,
            retry_after: a.retry_after,
            hint,
        }
    }

    /// A failure below HTTP. Refused or unresolvable connections sent
    /// nothing; anything later may have reached fal, so a submit is
    /// ambiguous and a read is retried. A body cut off after a 4xx status
    /// line is classified by that status.
    fn transport_error(&self, op: Op, e: &reqwest::Error, status: Option<u16>) -> ProviderError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        // A submit's query carries the callback address and its secret.
        if let Some(url) = e.url().map(|u| u.as_str().to_owned()) {
            message = message.replace(&url, strip_query(&url));
        }
        let class = if e.is_builder() {
            ErrorClass::BatchFatal
        } else if let Some(s @ 400..=499) = status {
            classify(op, s)
        } else if is_tls_failure(&message) {
            message.push_str(
                " (TLS failed: if a private CA or a proxy signs this server's certificate, point SSL_CERT_FILE or SSL_CERT_DIR at it)",
            );
            ErrorClass::Setup
        } else if e.is_connect() {
            ErrorClass::Unreachable
        } else if op == Op::Submit {
            ErrorClass::Ambiguous
        } else {
            ErrorClass::RetryLater
        };
        ProviderError {
            http_status: status,
            ..error(class, redact(&message, &self.secrets()))
        }
    }

    /// The result of a `COMPLETED` request: its videos or fal's error.
    async fn result(&self, handle: &Handle) -> Result<RemoteStatus, ProviderError> {
        let url = &handle.result;
        let a = self.send(Op::Result, Method::GET, url, None).await?;
        if a.ok() {
            return match &a.json {
                Some(j) => Ok(wire::result_status(j, &handle.id)),
                None => Err(self.http_error(Op::Result, &Method::GET, url, &a)),
            };
        }
        let text = a
            .json
            .as_ref()
            .and_then(|j| wire::error_text(j, a.error_type.as_deref()));
        let typed = a.error_type.is_some()
            || a.json
                .as_ref()
                .is_some_and(|j| j.get("error_type").is_some());
        match (a.status, text) {
            (401 | 403 | 404 | 405 | 408 | 429, _) => {}
            // Just after COMPLETED the result can lag a moment behind.
            (400, Some(t)) if t.to_ascii_lowercase().contains("in progress") => {
                return Err(ProviderError {
                    http_status: Some(400),
                    ..error(ErrorClass::RetryLater, format!("result not ready yet: {t}"))
                });
            }
            // A 5xx without fal's error_type may be a gateway's, not the request's.
            (400..=499, Some(t)) | (500..=599, Some(t)) if a.status < 500 || typed => {
                let message = redact(&format!("fal: HTTP {}: {t}", a.status), &self.secrets());
                return Ok(RemoteStatus::Failed { message });
            }
            _ => {}
        }
        Err(self.http_error(Op::Result, &Method::GET, url, &a))
    }

    fn snapshot(handle: &Handle, task_id: &str, status: RemoteStatus) -> TaskSnapshot {
        TaskSnapshot {
            task_id: task_id.to_owned(),
            external_task_id: None,
            status,
            request_id: Some(handle.id.clone()),
        }
    }
}

fn decode(task_id: &str) -> Result<Handle, ProviderError> {
    Handle::decode(task_id).map_err(|e| error(ErrorClass::ItemInvalid, e.to_string()))
}

impl Provider for FalProvider {
    /// No list endpoint, no lookup by our key, no idempotency key; a cancel
    /// that works while the request is queued.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list_page_size: None,
            lookup_by_key: false,
            idempotency_key: false,
            cancel: true,
            queues_over_limit: true,
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Option<crate::provider::Callback> {
        webhook::parse(body)
    }

    /// fal's webhooks name the request by its id; the handle holds more.
    fn callback_key(&self, task_id: &str) -> Option<String> {
        Handle::decode(task_id).ok().map(|h| h.id)
    }

    /// `external_task_id` is not sent: fal has no field for it.
    async fn create(&self, job: &Job, _external_task_id: &str) -> Result<Created, ProviderError> {
        let model = job
            .target
            .as_deref()
            .ok_or_else(|| error(ErrorClass::ItemInvalid, "no fal model for this item"))?;
        let url = self.submit_url(model).ok_or_else(|| {
            error(
                ErrorClass::ItemInvalid,
                format!("fal model {model:?} has an empty path segment"),
            )
        })?;
        let input = job.body_with_files(data_uri_of).await?;
        let body = serde_json::to_vec(&input).map_err(|e| {
            error(
                ErrorClass::ItemInvalid,
                format!("cannot encode request body: {e}"),
            )
        })?;
        // Errors name `url`, never the callback address in `to`.
        let to = match &self.config.callback_url {
            Some(hook) => webhook::submit_url(&url, &hook.0),
            None => url.clone(),
        };
        let a = self.send(Op::Submit, Method::POST, &to, Some(body)).await?;
        let json = match &a.json {
            Some(j) if a.ok() => j,
            _ => return Err(self.http_error(Op::Submit, &Method::POST, &url, &a)),
        };
        let accepted_but = |why: String| {
            error(
                ErrorClass::ItemInvalid,
                format!(
                    "fal accepted the request but {why}; it cannot be polled and is not submitted again"
                ),
            )
        };
        let handle = Handle::from_submit(json)
            .map_err(|e| accepted_but(format!("its answer is unusable: {e}")))?;
        let urls = [
            Some(&handle.status),
            Some(&handle.result),
            handle.cancel.as_ref(),
        ];
        if let Some(untrusted) = urls.into_iter().flatten().find(|u| !self.trusted(u)) {
            return Err(accepted_but(format!(
                "it points at {}, neither the base URL's origin nor fal's; FAL_KEY is not sent there",
                strip_query(untrusted)
            )));
        }
        Ok(Created {
            task_id: handle.encode(),
            request_id: Some(handle.id),
        })
    }

    /// Status, then (once `COMPLETED`) the result, both at the handle's URLs.
    async fn query(&self, _kind: Kind, task_id: &str) -> Result<TaskSnapshot, ProviderError> {
        let handle = decode(task_id)?;
        let a = self
            .send(Op::Status, Method::GET, &handle.status, None)
            .await?;
        let word = match &a.json {
            Some(j) if a.ok() => wire::queue_status(j),
            _ => return Err(self.http_error(Op::Status, &Method::GET, &handle.status, &a)),
        };
        let status = match word {
            Some(QueueStatus::InQueue) => RemoteStatus::Submitted,
            Some(QueueStatus::InProgress | QueueStatus::Unknown) => RemoteStatus::Processing,
            Some(QueueStatus::Completed) => self.result(&handle).await?,
            None => {
                return Err(error(
                    ErrorClass::RetryLater,
                    "fal's status answer has no status",
                ));
            }
        };
        Ok(Self::snapshot(&handle, task_id, status))
    }

    /// Never called: [`Capabilities::lookup_by_key`] is false, since fal
    /// cannot find a request by a key of ours. `None` says only that.
    async fn find_by_external_id(
        &self,
        _kind: Kind,
        _external_task_id: &str,
    ) -> Result<Option<TaskSnapshot>, ProviderError> {
        Ok(None)
    }

    /// Never called: [`Capabilities::list_page_size`] is `None`.
    async fn list(
        &self,
        _kind: Kind,
        _page: u32,
        _page_size: u32,
    ) -> Result<Vec<TaskSnapshot>, ProviderError> {
        Err(error(ErrorClass::Setup, "fal has no list endpoint"))
    }

    /// `PUT` the cancel URL: 202 while queued; 400/409 (`ALREADY_COMPLETED`)
    /// or 404 once it started or ended.
    async fn cancel(&self, _kind: Kind, task_id: &str) -> Result<CancelOutcome, ProviderError> {
        let handle = decode(task_id)?;
        let Some(url) = &handle.cancel else {
            return Ok(CancelOutcome::Unsupported);
        };
        let a = self.send(Op::Cancel, Method::PUT, url, None).await?;
        let too_late = a
            .json
            .as_ref()
            .and_then(|j| j.get("status"))
            .and_then(Value::as_str)
            == Some("ALREADY_COMPLETED");
        match a.status {
            _ if too_late => Ok(CancelOutcome::TooLate),
            200..=299 => Ok(CancelOutcome::Cancelled),
            400 | 404 | 409 => Ok(CancelOutcome::TooLate),
            _ => Err(self.http_error(Op::Cancel, &Method::PUT, url, &a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fal::FalConfig;

    fn provider(base: &str) -> FalProvider {
        FalProvider::new(FalConfig {
            base_url: base.into(),
            key: "k".into(),
            request_timeout: Duration::from_secs(1),
            default_model: None,
            callback_url: None,
        })
    }

    #[test]
    fn statuses_by_call() {
        use ErrorClass::*;
        let table = [
            (401, [BatchFatal, BatchFatal, BatchFatal, BatchFatal]),
            (403, [BatchFatal, BatchFatal, BatchFatal, BatchFatal]),
            (404, [Setup, ItemInvalid, ItemInvalid, ItemInvalid]),
            (405, [Setup, ItemInvalid, ItemInvalid, ItemInvalid]),
            (408, [RetryLater, RetryLater, RetryLater, RetryLater]),
            (413, [ItemInvalid, ItemInvalid, ItemInvalid, ItemInvalid]),
            (422, [ItemInvalid, ItemInvalid, ItemInvalid, ItemInvalid]),
            (429, [RetryLater, RetryLater, RetryLater, RetryLater]),
            (500, [Ambiguous, RetryLater, RetryLater, RetryLater]),
            (502, [Ambiguous, RetryLater, RetryLater, RetryLater]),
            (504, [Ambiguous, RetryLater, RetryLater, RetryLater]),
        ];
        for (status, classes) in table {
            for (op, class) in [Op::Submit, Op::Status, Op::Result, Op::Cancel]
                .into_iter()
                .zip(classes)
            {
                assert_eq!(classify(op, status), class, "{op:?} {status}");
            }
        }
    }

    #[test]
    fn model_path_segments_are_kept_and_encoded() {
        let p = provider("https://queue.fal.run");
        assert_eq!(
            p.submit_url("fal-ai/kling-video/v2.1/standard/text-to-video")
                .as_deref(),
            Some("https://queue.fal.run/fal-ai/kling-video/v2.1/standard/text-to-video")
        );
        assert_eq!(
            p.submit_url("/owner/app x/?q/").as_deref(),
            Some("https://queue.fal.run/owner/app%20x/%3Fq")
        );
        assert_eq!(p.submit_url("owner//app"), None);
        assert_eq!(p.submit_url(""), None);
    }

    #[test]
    fn the_key_goes_only_to_the_base_origin_or_fal() {
        let p = provider("http://127.0.0.1:8080");
        assert!(p.trusted("http://127.0.0.1:8080/a/b/requests/1/status"));
        assert!(p.trusted("https://queue.fal.run/a/b/requests/1"));
        assert!(!p.trusted("http://queue.fal.run/a/b/requests/1"));
        assert!(!p.trusted("http://127.0.0.1:8081/a/b/requests/1"));
        assert!(!p.trusted("https://evil.example/fal.run/x"));
        assert!(!p.trusted("https://notfal.run/x"));
    }

    fn answer(status: u16, json: Option<Value>, snippet: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            error_type: None,
            json,
            snippet: snippet.into(),
        }
    }

    #[test]
    fn a_404_page_on_submit_is_setup_and_a_refused_key_is_fatal_with_a_hint() {
        let p = provider("https://queue.fal.run");
        let url = "https://queue.fal.run/wrong/prefix/fal-ai/veo3";
        let e = p.http_error(
            Op::Submit,
            &Method::POST,
            url,
            &answer(404, None, "<h1>Not Found</h1>"),
        );
        assert_eq!(e.class, ErrorClass::Setup);
        assert!(
            e.message.contains(url) && e.message.contains("Not Found"),
            "{}",
            e.message
        );
        let body = serde_json::json!({"detail": "Invalid key k"});
        let e = p.http_error(Op::Submit, &Method::POST, url, &answer(401, Some(body), ""));
        assert_eq!(e.class, ErrorClass::BatchFatal);
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("FAL_KEY")));
        // The key itself ("k") is too short to redact blindly; a real one is.
        let p = FalProvider::new(FalConfig {
            key: "fal-key-abcdef".into(),
            ..p.config.clone()
        });
        let body = serde_json::json!({"detail": "Invalid key fal-key-abcdef"});
        let e = p.http_error(Op::Submit, &Method::POST, url, &answer(403, Some(body), ""));
        assert!(!e.message.contains("fal-key-abcdef"), "{}", e.message);
    }

    #[test]
    fn a_2xx_that_is_not_json_is_setup_and_names_the_url() {
        let p = provider("https://queue.fal.run");
        let a = answer(200, None, "<html>login</html>");
        let e = p.http_error(
            Op::Submit,
            &Method::POST,
            "https://queue.fal.run/a/b?x=1",
            &a,
        );
        assert_eq!(e.class, ErrorClass::Setup);
        assert!(
            e.message
                .contains("POST https://queue.fal.run/a/b answered HTTP 200"),
            "{}",
            e.message
        );
        assert!(e.message.contains("<html>login</html>"), "{}", e.message);
    }
}
