//! `vidbatch status DIR`: counts by state, from the state file alone. Safe
//! while a run is writing it (SQLite WAL readers do not block the writer).

use std::path::PathBuf;

use super::Exit;
use crate::state::{self, Status};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let counts = state::count_by_status(&conn)?;
    let batch = state::meta(&conn, "batch_id")?.unwrap_or_default();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    println!("batch {} ({batch}): {total} items", args.dir.display());
    for s in Status::ALL {
        let n = counts
            .iter()
            .find(|(st, _)| *st == s)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        if n > 0 {
            println!("  {:<11} {n}", s.as_str());
        }
    }
    Ok(Exit::Success)
}
