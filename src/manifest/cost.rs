//! Offline cost estimate for `vidbatch plan`: item counts and Kling units from
//! the price table in kling-api.md §14. Main entry: [`estimate`] → [`Estimate`].
//!
//! The table is third-party and marked uncertain there, so everything here is
//! an *estimate*; the authoritative charge is each task's
//! `final_unit_deduction`. Pure functions, no I/O.

use std::collections::BTreeMap;

use super::Item;

/// What the API uses when a field is absent (kling-api.md §4–5).
pub const DEFAULT_MODEL: &str = super::validate::DEFAULT_MODEL;
pub const DEFAULT_MODE: &str = "std";
pub const DEFAULT_DURATION: &str = "5";

/// The caveat printed with every estimate.
pub const NOTE: &str = "Estimate only: unit prices are from kling-api.md §14 (third-party, uncertain); \
the real charge is each task's final_unit_deduction. Absent fields count as the API defaults \
(kling-v1, std, 5s). kling-v3, kling-v2-6 std, durations other than 5/10 and gateway model names \
are not priced. kling-v2-6 pro with sound uses the higher of two conflicting prices.";

/// Units for one task, or `None` when the table has no price for it.
pub fn units_per_task(model: &str, mode: &str, duration: &str, sound_on: bool) -> Option<f64> {
    let tens = match duration {
        "5" => false,
        "10" => true,
        _ => return None,
    };
    let pro = match mode {
        "std" => false,
        "pro" => true,
        _ => return None,
    };
    // (std 5s, pro 5s); 10s is twice the 5s price throughout the table.
    let five = match (model, pro) {
        ("kling-v1", false) => 1.0,
        ("kling-v1", true) => 3.5,
        ("kling-v1-5" | "kling-v1-6" | "kling-v2-1", false) => 2.0,
        ("kling-v1-5" | "kling-v1-6" | "kling-v2-1", true) => 3.5,
        // One price regardless of mode.
        ("kling-v2-master" | "kling-v2-1-master", _) => 10.0,
        ("kling-v2-5-turbo", false) => 1.5,
        ("kling-v2-5-turbo", true) => 2.5,
        ("kling-v2-6", true) if sound_on => 5.0,
        ("kling-v2-6", true) => 2.5,
        _ => return None,
    };
    Some(if tens { five * 2.0 } else { five })
}

/// Counts and the estimated cost of a list of items.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub items: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_model: BTreeMap<String, u64>,
    pub by_mode: BTreeMap<String, u64>,
    /// Keyed by seconds as a string ("5", "10").
    pub by_duration: BTreeMap<String, u64>,
    /// Sum over priced items, in Kling units.
    pub estimated_units: f64,
    /// Items the table has no price for (counted, not guessed).
    pub unpriced_items: u64,
    /// Why items are unpriced: "kling-v3 std 5s" → count.
    pub unpriced: BTreeMap<String, u64>,
    pub note: &'static str,
}

/// Estimated units of one item's task (API defaults applied), or `None`
/// when the table has no price for it.
pub fn item_units(item: &Item) -> Option<f64> {
    units_per_task(
        item.model_name.as_deref().unwrap_or(DEFAULT_MODEL),
        item.mode.as_deref().unwrap_or(DEFAULT_MODE),
        item.duration.as_deref().unwrap_or(DEFAULT_DURATION),
        item.sound.as_deref() == Some("on"),
    )
}

/// Count items by kind/model/mode/duration (API defaults applied) and sum their price.
pub fn estimate(items: &[Item]) -> Estimate {
    let mut e = Estimate {
        note: NOTE,
        ..Estimate::default()
    };
    for item in items {
        let model = item.model_name.as_deref().unwrap_or(DEFAULT_MODEL);
        let mode = item.mode.as_deref().unwrap_or(DEFAULT_MODE);
        let duration = item.duration.as_deref().unwrap_or(DEFAULT_DURATION);
        let sound_on = item.sound.as_deref() == Some("on");
        e.items += 1;
        *e.by_kind.entry(item.kind.as_str().to_string()).or_default() += 1;
        *e.by_model.entry(model.to_string()).or_default() += 1;
        *e.by_mode.entry(mode.to_string()).or_default() += 1;
        *e.by_duration.entry(duration.to_string()).or_default() += 1;
        match units_per_task(model, mode, duration, sound_on) {
            Some(u) => e.estimated_units += u,
            None => {
                e.unpriced_items += 1;
                let sound = if sound_on { " sound" } else { "" };
                *e.unpriced
                    .entry(format!("{model} {mode} {duration}s{sound}"))
                    .or_default() += 1;
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;

    fn item(model: Option<&str>, mode: Option<&str>, duration: Option<&str>) -> Item {
        Item {
            id: "a".into(),
            origin: "items[0]".into(),
            kind: Kind::Text2Video,
            prompt: Some("x".into()),
            negative_prompt: None,
            image: None,
            image_tail: None,
            model_name: model.map(Into::into),
            mode: mode.map(Into::into),
            duration: duration.map(Into::into),
            aspect_ratio: None,
            cfg_scale: None,
            camera_control: None,
            sound: None,
            extra: None,
            extra_files: Vec::new(),
        }
    }

    #[test]
    fn table_matches_kling_api_section_14() {
        let cases = [
            ("kling-v1", "std", 1.0, 2.0),
            ("kling-v1", "pro", 3.5, 7.0),
            ("kling-v1-5", "std", 2.0, 4.0),
            ("kling-v1-6", "pro", 3.5, 7.0),
            ("kling-v2-1", "std", 2.0, 4.0),
            ("kling-v2-5-turbo", "std", 1.5, 3.0),
            ("kling-v2-5-turbo", "pro", 2.5, 5.0),
            ("kling-v2-6", "pro", 2.5, 5.0),
        ];
        for (model, mode, five, ten) in cases {
            assert_eq!(
                units_per_task(model, mode, "5", false),
                Some(five),
                "{model} {mode} 5"
            );
            assert_eq!(
                units_per_task(model, mode, "10", false),
                Some(ten),
                "{model} {mode} 10"
            );
        }
    }

    #[test]
    fn masters_have_one_price_regardless_of_mode() {
        for model in ["kling-v2-master", "kling-v2-1-master"] {
            for mode in ["std", "pro"] {
                assert_eq!(units_per_task(model, mode, "5", false), Some(10.0));
                assert_eq!(units_per_task(model, mode, "10", false), Some(20.0));
            }
        }
    }

    #[test]
    fn unpriced_cases() {
        assert_eq!(units_per_task("kling-v2-6", "std", "5", false), None);
        assert_eq!(units_per_task("kling-v3", "pro", "5", false), None);
        assert_eq!(units_per_task("kling-v1", "std", "7", false), None);
        assert_eq!(units_per_task("MaaS_KL_V1.6", "std", "5", false), None);
    }

    #[test]
    fn v2_6_sound_uses_the_higher_conflicting_price() {
        assert_eq!(units_per_task("kling-v2-6", "pro", "5", true), Some(5.0));
        assert_eq!(units_per_task("kling-v2-6", "pro", "10", true), Some(10.0));
    }

    #[test]
    fn estimate_applies_defaults_and_counts_unpriced() {
        let items = [
            item(None, None, None),                                  // kling-v1 std 5 → 1
            item(Some("kling-v2-5-turbo"), Some("pro"), Some("10")), // 5
            item(Some("kling-v3"), None, Some("8")),                 // unpriced
            item(Some("kling-v2-6"), Some("std"), None),             // unpriced
        ];
        let e = estimate(&items);
        assert_eq!(e.items, 4);
        assert_eq!(e.estimated_units, 6.0);
        assert_eq!(e.unpriced_items, 2);
        assert_eq!(e.by_model["kling-v1"], 1);
        assert_eq!(e.by_mode["std"], 3);
        assert_eq!(e.by_duration["5"], 2);
        assert_eq!(e.by_kind["text2video"], 4);
        assert_eq!(e.unpriced["kling-v3 std 8s"], 1);
        assert!(e.note.starts_with("Estimate only"));
    }

    #[test]
    fn empty_estimate_is_zero() {
        let e = estimate(&[]);
        assert_eq!((e.items, e.estimated_units, e.unpriced_items), (0, 0.0, 0));
    }
}
