//! Scalars and tags by YAML 1.2's core schema (as serde_yaml resolved them).

use std::rc::Rc;

use saphyr_parser::{ScalarStyle, Tag};

use super::{Node, Number, Pos, Value};

/// A collection's tag: core `!!seq`/`!!map` (or none) is plain; another
/// application tag is kept; a core scalar tag on a collection is an error.
pub(super) fn collection_tag(tag: Option<&Tag>, kind: &str) -> Result<Option<Rc<str>>, String> {
    match tag {
        None => Ok(None),
        Some(t) if t.is_yaml_core_schema() && t.suffix == kind => Ok(None),
        Some(t) if t.is_yaml_core_schema() => {
            Err(format!("`!!{}` cannot tag a collection", t.suffix))
        }
        Some(t) => Ok(Some(t.to_string().into())),
    }
}

/// Resolve a scalar by the core schema (tags first, then plain-scalar rules).
pub(super) fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        if !t.is_yaml_core_schema() {
            let inner = Node {
                pos: Pos::default(),
                value: Value::Str(text.into()),
            };
            return Ok(Value::Tagged(t.to_string().into(), Rc::new(inner)));
        }
        let bad = || format!("`{}` is not a valid `!!{}`", shorten(text), t.suffix);
        return match t.suffix.as_str() {
            "str" => Ok(Value::Str(text.into())),
            "null" => null(text).then_some(Value::Null).ok_or_else(bad),
            "bool" => boolean(text).map(Value::Bool).ok_or_else(bad),
            "int" => int(text).map(Value::Number).ok_or_else(bad),
            "float" => int(text)
                .map(|n| Number::Float(n.as_f64()))
                .or_else(|| float(text))
                .map(Value::Number)
                .ok_or_else(bad),
            other => Err(format!("`!!{other}` cannot tag a scalar")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.into()));
    }
    if null(text) {
        return Ok(Value::Null);
    }
    if let Some(b) = boolean(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = int(text).or_else(|| float(text)) {
        return Ok(Value::Number(n));
    }
    Ok(Value::Str(text.into()))
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn boolean(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `05` is a string in YAML 1.2, not five.
fn leading_zero(digits: &str) -> bool {
    digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
}

fn int(s: &str) -> Option<Number> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b") {
        (2, d)
    } else {
        if leading_zero(body) {
            return None;
        }
        (10, body)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !neg {
        return Some(Number::UInt(magnitude));
    }
    if magnitude == 0 {
        return Some(Number::UInt(0));
    }
    0i64.checked_sub_unsigned(magnitude).map(Number::Int)
}

fn float(s: &str) -> Option<Number> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if leading_zero(body) || body.starts_with(['+', '-']) {
        return None;
    }
    let neg = s.starts_with('-');
    match body {
        ".inf" | ".Inf" | ".INF" => {
            return Some(Number::Float(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        ".nan" | ".NaN" | ".NAN" if s == body => return Some(Number::Float(f64::NAN)),
        _ => {}
    }
    // Rust's parser also takes `inf`, `nan`, `infinity`: not YAML numbers.
    if !body
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(Number::Float(f))
}
