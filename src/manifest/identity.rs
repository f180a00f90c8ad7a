//! Item identity: ids are file names ([`check_id`]), items without one get
//! an id derived from their content, and no two items may share an id, not
//! even one that differs only in letter case.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::Kind;
use super::fields::{Partial, shorten};

/// Longest item id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest item id in UTF-8 bytes: a file name has 255, and the longest name
/// vidbatch makes from an id adds 9 (`<id>.mp4.part`, `<id>.videos`).
pub const MAX_ID_BYTES: usize = 200;

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

/// The content-derived id of an item that names none: `item-` and 12 hex
/// digits of the SHA-256 of its canonical text, with the full hash to tell
/// identical items from a (vanishingly unlikely) prefix collision.
pub(super) fn derived_id(p: &Partial, kind: Kind) -> (String, [u8; 32]) {
    let hash: [u8; 32] = Sha256::digest(p.canonical(kind).as_bytes()).into();
    (format!("item-{}", hex::encode(&hash[..6])), hash)
}

impl Partial {
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

struct Seen {
    id: String,
    origin: String,
    derived: Option<[u8; 32]>,
}

/// Why an id cannot be used: its message, by where the problem points.
pub(super) enum Clash {
    /// Differs from an earlier id only in letter case (points at the id).
    CaseTwin(String),
    /// The same id as an earlier item (points at the id, or at the item when
    /// the id was derived).
    Duplicate(String),
}

/// The ids seen so far in one manifest.
#[derive(Default)]
pub(super) struct Ids {
    seen: HashMap<String, Seen>,
}

impl Ids {
    /// Record `id` for the item at `origin`, or say why it clashes with an
    /// earlier item (the earlier one keeps the id).
    pub(super) fn register(
        &mut self,
        id: &str,
        derived: Option<[u8; 32]>,
        origin: &str,
    ) -> Option<Clash> {
        // Keyed case-insensitively: on macOS and Windows `Cat` and `cat`
        // are one file, and one paid video would overwrite the other.
        let seen_key = id.to_lowercase();
        match self.seen.get(&seen_key) {
            Some(prev) if prev.id != id => Some(Clash::CaseTwin(format!(
                "id `{id}` differs from `{}` ({}) only in letter case; they would share one video file on macOS and Windows",
                prev.id, prev.origin
            ))),
            Some(prev) => Some(Clash::Duplicate(match (derived, prev.derived) {
                (Some(a), Some(b)) if a == b => format!(
                    "this item is identical to {} (both get the content-derived id `{id}`); add an `id` to one of them if you really want both",
                    prev.origin
                ),
                (Some(_), Some(_)) => format!(
                    "content-derived id `{id}` collides with {}; add an `id` to one of them",
                    prev.origin
                ),
                _ => format!("duplicate id `{id}`: also used by {}", prev.origin),
            })),
            None => {
                self.seen.insert(
                    seen_key,
                    Seen {
                        id: id.to_string(),
                        origin: origin.to_string(),
                        derived,
                    },
                );
                None
            }
        }
    }
}
