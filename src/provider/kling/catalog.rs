//! Kling's model catalogue and the per-model rules the manifest checks
//! before anything is paid for (kling-api.md §4–5): which models each kind
//! allows, the durations each model takes, which models make sound, the
//! camera moves, the modes and aspect ratios, and the longest prompt.

use crate::manifest::Kind;

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
/// `mode` values (kling-api.md §4).
pub const MODES: &[&str] = &["std", "pro"];
/// `aspect_ratio` values of text2video (kling-api.md §4).
pub const ASPECT_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
/// Longest `prompt` / `negative_prompt`, in characters (not bytes).
pub const MAX_PROMPT_CHARS: usize = 2500;
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
/// `camera_control.config` axes (kling-api.md §4.1).
pub const CAMERA_AXES: [&str; 6] = ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"];
/// Models that accept `sound: on` (kling-api.md §4: V2.6+).
pub const SOUND_MODELS: &[&str] = &["kling-v2-6", "kling-v3"];

/// The official models a kind allows.
pub fn models_for(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Text2Video => T2V_MODELS,
        Kind::Image2Video => I2V_MODELS,
    }
}

/// An official model of either kind.
pub fn is_official(model: &str) -> bool {
    T2V_MODELS.contains(&model) || I2V_MODELS.contains(&model)
}

/// Whether `sound: on` is allowed for an official model.
pub fn makes_sound(model: &str) -> bool {
    SOUND_MODELS.contains(&model)
}

/// The durations a model takes, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durations {
    /// 5 or 10 seconds: every model before V3.
    FiveOrTen,
    /// 3 to 15 seconds: V3.
    ThreeToFifteen,
}

impl Durations {
    /// The durations of `model`; `widest` asks for the widest known range
    /// (a gateway's own model name may be V3-class).
    pub fn of(model: &str, widest: bool) -> Durations {
        if model == "kling-v3" || widest {
            Durations::ThreeToFifteen
        } else {
            Durations::FiveOrTen
        }
    }

    pub fn allows(self, seconds: u32) -> bool {
        match self {
            Durations::FiveOrTen => seconds == 5 || seconds == 10,
            Durations::ThreeToFifteen => (3..=15).contains(&seconds),
        }
    }

    /// The allowed values as the manifest writes them, for messages.
    pub fn expected(self) -> &'static str {
        match self {
            Durations::FiveOrTen => "\"5\" or \"10\"",
            Durations::ThreeToFifteen => "\"3\" to \"15\"",
        }
    }
}
