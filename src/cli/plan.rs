//! `vidbatch plan`: what `run` would do and what it may cost, offline.

use std::path::PathBuf;

use super::Exit;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Manifest file (.yaml, .yml or .csv).
    pub manifest: PathBuf,
    /// Print JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &PlanArgs) -> anyhow::Result<Exit> {
    let _ = args;
    todo!("plan")
}
