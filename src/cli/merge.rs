//! `vidbatch merge SHARD_DIR... --output DIR`: the shards of one batch as
//! one report (logic in [`crate::report::merge`]).
//!
//! Exit codes follow `run`'s meaning for the whole batch: 0 every shard
//! given and every item of the manifest downloaded; 1 the merge was written
//! but the batch is not complete (a shard missing — named on stderr — or items
//! failed or unfinished); 2 the folders cannot be merged (not shards, another
//! batch or manifest, the same shard twice, mixed N): nothing written.

use std::path::PathBuf;

use super::Exit;
use crate::report::merge::{self, Merged};
use crate::report::summary::fmt_units;

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard folders of one batch (written by `vidbatch run --shard i/N`), e.g. output/example/shard-*
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Folder for the merged report.csv, summary.json and index.html (videos stay in
    /// the shard folders; the report points at them with relative paths)
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &MergeArgs, quiet: bool) -> anyhow::Result<Exit> {
    let merged = merge::merge(&args.dirs, &args.output, &|m| exit_for(m) as i32)?;
    let s = &merged.summary;
    if !merged.missing.is_empty() {
        let names: Vec<String> = merged
            .missing
            .iter()
            .map(|i| format!("{i}/{}", merged.total))
            .collect();
        crate::errln!(
            "warning: shard(s) {} not given: their items are not in the merged report; merge again with every shard folder once they have run",
            names.join(", ")
        );
    } else if merged.items != merged.manifest_items {
        crate::errln!(
            "warning: the shards' reports hold {} of the manifest's {} items: a shard has not finished a run (run it again, then merge)",
            merged.items,
            merged.manifest_items
        );
    }
    if !quiet {
        let parts = crate::report::summary::status_parts(&s.by_status);
        crate::outln!(
            "merged {} of {} shard(s) of batch `{}`: {} items: {}",
            merged.total as usize - merged.missing.len(),
            merged.total,
            merged.batch_name,
            s.items,
            if parts.is_empty() { "none" } else { &parts }
        );
        crate::outln!(
            "units: {} charged, {} estimated",
            fmt_units(s.units.charged),
            fmt_units(s.units.estimated)
        );
    }
    crate::outln!("gallery: {}", s.gallery.display());
    crate::outln!("report: {}", s.report.display());
    crate::outln!(
        "summary: {}",
        s.batch_dir
            .join(crate::report::summary::SUMMARY_FILE)
            .display()
    );
    Ok(exit_for(&merged))
}

/// 0 only when the merge is the whole batch, done.
fn exit_for(m: &Merged) -> Exit {
    if m.summary.result == "done" {
        Exit::Success
    } else {
        Exit::ItemsFailed
    }
}
