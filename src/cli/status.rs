//! `vidbatch status DIR [--json]`: counts by state, units and times, from
//! the state file alone. Safe while a run is writing it (SQLite WAL readers
//! do not block the writer).

use std::path::PathBuf;

use serde::Serialize;

use super::Exit;
use crate::report::csv::rfc3339;
use crate::report::summary::{ByStatus, fmt_units};
use crate::state::{self, Status};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
    /// Print one JSON object (counts, in flight, units, times) instead of text
    #[arg(long)]
    pub json: bool,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
struct StatusJson {
    batch_dir: PathBuf,
    batch_id: String,
    schema: i64,
    items: u64,
    /// Every status, zeros included, in lifecycle order.
    by_status: ByStatus,
    /// Tasks that may be running at the provider: submitting, submitted, processing.
    in_flight: u64,
    units: Units,
    created_at: Option<String>,
    first_submitted_at: Option<String>,
    last_finished_at: Option<String>,
    last_updated_at: Option<String>,
    /// Items per account of a pool (by name) and status; `{}` without a pool.
    by_account: std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, u64>>,
}

#[derive(Debug, Serialize)]
struct Units {
    estimated: f64,
    /// Items without an estimate (not priced, or from before schema 2).
    unpriced_items: u64,
    charged: f64,
    charged_items: u64,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let o = state::overview(&conn)?;
    let batch = state::meta(&conn, "batch_id")?.unwrap_or_default();
    if args.json {
        let out = StatusJson {
            batch_dir: args.dir.clone(),
            batch_id: batch,
            schema: o.schema,
            items: o.total(),
            by_status: ByStatus(o.counts.clone()),
            in_flight: o.in_flight(),
            units: Units {
                estimated: o.est_units,
                unpriced_items: o.est_missing,
                charged: o.units_charged,
                charged_items: o.charged_items,
            },
            created_at: o.created_at.map(rfc3339),
            first_submitted_at: o.first_submitted_at.map(rfc3339),
            last_finished_at: o.last_finished_at.map(rfc3339),
            last_updated_at: o.last_updated_at.map(rfc3339),
            by_account: o
                .by_account
                .iter()
                .map(|(a, counts)| {
                    let counts = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                    (a.clone(), counts)
                })
                .collect(),
        };
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Exit::Success);
    }
    crate::outln!(
        "batch {} ({batch}): {} items",
        args.dir.display(),
        o.total()
    );
    for s in Status::ALL {
        let n = o.count(s);
        if n > 0 {
            crate::outln!("  {:<11} {n}", s.as_str());
        }
    }
    if o.in_flight() > 0 {
        crate::outln!("in flight: {}", o.in_flight());
    }
    for (account, counts) in &o.by_account {
        let parts: Vec<String> = counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        crate::outln!("account {account}: {}", parts.join(", "));
    }
    crate::outln!(
        "units: {} charged ({} item(s)), {} estimated",
        fmt_units(o.units_charged),
        o.charged_items,
        fmt_units(o.est_units)
    );
    if let Some(t) = o.first_submitted_at {
        crate::outln!("first submitted: {}", rfc3339(t));
    }
    if let Some(t) = o.last_finished_at {
        crate::outln!("last finished:   {}", rfc3339(t));
    }
    Ok(Exit::Success)
}
