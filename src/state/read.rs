//! Whole-batch figures for `vidbatch status` and `summary.json`: counts,
//! units and times, computed by SQLite (or by one streaming pass over one
//! column), so they stay cheap on 100k items and work while a run writes.

use rusqlite::Connection;

use super::{StateError, Status, count_by_status, schema};

/// What a batch's state says about the batch as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// Schema version of the file.
    pub schema: i64,
    /// Items by status (every status, zeros included), in lifecycle order.
    pub counts: Vec<(Status, u64)>,
    /// Sum of the estimated units of the items that have one.
    pub est_units: f64,
    /// Items the price table has no price for, or that predate schema 2.
    pub est_missing: u64,
    /// Sum of the units charged where the provider's figure is a number.
    pub units_charged: f64,
    /// Items with a charged figure.
    pub charged_items: u64,
    /// Unix ms: batch created, first task created, last task finished, last change.
    pub created_at: Option<i64>,
    pub first_submitted_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_updated_at: Option<i64>,
    /// Items per named account (of a pool) and status; empty without a pool.
    pub by_account: Vec<(String, Vec<(Status, u64)>)>,
}

impl Overview {
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    pub fn count(&self, status: Status) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Tasks that may exist remotely and have not ended: `submitting` (maybe
    /// created), `submitted`, `processing`.
    pub fn in_flight(&self) -> u64 {
        self.count(Status::Submitting)
            + self.count(Status::Submitted)
            + self.count(Status::Processing)
    }
}

/// Figures for the whole batch.
pub fn overview(conn: &Connection) -> Result<Overview, StateError> {
    let schema = schema::version(conn)?;
    let found = count_by_status(conn)?;
    let counts = Status::ALL
        .iter()
        .map(|s| {
            let n = found.iter().find(|(f, _)| f == s).map_or(0, |(_, n)| *n);
            (*s, n)
        })
        .collect();
    let (first_submitted_at, last_finished_at, last_updated_at) = conn.query_row(
        "SELECT MIN(submitted_at), MAX(finished_at), MAX(updated_at) FROM items",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (est_units, est_missing) = if schema >= 2 {
        conn.query_row(
            "SELECT TOTAL(est_units), SUM(est_units IS NULL) FROM items",
            [],
            |r| Ok((r.get::<_, f64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )?
    } else {
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))?;
        (0.0, Some(n))
    };
    // `units` is the provider's text; only what parses as a number counts.
    let mut units_charged = 0.0;
    let mut charged_items = 0u64;
    let mut stmt = conn.prepare("SELECT units FROM items WHERE units IS NOT NULL")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let text: String = r.get(0)?;
        if let Ok(u) = text.trim().parse::<f64>()
            && u.is_finite()
        {
            units_charged += u;
            charged_items += 1;
        }
    }
    let created_at = super::meta(conn, "created_at")?.and_then(|v| v.parse().ok());
    let mut by_account: Vec<(String, Vec<(Status, u64)>)> = Vec::new();
    if schema >= 3 {
        let mut stmt = conn.prepare(
            "SELECT account, status, COUNT(*) FROM items WHERE account IS NOT NULL
             GROUP BY account, status ORDER BY account",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (account, status, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let Some(status) = Status::parse(&status) else {
                continue;
            };
            if by_account.last().is_none_or(|(a, _)| *a != account) {
                by_account.push((account, Vec::new()));
            }
            if let Some((_, counts)) = by_account.last_mut() {
                counts.push((status, n.max(0) as u64));
            }
        }
    }
    Ok(Overview {
        schema,
        counts,
        est_units,
        est_missing: est_missing.unwrap_or(0).max(0) as u64,
        units_charged,
        charged_items,
        created_at,
        first_submitted_at,
        last_finished_at,
        last_updated_at,
        by_account,
    })
}
