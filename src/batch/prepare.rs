//! The one way a batch is made ready for the engine: [`prepare`].
//!
//! Opening a batch is several steps whose order carries the safety promises:
//! the lock before anything is read, the state (or its rebuild) before the
//! manifest is synced into it, edits detected against what was *submitted*
//! before the sync could hide them, a rebuilt state's items marked for lookup
//! before the engine could create anything, and the engine's records read
//! last, from what is committed. `vidbatch run`, the integration tests and the
//! benchmarks all call this, so what they test and measure is what a user
//! runs. What comes after — the provider, the jobs, the engine's settings —
//! stays with the caller.

use std::path::Path;

use super::changes::{self, Changed};
use super::source::{Scanned, Source};
use super::{BatchError, Rebuilt, sync};
use crate::provider::registry::Api;
use crate::state::{self, BatchLock, Progress, Update, Writer, WriterHandle};

/// How to open the batch.
#[derive(Debug, Clone, Copy)]
pub struct Prepare<'a> {
    /// The batch's name: every task key derives from it.
    pub name: &'a str,
    /// The user gave the name (`--batch`, `--new-batch`): a folder holding
    /// another batch is then an error, not a batch to continue.
    pub name_explicit: bool,
    /// `--new-batch`: the folder must not hold a batch yet.
    pub new_batch: bool,
    /// `--resubmit-changed`: a new attempt for each item edited after its
    /// task ended.
    pub resubmit_changed: bool,
    /// The API the batch goes to; it prices each item for the state (the
    /// spend cap, the report).
    pub api: Api,
}

/// A batch ready for the engine. Keep `lock` alive for the whole run, and
/// `join` the `writer_thread` once every `writer` handle is gone: its last
/// act is to checkpoint the state into one complete file.
pub struct Prepared {
    pub lock: BatchLock,
    pub writer: WriterHandle,
    pub writer_thread: Writer,
    /// The key prefix of every create (derived from the batch's name).
    pub batch_id: String,
    /// Set when the folder held a batch without a usable state.
    pub rebuilt: Option<Rebuilt>,
    /// Items edited in the manifest after they were submitted.
    pub changed: Vec<Changed>,
    /// Of those, the ids given a new attempt (`resubmit_changed`).
    pub resubmitted: Vec<String>,
    /// Every item's progress, in manifest order, without prompts or
    /// settings (what a create sends is read when it is sent:
    /// [`super::jobs::StateJobs`]).
    pub records: Vec<Progress>,
}

/// Lock `dir`, open (or rebuild) its state, sync the manifest `source`
/// into it (`scanned`: what [`Source::scan`] found), find and (when asked)
/// resubmit edited items, and read what the engine resumes from. On an
/// error after the writer started, the writer is stopped and joined before
/// returning, so the folder is left consistent.
pub async fn prepare(
    dir: &Path,
    source: &Source,
    scanned: &Scanned,
    how: Prepare<'_>,
) -> Result<Prepared, BatchError> {
    let opened = super::open(dir, how.name, how.name_explicit, how.new_batch)?;
    crate::shard::check_folder(
        &opened.conn,
        dir,
        scanned.selection.as_ref().map(|s| s.shard),
    )?;
    let (writer_thread, writer) = Writer::start_at(opened.conn, &state::db_path(dir));
    match settle(
        dir,
        (source, scanned),
        how,
        &writer,
        &opened.batch_id,
        &opened.rebuilt,
    )
    .await
    {
        Ok((changed, resubmitted, records)) => Ok(Prepared {
            lock: opened.lock,
            writer,
            writer_thread,
            batch_id: opened.batch_id,
            rebuilt: opened.rebuilt,
            changed,
            resubmitted,
            records,
        }),
        Err(e) => {
            drop(writer);
            let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
            Err(e)
        }
    }
}

type Settled = (Vec<Changed>, Vec<String>, Vec<Progress>);

/// The steps after the state is open, in their safe order.
async fn settle(
    dir: &Path,
    (source, scanned): (&Source, &Scanned),
    how: Prepare<'_>,
    writer: &WriterHandle,
    batch_id: &str,
    rebuilt: &Option<Rebuilt>,
) -> Result<Settled, BatchError> {
    for (key, value) in scanned.selection.iter().flat_map(|s| s.meta()) {
        writer.send(Update::SetMeta {
            key: key.into(),
            value,
        })?;
    }
    sync::sync_manifest(writer, dir, source, scanned, how.api).await?;
    let changed = changes::changed_items(dir)?;
    let resubmitted = if how.resubmit_changed {
        changes::resubmit(dir, writer, &changed).await?
    } else {
        Vec::new()
    };
    if let Some(rebuilt) = rebuilt {
        sync::mark_for_lookup(writer, dir, batch_id, rebuilt).await?;
    }
    // The engine needs each item's progress, not its prompt.
    let records = state::load_progress(&state::open_ro(dir)?)?;
    Ok((changed, resubmitted, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, rows: &str) -> (Source, Scanned) {
        let p = dir.join("m.csv");
        std::fs::write(&p, format!("id,prompt,model_name,duration\n{rows}")).unwrap();
        let source = Source {
            path: p,
            options: Default::default(),
            shard: None,
        };
        let scanned = source.scan(None).unwrap();
        (source, scanned)
    }

    fn how(name: &str) -> Prepare<'_> {
        Prepare {
            name,
            name_explicit: false,
            new_batch: false,
            resubmit_changed: false,
            api: Api::Kling,
        }
    }

    async fn close(p: Prepared) {
        drop(p.writer);
        tokio::task::spawn_blocking(move || p.writer_thread.join())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_new_batch_knows_every_item_in_manifest_order_with_its_price() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path(), "b,two,kling-v1,10\na,one,kling-v3,8\n");
        let out = tmp.path().join("out");
        let p = prepare(&out, &m.0, &m.1, how("m")).await.unwrap();
        assert_eq!(p.batch_id, super::super::batch_key("m"));
        let ids: Vec<&str> = p.records.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["b", "a"]);
        assert!(p.changed.is_empty() && p.rebuilt.is_none());
        close(p).await;
        let all = state::load_items(&state::open_ro(&out).unwrap()).unwrap();
        assert_eq!(all[0].est_units, Some(2.0), "kling-v1 std 10s");
        assert_eq!(all[1].est_units, None, "kling-v3 is not priced");
    }

    #[tokio::test]
    async fn a_manifest_of_several_chunks_is_synced_whole_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let n = 2 * super::super::sync::SYNC_CHUNK + 5;
        let rows: String = (0..n).map(|i| format!("i{i},prompt {i},,\n")).collect();
        let m = manifest(tmp.path(), &rows);
        let out = tmp.path().join("out");
        let p = prepare(&out, &m.0, &m.1, how("m")).await.unwrap();
        let ids: Vec<&str> = p.records.iter().map(|r| &*r.id).collect();
        let want: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
        assert_eq!(ids, want);
        close(p).await;
    }

    #[tokio::test]
    async fn an_item_dropped_from_the_manifest_is_not_run_but_keeps_its_row() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let m = manifest(tmp.path(), "a,one,,\nb,two,,\n");
        close(prepare(&out, &m.0, &m.1, how("m")).await.unwrap()).await;
        // The next run's manifest drops `a` and adds `c`.
        let m = manifest(tmp.path(), "b,two,,\nc,three,,\n");
        let p = prepare(&out, &m.0, &m.1, how("m")).await.unwrap();
        let ids: Vec<&str> = p.records.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["b", "c"], "the engine runs what the manifest lists");
        close(p).await;
        let all = state::load_items(&state::open_ro(&out).unwrap()).unwrap();
        let kept: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert!(kept.contains(&"a"), "its row (and any paid result) stays");
        // Unchanged since: the seal stands for the manifest.
        let again = m.0.scan(Some(&out)).unwrap();
        assert!(again.sealed);
        assert_eq!(again.fingerprint, m.1.fingerprint);
    }

    #[tokio::test]
    async fn the_lock_is_held_until_the_prepared_batch_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path(), "a,one,,\n");
        let out = tmp.path().join("out");
        let p = prepare(&out, &m.0, &m.1, how("m")).await.unwrap();
        let again = prepare(&out, &m.0, &m.1, how("m")).await;
        assert!(
            matches!(
                again,
                Err(BatchError::State(state::StateError::Locked { .. }))
            ),
            "a second runner is kept off the batch"
        );
        close(p).await;
        let p = prepare(&out, &m.0, &m.1, how("m"))
            .await
            .expect("free again");
        close(p).await;
    }
}
