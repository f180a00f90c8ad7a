//! A YAML document as a tree whose every node knows its `line:col`, built
//! from `saphyr-parser`'s event stream under fixed budgets. Main type: [`Node`].
//!
//! Why not `serde_yaml::Value`: it keeps no positions (problems could only
//! name a path, never a line), serde_yaml is deprecated upstream, and its
//! alias guard is relative (repetitions per event), so a few anchors of ten
//! aliases each followed by thousands of ordinary items still expand to
//! gigabytes. Here every budget is absolute:
//!
//! - aliases are shared (`Rc`), never copied, and the document *as if every
//!   alias were written out* may hold at most [`MAX_NODES`] nodes and
//!   [`MAX_SCALAR_BYTES`] bytes of scalars: the alias bomb stops at the alias
//!   that crosses the line, with its position;
//! - nesting is at most [`MAX_DEPTH`] levels (the parser itself stops flow
//!   nesting at 255, before its scanner's cost per token grows with depth);
//! - the scanner may read at most [`MAX_LOOKAHEAD`] characters past the last
//!   event it produced. It buffers every token of a flow collection that
//!   could still turn out to be a mapping key (`[a, a, …]` at the start of a
//!   line, `[[…]]`), about 170 bytes a token, so without this cap ten
//!   megabytes of `[a,a,…` take 1.7 GB. A document that *starts* with a flow
//!   collection (JSON written as YAML) is read as if it began with `--- `,
//!   which cannot start a key, so big JSON manifests stream normally.
//!
//! Scalars resolve as YAML 1.2's core schema (what serde_yaml did): `~`,
//! `null` and empty are null; `true`/`false` booleans; decimal, `0x`, `0o`
//! and `0b` integers without leading zeros; floats with `.inf`/`.nan`;
//! anything quoted or block-styled is a string. `<<` merge keys are applied.
//! Duplicate keys and a second document are errors.

use std::cell::Cell;
use std::collections::HashMap;
use std::collections::HashSet;
use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use input::{Capped, SHIFT, Shift, root_flow_start};
use scalar::{collection_tag, scalar};

/// Most nodes in a document with every alias expanded. A 100,000-item
/// manifest has about two million; beyond this, use `items_from:` a CSV.
pub const MAX_NODES: u64 = 5_000_000;
/// Most scalar bytes in a document with every alias expanded: aliases can
/// never make a manifest bigger than the biggest file that is accepted.
pub const MAX_SCALAR_BYTES: u64 = super::MAX_MANIFEST_BYTES;
/// Deepest nesting of collections (a manifest needs 5).
pub const MAX_DEPTH: usize = 64;
/// Characters the scanner may read ahead of the last node it produced.
pub const MAX_LOOKAHEAD: usize = 256 * 1024;

/// A 1-based line and column (in characters) in the manifest text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML number as written: non-negative integer, negative integer, float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    UInt(u64),
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Number::UInt(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::UInt(n) => n as f64,
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::UInt(n) => write!(f, "{n}"),
            Number::Int(n) => write!(f, "{n}"),
            Number::Float(x) if x.is_nan() => f.write_str(".nan"),
            Number::Float(x) if x.is_infinite() => {
                f.write_str(if x < 0.0 { "-.inf" } else { ".inf" })
            }
            Number::Float(x) => {
                let s = x.to_string();
                if s.contains(['.', 'e', 'E']) {
                    f.write_str(&s)
                } else {
                    write!(f, "{s}.0")
                }
            }
        }
    }
}

/// A node's value. Collections and strings are shared, so an alias costs a
/// pointer, not a copy.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    Str(Rc<str>),
    Seq(Rc<[Node]>),
    Map(Rc<[(Node, Node)]>),
    /// A value under an application tag (`!thing x`); no manifest field takes one.
    Tagged(Rc<str>, Rc<Node>),
}

/// A value and where it was written (for an alias: where the alias is).
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// This node as JSON (for `camera_control`, checked as the API's JSON).
    /// Budgets already bound its size; non-string keys and tags are refused.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        Ok(match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(Number::UInt(n)) => (*n).into(),
            Value::Number(Number::Int(n)) => (*n).into(),
            Value::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect::<Result<_, _>>()?)
            }
            Value::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries.iter() {
                    let Some(k) = k.as_str() else {
                        return Err(format!("keys must be strings, found {}", describe(k)));
                    };
                    m.insert(k.to_string(), v.to_json()?);
                }
                serde_json::Value::Object(m)
            }
            Value::Tagged(tag, _) => return Err(format!("tagged values ({tag}) are not allowed")),
        })
    }
}

/// What kind of node this is, for "expected X, found Y".
pub fn describe(n: &Node) -> String {
    match &n.value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(x) => format!("a number ({x})"),
        Value::Str(_) => "a string".into(),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
        Value::Tagged(tag, _) => format!("a tagged value ({tag})"),
    }
}

/// Why a document could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Parse one YAML document. `Ok(None)`: no document at all (only comments).
pub fn parse(text: &str) -> Result<Option<Node>, ParseError> {
    let shift = root_flow_start(text);
    let limit = Rc::new(Cell::new(MAX_LOOKAHEAD));
    let cut = Rc::new(Cell::new(false));
    let input = Capped {
        chars: text.chars(),
        pulled: 0,
        original: 0,
        inject_at: shift.map(|s| s.index),
        injected: 0,
        limit: limit.clone(),
        cut: cut.clone(),
    };
    let mut b = Builder {
        shift,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        bytes: 0,
        root: None,
        documents: 0,
    };
    let mut last = Pos { line: 1, col: 1 };
    for result in Parser::new_from_iter(input) {
        if cut.get() {
            return Err(ParseError {
                pos: last,
                message: format!(
                    "more than {MAX_LOOKAHEAD} characters with no complete YAML node (a huge \
                     `[…]`/`{{…}}` flow collection or value); write long lists in block style, \
                     one `- item` per line"
                ),
            });
        }
        let (event, span) = match result {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let pos = b.pos_of(m.line(), m.col());
                let message = if e.info() == "recursion limit exceeded" {
                    format!("nesting deeper than {MAX_DEPTH} levels; a manifest needs at most 5")
                } else {
                    e.info().to_string()
                };
                return Err(ParseError { pos, message });
            }
        };
        last = b.pos(&span);
        limit.set(span.start.index().saturating_add(MAX_LOOKAHEAD));
        if b.event(event, last)? {
            break;
        }
    }
    Ok(b.root)
}

/// Expanded size of a node: what it would weigh with every alias written out.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

struct Anchored {
    node: Node,
    size: Size,
}

/// Identity of a scalar key, for duplicate detection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Str(Rc<str>),
    Other(String),
}

struct Builder {
    shift: Option<Shift>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Anchored>,
    /// Expanded totals so far.
    nodes: u64,
    bytes: u64,
    root: Option<Node>,
    documents: u32,
}

impl Builder {
    fn pos(&self, span: &Span) -> Pos {
        self.pos_of(span.start.line(), span.start.col())
    }

    fn pos_of(&self, line: usize, col: usize) -> Pos {
        let col = match self.shift {
            Some(s) if s.line == line && col >= s.col + SHIFT.len() => col - SHIFT.len(),
            _ => col,
        };
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
        }
    }

    fn err(pos: Pos, message: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            message: message.into(),
        }
    }

    /// Count `size` more expanded content; past a budget, an error at `pos`.
    fn spend(&mut self, size: Size, pos: Pos, what: &str) -> Result<(), ParseError> {
        self.nodes = self.nodes.saturating_add(size.nodes);
        self.bytes = self.bytes.saturating_add(size.bytes);
        if self.nodes > MAX_NODES {
            return Err(Self::err(
                pos,
                format!(
                    "{what} takes the document past {MAX_NODES} YAML nodes (counting every alias \
                     as written out); split the manifest or use `items_from:` a CSV file"
                ),
            ));
        }
        if self.bytes > MAX_SCALAR_BYTES {
            return Err(Self::err(
                pos,
                format!(
                    "{what} takes the document past {} MiB of text (counting every alias as \
                     written out)",
                    MAX_SCALAR_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// Handle one event; `Ok(true)` at the end of the stream.
    fn event(&mut self, event: Event<'_>, pos: Pos) -> Result<bool, ParseError> {
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Self::err(
                        pos,
                        "a second YAML document (`---`); a manifest is one document",
                    ));
                }
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(Self::err(pos, "alias to an unknown anchor"));
                };
                let node = Node {
                    pos,
                    value: a.node.value.clone(),
                };
                let size = a.size;
                self.spend(size, pos, "this alias")?;
                self.push(node, size, false)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let size = Size {
                    nodes: 1,
                    bytes: text.len() as u64,
                };
                self.spend(size, pos, "this value")?;
                let merge = style == ScalarStyle::Plain && tag.is_none() && &*text == "<<";
                let value = scalar(&text, style, tag.as_deref()).map_err(|m| Self::err(pos, m))?;
                let node = Node { pos, value };
                if anchor > 0 {
                    self.anchors.insert(
                        anchor,
                        Anchored {
                            node: node.clone(),
                            size,
                        },
                    );
                }
                self.push(node, size, merge)?;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                return Err(Self::err(
                    pos,
                    format!("nesting deeper than {MAX_DEPTH} levels; a manifest needs at most 5"),
                ));
            }
            Event::SequenceStart(anchor, tag) => {
                self.spend(Size { nodes: 1, bytes: 0 }, pos, "this list")?;
                self.stack.push(Open {
                    pos,
                    anchor,
                    tag: collection_tag(tag.as_deref(), "seq").map_err(|m| Self::err(pos, m))?,
                    size: Size { nodes: 1, bytes: 0 },
                    body: Body::Seq(Vec::new()),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.spend(Size { nodes: 1, bytes: 0 }, pos, "this mapping")?;
                self.stack.push(Open {
                    pos,
                    anchor,
                    tag: collection_tag(tag.as_deref(), "map").map_err(|m| Self::err(pos, m))?,
                    size: Size { nodes: 1, bytes: 0 },
                    body: Body::Map {
                        entries: Vec::new(),
                        key: None,
                        seen: HashMap::new(),
                        merges: Vec::new(),
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return Err(Self::err(pos, "unbalanced end of a collection"));
                };
                let value = match open.body {
                    Body::Seq(items) => Value::Seq(items.into()),
                    Body::Map {
                        mut entries,
                        merges,
                        ..
                    } => {
                        merge(&mut entries, &merges);
                        Value::Map(entries.into())
                    }
                };
                let mut node = Node {
                    pos: open.pos,
                    value,
                };
                if let Some(tag) = open.tag {
                    node.value = Value::Tagged(tag, Rc::new(node.clone()));
                }
                if open.anchor > 0 {
                    self.anchors.insert(
                        open.anchor,
                        Anchored {
                            node: node.clone(),
                            size: open.size,
                        },
                    );
                }
                self.push(node, open.size, false)?;
            }
        }
        Ok(false)
    }

    /// Put a finished node into the collection being built (or make it the root).
    fn push(&mut self, node: Node, size: Size, merge_key: bool) -> Result<(), ParseError> {
        let Some(open) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        open.size.nodes = open.size.nodes.saturating_add(size.nodes);
        open.size.bytes = open.size.bytes.saturating_add(size.bytes);
        match &mut open.body {
            Body::Seq(items) => items.push(node),
            Body::Map {
                entries,
                key,
                seen,
                merges,
            } => match key.take() {
                None if merge_key => {
                    *key = Some(Node {
                        pos: node.pos,
                        value: Value::Tagged(MERGE.into(), Rc::new(node)),
                    })
                }
                None => {
                    if let Some(id) = key_id(&node) {
                        if let Some(first) = seen.insert(id, node.pos) {
                            return Err(Self::err(
                                node.pos,
                                format!(
                                    "duplicate key {} in this mapping (first at line {}, column {})",
                                    show_key(&node),
                                    first.line,
                                    first.col
                                ),
                            ));
                        }
                    }
                    *key = Some(node);
                }
                Some(k) if is_merge(&k) => match &node.value {
                    Value::Map(_) => merges.push(node),
                    Value::Seq(list) if list.iter().all(|n| matches!(n.value, Value::Map(_))) => {
                        merges.extend(list.iter().cloned());
                    }
                    _ => {
                        return Err(Self::err(
                            node.pos,
                            format!(
                                "a merge (`<<`) takes a mapping or a list of mappings, found {}",
                                describe(&node)
                            ),
                        ));
                    }
                },
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

/// Marks a pending `<<` key.
const MERGE: &str = "<<merge>>";

fn is_merge(k: &Node) -> bool {
    matches!(&k.value, Value::Tagged(t, _) if &**t == MERGE)
}

struct Open {
    pos: Pos,
    anchor: usize,
    tag: Option<Rc<str>>,
    size: Size,
    body: Body,
}

enum Body {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        /// The key whose value comes next.
        key: Option<Node>,
        seen: HashMap<KeyId, Pos>,
        /// Mappings named by `<<`, in order.
        merges: Vec<Node>,
    },
}

/// Keys written in the mapping win; then each merged mapping in order, first wins.
fn merge(entries: &mut Vec<(Node, Node)>, merges: &[Node]) {
    if merges.is_empty() {
        return;
    }
    let mut have: HashSet<KeyId> = entries.iter().filter_map(|(k, _)| key_id(k)).collect();
    for m in merges {
        if let Value::Map(src) = &m.value {
            for (k, v) in src.iter() {
                let fresh = key_id(k).is_none_or(|id| have.insert(id));
                if fresh {
                    entries.push((k.clone(), v.clone()));
                }
            }
        }
    }
}

fn key_id(k: &Node) -> Option<KeyId> {
    match &k.value {
        Value::Str(s) => Some(KeyId::Str(s.clone())),
        Value::Null => Some(KeyId::Other("null".into())),
        Value::Bool(b) => Some(KeyId::Other(format!("bool:{b}"))),
        Value::Number(n) => Some(KeyId::Other(format!("number:{n}"))),
        _ => None,
    }
}

fn show_key(k: &Node) -> String {
    match &k.value {
        Value::Str(s) => format!("`{}`", s.chars().take(60).collect::<String>()),
        _ => describe(k),
    }
}

mod input;
mod scalar;
#[cfg(test)]
mod tests;
