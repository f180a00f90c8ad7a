//! A rate of requests (`--submit-rate`, `limits.submit_rate`): `10/s`,
//! `300/min`, `2/h`, or a bare number per second.

use crate::manifest::validate;

/// A submission rate: `per_second` requests per second on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

impl Rate {
    /// Parse `10/s`, `300/min`, `2/h`, `0.5/s` (the manifest's grammar,
    /// [`validate::parse_submit_rate`]) or a bare number (per second).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        let per_second = if s.contains('/') {
            validate::parse_submit_rate(s)?
        } else {
            match s.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 => n,
                _ => {
                    return Err(format!(
                        "`{s}` is not a rate; expected e.g. 10/s, 300/min, 2/h"
                    ));
                }
            }
        };
        if per_second > 100_000.0 {
            return Err(format!("`{s}`: rate must be at most 100000/s"));
        }
        Ok(Rate { per_second })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_documented_form() {
        assert_eq!(Rate::parse("10/s").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse("300/min").unwrap().per_second, 5.0);
        assert_eq!(Rate::parse("7200/h").unwrap().per_second, 2.0);
        assert_eq!(Rate::parse("0.5/s").unwrap().per_second, 0.5);
        assert_eq!(Rate::parse("4").unwrap().per_second, 4.0);
        for bad in ["", "x/s", "0/s", "-1/s", "5/fortnight", "NaN/s", "inf/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
