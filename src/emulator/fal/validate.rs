//! Input validation of a submit body, answered the way fal's FastAPI
//! gateway does: 422 `{"detail":[{"loc":["body","prompt"],"msg":…,"type":…}]}`
//! with one entry per problem. fal charges these, so the counters keep them.
//!
//! The emulator knows no model catalogue: every model takes the same minimal
//! input. `prompt` (a non-empty string) is required everywhere; a model whose
//! id contains `image-to-video` also needs `image_url`: an `http(s)` URL or
//! a `data:image/…;base64,` URI whose payload decodes.

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

/// One FastAPI validation error entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Problem {
    fn field(field: &str, msg: &str, kind: &str) -> Problem {
        Problem {
            loc: vec![Value::from("body"), Value::from(field)],
            msg: msg.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// A query parameter is wrong.
    pub(crate) fn query(param: &str, msg: &str, kind: &str) -> Problem {
        Problem {
            loc: vec![Value::from("query"), Value::from(param)],
            msg: msg.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The body as a whole is wrong (not JSON, not an object).
    pub(crate) fn body(msg: &str, kind: &str) -> Problem {
        Problem {
            loc: vec![Value::from("body")],
            msg: msg.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

/// Whether `model` takes an input image.
pub(crate) fn is_image_to_video(model: &str) -> bool {
    model.contains("image-to-video")
}

/// The prompt, or every problem with the body.
pub(crate) fn check(model: &str, body: &Map<String, Value>) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    let prompt = match body.get("prompt") {
        None | Some(Value::Null) => {
            problems.push(Problem::field(
                "prompt",
                "field required",
                "value_error.missing",
            ));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            problems.push(Problem::field(
                "prompt",
                "ensure this value has at least 1 characters",
                "value_error.any_str.min_length",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(Problem::field(
                "prompt",
                "str type expected",
                "type_error.str",
            ));
            None
        }
    };
    if is_image_to_video(model) {
        match body.get("image_url") {
            None | Some(Value::Null) => problems.push(Problem::field(
                "image_url",
                "field required",
                "value_error.missing",
            )),
            Some(Value::String(s)) => {
                if let Err(msg) = check_image_url(s) {
                    problems.push(Problem::field("image_url", msg, "value_error.url"));
                }
            }
            Some(_) => problems.push(Problem::field(
                "image_url",
                "str type expected",
                "type_error.str",
            )),
        }
    }
    match prompt {
        Some(p) if problems.is_empty() => Ok(p),
        _ => Err(problems),
    }
}

/// An `http(s)://host…` URL or a decodable `data:image/…;base64,` URI.
fn check_image_url(s: &str) -> Result<(), &'static str> {
    if let Some(rest) = s.strip_prefix("data:") {
        let Some((meta, payload)) = rest.split_once(',') else {
            return Err("invalid data URI: no comma before the payload");
        };
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err("invalid data URI: only ;base64 payloads are accepted");
        };
        if !mime.starts_with("image/") || mime.len() <= "image/".len() {
            return Err("invalid data URI: the media type must be image/*");
        }
        // The body is capped, so decoding it is bounded too.
        return match base64::engine::general_purpose::STANDARD.decode(payload.trim()) {
            Ok(bytes) if !bytes.is_empty() => Ok(()),
            Ok(_) => Err("invalid data URI: empty image"),
            Err(_) => Err("invalid data URI: the payload is not valid base64"),
        };
    }
    let host = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && !h.starts_with('/') && !s.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err("invalid or missing URL scheme"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    const T2V: &str = "fal-ai/kling-video/v2.1/standard/text-to-video";
    const I2V: &str = "fal-ai/kling-video/v2.1/standard/image-to-video";

    #[test]
    fn a_missing_prompt_is_a_fastapi_missing_field() {
        let err = check(T2V, &body(json!({"duration": "5"}))).err();
        let json = serde_json::to_value(err.unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            json,
            json!([{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}])
        );
    }

    #[test]
    fn image_to_video_needs_a_usable_image_url() {
        assert!(check(I2V, &body(json!({"prompt": "p"}))).is_err());
        assert!(check(I2V, &body(json!({"prompt": "p", "image_url": "ftp://x"}))).is_err());
        assert!(check(I2V, &body(json!({"prompt": "p", "image_url": "https://"}))).is_err());
        let ok = check(
            I2V,
            &body(json!({"prompt": "p", "image_url": "https://x/a.png"})),
        );
        assert_eq!(ok, Ok("p".to_owned()));
        let data = "data:image/png;base64,iVBORw0KGgo=";
        assert!(check(I2V, &body(json!({"prompt": "p", "image_url": data}))).is_ok());
        let bad = "data:image/png;base64,@@@";
        assert!(check(I2V, &body(json!({"prompt": "p", "image_url": bad}))).is_err());
        let text = "data:text/plain;base64,aGk=";
        assert!(check(I2V, &body(json!({"prompt": "p", "image_url": text}))).is_err());
        // A text-to-video model ignores image_url.
        assert!(check(T2V, &body(json!({"prompt": "p", "image_url": 3}))).is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let err = check(I2V, &body(json!({"prompt": 7})))
            .err()
            .unwrap_or_default();
        let fields: Vec<&Value> = err.iter().filter_map(|p| p.loc.get(1)).collect();
        assert_eq!(fields, vec![&json!("prompt"), &json!("image_url")]);
    }
}
