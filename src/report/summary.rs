//! The end of a run: `report.csv` and `index.html` rewritten, `summary.json`
//! (the file a pipeline reads) and the summary a person reads on stdout.
//!
//! The printed summary says what the run did, plainly: "nothing to do" when
//! there was nothing to do, what a resume picked up, which failures are
//! from earlier runs and which flag retries them, and — after Ctrl-C — that
//! tasks already created keep generating (and costing) on the provider's
//! side until a rerun collects them.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::csv::{ReportError, rfc3339};
use super::{FailedItem, OutputError, Totals, Written, write_outputs};
use crate::scheduler::{Requests, RunOutcome};
use crate::state::Status;

pub const SUMMARY_FILE: &str = "summary.json";
/// Version of the `summary.json` layout (fields are only ever added).
pub const SUMMARY_FORMAT: u32 = 1;
/// Problems listed by name on stdout.
const PRINT_MAX: usize = 20;

/// What `run` hands over when the engine has stopped.
pub struct FinishedRun<'a> {
    pub batch_dir: &'a Path,
    pub outcome: &'a RunOutcome,
    /// The process exit code this run ends with.
    pub exit_code: i32,
    pub started_at: SystemTime,
    /// What this run decided beyond the engine: the batch's name, a
    /// deliberate second generation, edits after submit.
    pub batch: BatchNotes,
}

/// The batch-level facts of a run, for `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchNotes {
    /// The name every task key derives from.
    pub name: String,
    /// `--new-batch`: every item generated (and paid for) again.
    pub new_batch: bool,
    /// The state was rebuilt by lookup (the folder held a batch without a usable state).
    pub rebuilt_state: bool,
    /// Items edited in the manifest after they were submitted, kept as submitted.
    pub changed_kept: Vec<String>,
    /// Items edited after submit and created again (`--resubmit-changed`): a new paid task each.
    pub resubmitted: Vec<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: u32,
    pub vidbatch_version: &'static str,
    pub batch_dir: PathBuf,
    pub batch_id: String,
    pub report: PathBuf,
    pub gallery: PathBuf,
    pub started_at: String,
    pub finished_at: String,
    pub wall_time_s: f64,
    pub exit_code: i32,
    /// `done`, `items_failed`, `aborted` or `interrupted`.
    pub result: &'static str,
    pub interrupted: bool,
    pub aborted: Option<String>,
    /// Accounts of a pool that got nothing new after an error of their own
    /// (balance, auth), by name, and why.
    pub drained_accounts: Vec<DrainedAccount>,
    /// The run found nothing to submit, poll or download.
    pub nothing_to_do: bool,
    pub items: u64,
    /// Items of the manifest by status at the end (every status listed).
    pub by_status: ByStatus,
    /// ... and when the run started.
    pub at_start: ByStatus,
    /// Tasks that may still be running at the provider (submitting, submitted, processing).
    pub in_flight: u64,
    pub units: Units,
    pub requests: Requests,
    pub videos: Videos,
    /// Items failed or timed out (all runs); `failed` lists the first 100.
    pub failed_total: u64,
    pub failed: Vec<FailedItem>,
    /// Problems this run ran into (failures, timeouts, downloads left for later).
    pub problems_this_run: u64,
    pub batch: BatchNotes,
    /// `--max-units`, when set: the cap, what the batch committed, what it held back.
    pub spend_cap: Option<crate::scheduler::CapOutcome>,
}

/// "3 downloaded, 1 failed": the statuses that have items.
pub fn status_parts(by_status: &ByStatus) -> String {
    let parts: Vec<String> = by_status
        .0
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| format!("{n} {}", st.as_str().replace('_', " ")))
        .collect();
    parts.join(", ")
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainedAccount {
    pub account: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Units {
    /// Sum of the price-table estimates (kling-api.md §14; uncertain).
    pub estimated: f64,
    /// Items without an estimate: not priced, or synced before schema 2 (not in `estimated`).
    pub unpriced_items: u64,
    /// Sum of `final_unit_deduction` where it is a number.
    pub charged: f64,
    pub charged_items: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Videos {
    pub files: u64,
    pub bytes: u64,
}

/// Rewrite the report and the gallery, write `summary.json`, print the
/// summary. Returns the summary.
pub fn finish_run(run: &FinishedRun<'_>) -> Result<Summary, OutputError> {
    let written = write_outputs(run.batch_dir, true)?;
    let summary = build(run, &written);
    write_summary(run.batch_dir, &summary)?;
    crate::out!("{}", human(&summary, run.outcome, &written.totals));
    Ok(summary)
}

/// Counts for every status, in lifecycle order (a JSON object whose keys
/// keep that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByStatus(pub Vec<(Status, u64)>);

impl ByStatus {
    pub fn get(&self, s: Status) -> u64 {
        self.0
            .iter()
            .find(|(st, _)| *st == s)
            .map_or(0, |(_, n)| *n)
    }
}

impl Serialize for ByStatus {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(self.0.len()))?;
        for (s, n) in &self.0 {
            m.serialize_entry(s.as_str(), n)?;
        }
        m.end()
    }
}

fn by_status(counts: &BTreeMap<Status, u64>) -> ByStatus {
    ByStatus(
        Status::ALL
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect(),
    )
}

fn in_flight(counts: &BTreeMap<Status, u64>) -> u64 {
    [Status::Submitting, Status::Submitted, Status::Processing]
        .iter()
        .map(|s| counts.get(s).copied().unwrap_or(0))
        .sum()
}

fn build(run: &FinishedRun<'_>, written: &Written) -> Summary {
    let o = run.outcome;
    let t = &written.totals;
    let now = SystemTime::now();
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let result = if o.interrupted {
        "interrupted"
    } else if o.aborted.is_some() {
        "aborted"
    } else if o.all_downloaded() {
        "done"
    } else {
        "items_failed"
    };
    Summary {
        format: SUMMARY_FORMAT,
        vidbatch_version: env!("CARGO_PKG_VERSION"),
        batch_dir: abs(run.batch_dir),
        batch_id: written.batch_id.clone(),
        report: abs(&written.report),
        gallery: abs(&written.gallery),
        started_at: rfc3339(ms(run.started_at)),
        finished_at: rfc3339(ms(now)),
        wall_time_s: now
            .duration_since(run.started_at)
            .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
            .unwrap_or(0.0),
        exit_code: run.exit_code,
        result,
        interrupted: o.interrupted,
        aborted: o.aborted.clone(),
        drained_accounts: o
            .drained
            .iter()
            .map(|(account, reason)| DrainedAccount {
                account: account.clone(),
                reason: reason.clone(),
            })
            .collect(),
        nothing_to_do: nothing_to_do(o),
        items: o.counts.values().sum(),
        by_status: by_status(&o.counts),
        at_start: by_status(&o.at_start),
        in_flight: in_flight(&o.counts),
        units: Units {
            estimated: t.est_units,
            unpriced_items: t.est_missing,
            charged: t.units_charged,
            charged_items: t.charged_items,
        },
        requests: o.requests,
        videos: Videos {
            files: t.video_files,
            bytes: t.video_bytes,
        },
        failed_total: t.failed,
        failed: t.failed_sample.clone(),
        problems_this_run: o.failures.len() as u64,
        batch: run.batch.clone(),
        spend_cap: o.cap.clone(),
    }
}

/// Nothing was sent or fetched and nothing changed: the batch was already
/// as far as it can get without a flag (e.g. `--retry-failed`).
fn nothing_to_do(o: &RunOutcome) -> bool {
    !o.interrupted
        && o.aborted.is_none()
        && o.failures.is_empty()
        && o.requests.total() == 0
        && o.at_start == o.counts
}

/// Write `summary.json` (temporary file, fsync, rename).
pub fn write_summary(batch_dir: &Path, summary: &Summary) -> Result<PathBuf, ReportError> {
    let path = batch_dir.join(SUMMARY_FILE);
    let tmp = batch_dir.join(".summary.json.tmp");
    let io = |source: std::io::Error| ReportError {
        path: path.clone(),
        source,
    };
    let mut text = serde_json::to_vec_pretty(summary).map_err(|e| io(e.into()))?;
    text.push(b'\n');
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// The summary a person reads (stdout).
pub fn human(s: &Summary, o: &RunOutcome, t: &Totals) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let downloaded = s.by_status.get(Status::Downloaded);
    let mut w = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    if s.nothing_to_do {
        let mut line = format!("nothing to do: {downloaded} of {} downloaded", s.items);
        if s.failed_total > 0 {
            let _ = write!(line, ", {} failed", s.failed_total);
        }
        w(line);
    } else {
        if let Some(line) = resumed_line(&s.at_start, s.items) {
            w(line);
        }
        w(format!("{} items: {}", s.items, status_parts(&s.by_status)));
    }
    // What went wrong in this run, then what is still failed from before.
    let this_run: HashSet<&str> = o.failures.iter().map(|f| f.id.as_str()).collect();
    if !o.failures.is_empty() {
        w("problems:".into());
        for f in o.failures.iter().take(PRINT_MAX) {
            let code = f.code.map(|c| format!(" [{c}]")).unwrap_or_default();
            w(format!("  {} ({}){code}: {}", f.id, f.status, f.message));
        }
        if o.failures.len() > PRINT_MAX {
            w(format!(
                "  … and {} more (see the report)",
                o.failures.len() - PRINT_MAX
            ));
        }
    }
    let earlier: Vec<&FailedItem> = t
        .failed_sample
        .iter()
        .filter(|f| f.status == "failed" && !this_run.contains(f.id.as_str()))
        .collect();
    if !earlier.is_empty() {
        w("failed in an earlier run:".into());
        for f in earlier.iter().take(PRINT_MAX) {
            let code = f.code.map(|c| format!(" [{c}]")).unwrap_or_default();
            let msg = f.message.as_deref().unwrap_or("no reason recorded");
            w(format!("  {}{code}: {msg}", f.id));
        }
        if earlier.len() > PRINT_MAX {
            w("  … and more (see the report)".into());
        }
    }
    let failed = s.by_status.get(Status::Failed);
    if failed > 0 && !o.interrupted {
        w(format!(
            "{failed} failed item(s) stay failed; run again with --retry-failed to give them a \
             new attempt (a new paid task each)"
        ));
    }
    let unknown = s.by_status.get(Status::Unknown);
    if unknown > 0 {
        w(format!(
            "{unknown} item(s) unknown: their create may have reached the provider (and been \
             charged) but it cannot be looked up, so they are not resent; run again with \
             --resubmit-unknown to send them again (a second paid task each if the first was made)"
        ));
    }
    for d in &s.drained_accounts {
        w(format!(
            "account `{}` was drained (its tasks in flight finished, it got nothing new): {}",
            d.account, d.reason
        ));
    }
    if let Some(reason) = &s.aborted {
        w(format!("aborted: {reason}"));
    }
    if o.interrupted {
        let waiting = s.in_flight;
        if waiting > 0 {
            w(format!(
                "interrupted: state saved. {waiting} task(s) already sent to the provider keep \
                 generating — and costing — on its side; run the same command again to collect \
                 them (nothing is submitted twice)"
            ));
        } else {
            w("interrupted: state saved; run the same command again to resume".into());
        }
    } else if !o.all_downloaded() && s.aborted.is_none() {
        let unfinished = s.items.saturating_sub(downloaded + failed);
        if unfinished > 0 {
            w(format!(
                "{unfinished} item(s) unfinished; run the same command again to continue"
            ));
        }
    }
    if !s.nothing_to_do {
        let mut units = format!("units: {} charged", fmt_units(s.units.charged));
        let _ = write!(units, ", {} estimated", fmt_units(s.units.estimated));
        if s.units.unpriced_items > 0 {
            let _ = write!(units, " (+{} item(s) not priced)", s.units.unpriced_items);
        }
        w(units);
        let r = &s.requests;
        w(format!(
            "requests: {} create, {} query, {} list, {} lookup, {} download ({} retried)",
            r.create, r.query, r.list, r.lookup, r.download, r.retries
        ));
    }
    w(format!("videos: {}", s.batch_dir.join("videos").display()));
    w(format!("gallery: {}", s.gallery.display()));
    w(format!("report: {}", s.report.display()));
    out
}

/// "resumed: 5 already downloaded, 3 in flight, 12 pending", when the run
/// did not start from scratch.
fn resumed_line(at_start: &ByStatus, items: u64) -> Option<String> {
    let n = |k: &str| Status::parse(k).map_or(0, |s| at_start.get(s));
    if n("pending") == items {
        return None;
    }
    let mut parts = Vec::new();
    let mut add = |count: u64, what: &str| {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    };
    add(n("downloaded"), "already downloaded");
    add(
        n("submitting") + n("submitted") + n("processing"),
        "in flight",
    );
    add(n("timed_out"), "timed out (polled again)");
    add(n("succeeded"), "to download");
    add(n("failed"), "failed earlier");
    add(n("unknown"), "unknown (not resent)");
    add(n("pending"), "pending");
    Some(format!("resumed: {}", parts.join(", ")))
}

/// Units for people: at most two decimals, none when whole.
pub fn fmt_units(u: f64) -> String {
    let r = (u * 100.0).round() / 100.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Failure;

    fn counts(pairs: &[(Status, u64)]) -> BTreeMap<Status, u64> {
        pairs.iter().copied().collect()
    }

    fn summary_of(o: &RunOutcome, t: &Totals) -> Summary {
        let written = Written {
            batch_id: "b".into(),
            report: "out/report.csv".into(),
            gallery: "out/index.html".into(),
            totals: t.clone(),
        };
        let run = FinishedRun {
            batch_dir: Path::new("out"),
            outcome: o,
            exit_code: 0,
            started_at: SystemTime::now(),
            batch: BatchNotes::default(),
        };
        build(&run, &written)
    }

    fn outcome(at_start: &[(Status, u64)], end: &[(Status, u64)]) -> RunOutcome {
        RunOutcome {
            counts: counts(end),
            aborted: None,
            interrupted: false,
            failures: Vec::new(),
            at_start: counts(at_start),
            requests: Requests::default(),
            cap: None,
            drained: Vec::new(),
            learned: Vec::new(),
        }
    }

    #[test]
    fn a_rerun_with_nothing_to_do_says_so() {
        let o = outcome(&[(Status::Downloaded, 7)], &[(Status::Downloaded, 7)]);
        let t = Totals::default();
        let s = summary_of(&o, &t);
        assert!(s.nothing_to_do);
        let text = human(&s, &o, &t);
        assert!(
            text.starts_with("nothing to do: 7 of 7 downloaded\n"),
            "{text}"
        );
        assert!(!text.contains("requests:"), "{text}");
    }

    #[test]
    fn a_resume_says_what_it_picked_up_and_earlier_failures_name_the_flag() {
        let mut o = outcome(
            &[
                (Status::Downloaded, 5),
                (Status::Processing, 3),
                (Status::Pending, 12),
                (Status::Failed, 1),
            ],
            &[(Status::Downloaded, 20), (Status::Failed, 1)],
        );
        o.requests.create = 12;
        let t = Totals {
            failed: 1,
            failed_sample: vec![FailedItem {
                id: "old".into(),
                status: "failed",
                code: Some(1301),
                message: Some("risk".into()),
            }],
            ..Totals::default()
        };
        let s = summary_of(&o, &t);
        let text = human(&s, &o, &t);
        assert!(
            text.starts_with(
                "resumed: 5 already downloaded, 3 in flight, 1 failed earlier, 12 pending\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("failed in an earlier run:\n  old [1301]: risk\n"),
            "{text}"
        );
        assert!(text.contains("--retry-failed"), "{text}");
        assert!(text.contains("requests: 12 create"), "{text}");
    }

    #[test]
    fn an_interrupt_says_created_tasks_keep_costing_and_how_to_collect_them() {
        let mut o = outcome(
            &[(Status::Pending, 10)],
            &[(Status::Submitted, 4), (Status::Pending, 6)],
        );
        o.interrupted = true;
        o.requests.create = 4;
        let t = Totals::default();
        let s = summary_of(&o, &t);
        assert_eq!((s.result, s.in_flight), ("interrupted", 4));
        let text = human(&s, &o, &t);
        assert!(
            text.contains("4 task(s) already sent to the provider keep generating"),
            "{text}"
        );
        assert!(text.contains("costing"), "{text}");
        assert!(text.contains("run the same command again"), "{text}");
    }

    #[test]
    fn failures_of_this_run_are_not_listed_as_earlier_ones() {
        let mut o = outcome(&[(Status::Pending, 2)], &[(Status::Failed, 2)]);
        o.failures = vec![Failure {
            id: "a".into(),
            status: Status::Failed,
            code: None,
            message: "risk".into(),
        }];
        let t = Totals {
            failed: 1,
            failed_sample: vec![FailedItem {
                id: "a".into(),
                status: "failed",
                code: None,
                message: Some("risk".into()),
            }],
            ..Totals::default()
        };
        let s = summary_of(&o, &t);
        let text = human(&s, &o, &t);
        assert!(text.contains("problems:\n  a (failed): risk\n"), "{text}");
        assert!(!text.contains("earlier run"), "{text}");
        assert!(
            !text.contains("resumed"),
            "a fresh run is not a resume: {text}"
        );
    }
}
