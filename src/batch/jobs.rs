//! What each create sends, read from the state file when it is sent.
//!
//! The sync stores every item as the manifest asks for it (`items.spec`,
//! JSON). The engine asks [`StateJobs`] for a page of items just before it
//! sends them; each is read by its key, turned back into the manifest's
//! [`Item`] and into the provider's [`Job`] by `build` (the provider's own
//! request shape: the engine never sees a manifest). Memory stays flat in
//! the number of items, and a resume reads only what it sends.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};

use crate::job::{Job, JobSource};
use crate::manifest::Item;
use crate::state::{self, StateError};

/// Turns a manifest item into the provider's request.
pub type Build = Box<dyn Fn(&Item) -> Job + Send + Sync>;

/// Jobs read from a batch's state file.
pub struct StateJobs {
    conn: Mutex<Connection>,
    build: Build,
}

impl StateJobs {
    /// Read the state in `batch_dir` (its own read-only connection: the
    /// writer is never blocked by it).
    pub fn open(batch_dir: &Path, build: Build) -> Result<StateJobs, StateError> {
        Ok(StateJobs {
            conn: Mutex::new(state::open_ro(batch_dir)?),
            build,
        })
    }
}

impl JobSource for StateJobs {
    fn jobs(&self, ids: &[&str]) -> Result<Vec<Job>, String> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| "the reader broke".to_string())?;
        let mut stmt = conn
            .prepare_cached("SELECT spec FROM items WHERE id = ?1")
            .map_err(|e| e.to_string())?;
        ids.iter()
            .map(|id| {
                let spec: Option<String> = stmt
                    .query_row([id], |r| r.get(0))
                    .optional()
                    .map_err(|e| e.to_string())?
                    .flatten();
                let spec = spec.ok_or_else(|| {
                    format!("item `{id}` has no request in the state (run again: the manifest is synced first)")
                })?;
                let item: Item = serde_json::from_str(&spec)
                    .map_err(|e| format!("item `{id}`: its stored request is unreadable: {e}"))?;
                Ok((self.build)(&item))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::source::Source;
    use crate::job::Kind;
    use crate::manifest::LoadOptions;
    use crate::provider::registry::Api;
    use crate::state::Writer;

    #[tokio::test]
    async fn a_synced_item_comes_back_as_the_job_the_manifest_asks_for() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.csv");
        std::fs::write(
            &path,
            "id,prompt,model_name,duration\na,first shot,kling-v1,10\nb,second,,\n",
        )
        .unwrap();
        let source = Source {
            path: path.clone(),
            options: LoadOptions::default(),
            shard: None,
        };
        let scanned = source.scan(None).unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (conn, _) = state::open_rw(&out).unwrap();
        let (w, writer) = Writer::start(conn);
        crate::batch::sync::sync_manifest(&writer, &out, &source, &scanned, Api::Kling)
            .await
            .unwrap();
        drop(writer);
        tokio::task::spawn_blocking(move || w.join()).await.unwrap();

        let build: Build = Box::new(|item: &Item| {
            let mut job = Job::new(item.id.clone(), item.kind);
            job.body.insert("prompt".into(), item.prompt.clone().into());
            job.body
                .insert("model".into(), item.model_name.clone().into());
            job
        });
        let jobs = StateJobs::open(&out, build).unwrap();
        let got = jobs.jobs(&["b", "a"]).unwrap();
        assert_eq!(got[0].id, "b");
        assert_eq!(got[1].kind, Kind::Text2Video);
        assert_eq!(got[1].body["prompt"], "first shot");
        assert_eq!(got[1].body["model"], "kling-v1");
        let missing = jobs.jobs(&["nope"]).unwrap_err();
        assert!(missing.contains("`nope`"), "{missing}");
    }
}
