//! What an item asks for, as the state file keeps it for reports: its
//! settings as one JSON object ([`settings_json`]). Reports and the gallery
//! read it from the state, so they show model and settings without the
//! manifest. (The item's estimated price is the provider's:
//! [`crate::provider::registry::price`].)

use serde_json::{Map, Value};

use super::{ImageRef, Item};

/// The item's settings as validated — everything but `id` and `prompt` (and
/// `kind`, which the state keeps in its own column). Fields not given are
/// left out (the API default applies). An image URL is kept without its
/// query string, which may carry a signature.
pub fn settings_json(item: &Item) -> String {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let text = |s: &Option<String>| s.clone().map(Value::String);
    put("model_name", text(&item.model_name));
    put("mode", text(&item.mode));
    put("duration", text(&item.duration));
    put("aspect_ratio", text(&item.aspect_ratio));
    put(
        "cfg_scale",
        item.cfg_scale
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
    );
    put(
        "camera_control",
        item.camera_control
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok()),
    );
    put("sound", text(&item.sound));
    put("negative_prompt", text(&item.negative_prompt));
    put("image", item.image.as_ref().map(image));
    put("image_tail", item.image_tail.as_ref().map(image));
    // A pass-through provider's model input, as written.
    if let Some(extra) = &item.extra {
        for (k, v) in extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Value::Object(m).to_string()
}

fn image(r: &ImageRef) -> Value {
    Value::String(match r {
        ImageRef::Path(p) => p.display().to_string(),
        ImageRef::Url(u) => match u.split_once('?') {
            Some((base, _)) => format!("{base}?…"),
            None => u.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CameraControl, Kind};

    fn item() -> Item {
        Item {
            id: "a".into(),
            origin: "items[0]".into(),
            kind: Kind::Image2Video,
            prompt: Some("never in the settings".into()),
            negative_prompt: Some("blur".into()),
            image: Some(ImageRef::Url(
                "https://cdn.example/p.png?X-Amz-Signature=abc".into(),
            )),
            image_tail: Some(ImageRef::Path("/m/images/t.jpg".into())),
            model_name: Some("kling-v1-6".into()),
            mode: Some("pro".into()),
            duration: Some("10".into()),
            aspect_ratio: Some("16:9".into()),
            cfg_scale: Some(0.5),
            camera_control: Some(CameraControl {
                kind: "down_back".into(),
                config: None,
            }),
            sound: None,
            extra: None,
            extra_files: Vec::new(),
        }
    }

    #[test]
    fn settings_hold_every_given_field_but_id_and_prompt() {
        let v: Value = serde_json::from_str(&settings_json(&item())).unwrap();
        assert_eq!(v["model_name"], "kling-v1-6");
        assert_eq!(v["mode"], "pro");
        assert_eq!(v["duration"], "10");
        assert_eq!(v["aspect_ratio"], "16:9");
        assert_eq!(v["cfg_scale"], 0.5);
        assert_eq!(v["camera_control"]["type"], "down_back");
        assert_eq!(v["negative_prompt"], "blur");
        assert_eq!(
            v["image"], "https://cdn.example/p.png?…",
            "signature dropped"
        );
        assert_eq!(v["image_tail"], "/m/images/t.jpg");
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("id") && !obj.contains_key("prompt"));
        assert!(!obj.contains_key("sound"), "absent fields are left out");
    }
}
