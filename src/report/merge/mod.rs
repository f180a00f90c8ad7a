//! `vidbatch merge`: the shards of one batch (`vidbatch run --shard i/N`,
//! [`crate::shard`]) as one batch again — one `report.csv`, one
//! `summary.json`, one `index.html` — in a folder of its own.
//!
//! Each shard folder is read as `vidbatch report` reads a batch: from its
//! state file, which is what its `report.csv` was written from and which
//! also knows what the gallery shows (parameters, estimates) and where each
//! item stood in the whole manifest. The shard's `report.csv` says which of
//! the state's items its last run covered (a state also keeps items since
//! deleted from the manifest); without one, every item of the state counts.
//!
//! Rows come out in manifest order: a shard stores each item's position in
//! the whole manifest as its `seq`, and the shards' streams (each already in
//! that order) are merged as they are read, one item per shard in memory.
//!
//! Videos are not copied: the merged report's `path` column and the
//! gallery point into the shard folders with paths relative to the merged
//! folder (`../shard-0-of-4/videos/cat.mp4`), so keep the folders side by
//! side (or merge into a folder next to them, the usual layout).
//!
//! Refused (bad input, nothing written): a folder that is not a shard, shards
//! of different batches or manifests, the same shard twice, shards of
//! different N, an output folder that holds a batch. Missing shards are not an error: the merge covers the shards
//! it has and [`Merged::missing`] names the others.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

mod runs;
mod shards;

pub use shards::{ShardDir, check_compatible};

use self::runs::{ShardSummaries, by_status, write_summary};
use super::csv::ReportError;
use super::summary::{BatchNotes, SUMMARY_FORMAT, Summary, Units, Videos};
use super::{GalleryMeta, GalleryWriter, REPORT_FILE, ReportWriter, Totals, as_on_disk};
use crate::state::{self, ItemRecord, StateError, Status};

/// Why shard folders cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: not a shard folder ({why}); give folders written by `vidbatch run --shard i/N`", dir.display())]
    NotAShard { dir: PathBuf, why: String },
    #[error("{} and {} are shards of different batches (`{a}` and `{b}`); merge the shards of one batch", first.display(), second.display())]
    OtherBatch {
        first: PathBuf,
        a: String,
        second: PathBuf,
        b: String,
    },
    #[error("{} and {} were cut from different manifests (items added, removed or edited between the runs); rerun the shards with one manifest, then merge", first.display(), second.display())]
    OtherManifest { first: PathBuf, second: PathBuf },
    #[error("{} and {} split the batch differently ({a} and {b}); merge shards of one N", first.display(), second.display())]
    MixedTotals {
        first: PathBuf,
        a: String,
        second: PathBuf,
        b: String,
    },
    #[error("{} and {} are the same shard {shard}; give each shard once", first.display(), second.display())]
    SameShard {
        shard: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("the output folder {} holds a batch or a shard (state.db): its report would be overwritten; merge into a folder of its own", dir.display())]
    IntoBatch { dir: PathBuf },
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] ReportError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl MergeError {
    /// Refusals about what was given (exit 2), as opposed to failures of
    /// the disk or the state files (exit 3).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            MergeError::NotAShard { .. }
                | MergeError::OtherBatch { .. }
                | MergeError::OtherManifest { .. }
                | MergeError::MixedTotals { .. }
                | MergeError::SameShard { .. }
                | MergeError::IntoBatch { .. }
        )
    }
}

/// What [`merge`] wrote and found.
#[derive(Debug, Clone)]
pub struct Merged {
    pub summary: Summary,
    pub batch_name: String,
    /// N, and the shards of it that were not given.
    pub total: u64,
    pub missing: Vec<u64>,
    /// Items in the whole manifest (every shard's), and in the merged report.
    pub manifest_items: u64,
    pub items: u64,
}

/// Merge the shard folders `dirs` into `out`. `exit_code` is written into
/// `summary.json` and depends on what was found, so it is a function of it.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    exit_code: &dyn Fn(&Merged) -> i32,
) -> Result<Merged, MergeError> {
    let mut shards = dirs
        .iter()
        .map(|d| ShardDir::open(d))
        .collect::<Result<Vec<_>, _>>()?;
    check_compatible(&shards)?;
    shards.sort_by_key(|s| s.shard.index);
    if state::db_path(out).exists() {
        return Err(MergeError::IntoBatch {
            dir: out.to_path_buf(),
        });
    }
    std::fs::create_dir_all(out).map_err(|source| MergeError::CreateDir {
        dir: out.to_path_buf(),
        source,
    })?;
    let out_abs = canonical(out)?;
    let first = shards
        .first()
        .cloned()
        .ok_or_else(|| MergeError::NotAShard {
            dir: out.to_path_buf(),
            why: "no shard folders given".into(),
        })?;
    let total = first.shard.total;
    let given: HashSet<u64> = shards.iter().map(|s| s.shard.index).collect();

    let (totals, counts, report, gallery) = write_rows(&shards, out, &out_abs, &first.batch_id)?;
    let notes = ShardSummaries::read(&shards);
    let mut merged = Merged {
        summary: Summary {
            format: SUMMARY_FORMAT,
            vidbatch_version: env!("CARGO_PKG_VERSION"),
            batch_dir: out_abs.clone(),
            batch_id: first.batch_id.clone(),
            report: canonical(&report)?,
            gallery: canonical(&gallery)?,
            started_at: notes.started_at.clone().unwrap_or_default(),
            finished_at: notes.finished_at.clone().unwrap_or_default(),
            wall_time_s: notes.wall_time_s(),
            exit_code: 0,
            result: "done",
            interrupted: notes.interrupted,
            aborted: (!notes.aborted.is_empty()).then(|| notes.aborted.join("; ")),
            drained_accounts: notes.drained.clone(),
            nothing_to_do: notes.nothing_to_do,
            items: totals.items,
            by_status: by_status(&counts),
            at_start: by_status(&notes.at_start),
            in_flight: [Status::Submitting, Status::Submitted, Status::Processing]
                .iter()
                .map(|s| counts.get(s).copied().unwrap_or(0))
                .sum(),
            units: Units {
                estimated: totals.est_units,
                unpriced_items: totals.est_missing,
                charged: totals.units_charged,
                charged_items: totals.charged_items,
            },
            requests: notes.requests,
            videos: Videos {
                files: totals.video_files,
                bytes: totals.video_bytes,
            },
            failed_total: totals.failed,
            failed: totals.failed_sample.clone(),
            problems_this_run: notes.problems,
            batch: BatchNotes {
                name: first.batch_name.clone(),
                ..notes.batch
            },
            // Each shard has its own cap (and its own summary.json says so).
            spend_cap: None,
        },
        batch_name: first.batch_name.clone(),
        total,
        missing: (0..total).filter(|i| !given.contains(i)).collect(),
        manifest_items: first.manifest_items,
        items: totals.items,
    };
    let all_done = merged.missing.is_empty()
        && counts.get(&Status::Downloaded).copied().unwrap_or(0) == totals.items
        && totals.items == merged.manifest_items;
    merged.summary.result = if merged.summary.interrupted {
        "interrupted"
    } else if merged.summary.aborted.is_some() {
        "aborted"
    } else if all_done {
        "done"
    } else {
        "items_failed"
    };
    merged.summary.exit_code = exit_code(&merged);
    write_summary(out, &merged, &shards)?;
    Ok(merged)
}

type Written = (Totals, BTreeMap<Status, u64>, PathBuf, PathBuf);

/// Stream every shard's items, merged into manifest order, into `out`'s
/// report and gallery.
fn write_rows(
    shards: &[ShardDir],
    out: &Path,
    out_abs: &Path,
    batch_id: &str,
) -> Result<Written, MergeError> {
    let meta = GalleryMeta {
        title: out_abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        batch_id: batch_id.to_string(),
    };
    let mut report = ReportWriter::create(out)?;
    let mut gallery = GalleryWriter::create(out, &meta)?;
    let mut totals = Totals::default();
    let mut counts: BTreeMap<Status, u64> = BTreeMap::new();
    std::thread::scope(|scope| -> Result<(), MergeError> {
        let mut feeds = Vec::new();
        let mut readers = Vec::new();
        for s in shards {
            let (tx, rx) = mpsc::sync_channel::<ItemRecord>(256);
            let prefix = relative(out_abs, &canonical(&s.dir)?);
            let only = covered_ids(&s.dir)?;
            let dir = s.dir.clone();
            readers.push(scope.spawn(move || feed(&dir, only, &prefix, tx)));
            feeds.push(rx);
        }
        // One head per shard, smallest (manifest position, id) first.
        let mut heads: Vec<Option<ItemRecord>> = feeds.iter().map(|rx| rx.recv().ok()).collect();
        let mut heap: BinaryHeap<Reverse<(u64, String, usize)>> = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|r| Reverse((r.seq, r.id.clone(), i))))
            .collect();
        while let Some(Reverse((_, _, i))) = heap.pop() {
            let Some(r) = heads[i].take() else { continue };
            report.row(&r)?;
            gallery.row(&r)?;
            totals.add(&r);
            *counts.entry(r.status()).or_default() += 1;
            if let Ok(next) = feeds[i].recv() {
                heap.push(Reverse((next.seq, next.id.clone(), i)));
                heads[i] = Some(next);
            }
        }
        drop(feeds);
        for reader in readers {
            match reader.join() {
                Ok(result) => result?,
                Err(_) => {
                    return Err(MergeError::Read {
                        path: out.to_path_buf(),
                        message: "a shard reader stopped unexpectedly".into(),
                    });
                }
            }
        }
        Ok(())
    })?;
    Ok((totals, counts, report.finish()?, gallery.finish()?))
}

/// Send `dir`'s items (those in `only`, if given) in manifest order, as on
/// disk, with video paths relative to the merged folder.
fn feed(
    dir: &Path,
    only: Option<HashSet<String>>,
    prefix: &Path,
    tx: mpsc::SyncSender<ItemRecord>,
) -> Result<(), MergeError> {
    let conn = state::open_ro(dir)?;
    let sent = state::for_each_item(&conn, true, |r| {
        if only.as_ref().is_none_or(|ids| ids.contains(&r.id)) {
            let mut r = as_on_disk(r, dir);
            for v in &mut r.videos {
                if let Some(p) = &v.path {
                    v.path = Some(slashes(&prefix.join(p)));
                }
            }
            // The merge stopped (a write failed): stop reading.
            tx.send(r).map_err(|_| Stop::Closed)?;
        }
        Ok::<(), Stop>(())
    });
    match sent {
        Ok(()) | Err(Stop::Closed) => Ok(()),
        Err(Stop::State(e)) => Err(e.into()),
    }
}

enum Stop {
    State(StateError),
    Closed,
}

impl From<StateError> for Stop {
    fn from(e: StateError) -> Self {
        Stop::State(e)
    }
}

/// The ids a shard's `report.csv` lists (`None` when it has none).
fn covered_ids(dir: &Path) -> Result<Option<HashSet<String>>, MergeError> {
    let path = dir.join(REPORT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bad = |e: ::csv::Error| MergeError::Read {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut rd = ::csv::Reader::from_path(&path).map_err(bad)?;
    let id = rd
        .headers()
        .map_err(bad)?
        .iter()
        .position(|h| h == "id")
        .ok_or_else(|| MergeError::Read {
            path: path.clone(),
            message: "no `id` column".into(),
        })?;
    let mut ids = HashSet::new();
    for row in rd.records() {
        let row = row.map_err(bad)?;
        // A cell may carry the spreadsheet guard ([`super::csv::neutralise`]).
        let cell = row.get(id).unwrap_or_default();
        ids.insert(cell.to_string());
        if let Some(unguarded) = cell.strip_prefix('\'') {
            ids.insert(unguarded.to_string());
        }
    }
    Ok(Some(ids))
}

fn canonical(p: &Path) -> Result<PathBuf, MergeError> {
    std::fs::canonicalize(p).map_err(|e| MergeError::Read {
        path: p.to_path_buf(),
        message: e.to_string(),
    })
}

/// `to` relative to the folder `from` (both absolute and canonical).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        // Different roots (another drive): only an absolute path works.
        return to.to_path_buf();
    }
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to_parts[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

/// A path with `/` separators (the report's and the gallery's form).
fn slashes(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_into_a_sibling_folder_climb_out_first() {
        assert_eq!(
            relative(Path::new("/o/merged"), Path::new("/o/shard-0-of-3")),
            PathBuf::from("../shard-0-of-3")
        );
        assert_eq!(
            relative(Path::new("/o/a/b"), Path::new("/o/shard-1-of-3")),
            PathBuf::from("../../shard-1-of-3")
        );
        assert_eq!(
            relative(Path::new("/o"), Path::new("/o/s/shard-2-of-3")),
            PathBuf::from("s/shard-2-of-3")
        );
    }
}
