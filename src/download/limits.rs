//! What one download may cost: [`Limits`] (size cap, minimum throughput,
//! total deadline, longest silence), the [`Throughput`] meter that enforces
//! the minimum, and the size grammar (`500MB`, `4GiB`) the command line uses.
//!
//! A server that never finishes must not hold the run: an endless body hits
//! the size cap, a trickle falls under the minimum throughput, and whatever
//! slips between them meets the deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Default [`Limits::max_video_bytes`]: 4 GiB, far above any generated clip.
pub const DEFAULT_MAX_VIDEO_BYTES: u64 = 4 << 30;
/// Default [`Limits::deadline`] for one video, every attempt included.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Default [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Limits::min_speed`]: 16 KiB in each 30 s window.
pub const DEFAULT_MIN_SPEED: MinSpeed = MinSpeed {
    bytes: 16 * 1024,
    window: Duration::from_secs(30),
};

/// The bounds every download keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A body larger than this (announced or received) is refused and its
    /// `.part` removed.
    pub max_video_bytes: u64,
    /// Fewer bytes than this in one window ends the attempt as stalled.
    pub min_speed: MinSpeed,
    /// The whole download (every attempt and wait) ends by then.
    pub deadline: Duration,
    /// Longest silence (no headers, no next chunk) before the attempt is
    /// abandoned and retried from the `.part`.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_video_bytes: DEFAULT_MAX_VIDEO_BYTES,
            min_speed: DEFAULT_MIN_SPEED,
            deadline: DEFAULT_DEADLINE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// At least `bytes` in every `window` (`bytes == 0` turns the check off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinSpeed {
    pub bytes: u64,
    pub window: Duration,
}

impl MinSpeed {
    /// `16KiB/30s`, `1MB/10s`, or `0` / `off` (no minimum).
    pub fn parse(s: &str) -> Result<MinSpeed, String> {
        let t = s.trim();
        if t == "0" || t.eq_ignore_ascii_case("off") {
            return Ok(MinSpeed {
                bytes: 0,
                window: DEFAULT_MIN_SPEED.window,
            });
        }
        let Some((size, window)) = t.split_once('/') else {
            return Err(format!(
                "`{s}` is not a minimum speed; expected SIZE/DURATION such as 16KiB/30s, or off"
            ));
        };
        let bytes = parse_size(size)?;
        let window = humantime::parse_duration(window.trim())
            .map_err(|e| format!("`{s}`: invalid window `{}`: {e}", window.trim()))?;
        if window.is_zero() {
            return Err(format!("`{s}`: the window must be longer than zero"));
        }
        Ok(MinSpeed { bytes, window })
    }
}

/// Decimal (`KB`, `MB`, `GB`, `TB`) and binary (`KiB`, `MiB`, `GiB`, `TiB`)
/// units, case-insensitive, optional space; a bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` in `{s}`; use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    // Whole numbers stay exact; a fraction (`1.5GB`) goes through f64.
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("size `{s}` is too large"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; expected e.g. 500MB, 4GiB"))?;
    let bytes = (value * mult as f64).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("size `{s}` is out of range"));
    }
    Ok(bytes as u64)
}

/// Human form of a byte count, for messages: `1000000` → `1 MB`, `1536` → `1.5 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
        (1 << 10, "KiB"),
        (1_000, "KB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit {
            return format!("{:.1} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Bytes received in fixed windows; an attempt whose window closes under the
/// minimum is stalled. Windows are consecutive (not sliding), so a trickle is
/// caught within two windows of starting.
#[derive(Debug)]
pub(crate) struct Throughput {
    min: MinSpeed,
    window_start: Instant,
    bytes: u64,
}

impl Throughput {
    pub(crate) fn start(min: MinSpeed, now: Instant) -> Self {
        Throughput {
            min,
            window_start: now,
            bytes: 0,
        }
    }

    pub(crate) fn add(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    /// When the current window closes (None: no minimum).
    pub(crate) fn window_end(&self) -> Option<Instant> {
        (self.min.bytes > 0).then(|| self.window_start + self.min.window)
    }

    /// Close every window that ended by `now`; a closed window under the
    /// minimum is a stall, described.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), String> {
        let Some(end) = self.window_end() else {
            return Ok(());
        };
        if now < end {
            return Ok(());
        }
        if self.bytes < self.min.bytes {
            return Err(format!(
                "stalled: {} in {:?} (minimum {} per {:?})",
                format_size(self.bytes),
                self.min.window,
                format_size(self.min.bytes),
                self.min.window
            ));
        }
        self.window_start = now;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512 KiB"), Ok(524_288));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        for bad in ["", "MB", "5XB", "-1MB", "1.2.3MB", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes_read_back() {
        assert_eq!(format_size(4 << 30), "4 GiB");
        assert_eq!(format_size(1_000_000), "1 MB");
        assert_eq!(format_size(16 * 1024), "16 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(12), "12 bytes");
    }

    #[test]
    fn min_speed_forms() {
        assert_eq!(MinSpeed::parse("16KiB/30s"), Ok(DEFAULT_MIN_SPEED));
        assert_eq!(
            MinSpeed::parse("1MB/500ms"),
            Ok(MinSpeed {
                bytes: 1_000_000,
                window: Duration::from_millis(500)
            })
        );
        assert_eq!(MinSpeed::parse("off").map(|m| m.bytes), Ok(0));
        assert_eq!(MinSpeed::parse("0").map(|m| m.bytes), Ok(0));
        for bad in ["16KiB", "16KiB/0s", "fast/30s", "16KiB/soon"] {
            assert!(MinSpeed::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_window_under_the_minimum_is_a_stall() {
        let t0 = Instant::now();
        let min = MinSpeed {
            bytes: 100,
            window: Duration::from_secs(1),
        };
        let mut meter = Throughput::start(min, t0);
        meter.add(150);
        assert_eq!(meter.check(t0 + Duration::from_millis(999)), Ok(()));
        assert_eq!(
            meter.check(t0 + Duration::from_secs(1)),
            Ok(()),
            "150 ≥ 100"
        );
        meter.add(99);
        let stalled = meter.check(t0 + Duration::from_secs(2));
        assert!(
            stalled.as_ref().is_err_and(|m| m.contains("stalled")),
            "{stalled:?}"
        );
        let mut off = Throughput::start(MinSpeed { bytes: 0, ..min }, t0);
        assert_eq!(off.window_end(), None);
        assert_eq!(off.check(t0 + Duration::from_secs(3600)), Ok(()));
    }
}
