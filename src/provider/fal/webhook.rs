//! fal's webhooks (providers.md §8a): with `?fal_webhook=<url>` on a submit,
//! fal POSTs `{request_id, gateway_request_id, status: "OK"|"ERROR",
//! payload, error?}` once the request has ended.
//!
//! As with every provider's callbacks, the body only says *which* request to
//! look at now (by its `request_id`, see `FalProvider::callback_key`); the
//! status and result come from the queue's own answers, so a forged call
//! costs one status request. fal sends webhooks for ends only, so every
//! well-formed one is worth a look.

use serde_json::Value;

use crate::provider::{Callback, usable_task_id};

/// The submit URL with `fal_webhook` set to `hook` (percent-encoded).
pub(super) fn submit_url(url: &str, hook: &str) -> String {
    let mut u = match reqwest::Url::parse(url) {
        Ok(u) => u,
        // The submit URL was built from the base URL; if it does not parse,
        // the request fails on its own, without a callback address.
        Err(_) => return url.to_owned(),
    };
    u.query_pairs_mut().append_pair("fal_webhook", hook);
    u.into()
}

/// The request a webhook body names.
pub(super) fn parse(body: &[u8]) -> Option<Callback> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let id = v.get("request_id")?.as_str()?;
    if !usable_task_id(id) || id.len() > 256 {
        return None;
    }
    Some(Callback {
        task_id: id.to_owned(),
        settled: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_address_rides_on_the_submit_query_encoded() {
        let url = submit_url(
            "https://queue.fal.run/fal-ai/kling-video/v2.1/standard/text-to-video",
            "https://h.example.com/vb/abc?x=1&y",
        );
        assert_eq!(
            url,
            "https://queue.fal.run/fal-ai/kling-video/v2.1/standard/text-to-video?fal_webhook=https%3A%2F%2Fh.example.com%2Fvb%2Fabc%3Fx%3D1%26y"
        );
    }

    #[test]
    fn an_ok_or_error_webhook_names_its_request() {
        for body in [
            r#"{"request_id":"764cabcf-b745","gateway_request_id":"764cabcf-b745","status":"OK","payload":{"video":{"url":"https://v3.fal.media/x.mp4"}}}"#,
            r#"{"request_id":"764cabcf-b745","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[]}}"#,
        ] {
            let c = parse(body.as_bytes()).unwrap();
            assert_eq!(c.task_id, "764cabcf-b745");
            assert!(c.settled);
        }
    }

    #[test]
    fn anything_else_is_no_webhook() {
        for body in [
            "",
            "{}",
            r#"{"request_id":7}"#,
            r#"{"request_id":""}"#,
            r#"{"request_id":"a b"}"#,
            r#"{"status":"OK"}"#,
        ] {
            assert_eq!(parse(body.as_bytes()), None, "{body}");
        }
    }
}
