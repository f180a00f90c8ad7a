//! The `provider:` and `limits:` blocks of a YAML manifest: settings, not
//! items, so each value is checked against the settings grammar and kept as
//! written for the settings resolver. Main functions: [`provider_block`],
//! [`limits_block`].

use super::validate::{self, Validator, unknown_name};
use super::yaml::{entries, mapping, problem, string_setting};
use super::yaml_tree::{Node, Value, describe};
use super::{LimitsBlock, ProviderBlock};

const PROVIDER_KEYS: &[&str] = &["style", "base_url"];
const LIMIT_KEYS: &[&str] = &[
    "concurrency",
    "submit_rate",
    "poll_interval",
    "task_timeout",
    "download_concurrency",
    "max_units",
];

pub(super) fn provider_block(val: &Node, file: &str, v: &mut Validator) -> ProviderBlock {
    let mut out = ProviderBlock::default();
    // `provider: fal` is short for `provider: {style: fal}`.
    if let Some(s) = val.as_str() {
        if validate::PROVIDER_STYLES.contains(&s) {
            out.style = Some(s.to_string());
        } else {
            v.problems.push(problem(
                file,
                val.pos,
                "provider",
                format!(
                    "unknown provider `{s}`; expected one of {}",
                    validate::PROVIDER_STYLES.join(", ")
                ),
            ));
        }
        return out;
    }
    let Some(m) = mapping(val, file, "provider", v) else {
        return out;
    };
    for (k, key, val) in entries(m, file, "provider", v) {
        let path = format!("provider.{k}");
        match k {
            "style" => {
                if let Some(s) = string_setting(val, file, &path, v) {
                    if validate::PROVIDER_STYLES.contains(&s.as_str()) {
                        out.style = Some(s);
                    } else {
                        v.problems.push(problem(
                            file,
                            val.pos,
                            &path,
                            format!(
                                "unknown provider style `{s}`; expected one of {}",
                                validate::PROVIDER_STYLES.join(", ")
                            ),
                        ));
                    }
                }
            }
            "base_url" => {
                if let Some(s) = string_setting(val, file, &path, v) {
                    match validate::check_http_url(&s) {
                        Ok(u) => out.base_url = Some(u),
                        Err(e) => v.problems.push(problem(file, val.pos, &path, e)),
                    }
                }
            }
            // Only the key is echoed: a misplaced secret must not reach the terminal.
            other => v.problems.push(problem(
                file,
                key.pos,
                &path,
                unknown_name("provider key", other, PROVIDER_KEYS),
            )),
        }
    }
    out
}

pub(super) fn limits_block(val: &Node, file: &str, v: &mut Validator) -> LimitsBlock {
    let mut out = LimitsBlock::default();
    let Some(m) = mapping(val, file, "limits", v) else {
        return out;
    };
    for (k, key, val) in entries(m, file, "limits", v) {
        let path = format!("limits.{k}");
        let mut pos = val.pos;
        let result: Result<(), String> = match k {
            "concurrency" | "download_concurrency" => match &val.value {
                Value::Number(n) if matches!(n.as_u64(), Some(1..=10_000)) => {
                    let n = n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
                    if k == "concurrency" {
                        out.concurrency = Some(n);
                    } else {
                        out.download_concurrency = Some(n);
                    }
                    Ok(())
                }
                _ => Err(format!(
                    "{k} must be a whole number from 1 to 10000, found {}",
                    show(val)
                )),
            },
            "submit_rate" => match string_setting(val, file, &path, v) {
                Some(s) => validate::parse_submit_rate(&s).map(|_| out.submit_rate = Some(s)),
                None => Ok(()),
            },
            "poll_interval" | "task_timeout" => match string_setting(val, file, &path, v) {
                Some(s) => validate::parse_setting_duration(k, &s).map(|_| {
                    if k == "poll_interval" {
                        out.poll_interval = Some(s);
                    } else {
                        out.task_timeout = Some(s);
                    }
                }),
                None => Ok(()),
            },
            "max_units" => match &val.value {
                Value::Number(n) if n.as_f64().is_finite() && n.as_f64() >= 0.0 => {
                    out.max_units = Some(n.to_string());
                    Ok(())
                }
                _ => Err(format!(
                    "max_units must be a number of units ≥ 0, found {}",
                    show(val)
                )),
            },
            other => {
                pos = key.pos;
                Err(unknown_name("limits key", other, LIMIT_KEYS))
            }
        };
        if let Err(e) = result {
            v.problems.push(problem(file, pos, &path, e));
        }
    }
    out
}

fn show(val: &Node) -> String {
    match &val.value {
        Value::Number(n) => n.to_string(),
        _ => describe(val),
    }
}
