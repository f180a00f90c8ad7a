//! The create rate of one account: a token bucket that may adapt.
//!
//! Providers rarely say how fast creates may come: some document no limit
//! at all, others answer "too fast" (a rate-limit error) when pushed, so a
//! fixed default either leaves the account idle or trips the limit. With
//! `auto` the pace starts at a modest rate, speeds up by a quarter after
//! every few accepted creates, and halves on a rate-limit answer — the same
//! additive-increase / multiplicative-decrease the in-flight bound uses. An
//! explicit `--submit-rate` is fixed.
//!
//! The bucket holds up to a tenth of a second of permits, so slots freed
//! together are refilled together instead of one tick at a time, and a
//! high rate does not depend on the timer's resolution. (Refilling every
//! slot freed by an ended task at once, beyond that, was tried and made
//! the default-flags benchmark slower; so did a bucket that starts full,
//! which sends a whole first wave at once: see benches/README.md.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Successful creates in a row after which an adaptive pace speeds up.
const SPEED_UP_AFTER: u32 = 2;
/// Slowest an adaptive pace goes, creates per second.
const MIN_RATE: f64 = 0.2;

#[derive(Debug)]
pub struct Pace {
    state: Mutex<State>,
    /// Fastest an adaptive pace goes; `None`: fixed.
    ceiling: Option<f64>,
}

#[derive(Debug)]
struct State {
    per_second: f64,
    tokens: f64,
    last: Instant,
    successes: u32,
}

impl Pace {
    /// A fixed pace of `per_second` creates per second.
    pub fn fixed(per_second: f64) -> Pace {
        Pace::new(per_second, None)
    }

    /// A pace that starts at `start` and adapts up to `ceiling`.
    pub fn adaptive(start: f64, ceiling: f64) -> Pace {
        Pace::new(start.min(ceiling), Some(ceiling))
    }

    fn new(per_second: f64, ceiling: Option<f64>) -> Pace {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            MIN_RATE
        };
        Pace {
            state: Mutex::new(State {
                per_second,
                tokens: 1.0,
                last: Instant::now(),
                successes: 0,
            }),
            ceiling,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a permit if one is there now; else how long until one is.
    pub fn check(&self) -> Result<(), Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        let burst = (s.per_second / 10.0).max(1.0);
        let earned = now.duration_since(s.last).as_secs_f64() * s.per_second;
        s.tokens = (s.tokens + earned).min(burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / s.per_second))
        }
    }

    /// Wait for a permit and take it.
    pub async fn until_ready(&self) {
        while let Err(wait) = self.check() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A create was accepted.
    pub fn succeeded(&self) {
        let Some(ceiling) = self.ceiling else {
            return;
        };
        let mut s = self.lock();
        s.successes += 1;
        if s.successes >= SPEED_UP_AFTER {
            s.successes = 0;
            s.per_second = (s.per_second * 1.25).min(ceiling);
        }
    }

    /// The provider said "too fast".
    pub fn too_fast(&self) {
        if self.ceiling.is_none() {
            return;
        }
        let mut s = self.lock();
        s.successes = 0;
        s.per_second = (s.per_second / 2.0).max(MIN_RATE);
        s.tokens = s.tokens.min(0.0);
    }

    /// Creates per second now.
    pub fn rate(&self) -> f64 {
        self.lock().per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_pace_never_changes() {
        let p = Pace::fixed(5.0);
        for _ in 0..100 {
            p.succeeded();
        }
        p.too_fast();
        assert_eq!(p.rate(), 5.0);
    }

    #[test]
    fn an_adaptive_pace_speeds_up_on_success_and_halves_when_told_too_fast() {
        let p = Pace::adaptive(10.0, 40.0);
        for _ in 0..SPEED_UP_AFTER {
            p.succeeded();
        }
        assert_eq!(p.rate(), 12.5);
        for _ in 0..200 {
            p.succeeded();
        }
        assert_eq!(p.rate(), 40.0, "never above the ceiling");
        p.too_fast();
        assert_eq!(p.rate(), 20.0);
        for _ in 0..20 {
            p.too_fast();
        }
        assert_eq!(p.rate(), MIN_RATE);
    }

    #[test]
    fn permits_come_at_the_rate_with_a_tenth_of_a_second_of_burst() {
        let p = Pace::fixed(100.0);
        std::thread::sleep(Duration::from_millis(200));
        let burst = (0..50).take_while(|_| p.check().is_ok()).count();
        assert_eq!(burst, 10, "a tenth of a second of permits at most");
        let wait = p.check().unwrap_err();
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
    }
}
