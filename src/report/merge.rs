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
//! different N. Missing shards are not an error: the merge covers the shards
//! it has and [`Merged::missing`] names the others.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

use super::csv::{ReportError, rfc3339};
use super::summary::{BatchNotes, ByStatus, SUMMARY_FILE, SUMMARY_FORMAT, Summary, Units, Videos};
use super::{GalleryMeta, GalleryWriter, REPORT_FILE, ReportWriter, Totals, as_on_disk};
use crate::scheduler::Requests;
use crate::shard::{META_MANIFEST_ID, META_MANIFEST_ITEMS, META_SHARD, Shard};
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
    #[error("the output folder {} is one of the shard folders; merge into a folder of its own", dir.display())]
    IntoShard { dir: PathBuf },
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
                | MergeError::IntoShard { .. }
        )
    }
}

/// One shard folder, as its state's `meta` describes it.
#[derive(Debug, Clone)]
pub struct ShardDir {
    pub dir: PathBuf,
    pub shard: Shard,
    pub batch_name: String,
    pub batch_id: String,
    pub manifest_id: String,
    pub manifest_items: u64,
}

impl ShardDir {
    /// Read `dir`'s meta; a folder without a shard's meta is refused.
    pub fn open(dir: &Path) -> Result<ShardDir, MergeError> {
        let not = |why: &str| MergeError::NotAShard {
            dir: dir.to_path_buf(),
            why: why.to_string(),
        };
        let conn = match state::open_ro(dir) {
            Ok(c) => c,
            Err(StateError::Missing { .. }) => return Err(not("it has no state.db")),
            Err(e) => return Err(e.into()),
        };
        let get = |key: &str| state::meta(&conn, key);
        let Some(spec) = get(META_SHARD)? else {
            return Err(not("its state records no shard: an unsharded batch"));
        };
        let shard = Shard::parse(&spec, &|_| None)
            .map_err(|_| not(&format!("its state records shard `{spec}`")))?;
        Ok(ShardDir {
            dir: dir.to_path_buf(),
            shard,
            batch_name: get("batch_name")?.unwrap_or_default(),
            batch_id: get("batch_id")?.unwrap_or_default(),
            manifest_id: get(META_MANIFEST_ID)?.unwrap_or_default(),
            manifest_items: get(META_MANIFEST_ITEMS)?
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// Check that `shards` are distinct shards of one batch and one manifest.
pub fn check_compatible(shards: &[ShardDir]) -> Result<(), MergeError> {
    let Some(first) = shards.first() else {
        return Ok(());
    };
    let mut seen: BTreeMap<u64, &ShardDir> = BTreeMap::new();
    for s in shards {
        let pair = || (first.dir.clone(), s.dir.clone());
        if s.batch_name != first.batch_name {
            let (first_dir, second) = pair();
            return Err(MergeError::OtherBatch {
                first: first_dir,
                a: first.batch_name.clone(),
                second,
                b: s.batch_name.clone(),
            });
        }
        if s.manifest_id != first.manifest_id {
            let (first, second) = pair();
            return Err(MergeError::OtherManifest { first, second });
        }
        if s.shard.total != first.shard.total {
            let (first_dir, second) = pair();
            return Err(MergeError::MixedTotals {
                first: first_dir,
                a: format!("{} shards", first.shard.total),
                second,
                b: format!("{} shards", s.shard.total),
            });
        }
        if let Some(earlier) = seen.insert(s.shard.index, s) {
            return Err(MergeError::SameShard {
                shard: s.shard.to_string(),
                first: earlier.dir.clone(),
                second: s.dir.clone(),
            });
        }
    }
    Ok(())
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
    std::fs::create_dir_all(out).map_err(|source| MergeError::CreateDir {
        dir: out.to_path_buf(),
        source,
    })?;
    let out_abs = canonical(out)?;
    for s in &shards {
        if canonical(&s.dir)? == out_abs {
            return Err(MergeError::IntoShard { dir: s.dir.clone() });
        }
    }
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

/// What the shards' own `summary.json` files add up to (what a merge cannot
/// learn from the states: requests made, the runs' times and endings).
#[derive(Debug, Default)]
struct ShardSummaries {
    started_at: Option<String>,
    finished_at: Option<String>,
    interrupted: bool,
    aborted: Vec<String>,
    nothing_to_do: bool,
    at_start: BTreeMap<Status, u64>,
    requests: Requests,
    problems: u64,
    batch: BatchNotes,
}

impl ShardSummaries {
    fn read(shards: &[ShardDir]) -> ShardSummaries {
        let mut s = ShardSummaries {
            nothing_to_do: true,
            ..ShardSummaries::default()
        };
        for shard in shards {
            let Some(v) = std::fs::read(shard.dir.join(SUMMARY_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                s.nothing_to_do = false;
                continue;
            };
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let num =
                |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let flag = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
            if let Some(t) = text("started_at") {
                s.started_at = Some(s.started_at.map_or(t.clone(), |o| o.min(t)));
            }
            if let Some(t) = text("finished_at") {
                s.finished_at = Some(s.finished_at.map_or(t.clone(), |o| o.max(t)));
            }
            s.interrupted |= flag("interrupted");
            s.nothing_to_do &= flag("nothing_to_do");
            if let Some(reason) = text("aborted") {
                s.aborted.push(format!("shard {}: {reason}", shard.shard));
            }
            if let Some(map) = v.get("at_start").and_then(|x| x.as_object()) {
                for (k, n) in map {
                    if let (Some(st), Some(n)) = (Status::parse(k), n.as_u64()) {
                        *s.at_start.entry(st).or_default() += n;
                    }
                }
            }
            if let Some(r) = v.get("requests") {
                s.requests.create += num(r, "create");
                s.requests.query += num(r, "query");
                s.requests.list += num(r, "list");
                s.requests.lookup += num(r, "lookup");
                s.requests.download += num(r, "download");
                s.requests.retries += num(r, "retries");
            }
            s.problems += num(&v, "problems_this_run");
            if let Some(b) = v.get("batch") {
                s.batch.rebuilt_state |=
                    b.get("rebuilt_state").and_then(|x| x.as_bool()) == Some(true);
                for (key, list) in [
                    ("changed_kept", &mut s.batch.changed_kept),
                    ("resubmitted", &mut s.batch.resubmitted),
                ] {
                    if let Some(ids) = b.get(key).and_then(|x| x.as_array()) {
                        list.extend(ids.iter().filter_map(|x| x.as_str().map(str::to_string)));
                    }
                }
            }
        }
        s
    }

    /// From the first shard's start to the last shard's end.
    fn wall_time_s(&self) -> f64 {
        let parse =
            |t: &Option<String>| t.as_deref().and_then(|t| humantime::parse_rfc3339(t).ok());
        match (parse(&self.started_at), parse(&self.finished_at)) {
            (Some(a), Some(b)) => b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            _ => 0.0,
        }
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

/// `summary.json`: the batch's [`Summary`] plus a `shards` object (which
/// shards were merged, which are missing, from where).
fn write_summary(out: &Path, merged: &Merged, shards: &[ShardDir]) -> Result<(), MergeError> {
    let path = out.join(SUMMARY_FILE);
    let io = |source: std::io::Error| ReportError {
        path: path.clone(),
        source,
    };
    let mut value = serde_json::to_value(&merged.summary).map_err(|e| io(e.into()))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "shards".into(),
            serde_json::json!({
                "total": merged.total,
                "merged": shards.iter().map(|s| s.shard.index).collect::<Vec<_>>(),
                "missing": merged.missing,
                "dirs": shards.iter().map(|s| canonical(&s.dir).unwrap_or_else(|_| s.dir.clone())).collect::<Vec<_>>(),
                "manifest_items": merged.manifest_items,
                "merged_at": rfc3339(state::now_ms()),
            }),
        );
    }
    let mut text = serde_json::to_vec_pretty(&value).map_err(|e| io(e.into()))?;
    text.push(b'\n');
    let tmp = out.join(".summary.json.tmp");
    std::fs::write(&tmp, &text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
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

    fn shard(dir: &str, name: &str, manifest: &str, index: u64, total: u64) -> ShardDir {
        ShardDir {
            dir: PathBuf::from(dir),
            shard: Shard { index, total },
            batch_name: name.into(),
            batch_id: crate::batch::batch_key(name),
            manifest_id: manifest.into(),
            manifest_items: 30,
        }
    }

    #[test]
    fn shards_of_one_batch_and_manifest_are_compatible() {
        let shards = [shard("a", "b", "m", 0, 3), shard("c", "b", "m", 2, 3)];
        assert!(check_compatible(&shards).is_ok());
    }

    #[test]
    fn mismatched_shards_are_refused_as_bad_input() {
        for (shards, says) in [
            (
                [shard("a", "b", "m", 0, 3), shard("c", "other", "m", 1, 3)],
                "different batches",
            ),
            (
                [shard("a", "b", "m", 0, 3), shard("c", "b", "m2", 1, 3)],
                "different manifests",
            ),
            (
                [shard("a", "b", "m", 0, 3), shard("c", "b", "m", 1, 4)],
                "3 shards and 4 shards",
            ),
            (
                [shard("a", "b", "m", 1, 3), shard("c", "b", "m", 1, 3)],
                "the same shard 1/3",
            ),
        ] {
            let e = check_compatible(&shards).unwrap_err();
            assert!(e.is_bad_input());
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
