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
//!
//! The parts live with what owns them: the field table and the phase-1
//! parsers in `fields`, `camera_control` in `camera`, ids in `identity`,
//! locations in `origin`, setting values in `settings_grammar`, and Kling's
//! models, durations and sound in `provider::kling::catalog`. This module
//! keeps the order of the checks and re-exports their vocabulary, so the
//! readers and the CLI import one path.

use std::path::Path;

use super::camera::parse_camera;
use super::fields::{
    check_prompt, one_of, parse_cfg_scale, parse_duration, parse_sound, shorten, text,
};
use super::identity::{Clash, Ids, derived_id};
use super::image::{ImageChecker, Role};
use super::yaml_tree::{Node, Value};
use super::{ImageRef, Item, Kind, Problem};
use crate::provider::kling::catalog::{self, Durations};

// The manifest's validation vocabulary, one path for the readers, the CLI
// and the settings resolver, wherever each part now lives.
pub use super::camera::check_camera;
pub use super::fields::{
    Field, ImageSpec, MAX_PROMPT_CHARS, PROVIDER_STYLES, Partial, Raw, describe, field_names,
    free_form_models, likely_field, own_field_typo, passthrough_reads,
};
pub use super::identity::{MAX_ID_BYTES, MAX_ID_CHARS, check_id};
pub use super::origin::Origin;
pub use super::settings_grammar::{check_http_url, parse_setting_duration, parse_submit_rate};
pub use super::suggest::{closest, unknown_name};
pub use crate::provider::kling::catalog::{CAMERA_TYPES, DEFAULT_MODEL, I2V_MODELS, T2V_MODELS};

/// Collects problems and turns raw items into [`Item`]s.
#[derive(Default)]
pub struct Validator {
    /// `provider.style: kling-gateway`: model names are free-form.
    pub gateway: bool,
    /// `provider.style: fal`: fields the manifest does not know are the
    /// model's input, passed through; `model` names the model.
    pub passthrough: bool,
    pub images: ImageChecker,
    /// The manifest's folder: relative paths in pass-through fields are read from here.
    pub base_dir: std::path::PathBuf,
    pub problems: Vec<Problem>,
    /// Files read besides the manifest itself (`items_from`), each with
    /// the sha256 (hex) of the bytes read.
    pub also_read: Vec<(std::path::PathBuf, String)>,
    defaults: Partial,
    ids: Ids,
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
            Field::Mode => p.mode = Some(one_of("mode", &text(raw)?, catalog::MODES)?),
            Field::Duration => p.duration = Some(parse_duration(raw)?),
            Field::AspectRatio => {
                p.aspect_ratio = Some(one_of("aspect_ratio", &text(raw)?, catalog::ASPECT_RATIOS)?)
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
        let known_model = catalog::is_official(model);
        if !self.gateway && !p.is_bad(Field::ModelName) && !p.is_bad(Field::Kind) {
            let list = catalog::models_for(kind);
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
            let durations = Durations::of(model, self.gateway && !known_model);
            let ok = match d.parse::<u32>() {
                Ok(v) => durations.allows(v),
                Err(_) => false,
            };
            if !ok {
                let expected = durations.expected();
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
            && !catalog::makes_sound(model)
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
                let (id, hash) = derived_id(&p, kind);
                (id, Some(hash))
            }
        };
        let label = origin.label();
        match self.ids.register(&id, derived, &label) {
            Some(Clash::CaseTwin(msg)) => self.problem(at(Field::Id), msg),
            Some(Clash::Duplicate(msg)) => {
                let loc = if derived.is_some() {
                    origin.at(None)
                } else {
                    at(Field::Id)
                };
                self.problem(loc, msg);
            }
            None => {}
        }

        let (extra_files, file_problems) =
            super::passthrough::local_files(&p.extra, &self.base_dir);
        for (field, message) in file_problems {
            let written = p.extra_at.iter().find(|(k, _)| *k == field);
            let origin = match written {
                Some((_, pos)) => origin.with_pos(*pos),
                None => origin,
            };
            self.problem(origin.at(Some(&field)), message);
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
            extra_files,
        })
    }
}

#[cfg(test)]
mod tests;
