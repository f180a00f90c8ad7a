//! What the parser reads: the text capped at a lookahead past the last
//! event, with `--- ` read before a document that starts with a flow
//! collection (see the parent module for why).

use std::cell::Cell;
use std::rc::Rc;

/// Where `--- ` is read before a document that starts with `[` or `{`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shift {
    /// Character index in the text where `--- ` is read.
    pub index: usize,
    pub line: usize,
    /// 0-based column of that place.
    pub col: usize,
}

pub(super) const SHIFT: &[char] = &['-', '-', '-', ' '];

/// The line of a document whose first content is a flow collection (`--- `
/// goes at its start: a document marker must be in column 0).
pub(super) fn root_flow_start(text: &str) -> Option<Shift> {
    let mut index = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        match line.trim_start_matches([' ', '\t']).chars().next() {
            None | Some('\n' | '\r' | '#') => index += line.chars().count(),
            Some('[' | '{') => {
                return Some(Shift {
                    index,
                    line: n + 1,
                    col: 0,
                });
            }
            Some(_) => return None,
        }
    }
    None
}

/// The text as the parser reads it: at most `limit` characters in all (so
/// the scanner cannot buffer without bound), with `--- ` before a root flow
/// collection.
pub(super) struct Capped<'a> {
    pub chars: std::str::Chars<'a>,
    /// Characters handed out, including injected ones (the parser's index).
    pub pulled: usize,
    /// Characters of the text handed out.
    pub original: usize,
    pub inject_at: Option<usize>,
    pub injected: usize,
    pub limit: Rc<Cell<usize>>,
    pub cut: Rc<Cell<bool>>,
}

impl Iterator for Capped<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        if self.pulled >= self.limit.get() {
            self.cut.set(true);
            return None;
        }
        let c = if self.inject_at == Some(self.original) && self.injected < SHIFT.len() {
            self.injected += 1;
            SHIFT[self.injected - 1]
        } else {
            self.original += 1;
            self.chars.next()?
        };
        self.pulled += 1;
        Some(c)
    }
}
