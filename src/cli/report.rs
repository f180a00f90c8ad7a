//! `vidbatch report DIR`: rewrite report.csv from the state file, offline.

use std::path::PathBuf;

use super::Exit;
use crate::{report, state};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let records = state::load_items(&conn)?;
    let path = report::write_report(&args.dir, &records)?;
    println!("{}", path.display());
    Ok(Exit::Success)
}
