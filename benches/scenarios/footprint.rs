//! Scenario 3 (memory and CPU of the runner process) and the run that rows
//! (d) and (e) of issue 12 repeat.
//!
//! Tasks are short (L = 0.1 s) and the limits wide (C = 500, R = 5,000/s), so
//! the run is as busy as the runner can make it: peak RSS shows what it holds
//! per item, CPU what each item costs.

use std::time::Duration;

use crate::Size;
use crate::child::{BenchResult, ChildRun, check, flagged_run};
use crate::table::{Table, secs};

pub const LATENCY: Duration = Duration::from_millis(100);
pub const C: usize = 500;
pub const RATE: f64 = 5_000.0;
pub const POLL: Duration = Duration::from_millis(50);

/// `n` items at scenario 3's parameters; every item created exactly once.
pub async fn footprint_run(n: usize) -> BenchResult<ChildRun> {
    let (stats, run) = flagged_run(n, C, RATE, LATENCY, POLL).await?;
    check(
        stats.creates_accepted == n as u64,
        "not every item created once",
    )?;
    Ok(run)
}

pub async fn scenario_3(size: Size) -> BenchResult<Table> {
    let sizes: Vec<usize> = match size {
        Size::Smoke => vec![50, 200],
        Size::Default => vec![1_000, 10_000],
        Size::Large => vec![1_000, 10_000, 100_000],
    };
    let mut t = Table::new(
        "3. Memory and CPU",
        format!(
            "L={}ms C={C} R={RATE}/s poll={}ms; peak RSS and CPU (user+sys) of the vidbatch process",
            LATENCY.as_millis(),
            POLL.as_millis()
        ),
        size,
    );
    let mut first: Option<(usize, u64)> = None;
    for n in sizes {
        let run = footprint_run(n).await?;
        let mib = run.max_rss_kib as f64 / 1024.0;
        t.info(
            &format!("N={n}: wall"),
            format!(
                "{} ({:.0} items/s)",
                secs(run.wall),
                n as f64 / run.wall.as_secs_f64()
            ),
        );
        t.info(
            &format!("N={n}: CPU per 1,000 items"),
            format!("{:.3} s", run.cpu_per_k(n)),
        );
        if n >= 100_000 {
            t.judged(
                &format!("N={n}: peak RSS"),
                format!("{mib:.1} MiB"),
                "< 100 MB".into(),
                format!("{:.2}", run.max_rss_mb() / 100.0),
                run.max_rss_mb() < 100.0,
            );
        } else {
            t.info(&format!("N={n}: peak RSS"), format!("{mib:.1} MiB"));
        }
        match first {
            None => first = Some((n, run.max_rss_kib)),
            Some((n0, r0)) => {
                let growth = run.max_rss_kib as f64 / r0.max(1) as f64;
                let items = n as f64 / n0 as f64;
                t.judged(
                    &format!("RSS growth {n0}→{n} vs items ×{items:.0}"),
                    format!("×{growth:.2}"),
                    format!("≪ ×{items:.0}"),
                    format!("{:.3}", growth / items),
                    growth < items / 2.0,
                );
            }
        }
    }
    if size != Size::Large {
        t.note(
            "the 100k row runs with `-- --large` here, and always in the issue-12 rows (d)".into(),
        );
    }
    Ok(t)
}
