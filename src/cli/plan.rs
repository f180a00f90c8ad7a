//! `vidbatch plan`: what `run` would do and what it may cost, offline.
//!
//! No network: the manifest is validated like `validate`, then counted by
//! kind and model and priced by its provider (`provider::registry::estimate`;
//! a provider without a price list says the cost is unknown). When the batch
//! folder already has a state, `plan` also says which items were edited
//! after they were submitted, and a spend cap (`--max-units`, or
//! `limits.max_units`) is simulated exactly as `run` keeps it: in manifest
//! order, what earlier runs committed first.
//! `--json` prints one object for machines.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::Exit;
use super::validate::{ProviderArg, counts, write_counts};
use crate::provider::price::Estimate;
use crate::provider::registry::{self, Api};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Manifest file (.yaml, .yml or .csv).
    pub manifest: PathBuf,
    /// Print JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub provider: ProviderArg,
    /// Batch folder to compare with (items changed after submit, what a cap still
    /// lets through) [default: output/<manifest stem>]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Show what this spend cap would let through [default: the manifest's limits.max_units]
    #[arg(long, value_name = "N")]
    pub max_units: Option<f64>,
}

/// What a spend cap would do on the next run.
#[derive(Debug, Default, serde::Serialize)]
struct CapPlan {
    max_units: f64,
    /// Committed by earlier runs of this batch (charged, else estimated).
    already_committed: f64,
    would_submit: u64,
    would_submit_units: f64,
    held_over_cap: u64,
    held_unpriced: u64,
}

pub fn run(args: &PlanArgs) -> anyhow::Result<Exit> {
    let m = args.provider.load(&args.manifest)?;
    let api = args.provider.api(&m);
    let e = registry::estimate(api, &m.items);
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| crate::settings::default_batch_dir(&m.path));
    let records = submitted_records(&dir)?;
    let cap_limit = match args.max_units {
        Some(n) if !(n.is_finite() && n >= 0.0) => {
            anyhow::bail!(crate::settings::SettingsError {
                source_name: "--max-units".into(),
                message: format!("{n} is not a number of units ≥ 0"),
            })
        }
        Some(n) => Some(n),
        None => m.limits.max_units.as_deref().and_then(|s| s.parse().ok()),
    };
    let cap = cap_limit.map(|limit| simulate_cap(api, &m.items, &records, limit));
    let changed = changed_ids(&m, &records);
    if args.json {
        let mut v = serde_json::to_value(&e)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("spend_cap".into(), serde_json::to_value(&cap)?);
            obj.insert(
                "changed_after_submit".into(),
                serde_json::to_value(&changed)?,
            );
        }
        crate::outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut s = table(&m.path, &e);
        if let Some(c) = &cap {
            let _ = writeln!(
                s,
                "  with --max-units {}: {} item(s) (~{} units) would be submitted; {} held back ({} over the cap, {} without a known price); {} already committed by earlier runs",
                units(c.max_units),
                c.would_submit,
                units(c.would_submit_units),
                c.held_over_cap + c.held_unpriced,
                c.held_over_cap,
                c.held_unpriced,
                units(c.already_committed)
            );
        }
        if !changed.is_empty() {
            let _ = writeln!(
                s,
                "  changed after submit: {} item(s) differ from what was submitted (kept as submitted; --resubmit-changed creates them again): {}",
                changed.len(),
                changed
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        crate::out!("{s}");
    }
    Ok(Exit::Success)
}

/// The batch's records by id, when its folder has a state (else empty).
fn submitted_records(
    dir: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<String, crate::state::ItemRecord>> {
    let mut map = std::collections::HashMap::new();
    if !crate::state::db_path(dir).exists() {
        return Ok(map);
    }
    let conn = crate::state::open_ro(dir)?;
    crate::state::for_each_item(&conn, false, |r| {
        map.insert(r.id.clone(), r);
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(map)
}

/// The cap as `run` keeps it (scheduler/budget.rs): earlier tasks count with
/// their charge (else estimate); pending items in manifest order reserve
/// their estimate if it fits, an unpriced one never does.
fn simulate_cap(
    api: Api,
    items: &[crate::manifest::Item],
    records: &std::collections::HashMap<String, crate::state::ItemRecord>,
    limit: f64,
) -> CapPlan {
    let mut c = CapPlan {
        max_units: limit,
        ..CapPlan::default()
    };
    let mut pending = Vec::new();
    for item in items {
        match records.get(&item.id) {
            Some(r) if r.status() != crate::state::Status::Pending => {
                if r.task_id.is_some() || r.status() == crate::state::Status::Submitting {
                    c.already_committed += r
                        .units_charged()
                        .or_else(|| registry::price(api, item).units())
                        .unwrap_or(0.0);
                }
            }
            _ => pending.push(item),
        }
    }
    let mut committed = c.already_committed;
    for item in pending {
        match registry::price(api, item).units() {
            None => c.held_unpriced += 1,
            Some(u) if committed + u <= limit + 1e-9 => {
                committed += u;
                c.would_submit += 1;
                c.would_submit_units += u;
            }
            Some(_) => c.held_over_cap += 1,
        }
    }
    c
}

/// Ids of submitted items whose manifest entry changed since.
fn changed_ids(
    m: &crate::manifest::Manifest,
    records: &std::collections::HashMap<String, crate::state::ItemRecord>,
) -> Vec<String> {
    let base = m.path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    m.items
        .iter()
        .filter(|it| {
            records.get(&it.id).is_some_and(|r| {
                r.status() != crate::state::Status::Pending
                    && r.params_hash != crate::batch::changes::params_hash(it, &base)
            })
        })
        .map(|it| it.id.clone())
        .collect()
}

fn table(path: &std::path::Path, e: &Estimate) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {}: {} item(s) would be submitted",
        path.display(),
        e.items
    );
    write_counts(&mut s, e);
    let Some(unit) = e.list.unit else {
        let _ = writeln!(s, "  estimated cost: unknown — {}", e.note);
        return s;
    };
    let priced = e.items - e.unpriced_items;
    let _ = writeln!(
        s,
        "  estimated cost: ~{} {unit} for {priced} priced item(s) (ESTIMATE)",
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
