//! Seeded, order-independent fault and jitter decisions: each is a hash of
//! (seed, what, key, attempt) mapped to [0, 1), so a given request gets the
//! same answer in every run however concurrent clients interleave.

use super::EmulatorConfig;

/// Every fault rate, as the server applies them now: copied from the
/// configuration at start, zeroed by `EmulatorHandle::heal`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    pub create_5000: f64,
    pub create_ambiguous: f64,
    pub create_1302: f64,
    pub query_5001: f64,
    pub download_cut: f64,
    pub download_html: f64,
    pub download_json: f64,
    pub download_short: f64,
    pub download_trickle: f64,
    pub download_endless: f64,
    pub long_task_id: f64,
    pub redirect_download: f64,
    pub redirect_api: f64,
    pub callback_drop: f64,
}

impl Rates {
    pub(crate) fn from_config(c: &EmulatorConfig) -> Rates {
        Rates {
            create_5000: c.create_5000_rate,
            create_ambiguous: c.create_ambiguous_rate,
            create_1302: c.create_1302_rate,
            query_5001: c.query_5001_rate,
            download_cut: c.download_cut_rate,
            download_html: c.download_html_rate,
            download_json: c.download_json_rate,
            download_short: c.download_short_rate,
            download_trickle: c.download_trickle_rate,
            download_endless: c.download_endless_rate,
            long_task_id: c.long_task_id_rate,
            redirect_download: c.redirect_download_rate,
            redirect_api: c.redirect_api_rate,
            callback_drop: c.callback_drop_rate,
        }
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) determined by its inputs.
pub(crate) fn unit(seed: u64, what: &str, key: &str, attempt: u64) -> f64 {
    let mut h = mix(seed);
    for part in [what.as_bytes(), b"\x00", key.as_bytes()] {
        for &b in part {
            h = mix(h ^ u64::from(b));
        }
    }
    h = mix(h ^ attempt);
    // 53 high bits give every representable double in [0, 1).
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a fault with this rate fires for this (key, attempt).
pub(crate) fn fires(rate: f64, seed: u64, what: &str, key: &str, attempt: u64) -> bool {
    rate > 0.0 && unit(seed, what, key, attempt) < rate
}

/// A 64-bit hash, for ids and signatures that need no secrecy.
pub(crate) fn hash64(seed: u64, what: &str, n: u64) -> u64 {
    (unit(seed, what, "", n) * (1u64 << 53) as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_deterministic_and_in_range() {
        let a = unit(7, "create_5000", "ext-1", 0);
        assert_eq!(a, unit(7, "create_5000", "ext-1", 0));
        assert_ne!(a, unit(8, "create_5000", "ext-1", 0));
        assert_ne!(a, unit(7, "create_5000", "ext-1", 1));
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn rate_is_roughly_honoured() {
        let n = 20_000;
        let hits = (0..n)
            .filter(|i| fires(0.1, 3, "x", &format!("k{i}"), 0))
            .count();
        // 10% of 20,000 = 2,000; binomial sd ≈ 42, so ±300 is far outside noise.
        assert!((1_700..2_300).contains(&hits), "hits = {hits}");
        assert!(!fires(0.0, 3, "x", "k", 0));
        assert!(fires(1.0, 3, "x", "k", 0));
    }
}
