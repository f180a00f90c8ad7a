//! Benchmark scenarios of issues #5 and #12: the real `vidbatch run` binary
//! against the in-process emulator, one table per scenario, then the rows of
//! issue 12's "Done when" with min / median / max over three runs.
//!
//! Every figure is a ratio or a count taken in the same run (wall time against
//! a lower bound computed from the same parameters, requests counted by the
//! emulator, rusage of the child), so it holds on a noisy shared machine.
//!
//! * `cargo bench --bench scenarios` — scenarios 1–6 at default sizes, then
//!   the issue-12 rows (a)–(f) (18 minutes on 2 busy cores, most of it the
//!   rows' three 100k-item runs and states).
//! * `cargo bench --bench scenarios -- --issue12` — only the issue-12 rows.
//! * `cargo bench --bench scenarios -- --only 1,4,f` — a subset: scenario
//!   numbers and row letters.
//! * `cargo bench --bench scenarios -- --large` — scenarios 1, 3 and 6 at
//!   20,000 / 100k items; `-- --poll-ms 100` overrides the poll interval of
//!   scenarios 1 and 6.
//! * `cargo test --bench scenarios` (no `--bench` argument) — smoke mode:
//!   every scenario and row at tiny size, once; asserts correctness only
//!   (exit codes, duplicates, every item created once and downloaded), never
//!   timing.
//!
//! Modules: `child` runs the binary, `rusage` measures it from a small
//! helper process (this binary re-executed); `table` and
//! `spread` print; one module per scenario (`sched` 1 and 6, `polling` 2,
//! `footprint` 3, `downloads` 4, `resume` 5, `defaults` the default-flags
//! run); `issue12` repeats them as the issue's rows. See benches/README.md
//! for the bounds and the recorded figures.

mod child;
mod defaults;
mod downloads;
mod footprint;
mod issue12;
mod polling;
mod resume;
mod rusage;
mod sched;
mod spread;
mod table;

use std::time::{Duration, Instant};

/// How big the scenarios are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Smoke,
    Default,
    Large,
}

/// What the command line asks for.
struct Selection {
    size: Size,
    scenarios: Vec<u32>,
    rows: Vec<char>,
}

fn select(args: &[String]) -> Selection {
    let size = if !args.iter().any(|a| a == "--bench") {
        Size::Smoke
    } else if args.iter().any(|a| a == "--large") {
        Size::Large
    } else {
        Size::Default
    };
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let all_scenarios: Vec<u32> = (1..=6).collect();
    let (mut scenarios, mut rows) = match value("--only") {
        Some(list) => {
            let tokens: Vec<&str> = list.split(',').map(str::trim).collect();
            (
                tokens.iter().filter_map(|t| t.parse().ok()).collect(),
                issue12::ROWS
                    .into_iter()
                    .filter(|r| tokens.contains(&r.to_string().as_str()))
                    .collect(),
            )
        }
        None => (all_scenarios, issue12::ROWS.to_vec()),
    };
    if args.iter().any(|a| a == "--issue12") {
        scenarios.clear();
        if rows.is_empty() {
            rows = issue12::ROWS.to_vec();
        }
    }
    let poll_ms = value("--poll-ms").and_then(|s| s.parse::<u64>().ok());
    let _ = sched::POLL_OVERRIDE.set(poll_ms.map(Duration::from_millis));
    Selection {
        size,
        scenarios,
        rows,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This binary is also the small process that measures a child's rusage.
    if let Some(code) = rusage::helper_main(&args) {
        std::process::exit(code);
    }
    let sel = select(&args);
    let size = sel.size;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "vidbatch benchmarks — size {size:?}, binary {}",
        env!("CARGO_BIN_EXE_vidbatch")
    );
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    if size == Size::Smoke
        && let Err(e) = spread::self_check()
    {
        failures.push(e);
    }
    let scenarios: [(u32, &str); 6] = [
        (1, "scheduling efficiency"),
        (2, "polling cost"),
        (3, "memory and CPU"),
        (4, "downloads vs curl"),
        (5, "resume latency"),
        (6, "overhead under faults"),
    ];
    for (n, name) in scenarios {
        if !sel.scenarios.contains(&n) {
            continue;
        }
        let result = runtime.block_on(async {
            match n {
                1 => sched::scenario_1(size).await,
                2 => polling::scenario_2(size).await,
                3 => footprint::scenario_3(size).await,
                4 => downloads::scenario_4(size).await,
                5 => resume::scenario_5(size).await,
                _ => sched::scenario_6(size).await,
            }
        });
        match result {
            Ok(table) => println!("{table}"),
            Err(e) => {
                println!("\n## {n}. {name}: FAILED — {e}\n");
                failures.push(format!("scenario {n} ({name}): {e}"));
            }
        }
    }
    if !sel.rows.is_empty() {
        println!("\n## Issue 12 rows: running {:?}", sel.rows);
        let rows_started = Instant::now();
        let t = runtime.block_on(issue12::Issue12::run(size, |r| sel.rows.contains(&r)));
        println!("{t}");
        println!(
            "issue-12 rows took {:.1} s",
            rows_started.elapsed().as_secs_f64()
        );
        failures.extend(t.failures);
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        std::process::exit(1);
    }
}
