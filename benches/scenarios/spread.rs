//! Min / median / max of a figure measured several times.
//!
//! Issue 12 asks for every figure over three runs: on a shared 2-core
//! machine one run can be off by 10–40 %, and the spread shows how far to
//! trust the median the verdict is taken from.

/// Min, median and max of a set of samples (the median of an even count is
/// the mean of the middle two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// `None` for no samples (or a NaN among them: nothing to sort).
    pub fn of(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Spread {
            min: s[0],
            median,
            max: s[n - 1],
            runs: n,
        })
    }

    /// `min / median / max` with `decimals` digits each.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}",
            self.min,
            self.median,
            self.max,
            d = decimals
        )
    }
}

/// The checks smoke mode runs on this helper (the bench target has no test
/// harness of its own: `harness = false`).
pub fn self_check() -> Result<(), String> {
    let odd = Spread::of(&[3.0, 1.0, 2.0]).ok_or("no spread of three samples")?;
    let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).ok_or("no spread of four samples")?;
    let one = Spread::of(&[0.5]).ok_or("no spread of one sample")?;
    let ok = (odd.min, odd.median, odd.max, odd.runs) == (1.0, 2.0, 3.0, 3)
        && (even.min, even.median, even.max) == (1.0, 2.5, 4.0)
        && (one.min, one.median, one.max) == (0.5, 0.5, 0.5)
        && Spread::of(&[]).is_none()
        && Spread::of(&[1.0, f64::NAN]).is_none()
        && odd.show(2) == "1.00 / 2.00 / 3.00";
    if ok {
        Ok(())
    } else {
        Err(format!("Spread is wrong: {odd:?} {even:?} {one:?}"))
    }
}
