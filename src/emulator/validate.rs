//! Create-request validation (kling-api.md §4, §5, §15.2), written from the
//! reference rather than from the client's types. [`validate_create`] turns a
//! JSON object into a [`CreateSpec`] or a 1201 message naming the field.
//! Unknown fields are ignored, as Kling does.

use base64::Engine;
use serde_json::{Map, Value};

use super::auth::Style;

/// The two task kinds the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text2Video,
    Image2Video,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "text2video" => Some(Kind::Text2Video),
            "image2video" => Some(Kind::Image2Video),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Text2Video => 0,
            Kind::Image2Video => 1,
        }
    }
}

const T2V_MODELS: &[&str] = &[
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
];
const I2V_MODELS: &[&str] = &[
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
];
const CAMERA_TYPES: &[&str] = &[
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
];
const CAMERA_AXES: &[&str] = &["horizontal", "vertical", "pan", "tilt", "roll", "zoom"];
const MAX_PROMPT: usize = 2500;
const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// Kept with every task, so bounded (the reference names no limit).
const MAX_CALLBACK_URL: usize = 2048;

/// What the emulator keeps from an accepted create.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CreateSpec {
    pub prompt: String,
    pub model: String,
    pub mode: String,
    pub duration: u32,
    pub external_task_id: Option<String>,
    /// Absolute http(s) URL for status callbacks (§7), normalised.
    pub callback_url: Option<String>,
}

type Check<T> = Result<T, String>;

fn opt_str<'a>(body: &'a Map<String, Value>, field: &str) -> Check<Option<&'a str>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field}: must be a string")),
    }
}

/// Present and non-empty.
fn given<'a>(body: &'a Map<String, Value>, field: &str) -> Check<Option<&'a str>> {
    Ok(opt_str(body, field)?.filter(|s| !s.is_empty()))
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Check<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field}: invalid value '{}'; allowed values: {}",
            shorten(value),
            allowed.join(", ")
        ))
    }
}

/// User text echoed in a message stays short.
fn shorten(s: &str) -> String {
    if s.chars().count() > 64 {
        let mut t: String = s.chars().take(64).collect();
        t.push('…');
        t
    } else {
        s.to_owned()
    }
}

fn max_chars(field: &str, s: &str, max: usize) -> Check<()> {
    let n = s.chars().count();
    if n > max {
        Err(format!("{field}: length {n} exceeds {max} characters"))
    } else {
        Ok(())
    }
}

/// Validate a create body for `kind` on a path `style`.
pub(crate) fn validate_create(
    kind: Kind,
    style: Style,
    body: &Map<String, Value>,
) -> Check<CreateSpec> {
    // The old `model` field is accepted and treated as an empty model_name (§4).
    let model = given(body, "model_name")?.unwrap_or("kling-v1").to_owned();
    if body
        .get("model")
        .is_some_and(|m| !m.is_string() && !m.is_null())
    {
        return Err("model: must be a string".to_owned());
    }
    if style == Style::Official {
        let allowed = match kind {
            Kind::Text2Video => T2V_MODELS,
            Kind::Image2Video => I2V_MODELS,
        };
        one_of("model_name", &model, allowed)?;
    }

    let prompt = opt_str(body, "prompt")?.unwrap_or("");
    max_chars("prompt", prompt, MAX_PROMPT)?;
    if let Some(neg) = opt_str(body, "negative_prompt")? {
        max_chars("negative_prompt", neg, MAX_PROMPT)?;
    }
    let multi_shot = match body.get("multi_shot") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("multi_shot: must be a boolean".to_owned()),
    };
    let customize = check_multi_shot(body, multi_shot)?;
    if kind == Kind::Text2Video && prompt.is_empty() && !customize {
        return Err("prompt: must not be empty".to_owned());
    }

    match body.get("cfg_scale") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("cfg_scale: {v} is outside [0, 1]"));
            }
        }
        Some(_) => return Err("cfg_scale: must be a number".to_owned()),
    }

    let mode = opt_str(body, "mode")?.unwrap_or("std").to_owned();
    one_of("mode", &mode, &["std", "pro"])?;
    if kind == Kind::Text2Video {
        // i2v takes its aspect from the image; some SDKs send it anyway (§5).
        if let Some(ar) = opt_str(body, "aspect_ratio")? {
            one_of("aspect_ratio", ar, &["16:9", "9:16", "1:1"])?;
        }
    }
    let duration = check_duration(body, &model, style)?;
    let sound = opt_str(body, "sound")?;
    if let Some(s) = sound {
        one_of("sound", s, &["on", "off"])?;
    }
    match body.get("watermark_info") {
        None | Some(Value::Null) => {}
        Some(Value::Object(w)) => {
            if w.get("enabled").is_some_and(|e| !e.is_boolean()) {
                return Err("watermark_info.enabled: must be a boolean".to_owned());
            }
        }
        Some(_) => return Err("watermark_info: must be an object".to_owned()),
    }
    let callback_url = check_callback_url(body)?;
    let external_task_id = given(body, "external_task_id")?.map(str::to_owned);

    let camera = check_camera(body)?;
    if kind == Kind::Image2Video {
        check_i2v(body, camera, sound)?;
    }

    Ok(CreateSpec {
        prompt: prompt.to_owned(),
        model,
        mode,
        duration,
        external_task_id,
        callback_url,
    })
}

/// The emulator POSTs to it, so only an absolute http(s) URL with a host.
/// An empty string means none, as for `external_task_id`.
fn check_callback_url(body: &Map<String, Value>) -> Check<Option<String>> {
    let Some(raw) = given(body, "callback_url")? else {
        return Ok(None);
    };
    max_chars("callback_url", raw, MAX_CALLBACK_URL)?;
    match reqwest::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(Some(url.into()))
        }
        _ => Err(format!(
            "callback_url: '{}' is not an absolute http:// or https:// URL",
            shorten(raw)
        )),
    }
}

/// Returns whether this is a `customize` multi-shot request (prompt may be empty).
fn check_multi_shot(body: &Map<String, Value>, multi_shot: bool) -> Check<bool> {
    if !multi_shot {
        return Ok(false);
    }
    let shot_type = opt_str(body, "shot_type")?.unwrap_or("intelligence");
    one_of("shot_type", shot_type, &["customize", "intelligence"])?;
    if shot_type != "customize" {
        return Ok(false);
    }
    let shots = match body.get("multi_prompt") {
        Some(Value::Array(a)) => a,
        _ => {
            return Err(
                "multi_prompt: required as an array when shot_type is customize".to_owned(),
            );
        }
    };
    if shots.is_empty() || shots.len() > 6 {
        return Err(format!(
            "multi_prompt: {} shots, allowed 1 to 6",
            shots.len()
        ));
    }
    for (i, shot) in shots.iter().enumerate() {
        let text = shot.get("prompt").and_then(Value::as_str).unwrap_or("");
        max_chars(&format!("multi_prompt[{i}].prompt"), text, 512)?;
    }
    Ok(true)
}

fn check_duration(body: &Map<String, Value>, model: &str, style: Style) -> Check<u32> {
    // The docs type it as a string; integers are accepted too (§16).
    let raw = match body.get("duration") {
        None | Some(Value::Null) => return Ok(5),
        Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        Some(_) => return Err("duration: must be a string such as \"5\"".to_owned()),
    };
    // kling-v3 takes 3..=15; the gateway's model names are free-form, so it
    // gets the wider range too.
    let wide = model == "kling-v3" || style == Style::Gateway;
    match raw {
        Some(d) if wide && (3..=15).contains(&d) => Ok(d),
        Some(d) if d == 5 || d == 10 => Ok(d),
        _ if wide => Err("duration: allowed values: 3 to 15".to_owned()),
        _ => Err("duration: allowed values: 5, 10".to_owned()),
    }
}

/// Returns whether camera_control was given.
fn check_camera(body: &Map<String, Value>) -> Check<bool> {
    let cc = match body.get("camera_control") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(o)) => o,
        Some(_) => return Err("camera_control: must be an object".to_owned()),
    };
    let ty = match cc.get("type") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err("camera_control.type: required".to_owned()),
    };
    one_of("camera_control.type", ty, CAMERA_TYPES)?;
    let config = match cc.get("config") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => return Err("camera_control.config: must be an object".to_owned()),
    };
    match (ty, config) {
        ("simple", None) => Err("camera_control.config: required when type is simple".to_owned()),
        ("simple", Some(cfg)) => {
            let mut non_zero = 0;
            for axis in CAMERA_AXES {
                match cfg.get(*axis) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) => {
                        let v = n.as_f64().unwrap_or(f64::NAN);
                        if !(-10.0..=10.0).contains(&v) {
                            return Err(format!(
                                "camera_control.config.{axis}: {v} is outside [-10, 10]"
                            ));
                        }
                        if v != 0.0 {
                            non_zero += 1;
                        }
                    }
                    Some(_) => {
                        return Err(format!("camera_control.config.{axis}: must be a number"));
                    }
                }
            }
            if non_zero > 1 {
                Err("camera_control.config: only one of horizontal, vertical, pan, tilt, roll, zoom may be non-zero".to_owned())
            } else {
                Ok(true)
            }
        }
        (_, Some(cfg)) if !cfg.is_empty() => Err(format!(
            "camera_control.config: must be empty when type is {ty}"
        )),
        _ => Ok(true),
    }
}

fn check_i2v(body: &Map<String, Value>, camera: bool, sound: Option<&str>) -> Check<()> {
    let image = given(body, "image")?;
    let tail = given(body, "image_tail")?;
    if image.is_none() && tail.is_none() {
        return Err("image: image and image_tail cannot both be empty".to_owned());
    }
    if let Some(img) = image {
        check_image("image", img, true)?;
    }
    if let Some(img) = tail {
        check_image("image_tail", img, false)?;
    }
    let static_mask = given(body, "static_mask")?;
    if let Some(m) = static_mask {
        check_image("static_mask", m, false)?;
    }
    let masks = match body.get("dynamic_masks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err("dynamic_masks: must be an array".to_owned()),
    };
    if let Some(masks) = masks {
        if masks.len() > 6 {
            return Err(format!("dynamic_masks: {} entries, at most 6", masks.len()));
        }
        for (i, m) in masks.iter().enumerate() {
            if !m.get("mask").is_some_and(Value::is_string) {
                return Err(format!("dynamic_masks[{i}].mask: required string"));
            }
            let points = match m.get("trajectories") {
                Some(Value::Array(p)) => p,
                _ => return Err(format!("dynamic_masks[{i}].trajectories: required array")),
            };
            if !(2..=77).contains(&points.len()) {
                return Err(format!(
                    "dynamic_masks[{i}].trajectories: {} points, allowed 2 to 77",
                    points.len()
                ));
            }
            for (j, p) in points.iter().enumerate() {
                let int = |k: &str| p.get(k).is_some_and(|v| v.is_i64() || v.is_u64());
                if !(int("x") && int("y")) {
                    return Err(format!(
                        "dynamic_masks[{i}].trajectories[{j}]: x and y must be integers"
                    ));
                }
            }
        }
    }
    let with_tail = tail.is_some() && image.is_some();
    let with_masks = static_mask.is_some() || masks.is_some_and(|m| !m.is_empty());
    if [with_tail, with_masks, camera]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        return Err("image+image_tail, dynamic_masks/static_mask and camera_control cannot be used at the same time".to_owned());
    }
    if let Some(voices) = body.get("voice_list").filter(|v| !v.is_null()) {
        let n = voices
            .as_array()
            .map(Vec::len)
            .ok_or("voice_list: must be an array")?;
        if n > 2 {
            return Err(format!("voice_list: {n} voices, at most 2"));
        }
        if n > 0 && sound != Some("on") {
            return Err("voice_list: requires sound \"on\"".to_owned());
        }
        if body.get("element_list").is_some_and(|e| !e.is_null()) {
            return Err("voice_list and element_list cannot be used together".to_owned());
        }
    }
    if let Some(elements) = body.get("element_list").filter(|v| !v.is_null()) {
        let n = elements
            .as_array()
            .map(Vec::len)
            .ok_or("element_list: must be an array")?;
        if n > 3 {
            return Err(format!("element_list: {n} elements, at most 3"));
        }
    }
    Ok(())
}

/// An image field: a URL (not fetched) or raw Base64 of a JPEG/PNG ≥ 300 px,
/// ≤ 10 MB, and for the first frame an aspect ratio within 1:2.5..2.5:1.
fn check_image(field: &str, value: &str, check_aspect: bool) -> Check<()> {
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(());
    }
    if value.starts_with("data:") {
        return Err(format!(
            "{field}: must be a URL or raw Base64 without a data: prefix"
        ));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .map_err(|_| format!("{field}: neither a URL nor valid Base64"))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!("{field}: {} bytes exceeds 10 MB", bytes.len()));
    }
    match imagesize::image_type(&bytes) {
        Ok(imagesize::ImageType::Jpeg | imagesize::ImageType::Png) => {}
        _ => return Err(format!("{field}: format must be jpg, jpeg or png")),
    }
    let size = imagesize::blob_size(&bytes).map_err(|_| format!("{field}: unreadable image"))?;
    if size.width < 300 || size.height < 300 {
        return Err(format!(
            "{field}: {}x{} px, width and height must be at least 300 px",
            size.width, size.height
        ));
    }
    if check_aspect {
        let ratio = size.width as f64 / size.height as f64;
        if !(1.0 / 2.5..=2.5).contains(&ratio) {
            return Err(format!(
                "{field}: aspect ratio {}:{} is outside 1:2.5 to 2.5:1",
                size.width, size.height
            ));
        }
    }
    Ok(())
}

/// Units charged for a succeeded task (kling-api.md §14; estimates, as strings).
pub(crate) fn units(model: &str, mode: &str, duration: u32) -> String {
    let per5 = match (model, mode) {
        ("kling-v1", "pro") => 3.5,
        ("kling-v1", _) => 1.0,
        ("kling-v1-5" | "kling-v1-6" | "kling-v2-1", "pro") => 3.5,
        ("kling-v1-5" | "kling-v1-6" | "kling-v2-1", _) => 2.0,
        ("kling-v2-master" | "kling-v2-1-master", _) => 10.0,
        ("kling-v2-5-turbo" | "kling-v2-6", "pro") => 2.5,
        ("kling-v2-5-turbo", _) => 1.5,
        _ => 1.0,
    };
    let total = per5 * f64::from(duration) / 5.0;
    let text = format!("{total:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t2v(v: Value) -> Check<CreateSpec> {
        let Value::Object(map) = v else {
            return Err("not an object".to_owned());
        };
        validate_create(Kind::Text2Video, Style::Official, &map)
    }

    fn i2v(v: Value) -> Check<CreateSpec> {
        let Value::Object(map) = v else {
            return Err("not an object".to_owned());
        };
        validate_create(Kind::Image2Video, Style::Official, &map)
    }

    #[test]
    fn accepts_minimal_and_lenient_forms() {
        let spec =
            t2v(json!({"prompt": "a cat", "unknown_field": 1})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (spec.model.as_str(), spec.mode.as_str(), spec.duration),
            ("kling-v1", "std", 5)
        );
        let spec = t2v(json!({"prompt": "x", "duration": 10, "model": "kling-v1-6"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((spec.model.as_str(), spec.duration), ("kling-v1", 10));
        assert!(t2v(json!({"prompt": "x", "model_name": "kling-v3", "duration": "12"})).is_ok());
    }

    #[test]
    fn rejects_documented_violations() {
        let cases = [
            json!({"prompt": ""}),
            json!({"prompt": "x".repeat(2501)}),
            json!({"prompt": "x", "negative_prompt": "x".repeat(2501)}),
            json!({"prompt": "x", "model_name": "kling-v1-5"}),
            json!({"prompt": "x", "cfg_scale": 1.5}),
            json!({"prompt": "x", "mode": "ultra"}),
            json!({"prompt": "x", "aspect_ratio": "4:3"}),
            json!({"prompt": "x", "duration": "7"}),
            json!({"prompt": "x", "camera_control": {"type": "simple", "config": {"pan": 1, "zoom": 2}}}),
            json!({"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 11}}}),
            json!({"prompt": "x", "camera_control": {"type": "down_back", "config": {"zoom": 1}}}),
            json!({"prompt": "x", "camera_control": {"type": "simple"}}),
            json!({"prompt": "x", "callback_url": "ftp://example.com/hook"}),
            json!({"prompt": "x", "callback_url": "/relative/hook"}),
            json!({"prompt": "x", "callback_url": 7}),
        ];
        for case in cases {
            assert!(t2v(case.clone()).is_err(), "accepted {case}");
        }
        assert!(t2v(json!({"prompt": "x".repeat(2500)})).is_ok());
        let hook = t2v(json!({"prompt": "x", "callback_url": "https://h.example/cb?t=1"}));
        assert_eq!(
            hook.map(|s| s.callback_url),
            Ok(Some("https://h.example/cb?t=1".to_owned()))
        );
    }

    #[test]
    fn image2video_rules() {
        let url = "https://example.com/a.png";
        assert!(i2v(json!({"image": url})).is_ok());
        assert!(i2v(json!({"prompt": "x"})).is_err());
        assert!(i2v(json!({"image": "data:image/png;base64,AAAA"})).is_err());
        assert!(i2v(json!({"image": "!!not base64!!"})).is_err());
        assert!(
            i2v(json!({"image": url, "image_tail": url, "camera_control": {"type": "down_back"}}))
                .is_err()
        );
        let mask = json!({"mask": url, "trajectories": [{"x": 1, "y": 2}]});
        assert!(i2v(json!({"image": url, "dynamic_masks": [mask]})).is_err());
        let seven: Vec<Value> = (0..7)
            .map(|_| json!({"mask": url, "trajectories": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}))
            .collect();
        assert!(i2v(json!({"image": url, "dynamic_masks": seven})).is_err());
        assert!(i2v(json!({"image": url, "model_name": "kling-v1-5"})).is_ok());
    }

    #[test]
    fn base64_image_size_is_checked() {
        // A 1x1 PNG: well-formed but under 300 px.
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
        let err = i2v(json!({"image": png})).err().unwrap_or_default();
        assert!(err.contains("300"), "{err}");
    }

    #[test]
    fn gateway_takes_any_model() {
        let Value::Object(map) = json!({"prompt": "x", "model_name": "MaaS_KeLing_V2.6"}) else {
            return;
        };
        assert!(validate_create(Kind::Text2Video, Style::Gateway, &map).is_ok());
    }

    #[test]
    fn unit_table() {
        assert_eq!(units("kling-v1", "std", 5), "1");
        assert_eq!(units("kling-v1", "pro", 10), "7");
        assert_eq!(units("kling-v2-5-turbo", "std", 5), "1.5");
    }
}
