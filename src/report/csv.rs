//! `report.csv`: one row per item in manifest order, written from the state
//! file alone (so `vidbatch report DIR` can rewrite it without the manifest or
//! the network). Written to a temporary file and renamed, so a reader never
//! sees half a report.
//!
//! A report is opened in spreadsheets, and its cells carry user text (the
//! prompt) and server text (error messages): a cell a spreadsheet would
//! evaluate as a formula gets a leading `'` ([`neutralise`]). The JSON
//! reports carry the exact values.

use std::path::{Path, PathBuf};

use crate::state::{ItemRecord, Status};

pub const REPORT_FILE: &str = "report.csv";

/// The columns, in order.
pub const COLUMNS: &[&str] = &[
    "id",
    "kind",
    "status",
    "task_id",
    "external_task_id",
    "video_url",
    "path",
    "bytes",
    "sha256",
    "duration_s",
    "units",
    "attempts",
    "error_code",
    "error_message",
    "request_id",
    "submitted_at",
    "finished_at",
    "prompt",
    // Added with account pools; last, so positions of the others hold.
    "account",
];

#[derive(Debug, thiserror::Error)]
#[error("cannot write report {}: {source}", path.display())]
pub struct ReportError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Write `batch_dir/report.csv` from `records` (already in manifest order).
pub fn write_report(batch_dir: &Path, records: &[ItemRecord]) -> Result<PathBuf, ReportError> {
    let mut report = ReportWriter::create(batch_dir)?;
    for r in records {
        report.row(r)?;
    }
    report.finish()
}

/// `report.csv` written row by row into a temporary file, renamed into place
/// by [`finish`](Self::finish).
pub struct ReportWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: ::csv::Writer<std::io::BufWriter<std::fs::File>>,
}

impl ReportWriter {
    pub fn create(batch_dir: &Path) -> Result<ReportWriter, ReportError> {
        let path = batch_dir.join(REPORT_FILE);
        let tmp = batch_dir.join(".report.csv.tmp");
        let file = std::fs::File::create(&tmp).map_err(|source| ReportError {
            path: path.clone(),
            source,
        })?;
        let mut report = ReportWriter {
            path,
            tmp,
            w: ::csv::Writer::from_writer(std::io::BufWriter::new(file)),
        };
        report.record(COLUMNS)?;
        Ok(report)
    }

    fn record<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(
        &mut self,
        fields: I,
    ) -> Result<(), ReportError> {
        self.w.write_record(fields).map_err(|e| ReportError {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// One row per item; several videos of one task are joined with `;`.
    pub fn row(&mut self, r: &ItemRecord) -> Result<(), ReportError> {
        let join = |f: &dyn Fn(&crate::state::VideoRecord) -> Option<String>| {
            r.videos.iter().filter_map(f).collect::<Vec<_>>().join(";")
        };
        let bytes: u64 = r.videos.iter().filter_map(|v| v.bytes).sum();
        let status = r.status();
        let row = [
            r.id.clone(),
            r.kind.clone(),
            status.as_str().to_string(),
            r.task_id.clone().unwrap_or_default(),
            r.external_task_id.clone().unwrap_or_default(),
            join(&|v| v.url.clone()),
            join(&|v| v.path.clone()),
            if r.videos.iter().any(|v| v.bytes.is_some()) {
                bytes.to_string()
            } else {
                String::new()
            },
            join(&|v| v.sha256.clone()),
            join(&|v| v.duration.clone()),
            r.units.clone().unwrap_or_default(),
            r.submit_requests.to_string(),
            r.error_code.map(|c| c.to_string()).unwrap_or_default(),
            // A downloaded item's old notes are stale; a failed upload is not.
            if status == Status::Downloaded
                && !r
                    .error_message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(crate::state::uploads::ERROR_PREFIX))
            {
                String::new()
            } else {
                r.error_message.clone().unwrap_or_default()
            },
            r.request_id.clone().unwrap_or_default(),
            r.submitted_at.map(rfc3339).unwrap_or_default(),
            r.finished_at.map(rfc3339).unwrap_or_default(),
            r.prompt.clone().unwrap_or_default(),
            r.account.clone().unwrap_or_default(),
        ];
        self.record(row.into_iter().map(neutralise))
    }

    /// Flush, fsync and rename into place.
    pub fn finish(self) -> Result<PathBuf, ReportError> {
        let ReportWriter { path, tmp, w } = self;
        let io = |source: std::io::Error| ReportError {
            path: path.clone(),
            source,
        };
        let buf = w
            .into_inner()
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }
}

/// A cell a spreadsheet would evaluate (it starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return) gets a leading `'`, so it shows as text: a
/// prompt like `=HYPERLINK(...)` must not become a live formula.
pub fn neutralise(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Unix milliseconds as RFC 3339 UTC, second precision.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VideoRecord;

    #[test]
    fn one_row_per_item_with_every_column_and_quoted_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            ItemRecord {
                id: "a".into(),
                kind: "text2video".into(),
                prompt: Some("a cat, \"quoted\"\nand a newline".into()),
                status: Some(Status::Downloaded),
                task_id: Some("866889456698785798".into()),
                external_task_id: Some("vb-x-a-1".into()),
                submit_requests: 1,
                units: Some("1".into()),
                submitted_at: Some(0),
                videos: vec![VideoRecord {
                    n: 1,
                    url: Some("http://v/1.mp4".into()),
                    path: Some("videos/a.mp4".into()),
                    bytes: Some(42),
                    sha256: Some("ab".into()),
                    duration: Some("5.1".into()),
                    ..VideoRecord::default()
                }],
                ..ItemRecord::default()
            },
            ItemRecord {
                id: "b".into(),
                kind: "image2video".into(),
                status: Some(Status::Failed),
                error_code: Some(1301),
                error_message: Some("risk".into()),
                ..ItemRecord::default()
            },
        ];
        let path = write_report(dir.path(), &records).unwrap();
        let mut rd = ::csv::Reader::from_path(&path).unwrap();
        assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let rows: Vec<::csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][2], "downloaded");
        assert_eq!(&rows[0][7], "42");
        assert_eq!(&rows[0][15], "1970-01-01T00:00:00Z");
        assert_eq!(&rows[0][17], "a cat, \"quoted\"\nand a newline");
        assert_eq!(
            (&rows[1][2], &rows[1][12], &rows[1][13]),
            ("failed", "1301", "risk")
        );
        assert!(!dir.path().join(".report.csv.tmp").exists());
    }

    #[test]
    fn cells_a_spreadsheet_would_evaluate_are_neutralised() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![ItemRecord {
            id: "x".into(),
            kind: "text2video".into(),
            prompt: Some("=HYPERLINK(\"http://evil.example\",\"click\")".into()),
            status: Some(Status::Failed),
            error_message: Some("@SUM(1+1)*cmd|' /C calc'!A0".into()),
            ..ItemRecord::default()
        }];
        let path = write_report(dir.path(), &records).unwrap();
        let mut rd = ::csv::Reader::from_path(&path).unwrap();
        let row = rd.records().next().unwrap().unwrap();
        assert_eq!(&row[17], "'=HYPERLINK(\"http://evil.example\",\"click\")");
        assert_eq!(&row[13], "'@SUM(1+1)*cmd|' /C calc'!A0");
        for (cell, want) in [
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(neutralise(cell.to_string()), want);
        }
    }
}
