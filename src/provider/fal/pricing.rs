//! fal's prices, as far as vidbatch knows them: not at all.
//!
//! fal prices each model on its own page, by the second of video or by the
//! video, and the queue API's answers carry no charge. providers.md has only
//! third-party summaries by model *family* ("Kling v3 std i2v $0.084/s"),
//! not prices tied to a model id we could match, so every item is
//! [`Price::Unknown`]: `plan` counts items by model and says the cost is
//! unknown, and a spend cap holds every fal item back rather than guess.

use crate::manifest::Item;
use crate::provider::price::{Price, PriceList, Quote};

/// No price list: every item is unknown.
pub static PRICE_LIST: PriceList = PriceList {
    unit: None,
    note: "fal prices each model by the second or by the video; see each model's page (the charge is in fal's billing, not in the API's answer)",
    settings: &[],
};

/// No item has a known price.
pub fn price(_item: &Item) -> Price {
    Price::Unknown
}

/// The model an item runs on, and no price.
pub fn quote(item: &Item) -> Quote<'_> {
    Quote {
        model: item.model_name.as_deref().unwrap_or("(no model)"),
        settings: Vec::new(),
        price: Price::Unknown,
        unpriced_as: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;
    use crate::provider::price::Estimate;

    #[test]
    fn items_are_counted_by_model_and_never_priced() {
        let item = |model: &str| Item {
            id: "a".into(),
            origin: "items[0]".into(),
            kind: Kind::Text2Video,
            prompt: Some("x".into()),
            negative_prompt: None,
            image: None,
            image_tail: None,
            model_name: Some(model.into()),
            mode: None,
            duration: Some("5".into()),
            aspect_ratio: None,
            cfg_scale: None,
            camera_control: None,
            sound: None,
            extra: None,
            extra_files: Vec::new(),
        };
        let mut e = Estimate::new(&PRICE_LIST);
        for m in [
            "fal-ai/veo3",
            "fal-ai/veo3",
            "fal-ai/kling-video/v1/standard/text-to-video",
        ] {
            let it = item(m);
            e.add(it.kind.as_str(), quote(&it));
        }
        assert_eq!(e.by_model["fal-ai/veo3"], 2);
        assert_eq!((e.estimated_units, e.unpriced_items), (0.0, 3));
        assert!(e.by_setting.is_empty(), "no Kling mode or duration counts");
        assert!(PRICE_LIST.unit.is_none());
    }
}
