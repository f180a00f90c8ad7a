//! `camera_control`: Kling's camera move, checked as a whole value (its
//! `type` decides whether `config` is required) with every problem joined.
//! The allowed types and axes are Kling's (`provider::kling::catalog`).

use super::fields::{Raw, one_of};
use super::suggest::unknown_name;
use super::{CameraConfig, CameraControl};
use crate::provider::kling::catalog::{CAMERA_AXES, CAMERA_TYPES};

pub(super) fn parse_camera(raw: Raw<'_>) -> Result<CameraControl, String> {
    let json = match raw {
        Raw::Cell(s) => serde_json::from_str::<serde_json::Value>(s)
            .map_err(|e| format!("camera_control must be a JSON object in CSV: {e}"))?,
        Raw::Yaml(n) => n.to_json().map_err(|e| format!("camera_control: {e}"))?,
    };
    check_camera(&json)
}

/// `camera_control` rules (kling-api.md §4.1); all problems joined.
pub fn check_camera(v: &serde_json::Value) -> Result<CameraControl, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "camera_control must be a mapping with `type` (and `config` for type simple), found {}",
            json_kind(v)
        ));
    };
    let mut errs = Vec::new();
    for k in obj.keys() {
        if k != "type" && k != "config" {
            errs.push(unknown_name("camera_control field", k, &["type", "config"]));
        }
    }
    let kind = match obj.get("type") {
        None | Some(serde_json::Value::Null) => {
            errs.push(format!(
                "camera_control.type is required; expected one of {}",
                CAMERA_TYPES.join(", ")
            ));
            None
        }
        Some(serde_json::Value::String(t)) => {
            match one_of("camera_control.type", t, CAMERA_TYPES) {
                Ok(t) => Some(t),
                Err(e) => {
                    errs.push(e);
                    None
                }
            }
        }
        Some(other) => {
            errs.push(format!(
                "camera_control.type must be a string, found {}",
                json_kind(other)
            ));
            None
        }
    };
    let config_given = match obj.get("config") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) if m.is_empty() => None,
        Some(c) => Some(c),
    };
    let mut config = None;
    match (kind.as_deref(), config_given) {
        (Some("simple"), None) => errs.push(
            "camera_control.config is required for type simple (one of horizontal, vertical, pan, tilt, roll, zoom non-zero)".into(),
        ),
        (Some("simple"), Some(c)) => match check_camera_config(c) {
            Ok(c) => config = Some(c),
            Err(mut e) => errs.append(&mut e),
        },
        (Some(t), Some(_)) => errs.push(format!(
            "camera_control.config must be empty or absent for type {t} (only type simple takes a config)"
        )),
        _ => {}
    }
    match kind {
        Some(kind) if errs.is_empty() => Ok(CameraControl { kind, config }),
        _ => Err(errs.join("; ")),
    }
}

fn check_camera_config(c: &serde_json::Value) -> Result<CameraConfig, Vec<String>> {
    let Some(m) = c.as_object() else {
        return Err(vec![format!(
            "camera_control.config must be a mapping, found {}",
            json_kind(c)
        )]);
    };
    let mut errs = Vec::new();
    let mut vals = [0.0f64; 6];
    for (k, v) in m {
        let Some(i) = CAMERA_AXES.iter().position(|a| a == k) else {
            errs.push(unknown_name("camera_control.config field", k, &CAMERA_AXES));
            continue;
        };
        match v.as_f64() {
            Some(x) if x.is_finite() && (-10.0..=10.0).contains(&x) => vals[i] = x,
            Some(x) => errs.push(format!(
                "camera_control.config.{k} must be in [-10, 10], found {x}"
            )),
            None => errs.push(format!(
                "camera_control.config.{k} must be a number, found {}",
                json_kind(v)
            )),
        }
    }
    if errs.is_empty() {
        let nonzero = vals.iter().filter(|v| **v != 0.0).count();
        if nonzero != 1 {
            errs.push(format!(
                "camera_control.config must have exactly one non-zero field of horizontal, vertical, pan, tilt, roll, zoom; found {nonzero}"
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let [horizontal, vertical, pan, tilt, roll, zoom] = vals;
    Ok(CameraConfig {
        horizontal,
        vertical,
        pan,
        tilt,
        roll,
        zoom,
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
