//! YAML manifests: a top-level mapping with `items:` (or `items_from: rows.csv`),
//! optional `defaults:`, `provider:` and `limits:`.
//!
//! The document is parsed to a positioned tree (`yaml_tree`: bounded alias
//! expansion, nesting and lookahead) and then walked key by key, so several
//! problems per item are reported, unknown keys are named, and every problem
//! carries `file:line:col` of the key or value at fault. Problems are
//! returned in file order of the top-level keys even though `provider:` and
//! `defaults:` are processed first (the items' checks depend on them).

use std::path::Path;

use super::validate::{
    self, Field, Origin, Partial, Raw, Validator, field_names, likely_field, unknown_name,
};
use super::yaml_blocks::{limits_block, provider_block};
use super::yaml_tree::{self, Node, Pos, Value, describe};
use super::{Item, LimitsBlock, Problem, ProviderBlock};

pub(crate) struct YamlOut {
    pub provider: ProviderBlock,
    pub limits: LimitsBlock,
    /// Items written (valid or not); `None` when the file had no usable structure.
    pub rows: Option<usize>,
}

const TOP_KEYS: &[&str] = &[
    "defaults",
    "items",
    "items_from",
    "provider",
    "limits",
    "model",
];

pub(super) type Entries = [(Node, Node)];

pub(crate) fn read(
    bytes: &[u8],
    file: &str,
    base_dir: &Path,
    style_override: Option<bool>,
    v: &mut Validator,
    items: &mut dyn FnMut(Item),
) -> YamlOut {
    let mut out = YamlOut {
        provider: ProviderBlock::default(),
        limits: LimitsBlock::default(),
        rows: None,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let before = &bytes[..e.valid_up_to()];
            let line = 1 + before.iter().filter(|b| **b == b'\n').count();
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            // Valid up to here, so this slice is text: count its characters.
            let col =
                1 + std::str::from_utf8(&before[line_start..]).map_or(0, |s| s.chars().count());
            v.problem(
                format!("{file}:{line}:{col}"),
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
    let doc = match yaml_tree::parse(text) {
        Ok(Some(d)) => d,
        Ok(None) => {
            v.problem(
                file.to_string(),
                "empty manifest (only comments?); expected a mapping with `items:`",
            );
            return out;
        }
        Err(e) => {
            v.problem(
                format!("{file}:{}", e.pos),
                format!("invalid YAML: {}", e.message),
            );
            return out;
        }
    };
    let top = match &doc.value {
        Value::Map(m) => m.clone(),
        Value::Null => {
            v.problem(
                file.to_string(),
                "empty manifest (only comments?); expected a mapping with `items:`",
            );
            return out;
        }
        _ => {
            v.problem(
                at(file, doc.pos, ""),
                format!(
                    "expected a mapping at the top level (with `items:`), found {}",
                    describe(&doc)
                ),
            );
            return out;
        }
    };

    // Problems per top-level key, keyed by the key's position, so the final
    // list is in file order.
    let mut sections: Vec<(usize, Vec<Problem>)> = vec![(0, std::mem::take(&mut v.problems))];
    let find = |name: &str| -> Option<(usize, &Node, &Node)> {
        top.iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == Some(name))
            .map(|(i, (k, val))| (i + 1, k, val))
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
                    k.pos,
                    name,
                    unknown_name("top-level key", name, TOP_KEYS),
                )],
            )),
            None => sections.push((
                i + 1,
                vec![problem(
                    file,
                    k.pos,
                    "",
                    format!("top-level keys must be strings, found {}", describe(k)),
                )],
            )),
        }
    }

    if let Some((i, _, val)) = provider {
        out.provider = provider_block(val, file, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    if style_override.is_none() {
        v.passthrough = out.provider.style.as_deref() == Some("fal");
    }
    v.gateway = style_override.unwrap_or(
        out.provider
            .style
            .as_deref()
            .is_some_and(validate::free_form_models),
    );
    if let Some((i, _, val)) = limits {
        out.limits = limits_block(val, file, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    if let Some((i, _, val)) = defaults {
        read_defaults(val, file, base_dir, v);
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    // `model:` at the top: the default model of a pass-through (fal) manifest.
    if let Some((i, _, val)) = find("model") {
        match val.as_str() {
            Some(m) if v.passthrough && !m.trim().is_empty() => v.default_model(m.to_string()),
            _ => v.problems.push(problem(
                file,
                val.pos,
                "model",
                if v.passthrough {
                    "model must be a model id such as fal-ai/kling-video/v2.1/standard/text-to-video".to_string()
                } else {
                    "a top-level `model:` is for `provider: fal`; Kling manifests name it per item or in defaults as `model_name`".to_string()
                },
            )),
        }
        sections.push((i, std::mem::take(&mut v.problems)));
    }
    match (items_val, items_from) {
        (Some(_), Some((i, k, _))) => {
            v.problems.push(problem(
                file,
                k.pos,
                "items_from",
                "use either `items` or `items_from`, not both",
            ));
            sections.push((i, std::mem::take(&mut v.problems)));
        }
        (Some((i, _, val)), None) => {
            out.rows = read_items(val, file, base_dir, v, items);
            sections.push((i, std::mem::take(&mut v.problems)));
        }
        (None, Some((i, _, val))) => {
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

/// `file:line:col: path`, or `file:line:col` when there is no path.
pub(super) fn at(file: &str, pos: Pos, path: &str) -> String {
    if path.is_empty() {
        format!("{file}:{pos}")
    } else {
        format!("{file}:{pos}: {path}")
    }
}

pub(super) fn problem(file: &str, pos: Pos, path: &str, message: impl Into<String>) -> Problem {
    Problem {
        location: at(file, pos, path),
        message: message.into(),
    }
}

/// A mapping or nothing; anything else is a problem at `path`.
pub(super) fn mapping<'a>(
    val: &'a Node,
    file: &str,
    path: &str,
    v: &mut Validator,
) -> Option<&'a Entries> {
    match &val.value {
        Value::Map(m) => Some(m),
        Value::Null => None,
        _ => {
            let p = problem(
                file,
                val.pos,
                path,
                format!("expected a mapping, found {}", describe(val)),
            );
            v.problems.push(p);
            None
        }
    }
}

/// String keys of a mapping with their key nodes; a non-string key is a problem.
pub(super) fn entries<'a>(
    m: &'a Entries,
    file: &str,
    path: &str,
    v: &mut Validator,
) -> Vec<(&'a str, &'a Node, &'a Node)> {
    let mut out = Vec::with_capacity(m.len());
    for (k, val) in m {
        match k.as_str() {
            Some(name) => out.push((name, k, val)),
            None => {
                let p = problem(
                    file,
                    k.pos,
                    path,
                    format!("keys must be strings, found {}", describe(k)),
                );
                v.problems.push(p);
            }
        }
    }
    out
}

pub(super) fn string_setting(
    val: &Node,
    file: &str,
    path: &str,
    v: &mut Validator,
) -> Option<String> {
    match &val.value {
        Value::Str(s) => Some(s.to_string()),
        _ => {
            let p = problem(
                file,
                val.pos,
                path,
                format!("expected a string, found {}", describe(val)),
            );
            v.problems.push(p);
            None
        }
    }
}

/// One item (or `defaults:`) mapping, field by field, into `p`.
fn read_fields(
    m: &Entries,
    origin: Origin<'_>,
    base_dir: &Path,
    v: &mut Validator,
    p: &mut Partial,
    is_defaults: bool,
) {
    let names = field_names();
    for (key, val) in m {
        let Some(k) = key.as_str() else {
            v.problem(
                origin.with_pos(key.pos).at(None),
                format!("keys must be strings, found {}", describe(key)),
            );
            continue;
        };
        // fal names its model `model`; the manifest's own name also works.
        let field = match Field::from_name(k) {
            None if v.passthrough && k == "model" => Some(Field::ModelName),
            Some(f) if v.passthrough && !validate::passthrough_reads(f) => None,
            f => f,
        };
        match field {
            None if v.passthrough => match validate::own_field_typo(k) {
                Some(meant) => v.problem(
                    origin.with_pos(key.pos).at(Some(k)),
                    format!("unknown field `{k}`; did you mean `{meant}`?"),
                ),
                None if !val.is_null() => {
                    p.extra.insert(k.to_string(), to_json(val));
                    p.extra_at.push((k.to_string(), val.pos));
                }
                None => {}
            },
            Some(Field::Id) if is_defaults => v.problem(
                origin.with_pos(key.pos).at(Some("id")),
                "`id` cannot be a default: every item needs its own (or none, for a content-derived id)",
            ),
            // `prompt: ~` means "not given", like an empty CSV cell.
            Some(_) if val.is_null() => {}
            Some(f) => v.field(p, f, Raw::Yaml(val), origin.with_pos(val.pos), base_dir),
            None => {
                v.problem(
                    origin.with_pos(key.pos).at(Some(k)),
                    unknown_name("field", k, &names),
                );
                if let Some(f) = likely_field(k) {
                    p.mark_bad(f);
                }
            }
        }
    }
}

/// A YAML value as the JSON a pass-through provider sends (bounded by the
/// YAML budgets already; aliases are shared there, expanded here).
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => match *n {
            yaml_tree::Number::UInt(u) => J::from(u),
            yaml_tree::Number::Int(i) => J::from(i),
            yaml_tree::Number::Float(f) => {
                serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
            }
        },
        Value::Str(s) => J::String(s.to_string()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| to_json(k).to_string());
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Tagged(_, inner) => to_json(inner),
    }
}

fn read_defaults(val: &Node, file: &str, base_dir: &Path, v: &mut Validator) {
    let Some(m) = mapping(val, file, "defaults", v) else {
        return;
    };
    let origin = Origin::Yaml {
        file,
        section: "defaults",
        index: None,
        pos: Some(val.pos),
    };
    let mut d = Partial::default();
    read_fields(m, origin, base_dir, v, &mut d, true);
    v.set_defaults(d);
}

fn read_items(
    val: &Node,
    file: &str,
    base_dir: &Path,
    v: &mut Validator,
    items: &mut dyn FnMut(Item),
) -> Option<usize> {
    let seq = match &val.value {
        Value::Seq(s) => s,
        Value::Null => return Some(0),
        _ => {
            v.problems.push(problem(
                file,
                val.pos,
                "items",
                format!("expected a list of items, found {}", describe(val)),
            ));
            return None;
        }
    };
    for (i, entry) in seq.iter().enumerate() {
        let origin = Origin::Yaml {
            file,
            section: "items",
            index: Some(i),
            pos: Some(entry.pos),
        };
        let Value::Map(m) = &entry.value else {
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
        read_fields(m, origin, base_dir, v, &mut p, false);
        if let Some(item) = v.finish(p, origin) {
            items(item);
        }
    }
    Some(seq.len())
}

fn read_items_from(
    val: &Node,
    file: &str,
    base_dir: &Path,
    v: &mut Validator,
    items: &mut dyn FnMut(Item),
) -> Option<usize> {
    let name = string_setting(val, file, "items_from", v)?;
    if !name.to_ascii_lowercase().ends_with(".csv") {
        v.problems.push(problem(
            file,
            val.pos,
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
    let result = super::open_capped(&path).and_then(|mut f| {
        let rows = super::csv::read(&mut f, &shown, &csv_dir, v, items)?;
        Ok((rows, f.digest()))
    });
    match result {
        Ok((rows, digest)) => {
            v.also_read.push((path, digest));
            rows
        }
        Err(e) => {
            v.problems.push(problem(
                file,
                val.pos,
                "items_from",
                format!("cannot read `{shown}`: {e}"),
            ));
            None
        }
    }
}
