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
    let mut report = report::ReportWriter::create(&args.dir)?;
    state::for_each_item(&conn, true, |r| {
        report.row(&r)?;
        Ok::<(), anyhow::Error>(())
    })?;
    let path = report.finish()?;
    println!("{}", path.display());
    Ok(Exit::Success)
}
