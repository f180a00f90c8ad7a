//! Load generator for the Kling API emulator: how many requests per second one
//! in-process emulator sustains for create and for query.
//!
//! Usage: `cargo run --release --example emulator_load -- [CLIENTS] [REQUESTS]`
//! (defaults 64 and 50,000). It starts an emulator on 127.0.0.1:0 with the
//! request log off and a one-hour latency (so no task finishes and in-flight
//! counting stays live), then runs two phases, each with CLIENTS concurrent
//! tokio tasks sharing one reqwest client (keep-alive pool) that split a fixed
//! count of REQUESTS between them:
//! 1. create: `POST /v1/videos/text2video` with a unique external_task_id;
//! 2. query: `GET /v1/videos/text2video/{task_id}` over the created ids.
//!
//! Each phase prints requests, wall time, requests/s and the non-200 count.
//! Client and server share the machine, so the figure is a lower bound on the
//! server alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vidbatch::emulator::{self, EmulatorConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let total: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let emu = emulator::start(EmulatorConfig {
        latency: Duration::from_secs(3600),
        record_requests: false,
        ..EmulatorConfig::default()
    })
    .await?;
    let base = emu.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    println!("emulator at {base}; {clients} clients, {total} requests per phase");

    // Phase 1: creates.
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, next, ids, errors, url) = (
            http.clone(),
            next.clone(),
            ids.clone(),
            errors.clone(),
            format!("{base}/v1/videos/text2video"),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = json!({"prompt": "load test", "external_task_id": format!("load-{i}")});
                let resp = http
                    .post(&url)
                    .header("Authorization", "Bearer load")
                    .json(&body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = v["data"]["task_id"].as_str() {
                            if let Ok(mut ids) = ids.lock() {
                                ids.push(id.to_owned());
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    report(
        "create",
        total,
        started.elapsed(),
        errors.load(Ordering::Relaxed),
    );

    // Phase 2: queries over the created ids.
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().map(|v| v.clone()).unwrap_or_default());
    if ids.is_empty() {
        return Err("no task was created".into());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, next, ids, errors, base) = (
            http.clone(),
            next.clone(),
            ids.clone(),
            errors.clone(),
            base.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let id = &ids[i % ids.len()];
                let resp = http
                    .get(format!("{base}/v1/videos/text2video/{id}"))
                    .header("Authorization", "Bearer load")
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    report(
        "query",
        total,
        started.elapsed(),
        errors.load(Ordering::Relaxed),
    );
    let stats = emu.stats();
    println!(
        "emulator stats: creates_accepted={} queries={} max_in_flight={} duplicates={}",
        stats.creates_accepted,
        stats.queries,
        stats.max_in_flight,
        stats.duplicate_external_task_ids.len()
    );
    emu.shutdown().await;
    Ok(())
}

fn report(phase: &str, n: usize, elapsed: Duration, errors: usize) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{phase}: {n} requests in {secs:.2} s = {:.0} req/s ({errors} non-200)",
        n as f64 / secs
    );
}
