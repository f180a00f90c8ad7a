//! Telling a broken setup from a bad item.
//!
//! A wrong base URL, a dead port, a private CA or a redirecting proxy make
//! *every* request fail, and each failure on its own looks like an item
//! problem (404, unknown route) or a transient one (connection refused). Failing items
//! for it marks a whole batch `failed` in seconds and the fixed rerun does
//! nothing for them; retrying it forever leaves a bar stuck at "submitting".
//! [`SetupWatch`] counts such failures across all requests: any real answer
//! from the API resets the count, and a few in a row with none between stop
//! the batch with exit 3 and the items still pending.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::provider::ErrorClass;

/// Setup-looking failures in a row (with no API answer between) that stop the batch.
pub const SETUP_STREAK: u32 = 3;

/// Shared by the submitter, recovery and the pollers of one run.
#[derive(Debug, Default)]
pub struct SetupWatch {
    /// The API has answered at least once in this run.
    answered: AtomicBool,
    streak: AtomicU32,
}

impl SetupWatch {
    /// A request reached the API (a success, or an error the API itself sent).
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
    }

    /// Account for the outcome of one request by its error class (`None`:
    /// success). True when the batch should stop because of the setup.
    pub fn observe(&self, class: Option<ErrorClass>) -> bool {
        match class {
            Some(ErrorClass::Setup) => self.bump(),
            // Unreachable after the API has answered is a network blip.
            Some(ErrorClass::Unreachable) => !self.answered.load(Ordering::Relaxed) && self.bump(),
            // A timeout or a dropped connection says nothing either way.
            Some(ErrorClass::Ambiguous) => false,
            _ => {
                self.answered();
                false
            }
        }
    }

    fn bump(&self) -> bool {
        self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= SETUP_STREAK
    }
}

/// What a setup failure tells the user to do. Provider-neutral: the error's
/// own message names the URL that failed.
pub fn hint(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Unreachable => {
            "nothing answers at that address: check the host and port of the base URL (--base-url or VIDBATCH_BASE_URL) and your network; items not yet sent stay pending, rerun the same command once it is fixed"
        }
        _ => {
            "this is about the setup, not the items: check the base URL (--base-url or VIDBATCH_BASE_URL, including its path) and --provider; items not yet sent stay pending, rerun the same command once it is fixed"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn three_route_errors_in_a_row_stop_the_batch() {
        let w = SetupWatch::default();
        assert!(!w.observe(Some(Setup)));
        assert!(!w.observe(Some(Setup)));
        assert!(w.observe(Some(Setup)));
    }

    #[test]
    fn any_api_answer_resets_the_streak() {
        let w = SetupWatch::default();
        w.observe(Some(Setup));
        w.observe(Some(Setup));
        w.observe(Some(ItemInvalid)); // the API itself answered
        assert!(!w.observe(Some(Setup)));
        assert!(!w.observe(None));
    }

    #[test]
    fn unreachable_stops_only_before_the_api_ever_answered() {
        let fresh = SetupWatch::default();
        assert!(!fresh.observe(Some(Unreachable)));
        assert!(!fresh.observe(Some(Unreachable)));
        assert!(fresh.observe(Some(Unreachable)));

        let seen = SetupWatch::default();
        seen.observe(None);
        for _ in 0..10 {
            assert!(!seen.observe(Some(Unreachable)));
        }
    }

    #[test]
    fn ambiguous_outcomes_neither_count_nor_reset() {
        let w = SetupWatch::default();
        w.observe(Some(Setup));
        w.observe(Some(Setup));
        assert!(!w.observe(Some(Ambiguous)));
        assert!(w.observe(Some(Setup)));
    }
}
