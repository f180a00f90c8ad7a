//! Items edited in the manifest after they were submitted.
//!
//! The state keeps, per item, a hash of the parameters it was submitted with
//! (a sync refreshes it only while the item is pending). A manifest whose item
//! now hashes differently asked for something else than what was paid for:
//! `plan` and `run` list it, and nothing is sent again unless the user passes
//! `--resubmit-changed` — then one new attempt (a new paid task) for each
//! whose task has ended, with the earlier videos kept aside.

use std::path::Path;

use super::BatchError;
use crate::manifest::{self, Item};
use crate::state::{self, StateError, Status, Update};

/// A fingerprint of what the item asks for (kept in the state to tell what
/// was submitted). Fields are hashed directly, each tagged and terminated, so
/// 100,000 items cost milliseconds.
pub fn params_hash(it: &Item, manifest_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Local images as written relative to the manifest: the same manifest run
    // from another directory asks for the same thing.
    let image = |i: &Option<manifest::ImageRef>| match i {
        Some(manifest::ImageRef::Path(p)) => Some(format!(
            "path:{}",
            p.strip_prefix(manifest_dir).unwrap_or(p).display()
        )),
        Some(manifest::ImageRef::Url(u)) => Some(format!("url:{u}")),
        None => None,
    };
    let camera = it
        .camera_control
        .as_ref()
        .and_then(|c| serde_json::to_string(c).ok());
    let cfg = it.cfg_scale.map(|c| c.to_bits().to_string());
    let fields = [
        Some(it.kind.as_str().to_string()),
        it.prompt.clone(),
        it.negative_prompt.clone(),
        image(&it.image),
        image(&it.image_tail),
        it.model_name.clone(),
        it.mode.clone(),
        it.duration.clone(),
        it.aspect_ratio.clone(),
        cfg,
        camera,
        it.sound.clone(),
    ];
    for f in &fields {
        match f {
            Some(v) => {
                h.update([1]);
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        }
        h.update([0xff]);
    }
    // Pass-through input (fal) counts too; Kling items hash as before.
    if let Some(extra) = &it.extra {
        h.update(b"extra");
        h.update(
            serde_json::Value::Object(extra.clone())
                .to_string()
                .as_bytes(),
        );
    }
    hex::encode(&h.finalize()[..16])
}

/// An item whose manifest entry differs from what was submitted.
pub struct Changed {
    pub id: String,
    pub status: Status,
    attempt: u32,
    params_hash: String,
    /// Recorded video files, relative to the batch folder.
    paths: Vec<String>,
}

/// Items submitted (in any run) whose parameters in the manifest changed
/// since: the state holds both hashes (`params_hash` as submitted,
/// `manifest_hash` as the manifest last synced asks), so this needs no
/// manifest in memory.
pub fn changed_items(batch_dir: &Path) -> Result<Vec<Changed>, BatchError> {
    let conn = state::open_ro(batch_dir)?;
    let mut stmt = conn
        .prepare(
            "SELECT i.id, i.status, i.attempt, i.manifest_hash, v.path
             FROM items i LEFT JOIN videos v ON v.item_id = i.id
             WHERE i.listed = 1 AND i.status != 'pending'
               AND i.manifest_hash IS NOT NULL AND i.manifest_hash != i.params_hash
             ORDER BY i.seq, i.id, v.n",
        )
        .map_err(StateError::from)?;
    let mut rows = stmt.query([]).map_err(StateError::from)?;
    let mut changed: Vec<Changed> = Vec::new();
    while let Some(r) = rows.next().map_err(StateError::from)? {
        let id: String = r.get(0).map_err(StateError::from)?;
        let path: Option<String> = r.get(4).map_err(StateError::from)?;
        if changed.last().is_none_or(|c| c.id != id) {
            let status: String = r.get(1).map_err(StateError::from)?;
            changed.push(Changed {
                id,
                status: Status::parse(&status).unwrap_or(Status::Pending),
                attempt: r.get(2).map_err(StateError::from)?,
                params_hash: r.get(3).map_err(StateError::from)?,
                paths: Vec::new(),
            });
        }
        if let (Some(c), Some(p)) = (changed.last_mut(), path) {
            c.paths.push(p);
        }
    }
    Ok(changed)
}

/// `--resubmit-changed`: a new attempt for each changed item whose task has
/// ended (downloaded or failed). Earlier videos are kept under
/// `videos/replaced/attempt-<n>/`; items still in flight or not yet
/// downloaded are left alone this run (their paid result comes first).
pub async fn resubmit(
    batch_dir: &Path,
    writer: &crate::state::WriterHandle,
    changed: &[Changed],
) -> Result<Vec<String>, BatchError> {
    let mut done = Vec::new();
    for c in changed {
        if !matches!(c.status, Status::Downloaded | Status::Failed) {
            continue;
        }
        for rel in &c.paths {
            let from = batch_dir.join(rel);
            let Some(under) = rel.strip_prefix("videos/") else {
                continue;
            };
            let to = batch_dir
                .join("videos/replaced")
                .join(format!("attempt-{}", c.attempt))
                .join(under);
            if from.exists() {
                let keep = |source| BatchError::KeepAside {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                };
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(keep)?;
                }
                std::fs::rename(&from, &to).map_err(keep)?;
            }
        }
        writer
            .send_durable(Update::Resubmit {
                id: c.id.clone(),
                attempt: c.attempt + 1,
                params_hash: c.params_hash.clone(),
            })
            .await?;
        done.push(c.id.clone());
    }
    Ok(done)
}

pub fn print_changed(changed: &[Changed], resubmitted: &[String]) {
    if changed.is_empty() {
        return;
    }
    let list = |ids: Vec<&str>| {
        let more = ids.len().saturating_sub(10);
        let mut s = ids.into_iter().take(10).collect::<Vec<_>>().join(", ");
        if more > 0 {
            s.push_str(&format!(" … and {more} more"));
        }
        s
    };
    if !resubmitted.is_empty() {
        crate::outln!(
            "resubmitted {} changed item(s), a new paid task each (earlier videos kept in videos/replaced/): {}",
            resubmitted.len(),
            list(resubmitted.iter().map(String::as_str).collect())
        );
    }
    let kept: Vec<&str> = changed
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| !resubmitted.iter().any(|r| r == id))
        .collect();
    if !kept.is_empty() {
        crate::outln!(
            "changed after submit: {} item(s) differ from what was submitted and were kept as submitted: {} (--resubmit-changed creates them again once their task has ended, a new paid task each)",
            kept.len(),
            list(kept)
        );
    }
}
