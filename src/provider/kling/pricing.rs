//! Kling's prices: units per task from the table in kling-api.md §14, with
//! the API's defaults applied to absent fields. Main entry: [`quote`] (what
//! `vidbatch plan` counts) and [`price`] (what the spend cap and the state
//! keep per item).
//!
//! The table is third-party and marked uncertain there, so every figure is an
//! *estimate*; the authoritative charge is each task's `final_unit_deduction`.
//! It lives with the provider because it is Kling's knowledge: the plan and
//! the engine ask [`crate::provider::registry::price`] and never read it.

use super::catalog::DEFAULT_MODEL;
use crate::manifest::Item;
use crate::provider::price::{Price, PriceList, Quote};

/// What the API uses when a field is absent (kling-api.md §4–5).
pub const DEFAULT_MODE: &str = "std";
pub const DEFAULT_DURATION: &str = "5";

/// The caveat printed with every estimate.
pub const NOTE: &str = "Estimate only: unit prices are from kling-api.md §14 (third-party, uncertain); \
the real charge is each task's final_unit_deduction. Absent fields count as the API defaults \
(kling-v1, std, 5s). kling-v3, kling-v2-6 std, durations other than 5/10 and gateway model names \
are not priced. kling-v2-6 pro with sound uses the higher of two conflicting prices.";

/// Kling prices in units, by model, mode and duration.
pub static PRICE_LIST: PriceList = PriceList {
    unit: Some("Kling units"),
    note: NOTE,
    settings: &[("mode", ""), ("duration", "s")],
};

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

/// The estimated price of one item's task, API defaults applied (as
/// [`quote`], without building the counts: the run asks this per item).
pub fn price(item: &Item) -> Price {
    match units_per_task(
        item.model_name.as_deref().unwrap_or(DEFAULT_MODEL),
        item.mode.as_deref().unwrap_or(DEFAULT_MODE),
        item.duration.as_deref().unwrap_or(DEFAULT_DURATION),
        item.sound.as_deref() == Some("on"),
    ) {
        Some(u) => Price::Units(u),
        None => Price::Unknown,
    }
}

/// One item as the table prices it: model, mode and duration with the API
/// defaults applied, and its units (or what it is, when unpriced).
pub fn quote(item: &Item) -> Quote<'_> {
    let model = item.model_name.as_deref().unwrap_or(DEFAULT_MODEL);
    let mode = item.mode.as_deref().unwrap_or(DEFAULT_MODE);
    let duration = item.duration.as_deref().unwrap_or(DEFAULT_DURATION);
    let sound_on = item.sound.as_deref() == Some("on");
    let (price, unpriced_as) = match units_per_task(model, mode, duration, sound_on) {
        Some(u) => (Price::Units(u), None),
        None => {
            let sound = if sound_on { " sound" } else { "" };
            (
                Price::Unknown,
                Some(format!("{model} {mode} {duration}s{sound}")),
            )
        }
    };
    Quote {
        model,
        settings: vec![mode, duration],
        price,
        unpriced_as,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;
    use crate::provider::price::Estimate;

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

    fn estimate(items: &[Item]) -> Estimate {
        let mut e = Estimate::new(&PRICE_LIST);
        for it in items {
            e.add(it.kind.as_str(), quote(it));
        }
        e
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
    fn an_item_is_priced_with_the_api_defaults_like_plan() {
        let mut it = item(Some("kling-v1-6"), Some("pro"), Some("10"));
        assert_eq!(price(&it), Price::Units(7.0), "kling-v1-6 pro 10s");
        it.model_name = None;
        it.mode = None;
        it.duration = None;
        assert_eq!(price(&it), Price::Units(1.0), "kling-v1 std 5s");
        it.model_name = Some("kling-v3".into());
        assert_eq!(price(&it), Price::Unknown);
    }

    #[test]
    fn the_run_and_the_plan_price_an_item_alike() {
        let mut it = item(Some("kling-v2-6"), Some("pro"), None);
        for sound in [None, Some("on"), Some("off")] {
            it.sound = sound.map(Into::into);
            assert_eq!(price(&it), quote(&it).price, "sound {sound:?}");
        }
        let unpriced = item(Some("kling-v3"), None, None);
        assert_eq!(price(&unpriced), quote(&unpriced).price);
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
        assert_eq!(e.by("mode").unwrap()["std"], 3);
        assert_eq!(e.by("duration").unwrap()["5"], 2);
        assert_eq!(e.by_kind["text2video"], 4);
        assert_eq!(e.unpriced["kling-v3 std 8s"], 1);
        assert!(e.note.starts_with("Estimate only"));
    }

    #[test]
    fn sound_shows_in_what_an_unpriced_item_is() {
        let mut it = item(Some("kling-v3"), None, None);
        it.sound = Some("on".into());
        assert_eq!(
            quote(&it).unpriced_as.as_deref(),
            Some("kling-v3 std 5s sound")
        );
    }

    #[test]
    fn empty_estimate_is_zero() {
        let e = estimate(&[]);
        assert_eq!((e.items, e.estimated_units, e.unpriced_items), (0, 0.0, 0));
    }
}
