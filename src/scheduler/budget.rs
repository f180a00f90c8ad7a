//! The spend cap (`--max-units`): never submit an item whose estimated units
//! would take the batch past the cap.
//!
//! The batch's spend is what it has committed: for every task created (in
//! this run or an earlier one) the units charged when the provider said so,
//! else the estimate. An item is submitted only if its estimate fits under
//! the cap *before* the create; a create that did not happen gives its
//! estimate back, a finished task replaces it with the real charge. An item
//! without an estimate (a model the price table does not know) is never
//! submitted under a cap: nothing could bound it.

use std::sync::Mutex;

/// Shared by the submit loop (reserves) and the coordinator (settles).
#[derive(Debug)]
pub struct Budget {
    limit: f64,
    committed: Mutex<f64>,
}

/// Why an item was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its estimate would take the batch past the cap.
    OverCap,
    /// No price is known for it, so the cap cannot be kept.
    Unpriced,
}

impl Budget {
    /// A cap of `limit` units, `already` of which earlier runs committed.
    pub fn new(limit: f64, already: f64) -> Budget {
        Budget {
            limit,
            committed: Mutex::new(already),
        }
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// Reserve an item's estimate if the total stays within the cap.
    pub fn try_reserve(&self, estimate: Option<f64>) -> Result<(), Held> {
        let units = estimate.ok_or(Held::Unpriced)?;
        let mut committed = self.lock();
        // A little slack for float noise on sums of halves.
        if *committed + units > self.limit + 1e-9 {
            return Err(Held::OverCap);
        }
        *committed += units;
        Ok(())
    }

    /// The create did not happen: the reservation is free again.
    pub fn give_back(&self, units: f64) {
        *self.lock() -= units;
    }

    /// The task finished and the provider said what it charged.
    pub fn settle(&self, estimate: f64, charged: f64) {
        *self.lock() += charged - estimate;
    }

    pub fn committed(&self) -> f64 {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_until_the_next_item_would_pass_the_cap() {
        let b = Budget::new(10.0, 2.0);
        assert_eq!(b.try_reserve(Some(4.0)), Ok(()));
        assert_eq!(b.try_reserve(Some(4.0)), Ok(()));
        assert_eq!(b.try_reserve(Some(4.0)), Err(Held::OverCap));
        // A cheaper one still fits exactly.
        assert_eq!(b.try_reserve(Some(0.0)), Ok(()));
        assert_eq!(b.committed(), 10.0);
    }

    #[test]
    fn unpriced_items_are_never_submitted_under_a_cap() {
        let b = Budget::new(1000.0, 0.0);
        assert_eq!(b.try_reserve(None), Err(Held::Unpriced));
    }

    #[test]
    fn creates_that_did_not_happen_give_back_and_charges_replace_estimates() {
        let b = Budget::new(10.0, 0.0);
        b.try_reserve(Some(6.0)).unwrap();
        b.give_back(6.0);
        b.try_reserve(Some(6.0)).unwrap();
        b.settle(6.0, 3.0);
        assert_eq!(b.committed(), 3.0);
        assert_eq!(b.try_reserve(Some(7.0)), Ok(()));
    }
}
