//! fal's queue JSON: the input we send, the submit answer turned into our
//! task handle, the status word, the model output's video(s), and FastAPI's
//! `detail` made readable. Pure functions, so every shape is unit-tested
//! without a server.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::job::{Job, JobFile};
use crate::manifest::{ImageRef, Item, Kind};
use crate::provider::{RemoteStatus, Video, usable_task_id};

/// Longest URL accepted from fal into a handle.
pub const MAX_URL_BYTES: usize = 1024;
/// Longest fal request id accepted.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Most videos taken from one result (a model output is not a list page).
pub const MAX_VIDEOS: usize = 16;
/// Longest fal error text carried into a message.
pub const MAX_DETAIL_CHARS: usize = 1000;

/// What we store per task: fal's request id and exactly the URLs its submit
/// answer gave. fal's status/result/cancel URLs live under the model's app
/// root, not the full model path, so they are kept, never rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    pub id: String,
    pub status: String,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<String>,
}

/// Why a submit answer or a stored handle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("fal's submit answer has no {0}")]
    Missing(&'static str),
    #[error("fal's request_id is not 1 to {MAX_REQUEST_ID_BYTES} visible ASCII characters")]
    BadRequestId,
    #[error("fal's {0} is not an http(s) URL of at most {MAX_URL_BYTES} visible ASCII characters")]
    BadUrl(&'static str),
    #[error("the task handle is longer than vidbatch stores")]
    TooLong,
    #[error(
        "the stored task handle is not a fal handle (a JSON object with id, status and result)"
    )]
    NotAHandle,
}

fn usable_url(url: &str) -> bool {
    url.len() <= MAX_URL_BYTES
        && url.bytes().all(|b| b.is_ascii_graphic())
        && ["https://", "http://"].iter().any(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
                && url.len() > scheme.len()
        })
}

impl Handle {
    /// The handle of a submit answer `{request_id, status_url, response_url, cancel_url}`.
    pub fn from_submit(body: &Value) -> Result<Handle, HandleError> {
        let text = |field: &'static str| body.get(field).and_then(Value::as_str);
        let id = text("request_id").ok_or(HandleError::Missing("request_id"))?;
        if id.is_empty()
            || id.len() > MAX_REQUEST_ID_BYTES
            || !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(HandleError::BadRequestId);
        }
        let url = |field: &'static str| -> Result<String, HandleError> {
            let u = text(field).ok_or(HandleError::Missing(field))?;
            if usable_url(u) {
                Ok(u.to_owned())
            } else {
                Err(HandleError::BadUrl(field))
            }
        };
        let cancel = match body.get("cancel_url") {
            None | Some(Value::Null) => None,
            Some(_) => Some(url("cancel_url")?),
        };
        let handle = Handle {
            id: id.to_owned(),
            status: url("status_url")?,
            result: url("response_url")?,
            cancel,
        };
        if !usable_task_id(&handle.encode()) {
            return Err(HandleError::TooLong);
        }
        Ok(handle)
    }

    /// Compact JSON: printable ASCII, no spaces (every part was checked so).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored handle, re-checked: it came from disk.
    pub fn decode(stored: &str) -> Result<Handle, HandleError> {
        let handle: Handle = serde_json::from_str(stored).map_err(|_| HandleError::NotAHandle)?;
        let urls = [
            ("status_url", Some(&handle.status)),
            ("response_url", Some(&handle.result)),
            ("cancel_url", handle.cancel.as_ref()),
        ];
        for (field, url) in urls {
            if url.is_some_and(|u| !usable_url(u)) {
                return Err(HandleError::BadUrl(field));
            }
        }
        Ok(handle)
    }
}

/// The job for a validated item: the model path, and the model input with
/// image URLs in place and local images left as files (sent as data URIs).
/// fal has no idempotency key, so nothing of ours rides along.
pub fn job(item: &Item, default_model: Option<&str>) -> Job {
    let mut files = item.extra_files.clone();
    let mut image = |field: &str, image: Option<&ImageRef>| {
        JobFile::image_field(&mut files, field, image).map(Value::from)
    };
    let (first, tail) = match item.kind {
        Kind::Image2Video => (
            image("image_url", item.image.as_ref()),
            image("tail_image_url", item.image_tail.as_ref()),
        ),
        Kind::Text2Video => (None, None),
    };
    let mut map = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            map.insert(k.to_owned(), v);
        }
    };
    put("prompt", item.prompt.clone().map(Value::from));
    put(
        "negative_prompt",
        item.negative_prompt.clone().map(Value::from),
    );
    put("duration", item.duration.clone().map(Value::from));
    put("aspect_ratio", item.aspect_ratio.clone().map(Value::from));
    put("cfg_scale", item.cfg_scale.map(Value::from));
    put("image_url", first);
    put("tail_image_url", tail);
    // Everything else the manifest passed through, as written (local images
    // among it are replaced by their files when the request is sent).
    if let Some(extra) = &item.extra {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    Job {
        id: item.id.clone(),
        kind: item.kind,
        target: item.model_name.clone().or(default_model.map(str::to_owned)),
        body: map,
        files,
    }
}

/// `data:image/png|jpeg;base64,…` for an image file's bytes, by magic bytes.
pub fn data_uri(bytes: &[u8]) -> Option<String> {
    let mime = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else {
        return None;
    };
    let payload = base64::engine::general_purpose::STANDARD.encode(bytes);
    Some(format!("data:{mime};base64,{payload}"))
}

/// The status word, normalised. There is no failed state: a failure shows
/// only in the result, so `COMPLETED` means "read the result", and a word we
/// do not know means "keep polling".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    InQueue,
    InProgress,
    Completed,
    Unknown,
}

/// The status of a status answer; `None` when it has no `status` string.
pub fn queue_status(body: &Value) -> Option<QueueStatus> {
    Some(match body.get("status")?.as_str()? {
        "IN_QUEUE" => QueueStatus::InQueue,
        "IN_PROGRESS" => QueueStatus::InProgress,
        "COMPLETED" => QueueStatus::Completed,
        _ => QueueStatus::Unknown,
    })
}

/// What a 2xx result (the model output) says: its videos, or a failure
/// naming what came instead.
pub fn result_status(body: &Value, request_id: &str) -> RemoteStatus {
    let urls = video_urls(body);
    if urls.is_empty() {
        let shape = match body {
            Value::Object(m) => {
                let keys: Vec<&str> = m.keys().take(10).map(String::as_str).collect();
                format!("output fields [{}]", keys.join(", "))
            }
            other => format!("a JSON {}", json_type(other)),
        };
        return RemoteStatus::Failed {
            message: bounded(&format!("completed without a video: {shape}")),
        };
    }
    let many = urls.len() > 1;
    let videos = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| Video {
            id: if many {
                format!("{request_id}#{}", i + 1)
            } else {
                request_id.to_owned()
            },
            url,
            duration: None,
        })
        .collect();
    RemoteStatus::Succeeded {
        videos,
        units: None,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `video.url`, `video` as a URL string, or `videos[].url` / `videos[]` strings.
fn video_urls(body: &Value) -> Vec<String> {
    fn url_of(v: &Value) -> Option<String> {
        let u = match v {
            Value::String(s) => s.as_str(),
            Value::Object(m) => m.get("url")?.as_str()?,
            _ => return None,
        };
        usable_url(u).then(|| u.to_owned())
    }
    if let Some(u) = body.get("video").and_then(url_of) {
        return vec![u];
    }
    match body.get("videos") {
        Some(Value::Array(list)) => list.iter().filter_map(url_of).take(MAX_VIDEOS).collect(),
        _ => Vec::new(),
    }
}

/// fal's error text: `detail` (a string, or FastAPI's list of
/// `{loc, msg}` rendered `body.prompt: field required; …`) and `error_type`,
/// bounded. `None` when the body carries neither.
pub fn error_text(body: &Value, error_type_header: Option<&str>) -> Option<String> {
    let detail = body.get("detail").and_then(render_detail);
    let error_type = body
        .get("error_type")
        .and_then(Value::as_str)
        .or(error_type_header)
        .filter(|t| !t.is_empty());
    let text = match (detail, error_type) {
        (Some(d), Some(t)) => format!("{d} ({t})"),
        (Some(d), None) => d,
        (None, Some(t)) => t.to_owned(),
        (None, None) => return None,
    };
    Some(bounded(&text))
}

fn render_detail(detail: &Value) -> Option<String> {
    match detail {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Array(entries) if !entries.is_empty() => {
            let parts: Vec<String> = entries.iter().take(20).map(render_entry).collect();
            Some(parts.join("; "))
        }
        Value::Object(_) => Some(render_entry(detail)),
        _ => None,
    }
}

/// One FastAPI entry `{loc:["body","prompt"], msg, type}` as `body.prompt: msg`.
fn render_entry(entry: &Value) -> String {
    let loc = entry.get("loc").and_then(Value::as_array).map(|parts| {
        parts
            .iter()
            .take(10)
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    });
    let msg = entry
        .get("msg")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| bounded(&entry.to_string()));
    match loc {
        Some(loc) if !loc.is_empty() => format!("{loc}: {msg}"),
        _ => msg,
    }
}

/// At most [`MAX_DETAIL_CHARS`] characters, control characters blanked.
pub fn bounded(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_DETAIL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(MAX_DETAIL_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;
    use serde_json::json;

    fn submit_answer() -> Value {
        json!({
            "request_id": "764cabcf-b745-4b3e-ae38-1200304cf45b",
            "response_url": "https://queue.fal.run/fal-ai/kling-video/requests/764cabcf-b745-4b3e-ae38-1200304cf45b",
            "status_url": "https://queue.fal.run/fal-ai/kling-video/requests/764cabcf-b745-4b3e-ae38-1200304cf45b/status",
            "cancel_url": "https://queue.fal.run/fal-ai/kling-video/requests/764cabcf-b745-4b3e-ae38-1200304cf45b/cancel",
            "queue_position": 0
        })
    }

    #[test]
    fn a_handle_keeps_exactly_the_urls_fal_returned_and_round_trips() {
        let h = Handle::from_submit(&submit_answer()).expect("handle");
        assert!(
            h.status
                .starts_with("https://queue.fal.run/fal-ai/kling-video/requests/")
        );
        assert!(h.status.ends_with("/status"));
        let encoded = h.encode();
        assert!(usable_task_id(&encoded), "{encoded}");
        assert!(encoded.starts_with(r#"{"id":"764cabcf"#), "{encoded}");
        assert_eq!(Handle::decode(&encoded), Ok(h));
    }

    #[test]
    fn unusable_submit_answers_are_named() {
        let mut a = submit_answer();
        a["status_url"] = json!("ftp://queue.fal.run/x");
        assert_eq!(
            Handle::from_submit(&a),
            Err(HandleError::BadUrl("status_url"))
        );
        let mut a = submit_answer();
        a["response_url"] = json!(format!("https://h/{}", "a".repeat(MAX_URL_BYTES)));
        assert_eq!(
            Handle::from_submit(&a),
            Err(HandleError::BadUrl("response_url"))
        );
        let mut a = submit_answer();
        a["request_id"] = json!("has space");
        assert_eq!(Handle::from_submit(&a), Err(HandleError::BadRequestId));
        let mut a = submit_answer();
        a["request_id"] = json!("x".repeat(MAX_REQUEST_ID_BYTES + 1));
        assert_eq!(Handle::from_submit(&a), Err(HandleError::BadRequestId));
        let mut a = submit_answer();
        a.as_object_mut().map(|m| m.remove("status_url"));
        assert_eq!(
            Handle::from_submit(&a),
            Err(HandleError::Missing("status_url"))
        );
        // Without a cancel URL the handle simply has none.
        let mut a = submit_answer();
        a.as_object_mut().map(|m| m.remove("cancel_url"));
        assert_eq!(Handle::from_submit(&a).map(|h| h.cancel), Ok(None));
        assert_eq!(
            Handle::decode("866889456698785798"),
            Err(HandleError::NotAHandle)
        );
        assert_eq!(
            Handle::decode(r#"{"id":"a","status":"file:///etc/passwd","result":"https://x/y"}"#),
            Err(HandleError::BadUrl("status_url"))
        );
    }

    #[test]
    fn input_carries_the_item_fields_and_no_key_of_ours() {
        let item = Item {
            id: "cat".into(),
            origin: "items[0]".into(),
            kind: Kind::Image2Video,
            prompt: Some("a cat".into()),
            negative_prompt: Some("blur".into()),
            image: None,
            image_tail: None,
            model_name: Some("fal-ai/x/image-to-video".into()),
            mode: Some("pro".into()),
            duration: Some("5".into()),
            aspect_ratio: Some("16:9".into()),
            cfg_scale: Some(0.5),
            camera_control: None,
            sound: None,
            extra: None,
            extra_files: Vec::new(),
        };
        let item = Item {
            kind: Kind::Image2Video,
            image: Some(ImageRef::Url("https://e.x/a.png".into())),
            ..item
        };
        let job = job(&item, None);
        assert_eq!(job.target.as_deref(), Some("fal-ai/x/image-to-video"));
        assert!(job.files.is_empty());
        assert_eq!(
            Value::Object(job.body),
            json!({"prompt":"a cat","negative_prompt":"blur","duration":"5",
                   "aspect_ratio":"16:9","cfg_scale":0.5,"image_url":"https://e.x/a.png"})
        );
    }

    #[test]
    fn images_become_data_uris_by_their_magic_bytes() {
        let png = data_uri(b"\x89PNG\r\n\x1a\n\0").expect("png");
        assert_eq!(png, "data:image/png;base64,iVBORw0KGgoA");
        let jpg = data_uri(&[0xFF, 0xD8, 0xFF, 0xE0]).expect("jpeg");
        assert!(jpg.starts_with("data:image/jpeg;base64,"), "{jpg}");
        assert_eq!(data_uri(b"GIF89a"), None);
    }

    #[test]
    fn status_words() {
        assert_eq!(
            queue_status(&json!({"status":"IN_QUEUE","queue_position":3})),
            Some(QueueStatus::InQueue)
        );
        assert_eq!(
            queue_status(&json!({"status":"IN_PROGRESS"})),
            Some(QueueStatus::InProgress)
        );
        assert_eq!(
            queue_status(&json!({"status":"COMPLETED"})),
            Some(QueueStatus::Completed)
        );
        assert_eq!(
            queue_status(&json!({"status":"WARMING_UP"})),
            Some(QueueStatus::Unknown)
        );
        assert_eq!(queue_status(&json!({"detail":"x"})), None);
    }

    #[test]
    fn videos_are_found_in_the_usual_output_shapes() {
        let one = result_status(
            &json!({"video":{"url":"https://v3.fal.media/files/a.mp4"},"seed":1}),
            "r1",
        );
        let RemoteStatus::Succeeded { videos, units } = one else {
            panic!("not succeeded: {one:?}");
        };
        assert_eq!(units, None);
        assert_eq!(videos.len(), 1);
        assert_eq!(
            (videos[0].id.as_str(), videos[0].url.as_str()),
            ("r1", "https://v3.fal.media/files/a.mp4")
        );
        let plain = result_status(&json!({"video":"https://v/b.mp4"}), "r2");
        assert!(
            matches!(plain, RemoteStatus::Succeeded { ref videos, .. } if videos[0].url == "https://v/b.mp4")
        );
        let many: Vec<Value> = (0..40)
            .map(|i| json!({"url": format!("https://v/{i}.mp4")}))
            .collect();
        let list = result_status(&json!({ "videos": many }), "r3");
        let RemoteStatus::Succeeded { videos, .. } = list else {
            panic!("not succeeded: {list:?}");
        };
        assert_eq!(videos.len(), MAX_VIDEOS);
        assert_eq!(videos[1].id, "r3#2");
    }

    #[test]
    fn a_result_without_a_video_is_a_failure_naming_what_came() {
        let r = result_status(&json!({"images":[{"url":"https://x/a.png"}],"seed":3}), "r");
        assert_eq!(
            r,
            RemoteStatus::Failed {
                message: "completed without a video: output fields [images, seed]".into()
            }
        );
        let r = result_status(&json!({"video":{"url":"javascript:alert(1)"}}), "r");
        assert!(matches!(r, RemoteStatus::Failed { .. }), "{r:?}");
        let r = result_status(&json!([1, 2]), "r");
        assert_eq!(
            r,
            RemoteStatus::Failed {
                message: "completed without a video: a JSON array".into()
            }
        );
    }

    #[test]
    fn fastapi_details_read_as_field_and_message() {
        let body = json!({"detail":[
            {"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"},
            {"loc":["body","image_url",0],"msg":"invalid","type":"x"}]});
        assert_eq!(
            error_text(&body, None).as_deref(),
            Some("body.prompt: field required; body.image_url.0: invalid")
        );
        let runner = json!({"detail":"Runner disconnected","error_type":"runner_disconnected"});
        assert_eq!(
            error_text(&runner, None).as_deref(),
            Some("Runner disconnected (runner_disconnected)")
        );
        let header_only = json!({"detail":"Timed out"});
        assert_eq!(
            error_text(&header_only, Some("request_timeout")).as_deref(),
            Some("Timed out (request_timeout)")
        );
        assert_eq!(error_text(&json!({"status":"x"}), None), None);
        let long = json!({"detail": "x".repeat(5000)});
        let text = error_text(&long, None).unwrap_or_default();
        assert_eq!(text.chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
