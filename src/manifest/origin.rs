//! Where a value was written ([`Origin`]): the file, the section and item,
//! and the line and column, turned into the locations problems carry.

use std::path::Path;

use super::yaml_tree::Pos;

/// Where a value was written, for messages.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// `file.yaml:14:15: items[3].duration` or `file.yaml:2:9: defaults.mode`.
    Yaml {
        file: &'a str,
        section: &'a str,
        index: Option<usize>,
        /// The line and column the location points at (the item, or one
        /// field's key or value).
        pos: Option<Pos>,
    },
    /// `file.csv:12 (column duration)`: the physical line the record starts on.
    Csv { file: &'a str, line: u64 },
}

impl Origin<'_> {
    /// The short label stored in [`Item::origin`](super::Item::origin).
    pub fn label(&self) -> String {
        match self {
            Origin::Yaml {
                section,
                index: Some(i),
                ..
            } => format!("{section}[{i}]"),
            Origin::Yaml {
                section,
                index: None,
                ..
            } => (*section).to_string(),
            Origin::Csv { file, line } => format!("{}:{line}", file_name(file)),
        }
    }

    /// The same place, pointing at `pos` (YAML only).
    pub fn with_pos(self, at: Pos) -> Self {
        match self {
            Origin::Yaml {
                file,
                section,
                index,
                ..
            } => Origin::Yaml {
                file,
                section,
                index,
                pos: Some(at),
            },
            csv => csv,
        }
    }

    pub(super) fn pos(&self) -> Option<Pos> {
        match self {
            Origin::Yaml { pos, .. } => *pos,
            Origin::Csv { .. } => None,
        }
    }

    /// Full location for a [`Problem`](super::Problem), optionally of one field.
    pub fn at(&self, field: Option<&str>) -> String {
        let file_pos = |file: &str| match self.pos() {
            Some(p) => format!("{file}:{p}"),
            None => file.to_string(),
        };
        match (self, field) {
            (Origin::Yaml { file, .. }, Some(f)) => {
                format!("{}: {}.{f}", file_pos(file), self.label())
            }
            (Origin::Yaml { file, .. }, None) => format!("{}: {}", file_pos(file), self.label()),
            (Origin::Csv { file, line }, Some(f)) => format!("{file}:{line} (column {f})"),
            (Origin::Csv { file, line }, None) => format!("{file}:{line}"),
        }
    }
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}
