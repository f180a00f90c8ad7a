//! `vidbatch verify DIR`: re-hash every downloaded video and repair the state.
//!
//! A run checks that each downloaded file exists with its recorded size; a
//! file replaced by something else of the same size is only caught by its
//! hash. `verify` reads every file, compares its sha256 with the recorded
//! one, and for each that is missing or different makes the state forget it
//! (the item is `succeeded` again), so the next `vidbatch run` downloads it
//! again — from a fresh URL if the old one expired — and never creates it
//! again. It takes the batch lock: it does not run beside a run.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::Exit;
use crate::state::{self, BatchLock, Update, Writer};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
}

const NO_FILE: &str = "no file recorded";

/// One video that is not what the state says.
struct Bad {
    id: String,
    n: u32,
    path: String,
    why: String,
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let _lock = BatchLock::acquire(&args.dir)?;
    let mut checked = 0u64;
    let mut bytes = 0u64;
    let mut bad = Vec::new();
    state::for_each_item(&conn, false, |r| {
        if r.status() != state::Status::Downloaded {
            return Ok::<(), anyhow::Error>(());
        }
        for v in &r.videos {
            let (Some(path), Some(size), Some(sha)) = (&v.path, v.bytes, &v.sha256) else {
                bad.push(Bad {
                    id: r.id.clone(),
                    n: v.n,
                    path: v.path.clone().unwrap_or_default(),
                    why: NO_FILE.into(),
                });
                continue;
            };
            checked += 1;
            match hash_file(&args.dir.join(path)) {
                Ok((len, digest)) if len == size && &digest == sha => bytes += len,
                Ok((len, _)) if len != size => bad.push(Bad {
                    id: r.id.clone(),
                    n: v.n,
                    path: path.clone(),
                    why: format!("{len} bytes, recorded {size}"),
                }),
                Ok(_) => bad.push(Bad {
                    id: r.id.clone(),
                    n: v.n,
                    path: path.clone(),
                    why: "content differs from the recorded sha256".into(),
                }),
                Err(e) => bad.push(Bad {
                    id: r.id.clone(),
                    n: v.n,
                    path: path.clone(),
                    why: e.to_string(),
                }),
            }
        }
        Ok(())
    })?;
    drop(conn);
    if !bad.is_empty() {
        let (conn, _) = state::open_rw(&args.dir)?;
        let (writer, handle) = Writer::start_at(conn, &state::db_path(&args.dir));
        for b in &bad {
            handle.send(Update::VideoGone {
                id: b.id.clone(),
                n: b.n,
            })?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(handle.flush())?;
        drop(handle);
        writer.join();
    }
    let changed = bad.iter().filter(|b| b.why != NO_FILE).count() as u64;
    crate::outln!(
        "verified {checked} video file(s): {} intact ({:.1} MB), {} to download again",
        checked - changed,
        bytes as f64 / 1e6,
        bad.len()
    );
    for b in &bad {
        crate::outln!("  {} ({}): {}", b.id, b.path, b.why);
    }
    if bad.is_empty() {
        Ok(Exit::Success)
    } else {
        crate::outln!(
            "the state now lists these items as succeeded, not downloaded: run the same `vidbatch run` command to download them again (nothing is created again)"
        );
        Ok(Exit::ItemsFailed)
    }
}

/// Length and hex sha256 of a file, read in 1 MiB blocks.
fn hash_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((len, hex::encode(hasher.finalize())))
}
