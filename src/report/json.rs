//! The report as JSON: one object per item ([`Row`]), the same facts as
//! `report.csv` with types (numbers as numbers, settings as an object, the
//! error as `{code, message}`) and exact text (no spreadsheet guard).
//! [`JsonStream`] writes a JSON array or JSON Lines one item at a time, so a
//! 100k-item report never exists as one value in memory.

use std::io::Write;

use serde::Serialize;

use super::csv::rfc3339;
use crate::state::{ItemRecord, Status, VideoRecord};

/// One item of the JSON report (also what `vidbatch ls --json` prints).
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub kind: &'a str,
    pub status: &'static str,
    pub prompt: Option<&'a str>,
    /// The item's settings as validated (`null` in a state from before schema 2).
    pub params: Option<serde_json::Value>,
    pub est_units: Option<f64>,
    pub task_id: Option<&'a str>,
    pub external_task_id: Option<&'a str>,
    /// The account (by name, from the accounts file) whose credentials sent
    /// the create; `null`: the batch's only account.
    pub account: Option<&'a str>,
    /// Create requests sent for this item, all attempts.
    pub attempts: u32,
    /// `final_unit_deduction` as the provider wrote it.
    pub units: Option<&'a str>,
    /// `units` as a number, when it is one.
    pub units_charged: Option<f64>,
    pub error: Option<ErrorField<'a>>,
    pub request_id: Option<&'a str>,
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
    pub videos: Vec<VideoField<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ErrorField<'a> {
    pub code: Option<i64>,
    pub message: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct VideoField<'a> {
    pub n: u32,
    pub url: Option<&'a str>,
    /// Relative to the batch folder.
    pub path: Option<&'a str>,
    pub bytes: Option<u64>,
    pub sha256: Option<&'a str>,
    /// Seconds, as the provider reported.
    pub duration_s: Option<f64>,
}

impl<'a> Row<'a> {
    pub fn new(r: &'a ItemRecord) -> Row<'a> {
        let status = r.status();
        // A downloaded item's last note (e.g. a download retried and then
        // fine) is history, not an error; report.csv leaves it out too.
        let error = (status != Status::Downloaded
            && (r.error_code.is_some() || r.error_message.is_some()))
        .then_some(ErrorField {
            code: r.error_code,
            message: r.error_message.as_deref(),
        });
        Row {
            id: &r.id,
            seq: r.seq,
            kind: &r.kind,
            status: status.as_str(),
            prompt: r.prompt.as_deref(),
            params: params_value(r.params.as_deref()),
            est_units: r.est_units,
            task_id: r.task_id.as_deref(),
            external_task_id: r.external_task_id.as_deref(),
            account: r.account.as_deref(),
            attempts: r.submit_requests,
            units: r.units.as_deref(),
            units_charged: r.units_charged(),
            error,
            request_id: r.request_id.as_deref(),
            submitted_at: r.submitted_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            updated_at: r.updated_at.map(rfc3339),
            videos: r.videos.iter().map(video).collect(),
        }
    }
}

fn video(v: &VideoRecord) -> VideoField<'_> {
    VideoField {
        n: v.n,
        url: v.url.as_deref(),
        path: v.path.as_deref(),
        bytes: v.bytes,
        sha256: v.sha256.as_deref(),
        duration_s: seconds(v.duration.as_deref()),
    }
}

/// A provider's duration text ("5.1") as seconds.
pub fn seconds(s: Option<&str>) -> Option<f64> {
    s.and_then(|d| d.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
}

/// The stored settings as a JSON object; anything else (a hand-edited
/// state) is dropped rather than passed on unchecked.
pub fn params_value(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .filter(serde_json::Value::is_object)
}

/// How [`JsonStream`] lays items out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON array (`[`, items separated by `,`, `]`).
    Array,
    /// JSON Lines: one object per line.
    Lines,
}

/// Writes items one at a time as a JSON array or JSON Lines.
pub struct JsonStream<W: Write> {
    w: W,
    layout: Layout,
    written: u64,
}

impl<W: Write> JsonStream<W> {
    pub fn new(w: W, layout: Layout) -> JsonStream<W> {
        JsonStream {
            w,
            layout,
            written: 0,
        }
    }

    pub fn item(&mut self, r: &ItemRecord) -> std::io::Result<()> {
        let sep: &[u8] = match (self.layout, self.written) {
            (Layout::Array, 0) => b"[\n",
            (Layout::Array, _) => b",\n",
            (Layout::Lines, _) => b"",
        };
        self.w.write_all(sep)?;
        serde_json::to_writer(&mut self.w, &Row::new(r))?;
        if self.layout == Layout::Lines {
            self.w.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }

    /// Close the array (if any) and flush; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.layout == Layout::Array {
            self.w
                .write_all(if self.written == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<ItemRecord> {
        vec![
            ItemRecord {
                id: "a".into(),
                kind: "text2video".into(),
                prompt: Some("=not a formula here".into()),
                status: Some(Status::Downloaded),
                units: Some("2".into()),
                params: Some(r#"{"model_name":"kling-v1-6","duration":"5"}"#.into()),
                est_units: Some(2.0),
                error_message: Some("an old download note".into()),
                submitted_at: Some(1_000),
                videos: vec![VideoRecord {
                    n: 1,
                    path: Some("videos/a.mp4".into()),
                    bytes: Some(10),
                    duration: Some("5.1".into()),
                    ..VideoRecord::default()
                }],
                ..ItemRecord::default()
            },
            ItemRecord {
                id: "b".into(),
                seq: 1,
                kind: "text2video".into(),
                status: Some(Status::Failed),
                error_code: Some(1301),
                error_message: Some("@risk".into()),
                params: Some("not json".into()),
                ..ItemRecord::default()
            },
        ]
    }

    #[test]
    fn an_array_and_json_lines_carry_typed_exact_values() {
        let recs = records();
        let mut s = JsonStream::new(Vec::new(), Layout::Array);
        for r in &recs {
            s.item(r).unwrap();
        }
        let v: serde_json::Value = serde_json::from_slice(&s.finish().unwrap()).unwrap();
        let a = &v[0];
        assert_eq!(a["prompt"], "=not a formula here", "no spreadsheet guard");
        assert_eq!(a["params"]["model_name"], "kling-v1-6");
        assert_eq!(a["units_charged"], 2.0);
        assert_eq!(a["error"], serde_json::Value::Null, "downloaded: no error");
        assert_eq!(a["submitted_at"], "1970-01-01T00:00:01Z");
        assert_eq!(a["videos"][0]["duration_s"], 5.1);
        let b = &v[1];
        assert_eq!(b["error"]["code"], 1301);
        assert_eq!(b["error"]["message"], "@risk");
        assert_eq!(b["params"], serde_json::Value::Null, "bad JSON is dropped");

        let mut s = JsonStream::new(Vec::new(), Layout::Lines);
        for r in &recs {
            s.item(r).unwrap();
        }
        let out = String::from_utf8(s.finish().unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["status"], "failed");
    }

    #[test]
    fn an_empty_array_is_still_json() {
        let out = JsonStream::new(Vec::new(), Layout::Array).finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!([]));
    }
}
