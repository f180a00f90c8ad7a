//! `vidbatch plan`: what `run` would do and what it may cost, offline.
//!
//! No network: the manifest is validated like `validate`, then counted and
//! priced with `manifest::cost`. `--json` prints one object for machines.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::Exit;
use super::validate::{ProviderArg, counts};
use crate::manifest::cost;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Manifest file (.yaml, .yml or .csv).
    pub manifest: PathBuf,
    /// Print JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub provider: ProviderArg,
}

pub fn run(args: &PlanArgs) -> anyhow::Result<Exit> {
    let m = args.provider.load(&args.manifest)?;
    let e = cost::estimate(&m.items);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        crate::out!("{}", table(&m.path, &e));
    }
    Ok(Exit::Success)
}

fn table(path: &std::path::Path, e: &cost::Estimate) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {}: {} item(s) would be submitted",
        path.display(),
        e.items
    );
    let _ = writeln!(s, "  by kind:     {}", counts(&e.by_kind, ""));
    let _ = writeln!(s, "  by model:    {}", counts(&e.by_model, ""));
    let _ = writeln!(s, "  by mode:     {}", counts(&e.by_mode, ""));
    let _ = writeln!(s, "  by duration: {}", counts(&e.by_duration, "s"));
    let priced = e.items - e.unpriced_items;
    let _ = writeln!(
        s,
        "  estimated cost: ~{} Kling units for {priced} priced item(s) (ESTIMATE)",
        units(e.estimated_units)
    );
    if e.unpriced_items > 0 {
        let _ = writeln!(
            s,
            "  unpriced: {} item(s): {}",
            e.unpriced_items,
            counts(&e.unpriced, "")
        );
    }
    let _ = writeln!(s, "  note: {}", e.note);
    s
}

/// Units are multiples of 0.5 in the table: print without float noise.
fn units(u: f64) -> String {
    if u.fract() == 0.0 {
        format!("{u:.0}")
    } else {
        format!("{u:.1}")
    }
}
