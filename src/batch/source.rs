//! A manifest as `vidbatch run` reads it: checked without being held, and
//! not read at all when the batch's state already holds exactly it.
//!
//! Why: 100,000 validated items held in memory are ~80 MB, and parsing them
//! again on every resume costs a third of a second before the first request.
//! So a run
//! 1. **scans** ([`Source::scan`]): validates every item and drops it,
//!    keeping a fingerprint (ids and parameters' hashes, in order, with each
//!    item's place in the whole manifest) and the whole manifest's identity
//!    for shards;
//! 2. **streams** the items into the state a chunk at a time
//!    ([`Source::each`], used by `sync`), only when the state's fingerprint
//!    differs — reading the files again and refusing them if they no longer
//!    are what the scan checked;
//! 3. **seals** ([`Scanned::seal`]): the state remembers the sha256 of the
//!    very bytes it validated. The next run whose files hash the same, with
//!    the same vidbatch, options, manifest path and shard, takes the
//!    manifest from the seal without parsing it.
//!
//! What each create sends is then read from the state when it is sent
//! (`super::jobs`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::changes::params_hash;
use crate::manifest::{
    self, Item, LimitsBlock, LoadOptions, Manifest, ManifestError, Problem, ProviderBlock,
};
use crate::shard::{Selection, Shard};
use crate::state;

/// `meta` key of the seal (JSON).
pub const MANIFEST_SEAL: &str = "manifest_seal";

/// Where a run's items come from.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub options: LoadOptions,
    /// Only this shard's items (`--shard`).
    pub shard: Option<Shard>,
}

/// A checked manifest, without its items.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// Path and `provider:` / `limits:` blocks; no items.
    pub head: Manifest,
    /// Items this run takes (the shard's, when sharded).
    pub items: u64,
    /// What the state's manifest fingerprint equals when it holds these items.
    pub fingerprint: String,
    pub selection: Option<Selection>,
    /// Taken from the state's seal: the files were not parsed.
    pub sealed: bool,
    seal: Seal,
}

/// What the state keeps to skip the next scan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Seal {
    /// vidbatch version, options, absolute manifest path and shard.
    key: String,
    /// Every file read, with the sha256 of the bytes validated.
    files: Vec<(PathBuf, String)>,
    fingerprint: String,
    items: u64,
    manifest_id: String,
    manifest_items: u64,
    provider: ProviderBlock,
    limits: LimitsBlock,
}

impl Scanned {
    /// The `meta` value that lets the next run skip the scan; store it only
    /// once the state holds these items.
    pub fn seal(&self) -> String {
        serde_json::to_string(&self.seal).unwrap_or_default()
    }
}

impl Source {
    /// Check the manifest. From the seal of the state in `batch_dir` when
    /// every file it names hashes as it did (nothing parsed); else by reading
    /// and validating every item. `batch_dir`: where the run's state is, or
    /// `None` when it can hold no seal (a new batch).
    pub fn scan(&self, batch_dir: Option<&Path>) -> Result<Scanned, ManifestError> {
        let key = self.key();
        if let Some(scanned) = batch_dir.and_then(|dir| self.sealed(dir, &key)) {
            return Ok(scanned);
        }
        let mut fold = Fold::new(self.shard, &self.path);
        let (mut head, _) = manifest::scan_with(&self.path, &self.options, &mut |item| {
            fold.add(&item);
        })?;
        let files = std::mem::take(&mut head.files);
        Ok(fold.finish(head, key, files))
    }

    /// Read the manifest again and hand each of this run's items to `f`,
    /// with its place in the whole manifest and its parameters' hash. Fails
    /// when the files no longer hold what `scanned` checked (edited between
    /// the two reads): then nothing of this read counts.
    pub fn each(
        &self,
        scanned: &Scanned,
        f: &mut dyn FnMut(u64, Item, String),
    ) -> Result<(), ManifestError> {
        let mut fold = Fold::new(self.shard, &self.path);
        let (head, _) = manifest::scan_with(&self.path, &self.options, &mut |item| {
            if let Some((pos, hash)) = fold.add(&item) {
                f(pos, item, hash);
            }
        })?;
        let again = fold.finish(head, self.key(), Vec::new());
        if again.fingerprint != scanned.fingerprint {
            return Err(ManifestError::Invalid {
                path: self.path.clone(),
                problems: vec![Problem {
                    location: self.path.display().to_string(),
                    message: "the manifest changed while vidbatch was reading it; nothing was sent: run the same command again".into(),
                }],
            });
        }
        Ok(())
    }

    /// What a seal holds besides the files: it is void when any differs.
    fn key(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut h = Sha256::new();
        h.update(b"vidbatch-seal-v1\n");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update([0]);
        h.update(abs.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(
            self.options
                .provider_style
                .as_deref()
                .unwrap_or("")
                .as_bytes(),
        );
        h.update([0]);
        h.update(
            self.shard
                .map(|s| s.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        hex::encode(h.finalize())
    }

    /// The scan a seal stands for, when it is valid for these files now.
    fn sealed(&self, dir: &Path, key: &str) -> Option<Scanned> {
        if !state::db_path(dir).is_file() {
            return None;
        }
        let conn = state::open_ro(dir).ok()?;
        let seal: Seal = serde_json::from_str(&state::meta(&conn, MANIFEST_SEAL).ok()??).ok()?;
        let synced = state::meta(&conn, super::sync::MANIFEST_FINGERPRINT).ok()??;
        drop(conn);
        if seal.key != key || seal.fingerprint != synced || seal.files.is_empty() {
            return None;
        }
        for (path, digest) in &seal.files {
            if manifest::file_digest(path).ok()? != *digest {
                return None;
            }
        }
        Some(Scanned {
            head: Manifest {
                path: self.path.clone(),
                provider: seal.provider.clone(),
                limits: seal.limits.clone(),
                ..Manifest::default()
            },
            items: seal.items,
            fingerprint: seal.fingerprint.clone(),
            selection: self.shard.map(|shard| Selection {
                shard,
                manifest_id: seal.manifest_id.clone(),
                manifest_items: seal.manifest_items,
            }),
            sealed: true,
            seal,
        })
    }
}

/// The fingerprints of a manifest, one item at a time.
struct Fold {
    shard: Option<Shard>,
    /// Local images are hashed as written relative to this folder.
    base: PathBuf,
    /// Every item: the whole manifest's identity (equal for its shards).
    whole: Sha256,
    /// This run's items with their places: the state's fingerprint.
    taken: Sha256,
    seen: u64,
    kept: u64,
}

impl Fold {
    fn new(shard: Option<Shard>, path: &Path) -> Fold {
        let mut whole = Sha256::new();
        whole.update(b"vidbatch-manifest-v1\n");
        let mut taken = Sha256::new();
        taken.update(b"vidbatch-items-v2\n");
        Fold {
            shard,
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            whole,
            taken,
            seen: 0,
            kept: 0,
        }
    }

    /// Count `item`; its place and parameters' hash when this run takes it.
    fn add(&mut self, item: &Item) -> Option<(u64, String)> {
        let hash = params_hash(item, &self.base);
        self.whole.update(item.id.as_bytes());
        self.whole.update([0]);
        self.whole.update(hash.as_bytes());
        self.whole.update([0xff]);
        let pos = self.seen;
        self.seen += 1;
        if !self.shard.is_none_or(|s| s.contains(&item.id)) {
            return None;
        }
        self.kept += 1;
        self.taken.update(item.id.as_bytes());
        self.taken.update([0]);
        self.taken.update(hash.as_bytes());
        self.taken.update(pos.to_be_bytes());
        self.taken.update([0xff]);
        Some((pos, hash))
    }

    fn finish(self, head: Manifest, key: String, files: Vec<(PathBuf, String)>) -> Scanned {
        let fingerprint = hex::encode(self.taken.finalize());
        let manifest_id = hex::encode(self.whole.finalize());
        let seal = Seal {
            key,
            files: files
                .into_iter()
                .map(|(p, d)| (std::path::absolute(&p).unwrap_or(p), d))
                .collect(),
            fingerprint: fingerprint.clone(),
            items: self.kept,
            manifest_id: manifest_id.clone(),
            manifest_items: self.seen,
            provider: head.provider.clone(),
            limits: head.limits.clone(),
        };
        Scanned {
            items: self.kept,
            fingerprint,
            selection: self.shard.map(|shard| Selection {
                shard,
                manifest_id,
                manifest_items: self.seen,
            }),
            sealed: false,
            head,
            seal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::registry::Api;
    use crate::state::Writer;

    fn source(path: &Path, shard: Option<Shard>) -> Source {
        Source {
            path: path.to_path_buf(),
            options: LoadOptions::default(),
            shard,
        }
    }

    /// Sync `scanned` into a new state in `out`, as a run does.
    async fn synced(out: &Path, source: &Source, scanned: &Scanned) {
        std::fs::create_dir_all(out).unwrap();
        let (conn, _) = state::open_rw(out).unwrap();
        let (w, writer) = Writer::start(conn);
        super::super::sync::sync_manifest(&writer, out, source, scanned, Api::Kling)
            .await
            .unwrap();
        drop(writer);
        tokio::task::spawn_blocking(move || w.join()).await.unwrap();
    }

    #[tokio::test]
    async fn a_resume_of_unchanged_files_takes_the_manifest_from_the_seal() {
        let tmp = tempfile::tempdir().unwrap();
        let (yaml, rows) = (tmp.path().join("m.yaml"), tmp.path().join("rows.csv"));
        std::fs::write(&yaml, "limits:\n  concurrency: 3\nitems_from: rows.csv\n").unwrap();
        std::fs::write(&rows, "id,prompt\na,one\nb,two\n").unwrap();
        let out = tmp.path().join("out");
        let src = source(&yaml, None);
        let first = src.scan(Some(&out)).unwrap();
        assert!(!first.sealed, "nothing to resume yet");
        assert_eq!(first.items, 2);
        synced(&out, &src, &first).await;

        let again = src.scan(Some(&out)).unwrap();
        assert!(again.sealed, "same files: not parsed again");
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.items, 2);
        assert_eq!(again.head.limits.concurrency, Some(3), "blocks kept");

        // An edit in the CSV the YAML points at voids the seal.
        std::fs::write(&rows, "id,prompt\na,one\nb,two edited\n").unwrap();
        let edited = src.scan(Some(&out)).unwrap();
        assert!(!edited.sealed);
        assert_ne!(edited.fingerprint, first.fingerprint);

        // So do other options, even over the same bytes.
        std::fs::write(&rows, "id,prompt\na,one\nb,two\n").unwrap();
        let gateway = Source {
            options: LoadOptions {
                provider_style: Some("kling-gateway".into()),
            },
            ..src.clone()
        };
        assert!(!gateway.scan(Some(&out)).unwrap().sealed);
        assert!(src.scan(Some(&out)).unwrap().sealed, "back as it was");
    }

    #[tokio::test]
    async fn a_manifest_edited_between_check_and_sync_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.csv");
        std::fs::write(&path, "id,prompt\na,one\n").unwrap();
        let src = source(&path, None);
        let scanned = src.scan(None).unwrap();
        std::fs::write(&path, "id,prompt\na,one\nb,two\n").unwrap();
        let mut seen = Vec::new();
        let err = src
            .each(&scanned, &mut |_, item, _| seen.push(item.id))
            .unwrap_err();
        assert!(err.to_string().contains("problem"), "{err}");
        let ManifestError::Invalid { problems, .. } = err else {
            panic!("a manifest problem")
        };
        assert!(
            problems[0].message.contains("changed while"),
            "{problems:?}"
        );
    }

    #[test]
    fn shards_keep_whole_manifest_places_and_share_the_manifest_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.csv");
        let mut csv = String::from("id,prompt\n");
        for i in 0..20 {
            csv.push_str(&format!("c{i},shot {i}\n"));
        }
        std::fs::write(&path, csv).unwrap();
        let mut places = Vec::new();
        let mut ids = Vec::new();
        for index in 0..2 {
            let src = source(&path, Some(Shard { index, total: 2 }));
            let scanned = src.scan(None).unwrap();
            let sel = scanned.selection.clone().unwrap();
            assert_eq!(sel.manifest_items, 20);
            let mut taken = 0;
            src.each(&scanned, &mut |pos, item, _| {
                assert_eq!(item.id, format!("c{pos}"));
                places.push(pos);
                taken += 1;
            })
            .unwrap();
            assert_eq!(taken, scanned.items);
            ids.push(sel.manifest_id);
        }
        places.sort();
        assert_eq!(places, (0..20).collect::<Vec<u64>>());
        assert_eq!(ids[0], ids[1], "both shards name the same manifest");
    }
}
