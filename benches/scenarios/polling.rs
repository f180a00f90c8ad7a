//! Scenario 2 (polling cost) and its list mode, which row (c) of issue 12
//! repeats: status requests per item, counted by the emulator.
//!
//! Status requests are single-task queries plus list pages. Below
//! `list_threshold` (50) due polls the engine asks task by task; with 1,000
//! in flight it sweeps the list, and the figure shows what that saves.

use std::time::Duration;

use vidbatch::emulator::Stats;

use crate::Size;
use crate::child::{BenchResult, flagged_run};
use crate::table::Table;

/// Task latency of both modes; polls every L/4 so the two figures compare.
pub fn latency(size: Size) -> Duration {
    if size == Size::Smoke {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    }
}

/// The list mode: N, C (= tasks in flight: R·L ≥ C keeps the window full), R.
pub fn list_mode(size: Size) -> (usize, usize, f64) {
    if size == Size::Smoke {
        (120, 60, 1_000.0)
    } else {
        (2_000, 1_000, 1_000.0)
    }
}

/// (single queries + list pages) / N.
pub fn per_item(s: &Stats, n: usize) -> f64 {
    (s.queries + s.list_queries) as f64 / n as f64
}

/// One run of the list mode: its emulator counters.
pub async fn list_run(size: Size) -> BenchResult<Stats> {
    let (n, c, rate) = list_mode(size);
    let l = latency(size);
    let (stats, _) = flagged_run(n, c, rate, l, l / 4).await?;
    Ok(stats)
}

pub async fn scenario_2(size: Size) -> BenchResult<Table> {
    let l = latency(size);
    let poll = l / 4;
    // Fewer than list_threshold (50) in flight: the engine polls task by task.
    let (n1, c1) = if size == Size::Smoke {
        (30, 20)
    } else {
        (400, 40)
    };
    let (n2, c2, r2) = list_mode(size);
    let (single, _) = flagged_run(n1, c1, 400.0, l, poll).await?;
    let list = list_run(size).await?;
    let mut t = Table::new(
        "2. Polling cost (status requests per item)",
        format!(
            "L={}ms poll={}ms; single: N={n1} C={c1}; list: N={n2} C={c2} R={r2}/s",
            l.as_millis(),
            poll.as_millis()
        ),
        size,
    );
    t.info(
        "single-task polling",
        format!(
            "{:.3} ({} queries, {} list)",
            per_item(&single, n1),
            single.queries,
            single.list_queries
        ),
    );
    let lp = per_item(&list, n2);
    t.judged(
        &format!("list polling, {c2} in flight"),
        format!(
            "{lp:.3} ({} queries, {} list; max in flight {})",
            list.queries, list.list_queries, list.max_in_flight
        ),
        "≤ 0.2".into(),
        format!("{:.3}", lp / 0.2),
        lp <= 0.2,
    );
    t.note(
        "status requests = single-task queries + list pages, from the emulator's counters".into(),
    );
    Ok(t)
}
