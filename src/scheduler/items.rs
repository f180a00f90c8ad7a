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
    ids: Vec<Box<str>>,
    kinds: Vec<Kind>,
}

impl Items {
    /// The items of `records` (manifest order); their ids are moved out.
    pub(super) fn of(records: &mut [Progress]) -> Items {
        Items {
            ids: records
                .iter_mut()
                .map(|r| std::mem::take(&mut r.id))
                .collect(),
            kinds: records.iter().map(|r| r.kind).collect(),
        }
    }

    pub(super) fn id(&self, idx: usize) -> &str {
        &self.ids[idx]
    }

    pub(super) fn kind(&self, idx: usize) -> Kind {
        self.kinds[idx]
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(|s| &**s)
    }
}
