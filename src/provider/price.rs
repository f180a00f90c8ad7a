//! What a batch may cost, in terms every provider can answer: [`Price`] for
//! one item, [`Estimate`] for a manifest (`vidbatch plan`, `validate`).
//!
//! Prices are provider knowledge (Kling's unit table, a fal model's price per
//! second), so each provider quotes its own items ([`Quote`]) and describes
//! its price list once ([`PriceList`]); this module only adds them up. The
//! spend cap (`--max-units`) and the state's estimate per item read the same
//! [`Price`], so `plan` and `run` never disagree. No price here is a charge:
//! what a task really cost is what the provider reports when it ends.

use std::collections::BTreeMap;

/// What one item's task is estimated to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Price {
    /// In the provider's own billing units (Kling: units per task).
    Units(f64),
    /// The provider has no price for it: counted, never guessed, and held
    /// back by a spend cap.
    Unknown,
}

impl Price {
    /// The units, when known.
    pub fn units(self) -> Option<f64> {
        match self {
            Price::Units(u) => Some(u),
            Price::Unknown => None,
        }
    }
}

/// How a provider prices, said once for a whole estimate.
#[derive(Debug, PartialEq)]
pub struct PriceList {
    /// What the units are called ("Kling units"); `None` when the provider
    /// has no price list at all (every item is unknown).
    pub unit: Option<&'static str>,
    /// The caveat printed with every estimate.
    pub note: &'static str,
    /// The settings besides the model that decide a price, in display order,
    /// each with the suffix its values take in a table (`("duration", "s")`).
    /// Counted as `by_<name>`.
    pub settings: &'static [(&'static str, &'static str)],
}

/// One item as its provider prices it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote<'a> {
    /// The model the task runs on, the provider's default applied.
    pub model: &'a str,
    /// The values of [`PriceList::settings`], in that order, defaults applied.
    pub settings: Vec<&'a str>,
    pub price: Price,
    /// What the item is when it has no price ("kling-v3 std 8s"), for the
    /// list of unpriced items.
    pub unpriced_as: Option<String>,
}

/// Counts and the estimated cost of a list of items.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub items: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_model: BTreeMap<String, u64>,
    /// `by_<setting>` → value → count, one per [`PriceList::settings`]
    /// (Kling: `by_mode`, `by_duration` keyed by seconds as a string).
    #[serde(flatten)]
    pub by_setting: BTreeMap<String, BTreeMap<String, u64>>,
    /// Sum over priced items, in the provider's units.
    pub estimated_units: f64,
    /// Items without a price (counted, not guessed).
    pub unpriced_items: u64,
    /// Why items are unpriced: "kling-v3 std 5s" → count.
    pub unpriced: BTreeMap<String, u64>,
    pub note: &'static str,
    #[serde(skip)]
    pub list: &'static PriceList,
}

impl Estimate {
    /// An empty estimate under `list`.
    pub fn new(list: &'static PriceList) -> Estimate {
        Estimate {
            items: 0,
            by_kind: BTreeMap::new(),
            by_model: BTreeMap::new(),
            by_setting: list
                .settings
                .iter()
                .map(|(name, _)| (format!("by_{name}"), BTreeMap::new()))
                .collect(),
            estimated_units: 0.0,
            unpriced_items: 0,
            unpriced: BTreeMap::new(),
            note: list.note,
            list,
        }
    }

    /// Count one item of `kind` as quoted.
    pub fn add(&mut self, kind: &str, quote: Quote<'_>) {
        self.items += 1;
        *self.by_kind.entry(kind.to_string()).or_default() += 1;
        *self.by_model.entry(quote.model.to_string()).or_default() += 1;
        for ((name, _), value) in self.list.settings.iter().zip(&quote.settings) {
            if let Some(counts) = self.by_setting.get_mut(&format!("by_{name}")) {
                *counts.entry((*value).to_string()).or_default() += 1;
            }
        }
        match quote.price {
            Price::Units(u) => self.estimated_units += u,
            Price::Unknown => {
                self.unpriced_items += 1;
                let what = quote.unpriced_as.unwrap_or_else(|| quote.model.to_string());
                *self.unpriced.entry(what).or_default() += 1;
            }
        }
    }

    /// The counts of one setting (`"mode"`), if the provider prices by it.
    pub fn by(&self, setting: &str) -> Option<&BTreeMap<String, u64>> {
        self.by_setting.get(&format!("by_{setting}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LIST: PriceList = PriceList {
        unit: Some("test units"),
        note: "a test list",
        settings: &[("size", "")],
    };

    fn quote<'a>(model: &'a str, size: &'static str, price: Price) -> Quote<'a> {
        Quote {
            model,
            settings: vec![size],
            price,
            unpriced_as: (price == Price::Unknown).then(|| format!("{model} {size}")),
        }
    }

    #[test]
    fn priced_items_add_up_and_unpriced_ones_are_counted_by_what_they_are() {
        let mut e = Estimate::new(&LIST);
        e.add("text2video", quote("a", "big", Price::Units(2.0)));
        e.add("text2video", quote("a", "small", Price::Units(0.5)));
        e.add("image2video", quote("b", "big", Price::Unknown));
        assert_eq!((e.items, e.estimated_units, e.unpriced_items), (3, 2.5, 1));
        assert_eq!(e.by_model["a"], 2);
        assert_eq!(e.by_kind["image2video"], 1);
        assert_eq!(e.by("size").unwrap()["big"], 2);
        assert_eq!(e.unpriced["b big"], 1);
    }

    #[test]
    fn settings_are_flat_in_the_json() {
        let mut e = Estimate::new(&LIST);
        e.add("text2video", quote("a", "big", Price::Units(1.0)));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["by_size"]["big"], 1);
        assert_eq!(v["note"], "a test list");
        assert!(v.get("list").is_none());
    }

    #[test]
    fn an_empty_estimate_is_zero() {
        let e = Estimate::new(&LIST);
        assert_eq!((e.items, e.estimated_units, e.unpriced_items), (0, 0.0, 0));
    }
}
