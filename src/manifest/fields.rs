//! The item field table and phase 1 of validation: each value as written
//! ([`Raw`]) parsed on its own into a [`Partial`]. Main types: [`Field`],
//! [`Partial`].
//!
//! Kept apart from the [`Validator`](super::validate::Validator) because the
//! readers (YAML, CSV) need the field names and value shapes without the
//! whole-item rules, and the rules need the parsed values without the text.

use std::borrow::Cow;

use super::suggest::closest;
use super::yaml_tree::{Node, Pos, Value};
use super::{CameraControl, ImageRef, Kind};

pub use super::yaml_tree::describe;

pub use crate::provider::kling::catalog::MAX_PROMPT_CHARS;

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

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

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
    pub(super) bad: u16,
    pub(super) from_defaults: u16,
    /// Where each field's value was written (YAML), by `Field` index.
    pub(super) at: [Option<Pos>; Field::ALL.len()],
    /// Where each pass-through field's value was written (YAML).
    pub(super) extra_at: Vec<(String, Pos)>,
}

impl Partial {
    /// Treat `f` as given-but-wrong: whole-item rules stay quiet about it.
    pub fn mark_bad(&mut self, f: Field) {
        self.bad |= f.bit();
    }

    pub(super) fn is_set(&self, f: Field) -> bool {
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

    pub(super) fn is_bad(&self, f: Field) -> bool {
        self.bad & f.bit() != 0
    }

    /// Given at all (valid or not).
    pub(super) fn given(&self, f: Field) -> bool {
        self.is_set(f) || self.is_bad(f)
    }

    /// " (from defaults)" when the value was inherited, for messages.
    pub(super) fn src(&self, f: Field) -> &'static str {
        if self.from_defaults & f.bit() != 0 {
            " (from defaults)"
        } else {
            ""
        }
    }

    pub(super) fn merge_defaults(&mut self, d: &Partial) {
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
}

pub(super) fn text<'a>(raw: Raw<'a>) -> Result<Cow<'a, str>, String> {
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

pub(super) fn one_of(what: &str, value: &str, allowed: &[&str]) -> Result<String, String> {
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
pub(super) fn shorten(s: &str) -> Cow<'_, str> {
    if s.chars().nth(80).is_some() {
        Cow::Owned(format!("{}…", s.chars().take(80).collect::<String>()))
    } else {
        Cow::Borrowed(s)
    }
}

pub(super) fn check_prompt(field: &str, s: &str) -> Result<String, String> {
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
pub(super) fn parse_duration(raw: Raw<'_>) -> Result<String, String> {
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

pub(super) fn parse_cfg_scale(raw: Raw<'_>) -> Result<f64, String> {
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

pub(super) fn parse_sound(raw: Raw<'_>) -> Result<String, String> {
    match raw {
        // YAML 1.1 habits: `sound: true` means on.
        Raw::Yaml(Node {
            value: Value::Bool(b),
            ..
        }) => Ok(if *b { "on" } else { "off" }.to_string()),
        other => one_of("sound", &text(other)?, &["on", "off"]),
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

/// In a pass-through manifest, a key that is almost one of vidbatch's own
/// (other case or spelling, two letters swapped: `Model`, `modle`, `ID`,
/// `promtp`) is a typo, not a model input: the item would silently go out
/// without its model or prompt. Returns the field meant.
pub fn own_field_typo(key: &str) -> Option<&'static str> {
    const OWN: [&str; 5] = ["id", "model", "prompt", "image", "image_tail"];
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    OWN.into_iter().find(|own| {
        let target: String = own.chars().filter(|c| *c != '_').collect();
        key != *own && (folded == target || one_swap(&folded, &target))
    })
}

/// `a` is `b` with two neighbouring letters swapped.
fn one_swap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    diff.len() == 2
        && diff[1] == diff[0] + 1
        && a[diff[0]] == b[diff[1]]
        && a[diff[1]] == b[diff[0]]
}

/// Styles whose model names are the provider's own, not Kling's enum.
pub fn free_form_models(style: &str) -> bool {
    style != "kling"
}

#[cfg(test)]
mod typo_tests {
    use super::own_field_typo;

    #[test]
    fn near_misses_of_our_own_fields_are_typos_and_model_inputs_are_not() {
        assert_eq!(own_field_typo("modle"), Some("model"));
        assert_eq!(own_field_typo("Model"), Some("model"));
        assert_eq!(own_field_typo("ID"), Some("id"));
        assert_eq!(own_field_typo("promtp"), Some("prompt"));
        assert_eq!(own_field_typo("Image-Tail"), Some("image_tail"));
        for input in [
            "model",
            "mode",
            "images",
            "image_url",
            "resolution",
            "num_frames",
            "seed",
        ] {
            assert_eq!(own_field_typo(input), None, "{input}");
        }
    }
}
