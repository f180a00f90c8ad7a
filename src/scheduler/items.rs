//! Which items the engine runs, and nothing they send.
//!
//! The engine keeps, per item, its id (for keys, events, file names) and its
//! kind (the route its polls go to): a few dozen bytes. What a create sends
//! — prompt, settings, image paths — is read from a [`JobSource`] a page at
//! a time, just before it is sent, so a 100,000-item batch does not hold
//! 100,000 requests for the whole run.

use crate::job::Kind;
use crate::state::Progress;

pub(super) struct Items {
    /// Every id, one after another (no allocation per item: 100k boxed
    /// ids cost ~48 bytes each, these ~14).
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<u32>,
    kinds: Vec<Kind>,
}

impl Items {
    /// The items of `records` (manifest order).
    pub(super) fn of(records: &[Progress]) -> Items {
        let mut text = String::with_capacity(records.iter().map(|r| r.id.len()).sum());
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            text.push_str(&r.id);
            // Ids are short (the manifest checks them); 4 GiB of them is not a batch.
            ends.push(u32::try_from(text.len()).expect("item ids under 4 GiB in all"));
        }
        Items {
            text,
            ends,
            kinds: records.iter().map(|r| r.kind).collect(),
        }
    }

    pub(super) fn id(&self, idx: usize) -> &str {
        let start = match idx {
            0 => 0,
            i => self.ends[i - 1] as usize,
        };
        &self.text[start..self.ends[idx] as usize]
    }

    pub(super) fn kind(&self, idx: usize) -> Kind {
        self.kinds[idx]
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len()).map(|i| self.id(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_as_given_in_order() {
        let records: Vec<Progress> = ["a", "", "猫-2", "clip-10"]
            .iter()
            .map(|id| Progress::new(id, Kind::Text2Video))
            .collect();
        let items = Items::of(&records);
        assert_eq!(items.id(2), "猫-2");
        assert_eq!(
            items.ids().collect::<Vec<_>>(),
            vec!["a", "", "猫-2", "clip-10"]
        );
    }
}
