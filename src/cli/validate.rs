//! `vidbatch validate`: check a manifest offline and print a summary.

use std::path::PathBuf;

use super::Exit;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest file (.yaml, .yml or .csv).
    pub manifest: PathBuf,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let _ = args;
    todo!("validate")
}
