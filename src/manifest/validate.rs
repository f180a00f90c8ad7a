//! Field-by-field validation shared by the YAML and CSV readers. Main type:
//! [`Validator`].
//!
//! Two phases per item, so several problems per item are reported at once and
//! a bad default is reported once, not once per item:
//! 1. [`Validator::field`]: each raw value on its own (type, enum, range, local
//!    image) into a [`Partial`];
//! 2. [`Validator::finish`]: merge `defaults:`, then the rules that need the
//!    whole item (kind, model for the kind, duration for the model, the
//!    mutual exclusions), then identity and duplicates.
//!
//! Every rule here comes from kling-api.md §4–5; docs/manifest.md lists them
//! with the test that pins each.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::image::{ImageChecker, Role};
use super::yaml_tree::{Node, Pos, Value};
use super::{CameraConfig, CameraControl, ImageRef, Item, Kind, Problem};

/// Longest `prompt` / `negative_prompt`, in characters (not bytes).
pub const MAX_PROMPT_CHARS: usize = 2500;
/// Longest item id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest item id in UTF-8 bytes: a file name has 255, and the longest name
/// vidbatch makes from an id adds 9 (`<id>.mp4.part`, `<id>.videos`).
pub const MAX_ID_BYTES: usize = 200;
/// Official `model_name` values for text2video (kling-api.md §4).
pub const T2V_MODELS: &[&str] = &[
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
];
/// Official `model_name` values for image2video (kling-api.md §5).
pub const I2V_MODELS: &[&str] = &[
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
/// The model the API uses when `model_name` is absent.
pub const DEFAULT_MODEL: &str = "kling-v1";
/// `camera_control.type` values (kling-api.md §4.1).
pub const CAMERA_TYPES: &[&str] = &[
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
];
const CAMERA_AXES: [&str; 6] = ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"];
/// Models that accept `sound: on` (kling-api.md §4: V2.6+).
const SOUND_MODELS: &[&str] = &["kling-v2-6", "kling-v3"];

/// An item field, by its Kling name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Kind,
    Prompt,
    NegativePrompt,
    Image,
    ImageTail,
    ModelName,
    Mode,
    Duration,
    AspectRatio,
    CfgScale,
    CameraControl,
    Sound,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Id,
        Field::Kind,
        Field::Prompt,
        Field::NegativePrompt,
        Field::Image,
        Field::ImageTail,
        Field::ModelName,
        Field::Mode,
        Field::Duration,
        Field::AspectRatio,
        Field::CfgScale,
        Field::CameraControl,
        Field::Sound,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Kind => "kind",
            Field::Prompt => "prompt",
            Field::NegativePrompt => "negative_prompt",
            Field::Image => "image",
            Field::ImageTail => "image_tail",
            Field::ModelName => "model_name",
            Field::Mode => "mode",
            Field::Duration => "duration",
            Field::AspectRatio => "aspect_ratio",
            Field::CfgScale => "cfg_scale",
            Field::CameraControl => "camera_control",
            Field::Sound => "sound",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

pub use super::suggest::{closest, unknown_name};

/// The field an unknown name most likely meant (`promt` → prompt), so that
/// field's absence is not reported a second time ("prompt is required").
pub fn likely_field(name: &str) -> Option<Field> {
    closest(name, &field_names()).and_then(Field::from_name)
}

pub fn field_names() -> Vec<&'static str> {
    Field::ALL.iter().map(|f| f.name()).collect()
}

/// A value as written: a CSV cell (always text) or a YAML node (typed).
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Cell(&'a str),
    Yaml(&'a Node),
}

/// An image as written plus where it resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    pub written: String,
    pub resolved: ImageRef,
}

/// An item after phase 1: each field parsed on its own. `bad` marks fields
/// that were given but failed, so phase 2 does not pile on ("prompt is
/// required" after "prompt is too long").
#[derive(Debug, Clone, Default)]
pub struct Partial {
    pub id: Option<String>,
    pub kind: Option<Kind>,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub image: Option<ImageSpec>,
    pub image_tail: Option<ImageSpec>,
    pub model_name: Option<String>,
    pub mode: Option<String>,
    pub duration: Option<String>,
    pub aspect_ratio: Option<String>,
    pub cfg_scale: Option<f64>,
    pub camera_control: Option<CameraControl>,
    pub sound: Option<String>,
    /// Pass-through fields (fal), as written, in order.
    pub extra: serde_json::Map<String, serde_json::Value>,
    bad: u16,
    from_defaults: u16,
    /// Where each field's value was written (YAML), by `Field` index.
    at: [Option<Pos>; Field::ALL.len()],
}

impl Partial {
    /// Treat `f` as given-but-wrong: whole-item rules stay quiet about it.
    pub fn mark_bad(&mut self, f: Field) {
        self.bad |= f.bit();
    }

    fn is_set(&self, f: Field) -> bool {
        match f {
            Field::Id => self.id.is_some(),
            Field::Kind => self.kind.is_some(),
            Field::Prompt => self.prompt.is_some(),
            Field::NegativePrompt => self.negative_prompt.is_some(),
            Field::Image => self.image.is_some(),
            Field::ImageTail => self.image_tail.is_some(),
            Field::ModelName => self.model_name.is_some(),
            Field::Mode => self.mode.is_some(),
            Field::Duration => self.duration.is_some(),
            Field::AspectRatio => self.aspect_ratio.is_some(),
            Field::CfgScale => self.cfg_scale.is_some(),
            Field::CameraControl => self.camera_control.is_some(),
            Field::Sound => self.sound.is_some(),
        }
    }

    fn is_bad(&self, f: Field) -> bool {
        self.bad & f.bit() != 0
    }

    /// Given at all (valid or not).
    fn given(&self, f: Field) -> bool {
        self.is_set(f) || self.is_bad(f)
    }

    /// " (from defaults)" when the value was inherited, for messages.
    fn src(&self, f: Field) -> &'static str {
        if self.from_defaults & f.bit() != 0 {
            " (from defaults)"
        } else {
            ""
        }
    }

    fn merge_defaults(&mut self, d: &Partial) {
        macro_rules! take {
            ($($name:ident => $field:expr),* $(,)?) => {$(
                if !self.given($field) {
                    if d.$name.is_some() {
                        self.$name = d.$name.clone();
                        self.from_defaults |= $field.bit();
                    } else if d.is_bad($field) {
                        self.bad |= $field.bit();
                    }
                }
            )*};
        }
        take!(
            kind => Field::Kind,
            prompt => Field::Prompt,
            negative_prompt => Field::NegativePrompt,
            image => Field::Image,
            image_tail => Field::ImageTail,
            model_name => Field::ModelName,
            mode => Field::Mode,
            duration => Field::Duration,
            aspect_ratio => Field::AspectRatio,
            cfg_scale => Field::CfgScale,
            camera_control => Field::CameraControl,
            sound => Field::Sound,
        );
        for (k, v) in &d.extra {
            if !self.extra.contains_key(k) {
                self.extra.insert(k.clone(), v.clone());
            }
        }
    }

    /// A canonical text of the item's content, for content-derived ids:
    /// fixed field order, JSON-escaped values, images as written (so moving
    /// the manifest directory keeps ids), the effective kind.
    fn canonical(&self, kind: Kind) -> String {
        fn s(v: &str) -> String {
            serde_json::to_string(v).unwrap_or_default()
        }
        let mut out = String::from("vidbatch-item-v1\n");
        let mut put = |name: &str, value: String| {
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
            out.push('\n');
        };
        put("kind", s(kind.as_str()));
        let text = [
            ("prompt", &self.prompt),
            ("negative_prompt", &self.negative_prompt),
            ("model_name", &self.model_name),
            ("mode", &self.mode),
            ("duration", &self.duration),
            ("aspect_ratio", &self.aspect_ratio),
            ("sound", &self.sound),
        ];
        for (name, v) in text {
            if let Some(v) = v {
                put(name, s(v));
            }
        }
        if let Some(i) = &self.image {
            put("image", s(&i.written));
        }
        // serde_json's Map keeps keys sorted: one canonical text per content.
        for (k, v) in &self.extra {
            put(&format!("extra.{k}"), v.to_string());
        }
        if let Some(i) = &self.image_tail {
            put("image_tail", s(&i.written));
        }
        if let Some(c) = self.cfg_scale {
            put("cfg_scale", serde_json::to_string(&c).unwrap_or_default());
        }
        if let Some(c) = &self.camera_control {
            put(
                "camera_control",
                serde_json::to_string(c).unwrap_or_default(),
            );
        }
        out
    }
}

/// Where a value was written, for messages.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// `file.yaml:14:15: items[3].duration` or `file.yaml:2:9: defaults.mode`.
    Yaml {
        file: &'a str,
        section: &'a str,
        index: Option<usize>,
        /// The line and column the location points at (the item, or one
        /// field's key or value).
        pos: Option<Pos>,
    },
    /// `file.csv:12 (column duration)`: the physical line the record starts on.
    Csv { file: &'a str, line: u64 },
}

impl Origin<'_> {
    /// The short label stored in [`Item::origin`].
    pub fn label(&self) -> String {
        match self {
            Origin::Yaml {
                section,
                index: Some(i),
                ..
            } => format!("{section}[{i}]"),
            Origin::Yaml {
                section,
                index: None,
                ..
            } => (*section).to_string(),
            Origin::Csv { file, line } => format!("{}:{line}", file_name(file)),
        }
    }

    /// The same place, pointing at `pos` (YAML only).
    pub fn with_pos(self, at: Pos) -> Self {
        match self {
            Origin::Yaml {
                file,
                section,
                index,
                ..
            } => Origin::Yaml {
                file,
                section,
                index,
                pos: Some(at),
            },
            csv => csv,
        }
    }

    fn pos(&self) -> Option<Pos> {
        match self {
            Origin::Yaml { pos, .. } => *pos,
            Origin::Csv { .. } => None,
        }
    }

    /// Full location for a [`Problem`], optionally of one field.
    pub fn at(&self, field: Option<&str>) -> String {
        let file_pos = |file: &str| match self.pos() {
            Some(p) => format!("{file}:{p}"),
            None => file.to_string(),
        };
        match (self, field) {
            (Origin::Yaml { file, .. }, Some(f)) => {
                format!("{}: {}.{f}", file_pos(file), self.label())
            }
            (Origin::Yaml { file, .. }, None) => format!("{}: {}", file_pos(file), self.label()),
            (Origin::Csv { file, line }, Some(f)) => format!("{file}:{line} (column {f})"),
            (Origin::Csv { file, line }, None) => format!("{file}:{line}"),
        }
    }
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

pub use super::yaml_tree::describe;

fn text<'a>(raw: Raw<'a>) -> Result<Cow<'a, str>, String> {
    match raw {
        Raw::Cell(s) => Ok(Cow::Borrowed(s)),
        Raw::Yaml(n) => match &n.value {
            Value::Str(s) if s.is_empty() => {
                Err("empty value; leave the field out to use the default".into())
            }
            Value::Str(s) => Ok(Cow::Borrowed(s)),
            _ => Err(format!("expected a string, found {}", describe(n))),
        },
    }
}

fn one_of(what: &str, value: &str, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "{what} `{}` is not allowed; expected one of {list}",
            shorten(value)
        ))
    }
}

/// Long garbage in an error message helps nobody.
fn shorten(s: &str) -> Cow<'_, str> {
    if s.chars().nth(80).is_some() {
        Cow::Owned(format!("{}…", s.chars().take(80).collect::<String>()))
    } else {
        Cow::Borrowed(s)
    }
}

/// Check an item id: safe as a file name on every platform.
pub fn check_id(id: &str) -> Result<(), String> {
    let n = id.chars().count();
    if n == 0 || n > MAX_ID_CHARS {
        return Err(format!(
            "id must be 1 to {MAX_ID_CHARS} characters, found {n}"
        ));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id is {} bytes in UTF-8; file names allow 255 bytes and vidbatch adds up to 9 (`.mp4.part`), so ids may have at most {MAX_ID_BYTES} bytes (CJK characters take 3 bytes, emoji 4)",
            id.len()
        ));
    }
    if id.ends_with('.') || id.ends_with(' ') {
        return Err(format!(
            "id `{}` must not end with a dot or a space (Windows drops them from file names)",
            shorten(id)
        ));
    }
    if is_windows_reserved(id) {
        return Err(format!(
            "id `{}` is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9); choose another",
            shorten(id)
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("id `{id}` is not allowed (it names a directory)"));
    }
    if id.starts_with('.') || id.starts_with('-') {
        return Err(format!(
            "id `{}` must not start with `.` or `-`",
            shorten(id)
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("id contains a control character ({:?})", c));
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Err(format!(
            "id `{}` contains `{c}`; ids are file names, so / \\ < > : \" | ? * are not allowed",
            shorten(id)
        ));
    }
    Ok(())
}

/// `CON`, `nul.txt`, `Com1.mp4`...: names Windows keeps for devices, with
/// any extension, in any case.
fn is_windows_reserved(id: &str) -> bool {
    let stem = id.split('.').next().unwrap_or(id).trim_end().to_uppercase();
    if matches!(
        stem.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    let mut chars = stem.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && rest.len() == 1
        && (rest[0].is_ascii_digit() || matches!(rest[0], '¹' | '²' | '³'))
}

fn check_prompt(field: &str, s: &str) -> Result<String, String> {
    if s.chars().nth(MAX_PROMPT_CHARS).is_some() {
        let n = s.chars().count();
        return Err(format!(
            "{field} is {n} characters; the limit is {MAX_PROMPT_CHARS} characters"
        ));
    }
    Ok(s.to_string())
}

/// Seconds as a normalized string ("05" and 5 both become "5"); the range
/// depends on the model and is checked in phase 2.
fn parse_duration(raw: Raw<'_>) -> Result<String, String> {
    let digits: Cow<'_, str> = match raw {
        Raw::Yaml(Node {
            value: Value::Number(n),
            ..
        }) => match n.as_u64() {
            Some(v) => Cow::Owned(v.to_string()),
            None => {
                return Err(format!(
                    "duration must be whole seconds such as \"5\" or \"10\", found {n}"
                ));
            }
        },
        other => text(other)?,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "duration must be whole seconds such as \"5\" or \"10\", found `{}`",
            shorten(&digits)
        ));
    }
    match digits.parse::<u32>() {
        Ok(v) => Ok(v.to_string()),
        Err(_) => Err(format!("duration `{}` is out of range", shorten(&digits))),
    }
}

fn parse_cfg_scale(raw: Raw<'_>) -> Result<f64, String> {
    let v = match raw {
        Raw::Cell(s) => s.trim().parse::<f64>().map_err(|_| {
            format!(
                "cfg_scale must be a number in [0, 1], found `{}`",
                shorten(s)
            )
        })?,
        Raw::Yaml(Node {
            value: Value::Number(n),
            ..
        }) => n.as_f64(),
        Raw::Yaml(v) => {
            return Err(format!(
                "cfg_scale must be a number in [0, 1], found {}",
                describe(v)
            ));
        }
    };
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(format!("cfg_scale must be in [0, 1], found {v}"));
    }
    Ok(v)
}

fn parse_sound(raw: Raw<'_>) -> Result<String, String> {
    match raw {
        // YAML 1.1 habits: `sound: true` means on.
        Raw::Yaml(Node {
            value: Value::Bool(b),
            ..
        }) => Ok(if *b { "on" } else { "off" }.to_string()),
        other => one_of("sound", &text(other)?, &["on", "off"]),
    }
}

fn parse_camera(raw: Raw<'_>) -> Result<CameraControl, String> {
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

/// `http://` / `https://` URL check shared by images and `provider.base_url`.
pub fn check_http_url(s: &str) -> Result<String, String> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("`{}` is not an http(s) URL", shorten(s)));
    }
    match reqwest::Url::parse(s) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(s.to_string()),
        Ok(_) => Err(format!("URL `{}` has no host", shorten(s))),
        Err(e) => Err(format!("invalid URL `{}`: {e}", shorten(s))),
    }
}

/// `limits.submit_rate`: `N/s`, `N/min` or `N/h`, N > 0 (decimals allowed).
/// Returns submissions per second.
pub fn parse_submit_rate(s: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "submit_rate `{}` must look like 10/s, 300/min or 0.5/h (a number > 0, then /s, /min or /h)",
            shorten(s)
        )
    };
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let per = match unit {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let (int, frac) = n.split_once('.').unwrap_or((n, "0"));
    if int.is_empty()
        || frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let v: f64 = n.parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    Ok(v / per)
}

/// A humantime duration (`500ms`, `5s`, `30m`) greater than zero.
pub fn parse_setting_duration(name: &str, s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{name} must be greater than zero")),
        Err(e) => Err(format!(
            "{name} `{}` is not a duration like 500ms, 5s or 30m: {e}",
            shorten(s)
        )),
    }
}

/// `provider.style` values: Kling's official API, a gateway passing Kling's
/// shapes through, and fal's queue (which serves Kling and other models
/// under model ids like `fal-ai/kling-video/v2.1/standard/text-to-video`).
pub const PROVIDER_STYLES: &[&str] = &["kling", "kling-gateway", "fal"];

/// The fields a pass-through manifest (fal) reads itself; every other field
/// is the model's input, sent as written, without Kling's rules.
pub fn passthrough_reads(f: Field) -> bool {
    matches!(
        f,
        Field::Id
            | Field::Kind
            | Field::Prompt
            | Field::Image
            | Field::ImageTail
            | Field::ModelName
    )
}

/// Styles whose model names are the provider's own, not Kling's enum.
pub fn free_form_models(style: &str) -> bool {
    style != "kling"
}

struct Seen {
    id: String,
    origin: String,
    derived: Option<[u8; 32]>,
}

/// Collects problems and turns raw items into [`Item`]s.
#[derive(Default)]
pub struct Validator {
    /// `provider.style: kling-gateway`: model names are free-form.
    pub gateway: bool,
    /// `provider.style: fal`: fields the manifest does not know are the
    /// model's input, passed through; `model` names the model.
    pub passthrough: bool,
    pub images: ImageChecker,
    pub problems: Vec<Problem>,
    defaults: Partial,
    seen: HashMap<String, Seen>,
}

impl Validator {
    pub fn new(gateway: bool) -> Validator {
        Validator {
            gateway,
            ..Validator::default()
        }
    }

    pub fn problem(&mut self, location: String, message: impl Into<String>) {
        self.problems.push(Problem {
            location,
            message: message.into(),
        });
    }

    pub fn set_defaults(&mut self, d: Partial) {
        self.defaults = d;
    }

    /// A top-level `model:` (pass-through manifests): the model of items
    /// that name none, unless `defaults:` already does.
    pub fn default_model(&mut self, model: String) {
        if self.defaults.model_name.is_none() {
            self.defaults.model_name = Some(model);
        }
    }

    /// Phase 1: parse one field on its own into `p`; a failure is a problem
    /// at the field and marks it bad.
    pub fn field(
        &mut self,
        p: &mut Partial,
        field: Field,
        raw: Raw<'_>,
        origin: Origin<'_>,
        base_dir: &Path,
    ) {
        p.at[field as usize] = origin.pos();
        if let Err(msg) = self.parse_field(p, field, raw, base_dir) {
            p.bad |= field.bit();
            self.problem(origin.at(Some(field.name())), msg);
        }
    }

    /// Record a problem with a field the reader could not even decode.
    pub fn field_problem(
        &mut self,
        p: &mut Partial,
        field: Field,
        origin: Origin<'_>,
        msg: String,
    ) {
        p.bad |= field.bit();
        self.problem(origin.at(Some(field.name())), msg);
    }

    fn parse_field(
        &mut self,
        p: &mut Partial,
        field: Field,
        raw: Raw<'_>,
        base_dir: &Path,
    ) -> Result<(), String> {
        match field {
            Field::Id => {
                let id = match raw {
                    // `id: 17` is a natural thing to write.
                    Raw::Yaml(Node {
                        value: Value::Number(n),
                        ..
                    }) => n.to_string(),
                    other => text(other)?.into_owned(),
                };
                check_id(&id)?;
                p.id = Some(id);
            }
            Field::Kind => {
                let s = text(raw)?;
                p.kind = Some(Kind::parse(&s).ok_or_else(|| {
                    format!(
                        "kind `{}` is not allowed; expected `text2video` or `image2video`",
                        shorten(&s)
                    )
                })?);
            }
            Field::Prompt => p.prompt = Some(check_prompt("prompt", &text(raw)?)?),
            Field::NegativePrompt => {
                p.negative_prompt = Some(check_prompt("negative_prompt", &text(raw)?)?)
            }
            Field::Image => p.image = Some(self.image(&text(raw)?, base_dir, Role::Image)?),
            Field::ImageTail => {
                p.image_tail = Some(self.image(&text(raw)?, base_dir, Role::ImageTail)?)
            }
            Field::ModelName => {
                let s = text(raw)?;
                if s.trim().is_empty() {
                    return Err("model_name must not be blank".into());
                }
                p.model_name = Some(s.into_owned());
            }
            Field::Mode => p.mode = Some(one_of("mode", &text(raw)?, &["std", "pro"])?),
            Field::Duration => p.duration = Some(parse_duration(raw)?),
            Field::AspectRatio => {
                p.aspect_ratio = Some(one_of(
                    "aspect_ratio",
                    &text(raw)?,
                    &["16:9", "9:16", "1:1"],
                )?)
            }
            Field::CfgScale => p.cfg_scale = Some(parse_cfg_scale(raw)?),
            Field::CameraControl => p.camera_control = Some(parse_camera(raw)?),
            Field::Sound => p.sound = Some(parse_sound(raw)?),
        }
        Ok(())
    }

    fn image(&mut self, s: &str, base_dir: &Path, role: Role) -> Result<ImageSpec, String> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = check_http_url(s)?;
            return Ok(ImageSpec {
                written: s.to_string(),
                resolved: ImageRef::Url(url),
            });
        }
        if s.contains("://") || lower.starts_with("data:") {
            return Err(format!(
                "`{}` is neither a local path nor an http(s) URL",
                shorten(s)
            ));
        }
        if s.trim().is_empty() {
            return Err("image path must not be blank".into());
        }
        let path = base_dir.join(s);
        self.images.check(&path, role).map_err(|e| e.to_string())?;
        Ok(ImageSpec {
            written: s.to_string(),
            resolved: ImageRef::Path(path),
        })
    }

    /// Phase 2: merge defaults, apply whole-item rules, assign and check the
    /// id. `None` when the item has any problem (already recorded).
    pub fn finish(&mut self, mut p: Partial, origin: Origin<'_>) -> Option<Item> {
        p.merge_defaults(&self.defaults);
        let before = self.problems.len();
        // A field's own value if the item wrote it, else the item.
        let written = p.at;
        let at = |f: Field| match written[f as usize] {
            Some(pos) => origin.with_pos(pos).at(Some(f.name())),
            None => origin.at(Some(f.name())),
        };

        let has_image = p.given(Field::Image) || p.given(Field::ImageTail);
        let kind = p.kind.unwrap_or(if has_image {
            Kind::Image2Video
        } else {
            Kind::Text2Video
        });
        if !p.is_bad(Field::Kind) {
            match kind {
                Kind::Text2Video => {
                    for f in [Field::Image, Field::ImageTail] {
                        if p.is_set(f) {
                            self.problem(
                                at(f),
                                format!(
                                    "`{}` is set but kind is text2video{}; remove `{}` or use kind image2video",
                                    f.name(),
                                    p.src(Field::Kind),
                                    f.name()
                                ),
                            );
                        }
                    }
                    if !p.is_bad(Field::Prompt)
                        && p.prompt.as_deref().is_none_or(|s| s.trim().is_empty())
                    {
                        self.problem(
                            at(Field::Prompt),
                            "prompt is required for text2video (and must not be blank)",
                        );
                    }
                }
                Kind::Image2Video => {
                    if !has_image {
                        self.problem(
                            origin.at(None),
                            "image2video needs `image` or `image_tail` (a local JPEG/PNG path or an http(s) URL)",
                        );
                    }
                    if p.is_set(Field::AspectRatio) {
                        self.problem(
                            at(Field::AspectRatio),
                            format!(
                                "aspect_ratio{} is not an image2video field (the image sets the aspect ratio); remove it",
                                p.src(Field::AspectRatio)
                            ),
                        );
                    }
                    if p.is_set(Field::ImageTail) && p.is_set(Field::CameraControl) {
                        self.problem(
                            at(Field::CameraControl),
                            "camera_control cannot be used with image_tail: Kling allows only one of image+image_tail, masks, camera_control",
                        );
                    }
                }
            }
        }

        let model = p.model_name.as_deref().unwrap_or(DEFAULT_MODEL);
        let model_src = if p.model_name.is_some() {
            p.src(Field::ModelName)
        } else {
            " (the default)"
        };
        let known_model = T2V_MODELS.contains(&model) || I2V_MODELS.contains(&model);
        if !self.gateway && !p.is_bad(Field::ModelName) && !p.is_bad(Field::Kind) {
            let list = match kind {
                Kind::Text2Video => T2V_MODELS,
                Kind::Image2Video => I2V_MODELS,
            };
            if !list.contains(&model) {
                let hint = if I2V_MODELS.contains(&model) {
                    " (it is image2video only)"
                } else {
                    ""
                };
                self.problem(
                    at(Field::ModelName),
                    format!(
                        "model_name `{}`{} is not a {kind} model{hint}; expected one of {} (a gateway's own model names need `--provider kling-gateway` or `provider.style: kling-gateway`)",
                        shorten(model),
                        p.src(Field::ModelName),
                        list.join(", ")
                    ),
                );
            }
        }
        // An unknown official model was reported above; its duration/sound
        // rules are unknowable, so say nothing more about them.
        let model_rules = !p.is_bad(Field::ModelName) && (known_model || self.gateway);
        if let Some(d) = p.duration.as_deref().filter(|_| model_rules) {
            // Free-form gateway names may be v3-class: allow the widest known range.
            let wide = model == "kling-v3" || (self.gateway && !known_model);
            let ok = match d.parse::<u32>() {
                Ok(v) if wide => (3..=15).contains(&v),
                Ok(v) => v == 5 || v == 10,
                Err(_) => false,
            };
            if !ok {
                let expected = if wide {
                    "\"3\" to \"15\""
                } else {
                    "\"5\" or \"10\""
                };
                self.problem(
                    at(Field::Duration),
                    format!(
                        "duration `{d}`{} is not valid for {model}{model_src}; expected {expected}",
                        p.src(Field::Duration)
                    ),
                );
            }
        }
        if p.sound.as_deref() == Some("on")
            && !self.gateway
            && model_rules
            && !SOUND_MODELS.contains(&model)
        {
            self.problem(
                at(Field::Sound),
                format!(
                    "sound `on`{} needs kling-v2-6 or kling-v3; model is {model}{model_src}",
                    p.src(Field::Sound)
                ),
            );
        }

        let id_given = p.given(Field::Id);
        let (id, derived) = match &p.id {
            Some(id) => (id.clone(), None),
            None if id_given => return None,
            // A content id of content that failed to parse says nothing:
            // "identical" items here would only be noise.
            None if p.bad != 0 => return None,
            None => {
                let hash: [u8; 32] = Sha256::digest(p.canonical(kind).as_bytes()).into();
                (format!("item-{}", hex::encode(&hash[..6])), Some(hash))
            }
        };
        let label = origin.label();
        // Keyed case-insensitively: on macOS and Windows `Cat` and `cat`
        // are one file, and one paid video would overwrite the other.
        let seen_key = id.to_lowercase();
        match self.seen.get(&seen_key) {
            Some(prev) if prev.id != id => {
                let msg = format!(
                    "id `{id}` differs from `{}` ({}) only in letter case; they would share one video file on macOS and Windows",
                    prev.id, prev.origin
                );
                self.problem(at(Field::Id), msg);
            }
            Some(prev) => {
                let msg = match (derived, prev.derived) {
                    (Some(a), Some(b)) if a == b => format!(
                        "this item is identical to {} (both get the content-derived id `{id}`); add an `id` to one of them if you really want both",
                        prev.origin
                    ),
                    (Some(_), Some(_)) => format!(
                        "content-derived id `{id}` collides with {}; add an `id` to one of them",
                        prev.origin
                    ),
                    _ => format!("duplicate id `{id}`: also used by {}", prev.origin),
                };
                let loc = if derived.is_some() {
                    origin.at(None)
                } else {
                    at(Field::Id)
                };
                self.problem(loc, msg);
            }
            None => {
                self.seen.insert(
                    seen_key,
                    Seen {
                        id: id.clone(),
                        origin: label.clone(),
                        derived,
                    },
                );
            }
        }

        if self.problems.len() > before || p.bad != 0 {
            return None;
        }
        Some(Item {
            id,
            origin: label,
            kind,
            prompt: p.prompt,
            negative_prompt: p.negative_prompt,
            image: p.image.map(|i| i.resolved),
            image_tail: p.image_tail.map(|i| i.resolved),
            model_name: p.model_name,
            mode: p.mode,
            duration: p.duration,
            aspect_ratio: p.aspect_ratio,
            cfg_scale: p.cfg_scale,
            camera_control: p.camera_control,
            sound: p.sound,
            extra: (!p.extra.is_empty()).then_some(p.extra),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin::Csv {
        file: "m.csv",
        line: 2,
    };

    /// Validate one item given as CSV-style cells; returns the item or the messages.
    fn run_with(v: &mut Validator, cells: &[(&str, &str)]) -> Result<Item, Vec<String>> {
        let before = v.problems.len();
        let mut p = Partial::default();
        for (name, value) in cells {
            let f = Field::from_name(name).unwrap();
            v.field(
                &mut p,
                f,
                Raw::Cell(value),
                ORIGIN,
                Path::new("/nonexistent"),
            );
        }
        match v.finish(p, ORIGIN) {
            Some(item) => Ok(item),
            None => Err(v.problems[before..].iter().map(|p| p.to_string()).collect()),
        }
    }

    fn run(cells: &[(&str, &str)]) -> Result<Item, Vec<String>> {
        run_with(&mut Validator::new(false), cells)
    }

    fn err(cells: &[(&str, &str)], needle: &str) {
        match run(cells) {
            Ok(item) => panic!("expected a problem containing {needle:?}, got {item:?}"),
            Err(msgs) => assert!(
                msgs.iter().any(|m| m.contains(needle)),
                "no problem contains {needle:?}: {msgs:?}"
            ),
        }
    }

    fn yaml(s: &str) -> Node {
        crate::manifest::yaml_tree::parse(s).unwrap().unwrap()
    }

    #[test]
    fn minimal_text2video_is_valid_and_gets_a_derived_id() {
        let item = run(&[("prompt", "a cat")]).unwrap();
        assert_eq!(item.kind, Kind::Text2Video);
        assert!(
            item.id.starts_with("item-") && item.id.len() == 17,
            "{}",
            item.id
        );
        assert_eq!(item.origin, "m.csv:2");
    }

    #[test]
    fn prompt_required_for_text2video() {
        err(&[("model_name", "kling-v1")], "prompt is required");
        err(&[("prompt", "   ")], "prompt is required");
    }

    #[test]
    fn prompt_limit_counts_chars_not_bytes() {
        let ok = "🎬".repeat(2500);
        assert!(run(&[("prompt", &ok)]).is_ok());
        let ascii_ok = "a".repeat(2500);
        assert!(run(&[("prompt", &ascii_ok)]).is_ok());
        let long = "a".repeat(2501);
        err(&[("prompt", &long)], "prompt is 2501 characters");
    }

    #[test]
    fn negative_prompt_limit() {
        let long = "é".repeat(2501);
        err(
            &[("prompt", "x"), ("negative_prompt", &long)],
            "negative_prompt is 2501 characters",
        );
        assert!(run(&[("prompt", "x"), ("negative_prompt", &"é".repeat(2500))]).is_ok());
    }

    #[test]
    fn model_name_enum_per_kind() {
        assert!(run(&[("prompt", "x"), ("model_name", "kling-v2-5-turbo")]).is_ok());
        err(
            &[("prompt", "x"), ("model_name", "kling-v1-5")],
            "image2video only",
        );
        err(
            &[("prompt", "x"), ("model_name", "kling-v2-1")],
            "not a text2video model",
        );
        err(
            &[("prompt", "x"), ("model_name", "gpt-video")],
            "expected one of kling-v1",
        );
        err(&[("prompt", "x"), ("model_name", " ")], "must not be blank");
        err(
            &[("image", "https://e.com/a.png"), ("model_name", "kling-v9")],
            "not a image2video model",
        );
        assert!(
            run(&[
                ("image", "https://e.com/a.png"),
                ("model_name", "kling-v1-5")
            ])
            .is_ok()
        );
    }

    #[test]
    fn gateway_model_names_are_free_form() {
        let mut v = Validator::new(true);
        let item = run_with(
            &mut v,
            &[
                ("prompt", "x"),
                ("model_name", "MaaS_KL_V1.6"),
                ("duration", "12"),
            ],
        )
        .unwrap();
        assert_eq!(item.model_name.as_deref(), Some("MaaS_KL_V1.6"));
        let mut v = Validator::new(true);
        assert!(run_with(&mut v, &[("prompt", "x"), ("model_name", "  ")]).is_err());
    }

    #[test]
    fn mode_enum() {
        assert!(run(&[("prompt", "x"), ("mode", "pro")]).is_ok());
        err(
            &[("prompt", "x"), ("mode", "fast")],
            "mode `fast` is not allowed",
        );
    }

    #[test]
    fn aspect_ratio_enum_and_not_on_image2video() {
        assert!(run(&[("prompt", "x"), ("aspect_ratio", "9:16")]).is_ok());
        err(
            &[("prompt", "x"), ("aspect_ratio", "4:3")],
            "aspect_ratio `4:3` is not allowed",
        );
        err(
            &[("image", "https://e.com/a.png"), ("aspect_ratio", "16:9")],
            "not an image2video field",
        );
    }

    #[test]
    fn duration_5_or_10_up_to_v2_6() {
        let item = run(&[("prompt", "x"), ("duration", "10")]).unwrap();
        assert_eq!(item.duration.as_deref(), Some("10"));
        err(
            &[("prompt", "x"), ("duration", "7")],
            "expected \"5\" or \"10\"",
        );
        err(
            &[
                ("prompt", "x"),
                ("model_name", "kling-v2-6"),
                ("duration", "15"),
            ],
            "not valid for kling-v2-6",
        );
        err(&[("prompt", "x"), ("duration", "5s")], "whole seconds");
        err(&[("prompt", "x"), ("duration", "-5")], "whole seconds");
        err(
            &[("prompt", "x"), ("duration", "99999999999")],
            "out of range",
        );
    }

    #[test]
    fn duration_3_to_15_on_v3_and_normalized() {
        for d in ["3", "15", "8"] {
            assert!(run(&[("prompt", "x"), ("model_name", "kling-v3"), ("duration", d)]).is_ok());
        }
        err(
            &[
                ("prompt", "x"),
                ("model_name", "kling-v3"),
                ("duration", "2"),
            ],
            "\"3\" to \"15\"",
        );
        err(
            &[
                ("prompt", "x"),
                ("model_name", "kling-v3"),
                ("duration", "16"),
            ],
            "\"3\" to \"15\"",
        );
        let item = run(&[("prompt", "x"), ("duration", "05")]).unwrap();
        assert_eq!(item.duration.as_deref(), Some("5"));
    }

    #[test]
    fn duration_accepts_yaml_integers_and_strings() {
        assert_eq!(parse_duration(Raw::Yaml(&yaml("5"))).unwrap(), "5");
        assert_eq!(parse_duration(Raw::Yaml(&yaml("'10'"))).unwrap(), "10");
        assert!(parse_duration(Raw::Yaml(&yaml("5.5"))).is_err());
        assert!(parse_duration(Raw::Yaml(&yaml("-5"))).is_err());
        assert!(parse_duration(Raw::Yaml(&yaml("true"))).is_err());
    }

    #[test]
    fn cfg_scale_in_0_1_finite() {
        assert_eq!(
            run(&[("prompt", "x"), ("cfg_scale", "0.5")])
                .unwrap()
                .cfg_scale,
            Some(0.5)
        );
        assert!(run(&[("prompt", "x"), ("cfg_scale", "0")]).is_ok());
        assert!(run(&[("prompt", "x"), ("cfg_scale", "1")]).is_ok());
        err(
            &[("prompt", "x"), ("cfg_scale", "1.01")],
            "must be in [0, 1]",
        );
        err(
            &[("prompt", "x"), ("cfg_scale", "-0.1")],
            "must be in [0, 1]",
        );
        err(
            &[("prompt", "x"), ("cfg_scale", "NaN")],
            "must be in [0, 1]",
        );
        err(
            &[("prompt", "x"), ("cfg_scale", "inf")],
            "must be in [0, 1]",
        );
        err(
            &[("prompt", "x"), ("cfg_scale", "high")],
            "must be a number",
        );
        assert!(parse_cfg_scale(Raw::Yaml(&yaml(".nan"))).is_err());
        assert!(parse_cfg_scale(Raw::Yaml(&yaml("'0.5'"))).is_err());
        assert_eq!(parse_cfg_scale(Raw::Yaml(&yaml("1"))).unwrap(), 1.0);
    }

    #[test]
    fn sound_on_off_and_needs_v2_6_plus() {
        assert!(run(&[("prompt", "x"), ("sound", "off")]).is_ok());
        assert!(
            run(&[
                ("prompt", "x"),
                ("model_name", "kling-v2-6"),
                ("sound", "on")
            ])
            .is_ok()
        );
        err(
            &[("prompt", "x"), ("sound", "loud")],
            "sound `loud` is not allowed",
        );
        err(
            &[("prompt", "x"), ("sound", "on")],
            "needs kling-v2-6 or kling-v3",
        );
        assert_eq!(parse_sound(Raw::Yaml(&yaml("true"))).unwrap(), "on");
    }

    #[test]
    fn camera_control_type_enum() {
        let ok = r#"{"type":"down_back"}"#;
        assert!(run(&[("prompt", "x"), ("camera_control", ok)]).is_ok());
        err(
            &[("prompt", "x"), ("camera_control", r#"{"type":"spin"}"#)],
            "camera_control.type `spin` is not allowed",
        );
        err(
            &[("prompt", "x"), ("camera_control", r#"{}"#)],
            "camera_control.type is required",
        );
        err(
            &[("prompt", "x"), ("camera_control", "not json")],
            "must be a JSON object",
        );
        err(
            &[("prompt", "x"), ("camera_control", "[1]")],
            "must be a mapping",
        );
        err(
            &[
                ("prompt", "x"),
                ("camera_control", r#"{"type":"down_back","speed":1}"#),
            ],
            "unknown camera_control field `speed`",
        );
    }

    #[test]
    fn camera_control_config_required_for_simple_only() {
        let ok = r#"{"type":"simple","config":{"zoom":5}}"#;
        let item = run(&[("prompt", "x"), ("camera_control", ok)]).unwrap();
        let cc = item.camera_control.unwrap();
        assert_eq!(cc.config.unwrap().zoom, 5.0);
        err(
            &[("prompt", "x"), ("camera_control", r#"{"type":"simple"}"#)],
            "config is required",
        );
        err(
            &[
                ("prompt", "x"),
                (
                    "camera_control",
                    r#"{"type":"forward_up","config":{"zoom":1}}"#,
                ),
            ],
            "must be empty or absent",
        );
        assert!(
            run(&[
                ("prompt", "x"),
                ("camera_control", r#"{"type":"forward_up","config":{}}"#)
            ])
            .is_ok()
        );
    }

    #[test]
    fn camera_control_config_range_and_exactly_one_nonzero() {
        err(
            &[
                ("prompt", "x"),
                (
                    "camera_control",
                    r#"{"type":"simple","config":{"zoom":11}}"#,
                ),
            ],
            "must be in [-10, 10]",
        );
        err(
            &[
                ("prompt", "x"),
                (
                    "camera_control",
                    r#"{"type":"simple","config":{"zoom":1,"pan":2}}"#,
                ),
            ],
            "exactly one non-zero",
        );
        err(
            &[
                ("prompt", "x"),
                ("camera_control", r#"{"type":"simple","config":{"zoom":0}}"#),
            ],
            "exactly one non-zero",
        );
        err(
            &[
                ("prompt", "x"),
                (
                    "camera_control",
                    r#"{"type":"simple","config":{"zoom":"5"}}"#,
                ),
            ],
            "must be a number",
        );
        err(
            &[
                ("prompt", "x"),
                ("camera_control", r#"{"type":"simple","config":{"zom":5}}"#),
            ],
            "did you mean `zoom`",
        );
        assert!(
            run(&[
                ("prompt", "x"),
                (
                    "camera_control",
                    r#"{"type":"simple","config":{"roll":-10}}"#
                )
            ])
            .is_ok()
        );
    }

    #[test]
    fn camera_control_from_yaml_mapping() {
        let v = yaml(
            "type: simple\nconfig: {horizontal: 0, vertical: 0, pan: 0, tilt: 2.5, roll: 0, zoom: 0}",
        );
        let cc = parse_camera(Raw::Yaml(&v)).unwrap();
        assert_eq!(cc.config.unwrap().tilt, 2.5);
        assert!(parse_camera(Raw::Yaml(&yaml("simple"))).is_err());
    }

    #[test]
    fn image2video_needs_image_or_tail() {
        err(
            &[("kind", "image2video"), ("prompt", "x")],
            "needs `image` or `image_tail`",
        );
        let item = run(&[("image_tail", "https://e.com/t.png")]).unwrap();
        assert_eq!(item.kind, Kind::Image2Video);
        assert_eq!(
            item.image_tail,
            Some(ImageRef::Url("https://e.com/t.png".into()))
        );
    }

    #[test]
    fn kind_inferred_from_images() {
        assert_eq!(
            run(&[("image", "https://e.com/a.png")]).unwrap().kind,
            Kind::Image2Video
        );
        assert_eq!(run(&[("prompt", "x")]).unwrap().kind, Kind::Text2Video);
        err(
            &[("kind", "video"), ("prompt", "x")],
            "kind `video` is not allowed",
        );
    }

    #[test]
    fn explicit_text2video_with_image_is_an_error() {
        err(
            &[
                ("kind", "text2video"),
                ("prompt", "x"),
                ("image", "https://e.com/a.png"),
            ],
            "kind is text2video",
        );
        err(
            &[
                ("kind", "text2video"),
                ("prompt", "x"),
                ("image_tail", "https://e.com/a.png"),
            ],
            "remove `image_tail`",
        );
    }

    #[test]
    fn image_tail_excludes_camera_control() {
        err(
            &[
                ("image", "https://e.com/a.png"),
                ("image_tail", "https://e.com/b.png"),
                ("camera_control", r#"{"type":"down_back"}"#),
            ],
            "cannot be used with image_tail",
        );
        assert!(
            run(&[
                ("image", "https://e.com/a.png"),
                ("camera_control", r#"{"type":"down_back"}"#)
            ])
            .is_ok()
        );
    }

    #[test]
    fn image_must_be_path_or_http_url() {
        err(
            &[("image", "ftp://e.com/a.png")],
            "neither a local path nor an http(s) URL",
        );
        err(
            &[("image", "data:image/png;base64,AAAA")],
            "neither a local path",
        );
        err(&[("image", "https://")], "URL");
        err(&[("image", "missing.png")], "file not found");
        assert!(run(&[("image", "HTTPS://E.COM/a.png")]).is_ok());
    }

    #[test]
    fn local_image_resolved_to_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&400u32.to_be_bytes());
        png.extend_from_slice(&400u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        std::fs::write(dir.path().join("a.png"), &png).unwrap();
        let mut v = Validator::new(false);
        let mut p = Partial::default();
        v.field(&mut p, Field::Image, Raw::Cell("a.png"), ORIGIN, dir.path());
        let item = v.finish(p, ORIGIN).unwrap();
        assert_eq!(item.image, Some(ImageRef::Path(dir.path().join("a.png"))));
        assert_eq!(v.images.checked(), 1);
    }

    #[test]
    fn id_rules() {
        assert!(check_id("shot-01_a.b").is_ok());
        assert!(check_id(&"x".repeat(128)).is_ok());
        assert!(check_id("日本語🎬").is_ok());
        for bad in [
            "", ".", "..", ".hidden", "-x", "a/b", "a\\b", "a\u{7}b", "a<b", "a>b", "a:b", "a\"b",
            "a|b", "a?b", "a*b",
        ] {
            assert!(check_id(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(check_id(&"x".repeat(129)).is_err());
        err(&[("id", "a/b"), ("prompt", "x")], "(column id)");
    }

    #[test]
    fn derived_id_stable_and_content_based() {
        let a = run(&[("prompt", "a cat"), ("duration", "5")]).unwrap();
        let b = run(&[("duration", "05"), ("prompt", "a cat")]).unwrap();
        let c = run(&[("prompt", "a dog"), ("duration", "5")]).unwrap();
        assert_eq!(a.id, b.id, "field order and number spelling do not matter");
        assert_ne!(a.id, c.id);
        // Explicit and inferred kind are the same content.
        let d = run(&[
            ("kind", "text2video"),
            ("prompt", "a cat"),
            ("duration", "5"),
        ])
        .unwrap();
        assert_eq!(a.id, d.id);
    }

    #[test]
    fn duplicate_ids_name_both_locations() {
        let mut v = Validator::new(false);
        run_with(&mut v, &[("id", "a"), ("prompt", "x")]).unwrap();
        let e = run_with(&mut v, &[("id", "a"), ("prompt", "y")]).unwrap_err();
        assert!(
            e[0].contains("m.csv:2 (column id): duplicate id `a`: also used by m.csv:2"),
            "{e:?}"
        );
    }

    #[test]
    fn duplicate_derived_ids_say_identical() {
        let mut v = Validator::new(false);
        run_with(&mut v, &[("prompt", "same")]).unwrap();
        let e = run_with(&mut v, &[("prompt", "same")]).unwrap_err();
        assert!(
            e[0].contains("identical") && e[0].contains("add an `id`"),
            "{e:?}"
        );
    }

    #[test]
    fn defaults_fill_missing_fields_and_are_marked_in_messages() {
        let mut v = Validator::new(false);
        let mut d = Partial::default();
        let o = Origin::Yaml {
            file: "m.yaml",
            section: "defaults",
            index: None,
            pos: None,
        };
        v.field(
            &mut d,
            Field::ModelName,
            Raw::Cell("kling-v1-5"),
            o,
            Path::new("/"),
        );
        v.field(&mut d, Field::Mode, Raw::Cell("pro"), o, Path::new("/"));
        v.set_defaults(d);
        let i = run_with(&mut v, &[("image", "https://e.com/a.png"), ("mode", "std")]).unwrap();
        assert_eq!(
            (i.model_name.as_deref(), i.mode.as_deref()),
            (Some("kling-v1-5"), Some("std"))
        );
        let e = run_with(&mut v, &[("prompt", "x")]).unwrap_err();
        assert!(e[0].contains("(from defaults)"), "{e:?}");
    }

    #[test]
    fn several_problems_per_item_are_all_reported() {
        let e = run(&[
            ("prompt", &"a".repeat(2501)),
            ("mode", "x"),
            ("sound", "y"),
            ("cfg_scale", "2"),
        ])
        .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            !e.iter().any(|m| m.contains("required")),
            "no cascade: {e:?}"
        );
    }

    #[test]
    fn yaml_types_are_checked() {
        let mut v = Validator::new(false);
        let mut p = Partial::default();
        let o = Origin::Yaml {
            file: "m.yaml",
            section: "items",
            index: Some(3),
            pos: None,
        };
        v.field(
            &mut p,
            Field::Prompt,
            Raw::Yaml(&yaml("[1, 2]")),
            o,
            Path::new("/"),
        );
        v.field(
            &mut p,
            Field::Mode,
            Raw::Yaml(&yaml("''")),
            o,
            Path::new("/"),
        );
        v.field(&mut p, Field::Id, Raw::Yaml(&yaml("17")), o, Path::new("/"));
        assert_eq!(
            v.problems[0].to_string(),
            "m.yaml: items[3].prompt: expected a string, found a list"
        );
        assert!(v.problems[1].message.contains("empty value"));
        assert_eq!(p.id.as_deref(), Some("17"));
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let m = unknown_name("field", "promt", &field_names());
        assert!(
            m.starts_with("unknown field `promt` (did you mean `prompt`?); expected one of `id`"),
            "{m}"
        );
        let m = unknown_name("field", "zzzzzzzz", &field_names());
        assert!(!m.contains("did you mean"), "{m}");
    }

    #[test]
    fn submit_rate_forms() {
        assert_eq!(parse_submit_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_submit_rate("300/min").unwrap(), 5.0);
        assert_eq!(parse_submit_rate("0.5/s").unwrap(), 0.5);
        assert_eq!(parse_submit_rate("3600/h").unwrap(), 1.0);
        for bad in [
            "0/s", "0.0/min", "10", "10/sec", "-1/s", "inf/s", "1e3/s", "/s", "1./s", ".5/s",
            "10 /s",
        ] {
            assert!(parse_submit_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn setting_durations_are_humantime_and_positive() {
        assert_eq!(
            parse_setting_duration("poll_interval", "500ms")
                .unwrap()
                .as_millis(),
            500
        );
        assert_eq!(
            parse_setting_duration("task_timeout", "30m")
                .unwrap()
                .as_secs(),
            1800
        );
        assert!(parse_setting_duration("poll_interval", "0s").is_err());
        assert!(parse_setting_duration("poll_interval", "soon").is_err());
    }

    #[test]
    fn http_urls() {
        assert!(check_http_url("https://api-singapore.klingai.com").is_ok());
        assert!(check_http_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(check_http_url("ftp://x").is_err());
        assert!(check_http_url("https://").is_err());
        assert!(check_http_url("api.klingai.com").is_err());
    }
}
