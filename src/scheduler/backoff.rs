//! Exponential backoff with jitter, honouring `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Longest wait between two tries of one request.
pub const CAP: Duration = Duration::from_secs(60);

/// Delay before try number `attempt + 1` (attempt 0 = first retry):
/// `base · 2^attempt`, capped, with "equal jitter" (half fixed, half random) so
/// many items backing off together spread out; never shorter than the
/// server's `Retry-After`.
pub fn delay(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let half = exp / 2;
    let jitter = if half.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=half)
    };
    let d = half + jitter;
    match retry_after {
        Some(ra) => d.max(ra.min(CAP * 5)),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        let base = Duration::from_millis(100);
        for attempt in 0..6 {
            let full = base * (1 << attempt);
            for _ in 0..50 {
                let d = delay(base, attempt, None);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn is_capped_and_honours_retry_after() {
        assert!(delay(Duration::from_secs(1), 30, None) <= CAP);
        let d = delay(Duration::from_millis(1), 0, Some(Duration::from_secs(7)));
        assert_eq!(d, Duration::from_secs(7));
    }
}
