//! What a run leaves for people and for pipelines: `report.csv` (one row per
//! item, manifest order), `index.html` (the review gallery), the JSON report
//! formats, `summary.json` and the end-of-run summary, and the live progress
//! display.
//!
//! [`write_outputs`] is the one pass over the state that writes both files
//! and adds up the [`Totals`] the summary needs: items stream from SQLite one
//! at a time, so 100k items cost one item's memory.

pub mod csv;
pub mod html;
pub mod json;
pub mod merge;
pub mod progress;
pub mod summary;

use std::path::{Path, PathBuf};

use crate::state::{self, ItemRecord, StateError, Status};

pub use self::csv::{REPORT_FILE, ReportError, ReportWriter, write_report};
pub use self::html::{GALLERY_FILE, GalleryMeta, GalleryWriter};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Write(#[from] ReportError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Failed items kept by name in [`Totals`] (the rest are counted).
pub const FAILED_SAMPLE: usize = 100;

/// Sums over the items a report covered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub items: u64,
    pub est_units: f64,
    /// Items without an estimate (unpriced, or from before schema 2).
    pub est_missing: u64,
    pub units_charged: f64,
    pub charged_items: u64,
    pub video_files: u64,
    pub video_bytes: u64,
    /// Items now `failed` or `timed_out`.
    pub failed: u64,
    /// The first [`FAILED_SAMPLE`] of them, in manifest order.
    pub failed_sample: Vec<FailedItem>,
}

/// An item that is `failed` or `timed_out`, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedItem {
    pub id: String,
    pub status: &'static str,
    pub code: Option<i64>,
    pub message: Option<String>,
}

impl Totals {
    pub fn add(&mut self, r: &ItemRecord) {
        self.items += 1;
        match r.est_units {
            Some(u) => self.est_units += u,
            None => self.est_missing += 1,
        }
        if let Some(u) = r.units_charged() {
            self.units_charged += u;
            self.charged_items += 1;
        }
        for v in &r.videos {
            if let (Some(_), Some(b)) = (&v.sha256, v.bytes) {
                self.video_files += 1;
                self.video_bytes += b;
            }
        }
        let status = r.status();
        if matches!(status, Status::Failed | Status::TimedOut) {
            self.failed += 1;
            if self.failed_sample.len() < FAILED_SAMPLE {
                self.failed_sample.push(FailedItem {
                    id: r.id.clone(),
                    status: status.as_str(),
                    code: r.error_code,
                    message: r.error_message.clone(),
                });
            }
        }
    }
}

/// The files [`write_outputs`] wrote, and what they add up to.
#[derive(Debug, Clone)]
pub struct Written {
    pub batch_id: String,
    pub report: PathBuf,
    pub gallery: PathBuf,
    pub totals: Totals,
}

/// Write `report.csv` and `index.html` of `batch_dir` from its state, in one
/// pass: every item the state knows, or (`listed_only`, for a run) those
/// the manifest it last synced lists.
pub fn write_outputs(batch_dir: &Path, listed_only: bool) -> Result<Written, OutputError> {
    let conn = state::open_ro(batch_dir)?;
    let meta = GalleryMeta {
        title: batch_title(batch_dir),
        batch_id: state::meta(&conn, "batch_id")?.unwrap_or_default(),
    };
    let mut report = ReportWriter::create(batch_dir)?;
    let mut gallery = GalleryWriter::create(batch_dir, &meta)?;
    let mut totals = Totals::default();
    let mut row = |r: ItemRecord| {
        let r = as_on_disk(r, batch_dir);
        report.row(&r)?;
        gallery.row(&r)?;
        totals.add(&r);
        Ok::<(), OutputError>(())
    };
    if listed_only {
        state::for_each_listed(&conn, &mut row)?;
    } else {
        state::for_each_item(&conn, true, &mut row)?;
    }
    Ok(Written {
        batch_id: meta.batch_id,
        report: report.finish()?,
        gallery: gallery.finish()?,
        totals,
    })
}

/// Files are the truth for `downloaded`: an item whose recorded video is not
/// on disk with its recorded size is reported `succeeded` (what it is until
/// a run fetches the file again), without a path or hash that no file backs.
/// The state itself is corrected by the next run, before it relies on it.
pub fn as_on_disk(mut r: ItemRecord, batch_dir: &Path) -> ItemRecord {
    if r.status() != Status::Downloaded {
        return r;
    }
    let mut missing = false;
    for v in &mut r.videos {
        let present = match (&v.path, v.bytes) {
            (Some(p), Some(b)) => std::fs::metadata(batch_dir.join(p))
                .map(|m| m.is_file() && m.len() == b)
                .unwrap_or(false),
            _ => false,
        };
        if !present {
            missing = true;
            v.path = None;
            v.bytes = None;
            v.sha256 = None;
        }
    }
    if missing || r.videos.is_empty() {
        r.status = Some(Status::Succeeded);
        r.error_message = Some(
            "the video file is missing or changed: run the same command to download it again"
                .into(),
        );
    }
    r
}

/// The batch folder's name, for page titles.
fn batch_title(batch_dir: &Path) -> String {
    let abs = std::fs::canonicalize(batch_dir).unwrap_or_else(|_| batch_dir.to_path_buf());
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| batch_dir.display().to_string())
}
