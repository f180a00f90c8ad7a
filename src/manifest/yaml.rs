//! YAML manifests: a top-level mapping with `items:` (or `items_from: rows.csv`),
//! optional `defaults:`, `provider:` and `limits:`.
//!
//! The document is parsed to a `serde_yaml::Value` (serde_yaml bounds alias
//! expansion and nesting depth, so billion-laughs and deep nesting fail fast)
//! and then walked key by key, so several problems per item are reported and
//! unknown keys are named. Problems are returned in file order of the
//! top-level keys even though `provider:` and `defaults:` are processed first
//! (the items' checks depend on them).

use std::path::Path;

use serde_yaml::Value;

use super::validate::{
    self, Field, Origin, Partial, Raw, Validator, describe, field_names, likely_field, unknown_name,
};
use super::{Item, LimitsBlock, Problem, ProviderBlock};

pub(crate) struct YamlOut {
    pub provider: ProviderBlock,
    pub limits: LimitsBlock,
    /// Items written (valid or not); `None` when the file had no usable structure.
    pub rows: Option<usize>,
}

const TOP_KEYS: &[&str] = &["defaults", "items", "items_from", "provider", "limits"];
const PROVIDER_KEYS: &[&str] = &["style", "base_url"];
const LIMIT_KEYS: &[&str] = &[
    "concurrency",
    "submit_rate",
    "poll_interval",
    "task_timeout",
    "download_concurrency",
];

pub(crate) fn read(
    bytes: &[u8],
    file: &str,
    base_dir: &Path,
    style_override: Option<bool>,
    v: &mut Validator,
    items: &mut Vec<Item>,
) -> YamlOut {
    let mut out = YamlOut {
        provider: ProviderBlock::default(),
        limits: LimitsBlock::default(),
        rows: None,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            v.problem(
                format!("{file}:{line}"),
                "not valid UTF-8 text; a manifest must be UTF-8",
            );
            return out;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        v.problem(
            file.to_string(),
            "empty file; expected a mapping with `items:`",
        );
        return out;
    }
    if let Some(line) = flow_depth_exceeded(text) {
        v.problem(
            format!("{file}:{line}"),
            format!(
                "nesting deeper than {MAX_FLOW_DEPTH} `[`/`{{` levels; a manifest needs at most 4"
            ),
        );
        return out;
    }
    let mut doc: Value = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let loc = match e.location() {
                Some(l) => format!("{file}:{}:{}", l.line(), l.column()),
                None => file.to_string(),
            };
            v.problem(loc, format!("invalid YAML: {e}"));
            return out;
        }
    };
    if let Err(e) = doc.apply_merge() {
        v.problem(file.to_string(), format!("invalid YAML merge (`<<`): {e}"));
        return out;
    }
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => {
            v.problem(
                file.to_string(),
                "empty manifest (only comments?); expected a mapping with `items:`",
            );
            return out;
        }
        other => {
            v.problem(
                file.to_string(),
                format!(
                    "expected a mapping at the top level (with `items:`), found {}",
                    describe(&other)
                ),
            );
            return out;
        }
    };

    // Problems per top-level key, keyed by the key's position, so the final
    // list is in file order.
    let mut sections: Vec<(usize, Vec<Problem>)> = vec![(0, std::mem::take(&mut v.problems))];
    let find = |name: &str| -> Option<(usize, &Value)> {
        top.iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == Some(name))
            .map(|(i, (_, val))| (i + 1, val))
    };
    let provider = find("provider");
    let limits = find("limits");
    let defaults = find("defaults");
    let items_val = find("items");
    let items_from = find("items_from");

    for (i, (k, _)) in top.iter().enumerate() {
        match k.as_str() {
            Some(name) if TOP_KEYS.contains(&name) => {}
            Some(name) => sections.push((
                i + 1,
                vec![problem(
                    file,
                    name,
                    unknown_name("top-level key", name, TOP_KEYS),
                )],
            )),
            None => sections.push((
                i + 1,
                vec![problem(
                    file,
                    "",
                    format!("top-level keys must be strings, found {}", describe(k)),
                )],
            )),
        }
    }

    if let Some((i, val)) = provider {
        out.provider = provider_block(val, file, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    v.gateway = style_override.unwrap_or(out.provider.style.as_deref() == Some("kling-gateway"));
    if let Some((i, val)) = limits {
        out.limits = limits_block(val, file, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    if let Some((i, val)) = defaults {
        read_defaults(val, file, base_dir, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    match (items_val, items_from) {
        (Some(_), Some((i, _))) => {
            v.problem(
                format!("{file}: items_from"),
                "use either `items` or `items_from`, not both",
            );
            sections.push((i, std::mem::take(&mut v.problems)));
        }
        (Some((i, val)), None) => {
            out.rows = read_items(val, file, base_dir, v, items);
            sections.push((i, std::mem::take(&mut v.problems)));
        }
        (None, Some((i, val))) => {
            out.rows = read_items_from(val, file, base_dir, v, items);
            sections.push((i, std::mem::take(&mut v.problems)));
        }
        (None, None) => {
            v.problem(
                file.to_string(),
                "no items: add an `items:` list (or `items_from: rows.csv`)",
            );
            sections.push((usize::MAX, std::mem::take(&mut v.problems)));
        }
    }
    sections.sort_by_key(|(i, _)| *i);
    v.problems = sections.into_iter().flat_map(|(_, p)| p).collect();
    out
}

/// Far above any real manifest (4 levels) and serde_yaml's own limit (128).
const MAX_FLOW_DEPTH: usize = 1000;

/// libyaml's scanner is quadratic in flow nesting depth (it revisits every
/// open flow level per token): 100,000 `[` take seconds before serde_yaml's
/// recursion limit can speak. So count brackets first. Brackets inside
/// strings count too, which can only over-count; with this limit a false
/// alarm needs a thousand unbalanced `[` in prompts.
fn flow_depth_exceeded(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    None
}

fn problem(file: &str, path: &str, message: impl Into<String>) -> Problem {
    Problem {
        location: if path.is_empty() {
            file.to_string()
        } else {
            format!("{file}: {path}")
        },
        message: message.into(),
    }
}

/// A mapping or nothing; anything else is a problem at `path`.
fn mapping<'a>(
    val: &'a Value,
    file: &str,
    path: &str,
    v: &mut Validator,
) -> Option<&'a serde_yaml::Mapping> {
    match val {
        Value::Mapping(m) => Some(m),
        Value::Null => None,
        other => {
            let p = problem(
                file,
                path,
                format!("expected a mapping, found {}", describe(other)),
            );
            v.problems.push(p);
            None
        }
    }
}

/// Iterate string keys of a mapping; a non-string key is a problem.
fn entries<'a>(
    m: &'a serde_yaml::Mapping,
    file: &str,
    path: &str,
    v: &mut Validator,
) -> Vec<(&'a str, &'a Value)> {
    let mut out = Vec::with_capacity(m.len());
    for (k, val) in m {
        match k.as_str() {
            Some(k) => out.push((k, val)),
            None => {
                let p = problem(
                    file,
                    path,
                    format!("keys must be strings, found {}", describe(k)),
                );
                v.problems.push(p);
            }
        }
    }
    out
}

fn string_setting(val: &Value, file: &str, path: &str, v: &mut Validator) -> Option<String> {
    match val {
        Value::String(s) => Some(s.clone()),
        other => {
            let p = problem(
                file,
                path,
                format!("expected a string, found {}", describe(other)),
            );
            v.problems.push(p);
            None
        }
    }
}

fn provider_block(val: &Value, file: &str, v: &mut Validator) -> ProviderBlock {
    let mut out = ProviderBlock::default();
    let Some(m) = mapping(val, file, "provider", v) else {
        return out;
    };
    for (k, val) in entries(m, file, "provider", v) {
        let path = format!("provider.{k}");
        match k {
            "style" => {
                if let Some(s) = string_setting(val, file, &path, v) {
                    if validate::PROVIDER_STYLES.contains(&s.as_str()) {
                        out.style = Some(s);
                    } else {
                        v.problems.push(problem(
                            file,
                            &path,
                            format!(
                                "unknown provider style `{s}`; expected `kling` or `kling-gateway`"
                            ),
                        ));
                    }
                }
            }
            "base_url" => {
                if let Some(s) = string_setting(val, file, &path, v) {
                    match validate::check_http_url(&s) {
                        Ok(u) => out.base_url = Some(u),
                        Err(e) => v.problems.push(problem(file, &path, e)),
                    }
                }
            }
            // Only the key is echoed: a misplaced secret must not reach the terminal.
            other => v.problems.push(problem(
                file,
                &path,
                unknown_name("provider key", other, PROVIDER_KEYS),
            )),
        }
    }
    out
}

fn limits_block(val: &Value, file: &str, v: &mut Validator) -> LimitsBlock {
    let mut out = LimitsBlock::default();
    let Some(m) = mapping(val, file, "limits", v) else {
        return out;
    };
    for (k, val) in entries(m, file, "limits", v) {
        let path = format!("limits.{k}");
        let result: Result<(), String> = match k {
            "concurrency" | "download_concurrency" => match val.as_u64() {
                Some(n @ 1..=10_000) => {
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
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
            other => Err(unknown_name("limits key", other, LIMIT_KEYS)),
        };
        if let Err(e) = result {
            v.problems.push(problem(file, &path, e));
        }
    }
    out
}

fn show(val: &Value) -> String {
    match val {
        Value::Number(n) => n.to_string(),
        other => describe(other),
    }
}

fn read_defaults(val: &Value, file: &str, base_dir: &Path, v: &mut Validator) {
    let Some(m) = mapping(val, file, "defaults", v) else {
        return;
    };
    let origin = Origin::Yaml {
        file,
        section: "defaults",
        index: None,
    };
    let names = field_names();
    let mut d = Partial::default();
    for (k, val) in entries(m, file, "defaults", v) {
        match Field::from_name(k) {
            Some(Field::Id) => v.problem(
                origin.at(Some("id")),
                "`id` cannot be a default: every item needs its own (or none, for a content-derived id)",
            ),
            Some(_) if val.is_null() => {}
            Some(f) => v.field(&mut d, f, Raw::Yaml(val), origin, base_dir),
            None => {
                v.problem(origin.at(Some(k)), unknown_name("field", k, &names));
                if let Some(f) = likely_field(k) {
                    d.mark_bad(f);
                }
            }
        }
    }
    v.set_defaults(d);
}

fn read_items(
    val: &Value,
    file: &str,
    base_dir: &Path,
    v: &mut Validator,
    items: &mut Vec<Item>,
) -> Option<usize> {
    let seq = match val {
        Value::Sequence(s) => s,
        Value::Null => return Some(0),
        other => {
            v.problems.push(problem(
                file,
                "items",
                format!("expected a list of items, found {}", describe(other)),
            ));
            return None;
        }
    };
    let names = field_names();
    for (i, entry) in seq.iter().enumerate() {
        let origin = Origin::Yaml {
            file,
            section: "items",
            index: Some(i),
        };
        let Value::Mapping(m) = entry else {
            v.problem(
                origin.at(None),
                format!(
                    "expected a mapping of item fields, found {}",
                    describe(entry)
                ),
            );
            continue;
        };
        let mut p = Partial::default();
        for (k, val) in m {
            let Some(k) = k.as_str() else {
                v.problem(
                    origin.at(None),
                    format!("keys must be strings, found {}", describe(k)),
                );
                continue;
            };
            match Field::from_name(k) {
                // `prompt: ~` means "not given", like an empty CSV cell.
                Some(_) if val.is_null() => {}
                Some(f) => v.field(&mut p, f, Raw::Yaml(val), origin, base_dir),
                None => {
                    v.problem(origin.at(Some(k)), unknown_name("field", k, &names));
                    if let Some(f) = likely_field(k) {
                        p.mark_bad(f);
                    }
                }
            }
        }
        if let Some(item) = v.finish(p, origin) {
            items.push(item);
        }
    }
    Some(seq.len())
}

fn read_items_from(
    val: &Value,
    file: &str,
    base_dir: &Path,
    v: &mut Validator,
    items: &mut Vec<Item>,
) -> Option<usize> {
    let name = string_setting(val, file, "items_from", v)?;
    if !name.to_ascii_lowercase().ends_with(".csv") {
        v.problems.push(problem(
            file,
            "items_from",
            format!("items_from `{name}` must name a .csv file"),
        ));
        return None;
    }
    let shown = Path::new(file)
        .parent()
        .map(|d| d.join(&name))
        .unwrap_or_else(|| Path::new(&name).to_path_buf());
    let shown = shown.display().to_string();
    let path = base_dir.join(&name);
    let csv_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base_dir.to_path_buf());
    let result =
        std::fs::File::open(&path).and_then(|f| super::csv::read(f, &shown, &csv_dir, v, items));
    match result {
        Ok(rows) => rows,
        Err(e) => {
            v.problems.push(problem(
                file,
                "items_from",
                format!("cannot read `{shown}`: {e}"),
            ));
            None
        }
    }
}
