//! The printed tables: one per scenario (measure, value, bound / target,
//! ratio, verdict) and the issue-12 table, both as Markdown so a run's
//! output can be pasted into benches/README.md as it is.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Size;

/// A Markdown table with columns padded to their widest cell.
pub fn grid(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for (i, c) in cells.enumerate().take(w.len()) {
            let pad = w[i].saturating_sub(c.chars().count());
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut out = line(&mut head.iter().copied());
    out.push('|');
    for width in &w {
        let _ = write!(out, "{}|", "-".repeat(width + 2));
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// The verdict cell: smoke runs judge nothing (their sizes mean nothing).
pub fn verdict(size: Size, pass: bool) -> String {
    match (size, pass) {
        (Size::Smoke, _) => "(smoke)".to_owned(),
        (_, true) => "pass".to_owned(),
        (_, false) => "MISS".to_owned(),
    }
}

/// One scenario's table: a title, a parameter line and rows of
/// (measure, value, bound/target, ratio, verdict).
pub struct Table {
    title: String,
    params: String,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    size: Size,
}

impl Table {
    pub fn new(title: &str, params: String, size: Size) -> Table {
        Table {
            title: title.to_owned(),
            params,
            rows: Vec::new(),
            notes: Vec::new(),
            size,
        }
    }

    /// A figure with no target.
    pub fn info(&mut self, what: &str, value: String) {
        self.rows.push(vec![
            what.to_owned(),
            value,
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    /// A figure judged against a target; `pass` says whether it met it.
    pub fn judged(&mut self, what: &str, value: String, target: String, ratio: String, pass: bool) {
        self.rows.push(vec![
            what.to_owned(),
            value,
            target,
            ratio,
            verdict(self.size, pass),
        ]);
    }

    pub fn note(&mut self, s: String) {
        self.notes.push(s);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "\n## {}", self.title)?;
        writeln!(f, "parameters: {}", self.params)?;
        let head = ["measure", "value", "bound / target", "ratio", "verdict"];
        write!(f, "{}", grid(&head, &self.rows))?;
        for n in &self.notes {
            writeln!(f, "  - {n}")?;
        }
        Ok(())
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}
