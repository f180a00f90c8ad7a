//! Making a batch's state know its manifest, before the engine starts.
//!
//! [`sync_manifest`] streams every item (id, order, kind, prompt, parameters'
//! hash, settings, estimated units, and the whole item as the spec its next
//! create sends) into the state in committed chunks (the next one is read
//! while the writer commits the one before), and skips the work when
//! the state already holds this very manifest (its fingerprint is in `meta`):
//! resuming 100k items must not rewrite 100k rows. Items the manifest no
//! longer lists stay in the state (their paid results are kept) but are not
//! run. [`mark_for_lookup`] is the rebuild's second half (see
//! [`super::open`]): every item is marked `submitting` under its key, so
//! recovery looks each one up before anything is created.

use std::path::Path;

use super::source::{MANIFEST_SEAL, Scanned, Source};
use super::{BatchError, Rebuilt};
use crate::manifest::{self, Item};
use crate::provider::registry::{self, Api};
use crate::scheduler::ids;
use crate::state::writer::RecoverItem;
use crate::state::{self, NewItem, StateError, Update, WriterHandle};

/// Items per `SyncItems` update: one is read while the one before is
/// committed, so a sync holds twice this many items, not the manifest
/// (4,096 a chunk held that much more at 100k items: +4 MB peak).
pub(super) const SYNC_CHUNK: usize = 2_048;

/// `meta` key of the fingerprint of the manifest last synced into the state.
pub const MANIFEST_FINGERPRINT: &str = "manifest_fingerprint";

/// Make the state behind `writer` hold `scanned`'s items (read again from
/// `source`), each with its estimated units as `api` prices it, unless it
/// already does; then seal it, so the next run need not read the manifest.
pub async fn sync_manifest(
    writer: &WriterHandle,
    batch_dir: &Path,
    source: &Source,
    scanned: &Scanned,
    api: Api,
) -> Result<(), BatchError> {
    let synced = state::meta(&state::open_ro(batch_dir)?, MANIFEST_FINGERPRINT)?;
    if synced.as_deref() != Some(scanned.fingerprint.as_str()) {
        writer.send_durable(Update::BeginSync).await?;
        // The files are read again on a blocking thread while the writer
        // commits the chunk before: one chunk is read while one is written,
        // never more (the sync holds two chunks, not the manifest).
        let (source2, scanned2, writer2) = (source.clone(), scanned.clone(), writer.clone());
        let handle = tokio::runtime::Handle::current();
        let (read, writing) = tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(SYNC_CHUNK);
            let mut failed: Option<StateError> = None;
            let mut writing: Option<Committing> = None;
            let read = source2.each(&scanned2, &mut |pos, item, hash| {
                if failed.is_some() {
                    return;
                }
                chunk.push(new_item(api, &item, hash, pos));
                if chunk.len() == SYNC_CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(SYNC_CHUNK));
                    if let Some(before) = writing.take()
                        && let Err(e) = handle.block_on(committed(before))
                    {
                        failed = Some(e);
                        return;
                    }
                    let w = writer2.clone();
                    writing = Some(
                        handle.spawn(async move { w.send_durable(Update::SyncItems(full)).await }),
                    );
                }
            });
            match (read, failed) {
                (Err(e), _) => Err(BatchError::Manifest(e)),
                (Ok(()), Some(e)) => Err(e.into()),
                (Ok(()), None) => Ok((chunk, writing)),
            }
        })
        .await
        .map_err(|_| StateError::WriterGone)??;
        if let Some(before) = writing {
            committed(before).await?;
        }
        writer.send_durable(Update::SyncItems(read)).await?;
        writer
            .send_durable(Update::SetMeta {
                key: MANIFEST_FINGERPRINT.into(),
                value: scanned.fingerprint.clone(),
            })
            .await?;
    }
    if !scanned.sealed {
        writer
            .send_durable(Update::SetMeta {
                key: MANIFEST_SEAL.into(),
                value: scanned.seal(),
            })
            .await?;
    }
    Ok(())
}

/// A chunk on its way into the state.
type Committing = tokio::task::JoinHandle<Result<(), StateError>>;

/// Wait for a chunk's commit (a task that cannot finish is a writer gone).
async fn committed(chunk: Committing) -> Result<(), StateError> {
    chunk.await.unwrap_or(Err(StateError::WriterGone))
}

/// A rebuilt state: every item may have a task already, under the key the
/// old report knew or the one its name derives.
pub async fn mark_for_lookup(
    writer: &WriterHandle,
    batch_dir: &Path,
    batch_id: &str,
    rebuilt: &Rebuilt,
) -> Result<(), StateError> {
    let recover = lookups(batch_dir, batch_id, rebuilt)?;
    writer.send_durable(Update::Recover(recover)).await
}

/// The key each listed item's task would have (no connection is held
/// across an await: the future stays `Send`).
fn lookups(
    batch_dir: &Path,
    batch_id: &str,
    rebuilt: &Rebuilt,
) -> Result<Vec<RecoverItem>, StateError> {
    let conn = state::open_ro(batch_dir)?;
    let mut stmt = conn.prepare("SELECT id FROM items WHERE listed = 1 ORDER BY seq")?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut recover = Vec::new();
    for id in ids {
        let id = id?;
        let (external_task_id, attempt) = rebuilt
            .known
            .get(&id)
            .cloned()
            .unwrap_or_else(|| (ids::external_task_id(batch_id, &id, 1), 1));
        recover.push(RecoverItem {
            id,
            external_task_id,
            attempt,
        });
    }
    Ok(recover)
}

/// One item as the store keeps it; `seq` is its place in the whole manifest
/// (a shard's items keep theirs, so merged shard reports keep manifest order).
fn new_item(api: Api, it: &Item, params_hash: String, seq: u64) -> NewItem {
    NewItem {
        id: it.id.clone(),
        seq,
        kind: it.kind.as_str().to_string(),
        prompt: it.prompt.clone(),
        params_hash,
        params: Some(manifest::params::settings_json(it)),
        est_units: registry::price(api, it).units(),
        spec: serde_json::to_string(it).ok(),
    }
}
