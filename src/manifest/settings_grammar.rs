//! The grammar of setting values written in a manifest's `provider:` and
//! `limits:` blocks and given to the settings resolver: rates, durations,
//! URLs. One parser each, so the manifest and the settings agree.

use super::fields::shorten;

/// `http://` / `https://` URL check shared by images and `provider.base_url`.
pub fn check_http_url(s: &str) -> Result<String, String> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("`{}` is not an http(s) URL", shorten(s)));
    }
    match reqwest::Url::parse(s) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(s.to_string()),
        Ok(_) => Err(format!("URL `{}` has no host", shorten(s))),
        Err(e) => Err(format!("invalid URL `{}`: {e}", shorten(s))),
    }
}

/// `limits.submit_rate`: `N/s`, `N/min` or `N/h`, N > 0 (decimals allowed).
/// Returns submissions per second.
pub fn parse_submit_rate(s: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "submit_rate `{}` must look like 10/s, 300/min or 0.5/h (a number > 0, then /s, /min or /h)",
            shorten(s)
        )
    };
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let per = match unit {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let (int, frac) = n.split_once('.').unwrap_or((n, "0"));
    if int.is_empty()
        || frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let v: f64 = n.parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    Ok(v / per)
}

/// A humantime duration (`500ms`, `5s`, `30m`) greater than zero.
pub fn parse_setting_duration(name: &str, s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{name} must be greater than zero")),
        Err(e) => Err(format!(
            "{name} `{}` is not a duration like 500ms, 5s or 30m: {e}",
            shorten(s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_rate_forms() {
        assert_eq!(parse_submit_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_submit_rate("300/min").unwrap(), 5.0);
        assert_eq!(parse_submit_rate("0.5/s").unwrap(), 0.5);
        assert_eq!(parse_submit_rate("3600/h").unwrap(), 1.0);
        for bad in [
            "0/s", "0.0/min", "10", "10/sec", "-1/s", "inf/s", "1e3/s", "/s", "1./s", ".5/s",
            "10 /s",
        ] {
            assert!(parse_submit_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn setting_durations_are_humantime_and_positive() {
        assert_eq!(
            parse_setting_duration("poll_interval", "500ms")
                .unwrap()
                .as_millis(),
            500
        );
        assert_eq!(
            parse_setting_duration("task_timeout", "30m")
                .unwrap()
                .as_secs(),
            1800
        );
        assert!(parse_setting_duration("poll_interval", "0s").is_err());
        assert!(parse_setting_duration("poll_interval", "soon").is_err());
    }

    #[test]
    fn http_urls() {
        assert!(check_http_url("https://api-singapore.klingai.com").is_ok());
        assert!(check_http_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(check_http_url("ftp://x").is_err());
        assert!(check_http_url("https://").is_err());
        assert!(check_http_url("api.klingai.com").is_err());
    }
}
