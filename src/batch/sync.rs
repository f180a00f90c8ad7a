//! Making a batch's state know its manifest, before the engine starts.
//!
//! [`sync_manifest`] writes every item (id, order, kind, prompt, parameters'
//! hash, settings, estimated units) into the state in committed chunks, and
//! skips the work when the state already holds this very manifest (its
//! fingerprint is in `meta`): resuming 100k items must not rewrite 100k rows.
//! [`mark_for_lookup`] is the rebuild's second half (see [`super::open`]):
//! every item is marked `submitting` under its key, so recovery looks each
//! one up before anything is created.

use std::path::Path;

use super::Rebuilt;
use super::changes::params_hash;
use crate::manifest::{self, Item, Manifest};
use crate::scheduler::ids;
use crate::state::writer::RecoverItem;
use crate::state::{self, NewItem, StateError, Update, WriterHandle};

/// Items per `SyncItems` update.
const SYNC_CHUNK: usize = 25_000;

/// `meta` key of the fingerprint of the manifest last synced into the state.
pub const MANIFEST_FINGERPRINT: &str = "manifest_fingerprint";

/// Sync `manifest` into the state behind `writer`; returns every item's
/// parameters' hash, in manifest order.
pub async fn sync_manifest(
    writer: &WriterHandle,
    batch_dir: &Path,
    manifest: &Manifest,
) -> Result<Vec<String>, StateError> {
    sync_manifest_at(writer, batch_dir, manifest, None).await
}

/// [`sync_manifest`] of a shard's items: `positions` are their places in the
/// whole manifest (stored as `seq`, so merged shard reports keep manifest order).
pub async fn sync_manifest_at(
    writer: &WriterHandle,
    batch_dir: &Path,
    manifest: &Manifest,
    positions: Option<&[u64]>,
) -> Result<Vec<String>, StateError> {
    let base = manifest
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let hashes: Vec<String> = manifest
        .items
        .iter()
        .map(|it| params_hash(it, &base))
        .collect();
    let mut fingerprint = manifest_fingerprint(&manifest.items, &hashes);
    if let Some(p) = positions {
        use sha2::{Digest, Sha256};
        let text: Vec<String> = p.iter().map(u64::to_string).collect();
        let digest = Sha256::digest(format!("{fingerprint}\n{}", text.join(",")).as_bytes());
        fingerprint = hex::encode(digest);
    }
    let synced = state::meta(&state::open_ro(batch_dir)?, MANIFEST_FINGERPRINT)?;
    if synced.as_deref() != Some(fingerprint.as_str()) {
        // In chunks, each committed before the next is built, so the copy the
        // store needs never holds the whole manifest a second time.
        let mut seq = 0u64;
        for (chunk, chunk_hashes) in manifest
            .items
            .chunks(SYNC_CHUNK)
            .zip(hashes.chunks(SYNC_CHUNK))
        {
            writer
                .send_durable(Update::SyncItems(new_items(
                    chunk,
                    chunk_hashes,
                    seq,
                    positions,
                )))
                .await?;
            seq += chunk.len() as u64;
        }
        writer
            .send_durable(Update::SetMeta {
                key: MANIFEST_FINGERPRINT.into(),
                value: fingerprint,
            })
            .await?;
    }
    Ok(hashes)
}

/// A rebuilt state: every item may have a task already, under the key the
/// old report knew or the one its name derives.
pub async fn mark_for_lookup(
    writer: &WriterHandle,
    batch_id: &str,
    items: &[Item],
    rebuilt: &Rebuilt,
) -> Result<(), StateError> {
    let recover = items
        .iter()
        .map(|it| {
            let (external_task_id, attempt) = rebuilt
                .known
                .get(&it.id)
                .cloned()
                .unwrap_or_else(|| (ids::external_task_id(batch_id, &it.id, 1), 1));
            RecoverItem {
                id: it.id.clone(),
                external_task_id,
                attempt,
            }
        })
        .collect();
    writer.send_durable(Update::Recover(recover)).await
}

/// `positions`: the whole manifest's positions of a shard's items (`None`:
/// the manifest is whole, positions count from 0).
fn new_items(
    items: &[Item],
    hashes: &[String],
    first_seq: u64,
    positions: Option<&[u64]>,
) -> Vec<NewItem> {
    items
        .iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (it, hash))| NewItem {
            id: it.id.clone(),
            seq: {
                let i = first_seq + i as u64;
                positions
                    .and_then(|p| p.get(i as usize).copied())
                    .unwrap_or(i)
            },
            kind: it.kind.as_str().to_string(),
            prompt: it.prompt.clone(),
            params_hash: hash.clone(),
            params: Some(manifest::params::settings_json(it)),
            est_units: manifest::params::estimated_units(it),
        })
        .collect()
}

/// The manifest as the state sees it: every item's id and parameters, in order.
fn manifest_fingerprint(items: &[Item], hashes: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (it, hash) in items.iter().zip(hashes) {
        h.update(it.id.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        h.update([0xff]);
    }
    hex::encode(h.finalize())
}
