//! Kling's create request: the job a manifest item becomes and the JSON body
//! of `POST /v1/videos/{text2video|image2video}` (kling-api.md §4–§5).
//!
//! Sending is strict, unlike reading (`wire.rs`): only documented fields,
//! `duration` always a string, absent options left out so the API default
//! applies. The body is built once per item as the job's body (without the
//! key, which the engine adds per attempt), so what the engine holds is
//! already in Kling's shape and the engine never sees a manifest item.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::job::{Job, JobFile};
use crate::manifest::{CameraControl, ImageRef, Item, Kind};

/// The body of `POST /v1/videos/{text2video|image2video}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<&'a str>,
    /// i2v first frame: URL or raw base64 (no `data:` prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// i2v last frame, same form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg_scale: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_control: Option<&'a CameraControl>,
    /// Text-to-video only: for i2v the image decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<&'a str>,
    /// Always a string ("5"), as every official example sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sound: Option<&'a str>,
    pub external_task_id: &'a str,
}

impl<'a> CreateBody<'a> {
    /// The body for `item`; `image` / `image_tail` are already resolved to the
    /// string to send (URL or base64).
    pub fn new(
        item: &'a Item,
        external_task_id: &'a str,
        image: Option<String>,
        image_tail: Option<String>,
    ) -> Self {
        let t2v = item.kind == Kind::Text2Video;
        CreateBody {
            model_name: item.model_name.as_deref(),
            prompt: item.prompt.as_deref(),
            negative_prompt: item.negative_prompt.as_deref(),
            image: if t2v { None } else { image },
            image_tail: if t2v { None } else { image_tail },
            cfg_scale: item.cfg_scale,
            mode: item.mode.as_deref(),
            camera_control: item.camera_control.as_ref(),
            aspect_ratio: if t2v {
                item.aspect_ratio.as_deref()
            } else {
                None
            },
            duration: item.duration.as_deref(),
            sound: item.sound.as_deref(),
            external_task_id,
        }
    }
}

/// The job for a validated item: Kling's create body without the key, with
/// image URLs in place and local images left as files (sent as raw base64
/// when the request goes out).
pub fn job(item: &Item) -> Job {
    let mut files = Vec::new();
    let mut image =
        |field: &str, image: Option<&ImageRef>| JobFile::image_field(&mut files, field, image);
    let (first, tail) = match item.kind {
        Kind::Image2Video => (
            image("image", item.image.as_ref()),
            image("image_tail", item.image_tail.as_ref()),
        ),
        Kind::Text2Video => (None, None),
    };
    let mut body = match serde_json::to_value(CreateBody::new(item, "", first, tail)) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    body.remove("external_task_id");
    Job {
        id: item.id.clone(),
        kind: item.kind,
        target: None,
        body,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::CameraConfig;
    use serde_json::json;

    fn item(kind: Kind) -> Item {
        Item {
            id: "a1".into(),
            origin: "items[0]".into(),
            kind,
            prompt: Some("a cat surfing".into()),
            negative_prompt: Some("blur".into()),
            image: None,
            image_tail: None,
            model_name: Some("kling-v2-6".into()),
            mode: Some("pro".into()),
            duration: Some("10".into()),
            aspect_ratio: Some("9:16".into()),
            cfg_scale: Some(0.5),
            camera_control: None,
            sound: Some("on".into()),
            extra: None,
            extra_files: Vec::new(),
        }
    }

    #[test]
    fn t2v_body_exact_json() {
        let mut it = item(Kind::Text2Video);
        it.camera_control = Some(CameraControl {
            kind: "simple".into(),
            config: Some(CameraConfig {
                zoom: 5.0,
                ..CameraConfig::default()
            }),
        });
        let body =
            serde_json::to_string(&CreateBody::new(&it, "b1-a1-0", None, None)).expect("json");
        assert_eq!(
            body,
            r#"{"model_name":"kling-v2-6","prompt":"a cat surfing","negative_prompt":"blur","cfg_scale":0.5,"mode":"pro","camera_control":{"type":"simple","config":{"horizontal":0.0,"vertical":0.0,"pan":0.0,"tilt":0.0,"roll":0.0,"zoom":5.0}},"aspect_ratio":"9:16","duration":"10","sound":"on","external_task_id":"b1-a1-0"}"#
        );
    }

    #[test]
    fn i2v_body_exact_json_without_aspect_ratio() {
        let mut it = item(Kind::Image2Video);
        it.image = Some(ImageRef::Path("/x.png".into()));
        it.image_tail = Some(ImageRef::Url("https://e.x/t.png".into()));
        it.negative_prompt = None;
        it.cfg_scale = None;
        it.sound = None;
        let body = CreateBody::new(
            &it,
            "b1-a1-1",
            Some("iVBORw0KGgo=".into()),
            Some("https://e.x/t.png".into()),
        );
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"model_name":"kling-v2-6","prompt":"a cat surfing","image":"iVBORw0KGgo=","image_tail":"https://e.x/t.png","mode":"pro","duration":"10","external_task_id":"b1-a1-1"}"#
        );
    }

    #[test]
    fn minimal_body_leaves_everything_out() {
        let it = Item {
            model_name: None,
            negative_prompt: None,
            mode: None,
            duration: None,
            aspect_ratio: None,
            cfg_scale: None,
            sound: None,
            ..item(Kind::Text2Video)
        };
        let v = serde_json::to_value(CreateBody::new(&it, "e", None, None)).expect("json");
        assert_eq!(
            v,
            json!({"prompt": "a cat surfing", "external_task_id": "e"})
        );
    }
}
