//! "Did you mean …?" for unknown names: which expected name the user most
//! likely meant. Main function: [`closest`].
//!
//! Pure edit distance picks `mode` for `model` and nothing for `neg_prompt`,
//! so candidates are ranked by how people actually get names wrong, best
//! first: the same name in another spelling (`modelName`, `Aspect-Ratio`);
//! a known alias from other tools and APIs (`model`, `prompt_text`, `ratio`);
//! a one-letter typo; an abbreviation (`neg_prompt`, `cfg`, `dur`); a longer
//! name around a known one (`prompt_text`, `durations`); containment
//! (`tail`); then two typos. Aliases only apply to the names expected here.

/// Names used by other video APIs and tools, and the field they mean.
const ALIASES: &[(&str, &str)] = &[
    ("model", "model_name"),
    ("model_id", "model_name"),
    ("prompt_text", "prompt"),
    ("text", "prompt"),
    ("text_prompt", "prompt"),
    ("positive_prompt", "prompt"),
    ("neg_prompt", "negative_prompt"),
    ("negative", "negative_prompt"),
    ("negative_text", "negative_prompt"),
    ("ratio", "aspect_ratio"),
    ("aspect", "aspect_ratio"),
    ("ar", "aspect_ratio"),
    ("cfg", "cfg_scale"),
    ("guidance", "cfg_scale"),
    ("guidance_scale", "cfg_scale"),
    ("length", "duration"),
    ("seconds", "duration"),
    ("secs", "duration"),
    ("duration_seconds", "duration"),
    ("img", "image"),
    ("image_url", "image"),
    ("input_image", "image"),
    ("start_image", "image"),
    ("first_frame", "image"),
    ("start_frame", "image"),
    ("end_image", "image_tail"),
    ("last_frame", "image_tail"),
    ("end_frame", "image_tail"),
    ("tail_image", "image_tail"),
    ("image_end", "image_tail"),
    ("camera", "camera_control"),
    ("camera_motion", "camera_control"),
    ("camera_movement", "camera_control"),
    ("audio", "sound"),
    ("with_audio", "sound"),
    ("generate_audio", "sound"),
    ("quality", "mode"),
    ("task_type", "kind"),
    ("endpoint", "kind"),
    ("item", "items"),
    ("rows", "items"),
    ("rate", "submit_rate"),
    ("parallel", "concurrency"),
    ("max_concurrency", "concurrency"),
    ("timeout", "task_timeout"),
    ("url", "base_url"),
    ("endpoint_url", "base_url"),
];

/// "unknown field `promt`; expected one of ..." with a suggestion when one is likely.
pub fn unknown_name(what: &str, name: &str, expected: &[&str]) -> String {
    let list = expected
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let shown: String = name.chars().take(60).collect();
    match closest(name, expected) {
        Some(n) => {
            format!("unknown {what} `{shown}` (did you mean `{n}`?); expected one of {list}")
        }
        None => format!("unknown {what} `{shown}`; expected one of {list}"),
    }
}

/// The expected name `name` most likely meant, if any is likely at all.
pub fn closest<'a>(name: &str, expected: &[&'a str]) -> Option<&'a str> {
    // Names longer than any expected name are not a slip of one; skip the work.
    if name.chars().count() > 40 {
        return None;
    }
    let norm = normalize(name);
    expected
        .iter()
        .filter_map(|c| rank(&norm, c).map(|r| (r, *c)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, c)| c)
}

/// Lower is likelier: (rule, edit distance, length difference).
fn rank(name: &str, cand: &str) -> Option<(u8, usize, usize)> {
    let d = edit_distance(name, cand);
    let len_diff = name.len().abs_diff(cand.len());
    let tie = |rule: u8| Some((rule, d, len_diff));
    if name == cand {
        return tie(0);
    }
    if ALIASES.iter().any(|(a, t)| *a == name && *t == cand) {
        return tie(1);
    }
    if d == 1 {
        return tie(2);
    }
    if name.len() >= 3 && cand.starts_with(name) {
        return tie(3);
    }
    if abbreviates(name, cand) {
        return tie(4);
    }
    if cand.len() >= 2 && name.starts_with(cand) {
        return tie(5);
    }
    if (name.len() >= 4 && cand.contains(name)) || (cand.len() >= 4 && name.contains(cand)) {
        return tie(6);
    }
    if d == 2 && name.len() > 3 {
        return tie(7);
    }
    None
}

/// `neg_prompt` for `negative_prompt`: as many `_` words, each a prefix of its own.
fn abbreviates(name: &str, cand: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (name.split('_').collect(), cand.split('_').collect());
    a.len() == b.len()
        && a.len() > 1
        && a.iter()
            .zip(&b)
            .all(|(x, y)| !x.is_empty() && y.starts_with(x))
}

/// `modelName`, `Model-Name`, ` model name ` → `model_name`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.trim().chars() {
        if c.is_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            prev_lower = false;
        } else if c == '-' || c == ' ' || c == '.' {
            out.push('_');
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &[
        "id",
        "kind",
        "prompt",
        "negative_prompt",
        "image",
        "image_tail",
        "model_name",
        "mode",
        "duration",
        "aspect_ratio",
        "cfg_scale",
        "camera_control",
        "sound",
    ];

    fn meant(name: &str) -> Option<&'static str> {
        closest(name, FIELDS)
    }

    #[test]
    fn the_field_people_mean_beats_the_nearest_spelling() {
        assert_eq!(meant("model"), Some("model_name"), "not `mode`");
        assert_eq!(meant("prompt_text"), Some("prompt"));
        assert_eq!(meant("neg_prompt"), Some("negative_prompt"));
        assert_eq!(meant("ratio"), Some("aspect_ratio"));
    }

    #[test]
    fn other_spellings_of_the_same_name() {
        assert_eq!(meant("modelName"), Some("model_name"));
        assert_eq!(meant("Aspect-Ratio"), Some("aspect_ratio"));
        assert_eq!(meant("NEGATIVE_PROMPT"), Some("negative_prompt"));
        assert_eq!(meant("cameraControl"), Some("camera_control"));
    }

    #[test]
    fn typos_abbreviations_and_longer_names() {
        assert_eq!(meant("promt"), Some("prompt"));
        assert_eq!(
            meant("modle"),
            Some("mode"),
            "two letters swapped: the short one"
        );
        assert_eq!(meant("imagetail"), Some("image_tail"), "not `image`");
        assert_eq!(meant("cfg"), Some("cfg_scale"));
        assert_eq!(meant("dur"), Some("duration"));
        assert_eq!(meant("durations"), Some("duration"));
        assert_eq!(meant("tail"), Some("image_tail"));
        assert_eq!(meant("last_frame"), Some("image_tail"));
    }

    #[test]
    fn unrelated_names_get_no_suggestion() {
        for name in ["zzzzzzzz", "notes", "seed", "x", "tags", &"a".repeat(50)] {
            assert_eq!(meant(name), None, "{name}");
        }
    }

    #[test]
    fn aliases_only_name_what_is_expected_here() {
        assert_eq!(closest("model", &["style", "base_url"]), None);
        assert_eq!(
            closest("rate", &["concurrency", "submit_rate"]),
            Some("submit_rate")
        );
        assert_eq!(
            closest("item", &["defaults", "items", "items_from"]),
            Some("items")
        );
    }

    #[test]
    fn the_message_names_the_suggestion_and_the_list() {
        let m = unknown_name("field", "model", FIELDS);
        assert!(
            m.starts_with(
                "unknown field `model` (did you mean `model_name`?); expected one of `id`"
            ),
            "{m}"
        );
    }
}
