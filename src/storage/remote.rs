//! The S3 client of a destination: built from the usual `AWS_*` variables,
//! probed once before the batch creates anything.
//!
//! Credentials come only from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity, container
//! credentials — whatever `AmazonS3Builder::from_env` understands) and are
//! never printed: errors name the bucket, the key and the server's answer,
//! not the request's signature.
//!
//! S3-compatible servers (MinIO, SeaweedFS, moto, R2, …) come in through
//! `AWS_ENDPOINT_URL`. Plain `http://` is refused by the client unless
//! `AWS_ALLOW_HTTP=true`; an endpoint on this machine (`127.0.0.1`,
//! `localhost`, `[::1]`) is allowed without it, because nothing crosses a
//! network there.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use super::{ObjectUrl, StorageError};

/// A connected, probed destination.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: ObjectUrl,
    pub store: Arc<AmazonS3>,
    /// Folder under the prefix for the batch files (report, summary,
    /// gallery, state copy): a shard's `shard-<i>-of-<N>`; `None`: the prefix.
    pub files_dir: Option<String>,
}

/// The endpoint the environment names, if any (`AWS_ENDPOINT_URL_S3` wins,
/// as in the AWS SDKs).
fn endpoint(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .into_iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
}

/// `http://` to this machine only.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Build the client for `url` from the `AWS_*` environment (`env` is the
/// same environment, for the checks made here). Sends nothing.
pub fn build(
    url: &ObjectUrl,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Remote, StorageError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&url.bucket)
        // Conditional create (`If-None-Match: *`) on puts, and on the
        // completion of the multipart copy that publishes a large video:
        // what is there is never overwritten.
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: Duration::from_secs(120),
        });
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        builder = builder.with_region("us-east-1");
    }
    if let Some(ep) = endpoint(env) {
        let allowed = env("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if is_loopback_http(&ep) {
            builder = builder.with_allow_http(true);
        } else if ep.starts_with("http://") && !allowed {
            return Err(StorageError::BadConfig(format!(
                "AWS_ENDPOINT_URL {ep} is plain http to another machine: set AWS_ALLOW_HTTP=true if that is really meant, or use https"
            )));
        }
    }
    let store = builder
        .build()
        .map_err(|e| StorageError::BadConfig(format!("cannot configure S3 for {url}: {e}")))?;
    Ok(Remote {
        url: url.clone(),
        store: Arc::new(store),
        files_dir: None,
    })
}

/// List (at most one page of) the prefix: a missing bucket, a refused key or
/// an unreachable endpoint shows here, before any task is created.
pub async fn probe(remote: &Remote) -> Result<(), StorageError> {
    let prefix =
        (!remote.url.prefix.is_empty()).then(|| ObjectPath::from(remote.url.prefix.as_str()));
    remote
        .store
        .list_with_delimiter(prefix.as_ref())
        .await
        .map(|_| ())
        .map_err(|e| StorageError::Unusable {
            url: remote.url.to_string(),
            message: describe(&e),
        })
}

/// One line for an object_store error: the server's answer, never a secret.
/// object_store's messages carry the URL, the status and the server's body,
/// not the signature; the secret key and session token are still blanked
/// out should a server ever echo them.
pub fn describe(e: &object_store::Error) -> String {
    let full = chain(e);
    let mut s = s3_error(&full).unwrap_or(full);
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Some(secret) = std::env::var(var).ok().filter(|v| v.len() >= 4) {
            s = s.replace(&secret, "[redacted]");
        }
    }
    s
}

/// S3's own answer out of an error's text: `NoSuchBucket: The specified
/// bucket does not exist` rather than the whole XML body, with a hint for
/// the answers that mean a setup problem.
fn s3_error(text: &str) -> Option<String> {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let code = tag("Code")?;
    let message = tag("Message").unwrap_or_default();
    let hint = match code.as_str() {
        "NoSuchBucket" => {
            " (create the bucket first, or check its name, AWS_REGION and AWS_ENDPOINT_URL)"
        }
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
            " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and the bucket's policy)"
        }
        _ => "",
    };
    Some(format!("the server answered {code}: {message}{hint}"))
}

fn chain(e: &object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { .. } => {
            "not found (does the bucket exist in this region/endpoint?)".to_string()
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(c) = src {
                let more = c.to_string();
                if !s.contains(&more) {
                    s.push_str(": ");
                    s.push_str(&more);
                }
                src = c.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_allowed_only_to_this_machine() {
        assert!(is_loopback_http("http://127.0.0.1:5000"));
        assert!(is_loopback_http("http://localhost:5000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://s3.example.com"));
        assert!(!is_loopback_http("https://127.0.0.1:5000"));
    }

    #[test]
    fn an_s3_error_body_becomes_one_line_with_a_hint() {
        let body = "Generic S3 error: GET http://h/b failed: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>x</RequestId></Error>";
        let line = s3_error(body).unwrap();
        assert!(
            line.starts_with("the server answered NoSuchBucket: The specified bucket does not exist (create the bucket first"),
            "{line}"
        );
        assert_eq!(s3_error("connection refused"), None);
    }

    #[test]
    fn plain_http_elsewhere_needs_aws_allow_http() {
        let url = ObjectUrl {
            bucket: "bucket".into(),
            prefix: String::new(),
        };
        let env = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://s3.example.com".to_string());
        let e = build(&url, &env).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("AWS_ALLOW_HTTP=true"), "{e}");
    }
}
