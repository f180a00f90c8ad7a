//! CSV manifests: a header row of item field names, one item per row.
//!
//! Streamed record by record (one reused `ByteRecord`), so a 100,000-row file
//! costs the validated items and nothing more. UTF-8 with or without BOM
//! (csv-core strips it), CRLF, quoted commas and newlines are the `csv`
//! crate's job; cells are decoded as UTF-8 one by one so a bad byte is a
//! located problem, not the end of the file. An empty cell means "absent".
//! Locations are `file.csv:LINE (column NAME)`, LINE being the physical line
//! where the record starts (see [`LineIndex`] for why that needs more than
//! `Position::line()`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::Item;
use super::validate::{
    Field, Origin, Partial, Raw, Validator, field_names, likely_field, unknown_name,
};

/// Read all rows of `input` into `items`, recording problems in `v`.
/// Returns the number of data rows, or `None` when there was no header to
/// read rows against. Only I/O failures are errors.
pub(crate) fn read<R: Read>(
    input: R,
    file: &str,
    base_dir: &Path,
    v: &mut Validator,
    items: &mut dyn FnMut(Item),
) -> Result<Option<usize>, std::io::Error> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let cap = input.capacity();
    let head = input.fill_buf()?;
    if head.iter().all(|b| b.is_ascii_whitespace()) && head.len() < cap {
        v.problem(
            file.to_string(),
            "empty file; expected a header row of field names, then one item per row",
        );
        return Ok(None);
    }
    // Text never holds NUL; this catches images, archives and other binaries
    // before they turn into thousands of nonsense problems.
    if head.contains(&0) {
        v.problem(
            file.to_string(),
            "this is not a CSV text file (it contains NUL bytes)",
        );
        return Ok(None);
    }

    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(LineIndex::new(input));
    let mut rec = ::csv::ByteRecord::new();

    if !next(&mut rdr, &mut rec, file, v)? {
        v.problem(
            file.to_string(),
            "empty file; expected a header row of field names",
        );
        return Ok(None);
    }
    let header_line = line_of(&rdr, &rec);
    let names = field_names();
    let mut columns: Vec<Option<Field>> = Vec::with_capacity(rec.len());
    // fal: columns the manifest does not know, sent as the model's input (text).
    let mut extra_columns: Vec<(usize, String)> = Vec::new();
    // `promt` in the header: every row would also lack `prompt`; say it once.
    let mut misspelled: Vec<Field> = Vec::new();
    for (i, cell) in rec.iter().enumerate() {
        let loc = format!("{file}:{header_line}");
        let name = match std::str::from_utf8(cell) {
            Ok(s) => s,
            Err(_) => {
                v.problem(loc, format!("header column {} is not valid UTF-8", i + 1));
                columns.push(None);
                continue;
            }
        };
        let field = if name.is_empty() {
            v.problem(loc, format!("header column {} has no name", i + 1));
            None
        } else if let Some(f) = Field::from_name(name)
            .filter(|f| !v.passthrough || super::validate::passthrough_reads(*f))
        {
            if columns.contains(&Some(f)) {
                v.problem(loc, format!("column `{name}` appears twice in the header"));
                None
            } else {
                Some(f)
            }
        } else if v.passthrough && name == "model" {
            Some(Field::ModelName)
        } else if let Some(meant) = super::validate::own_field_typo(name).filter(|_| v.passthrough)
        {
            v.problem(
                loc,
                format!("unknown column `{name}`; did you mean `{meant}`?"),
            );
            None
        } else if v.passthrough {
            // fal: the column is the model's input, sent as written.
            extra_columns.push((i, name.to_string()));
            None
        } else {
            v.problem(loc, unknown_name("column", name, &names));
            misspelled.extend(likely_field(name));
            None
        };
        columns.push(field);
    }

    let mut rows = 0usize;
    while next(&mut rdr, &mut rec, file, v)? {
        rows += 1;
        let line = line_of(&rdr, &rec);
        let origin = Origin::Csv { file, line };
        if rec.len() != columns.len() {
            v.problem(
                origin.at(None),
                format!(
                    "row has {} field(s) but the header has {} column(s); quote cells that contain commas",
                    rec.len(),
                    columns.len()
                ),
            );
            continue;
        }
        let mut p = Partial::default();
        for f in &misspelled {
            p.mark_bad(*f);
        }
        for (cell, col) in rec.iter().zip(&columns) {
            let Some(field) = *col else { continue };
            if cell.is_empty() {
                continue;
            }
            match std::str::from_utf8(cell) {
                Ok(s) => v.field(&mut p, field, Raw::Cell(s), origin, base_dir),
                Err(e) => v.field_problem(
                    &mut p,
                    field,
                    origin,
                    format!(
                        "not valid UTF-8 (bad byte at offset {} in the cell)",
                        e.valid_up_to()
                    ),
                ),
            }
        }
        for (i, name) in &extra_columns {
            match rec.get(*i).map(std::str::from_utf8) {
                Some(Ok(s)) if !s.is_empty() => {
                    p.extra
                        .insert(name.clone(), serde_json::Value::String(s.to_string()));
                }
                Some(Err(_)) => v.problem(origin.at(Some(name)), "not valid UTF-8".to_string()),
                _ => {}
            }
        }
        if let Some(item) = v.finish(p, origin) {
            items(item);
        }
    }
    Ok(Some(rows))
}

/// Read one record; a non-I/O CSV error becomes a problem and reading goes on.
fn next<R: Read>(
    rdr: &mut ::csv::Reader<R>,
    rec: &mut ::csv::ByteRecord,
    file: &str,
    v: &mut Validator,
) -> Result<bool, std::io::Error> {
    // With flexible byte records the reader only fails on I/O; the bound is
    // there so an unexpected persistent error cannot spin forever.
    for _ in 0..100 {
        match rdr.read_byte_record(rec) {
            Ok(more) => return Ok(more),
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                match e.into_kind() {
                    ::csv::ErrorKind::Io(io) => return Err(io),
                    other => v.problem(
                        format!("{file}:{line}"),
                        format!("malformed CSV: {other:?}"),
                    ),
                }
            }
        }
    }
    v.problem(
        file.to_string(),
        "too many malformed CSV records; stopped reading",
    );
    Ok(false)
}

/// The physical line a record starts on.
fn line_of<R: Read>(rdr: &::csv::Reader<LineIndex<R>>, rec: &::csv::ByteRecord) -> u64 {
    match rec.position() {
        Some(p) => p.line() + rdr.get_ref().newlines_skipped_at(p.byte()),
        None => 0,
    }
}

/// Remembers where each `\n` of the raw stream is and which CR/LF run it
/// belongs to.
///
/// A record's `Position` is where the reader stood *before* csv-core skipped
/// the line-ending bytes in front of the record: with CRLF files the `\n`
/// of the previous line, after blank lines the blank lines. Its `line()` is
/// then one (or more) short of the line the record is written on. This index
/// counts the `\n`s in the CR/LF run at the position, which is exactly what
/// csv-core skipped. Entries behind the reader are dropped as records are
/// located, so memory stays at about one read-ahead buffer's worth.
struct LineIndex<R> {
    inner: R,
    offset: u64,
    run_start: Option<u64>,
    /// (offset of a `\n`, start offset of its CR/LF run)
    newlines: RefCell<VecDeque<(u64, u64)>>,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        LineIndex {
            inner,
            offset: 0,
            run_start: None,
            newlines: RefCell::new(VecDeque::new()),
        }
    }

    /// How many `\n` lie between `byte` and the end of the CR/LF run holding it.
    fn newlines_skipped_at(&self, byte: u64) -> u64 {
        let mut q = self.newlines.borrow_mut();
        while q.front().is_some_and(|(off, _)| *off < byte) {
            q.pop_front();
        }
        match q.front() {
            Some(&(_, run)) if run <= byte => {
                q.iter().take_while(|(_, r)| *r == run).count() as u64
            }
            _ => 0,
        }
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let q = self.newlines.get_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            let at = self.offset + i as u64;
            match b {
                b'\r' | b'\n' => {
                    let run = *self.run_start.get_or_insert(at);
                    if *b == b'\n' {
                        q.push_back((at, run));
                    }
                }
                _ => self.run_start = None,
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}
