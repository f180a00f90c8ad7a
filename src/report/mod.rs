//! What a run leaves for people: `report.csv` (one row per item, manifest
//! order), the live progress display, and the end-of-run summary.

pub mod csv;
pub mod progress;

pub use self::csv::{REPORT_FILE, ReportWriter, write_report};
