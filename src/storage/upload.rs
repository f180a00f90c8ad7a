//! Copying a finished batch's videos and files into the object store.
//!
//! The guarantee, per video, at `<prefix>/videos/<name>`:
//!
//! - **Nothing partial is ever visible there.** A video under 16 MiB goes up
//!   in one PUT (S3 makes an object visible only once its PUT completes). A
//!   larger one goes up as a multipart upload to
//!   `<prefix>/.vidbatch-staging/videos/<name>` — invisible until completed —
//!   and is then published by a server-side multipart copy whose completion
//!   is conditional. A `kill -9` at any moment leaves at most an incomplete
//!   multipart upload (invisible; an `AbortIncompleteMultipartUpload`
//!   lifecycle rule reclaims it) or a complete staging object, never a
//!   partial video.
//! - **Nothing is ever overwritten.** Every write of a video key is
//!   create-if-absent (`If-None-Match: *`, refused with 412 when the key
//!   exists). When the key exists, the object is compared with the local
//!   file — size, then sha256 (from the `x-amz-meta-sha256` vidbatch stores
//!   on single PUTs, or by reading the object back): the same bytes count
//!   as uploaded; anything else leaves the object alone and the item shows
//!   "upload failed: … already holds a different object".
//! - **Nothing is uploaded twice.** Each upload is recorded (durably,
//!   through the state writer) after the object exists; a rerun uploads
//!   only what has no record, and one that finds an object it has no record
//!   of (a crash between the two) records it after the comparison above.
//! - **What is uploaded is what the report says.** The local file is hashed
//!   while it is read; if it no longer matches the recorded sha256 the
//!   upload is not completed.
//!
//! The batch's own files (`report.csv`, `summary.json`, `index.html` and a
//! consistent copy of `state.db`) are the batch's current view and are
//! overwritten at the end of every run.

use std::path::Path;

use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions,
    PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;

use super::StorageError;
use super::remote::{Remote, describe};
use crate::state::{self, uploads::ToUpload};

/// Videos at least this large go up in parts, through the staging key.
pub const MULTIPART_FROM: u64 = 16 * 1024 * 1024;
/// Part size of a multipart upload (S3's minimum is 5 MiB).
const PART: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Folder under the prefix where large videos are assembled before publishing.
pub const STAGING: &str = ".vidbatch-staging";
/// Metadata key of the sha256 vidbatch stores with each single-PUT video.
const SHA_META: &str = "sha256";

/// What the video stage did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Videos written by this run.
    pub uploaded: u64,
    /// Videos found already there with the same bytes (recorded, not written).
    pub already_there: u64,
    /// Videos not uploaded (different object there, local file changed, network).
    pub failed: u64,
    /// Bytes written by this run.
    pub bytes: u64,
    /// Wall time of the stage.
    pub seconds: f64,
    /// A signal stopped the stage before every video was tried.
    pub interrupted: bool,
}

impl Tally {
    /// One line for the end of a run, e.g. `uploaded 3 videos (12.0 MiB in
    /// 1.2 s), 1 already there, 0 failed -> s3://bucket/prefix/videos/`.
    pub fn line(&self, remote: &Remote) -> String {
        format!(
            "uploaded {} video(s) ({:.1} MiB in {:.1} s), {} already there, {} failed -> {}/videos/",
            self.uploaded,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.seconds,
            self.already_there,
            self.failed,
            remote.url
        )
    }
}

/// How one video ended up in the store.
pub(super) enum Done {
    Uploaded,
    AlreadyThere,
}

/// Put one video at its key (create-if-absent), or find it already there.
pub(super) async fn one(remote: &Remote, batch_dir: &Path, v: &ToUpload) -> Result<Done, String> {
    let store = &remote.store;
    let key = object_path(&remote.url.key(&v.path))?;
    let local = batch_dir.join(&v.path);
    if v.bytes < MULTIPART_FROM {
        let data = tokio::fs::read(&local)
            .await
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        check_local(
            &local,
            v,
            data.len() as u64,
            &hex::encode(Sha256::digest(&data)),
        )?;
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA_META.into()),
            v.sha256.clone().into(),
        );
        attributes.insert(Attribute::ContentType, "video/mp4".into());
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        };
        return match store.put_opts(&key, PutPayload::from(data), opts).await {
            Ok(_) => Ok(Done::Uploaded),
            Err(object_store::Error::AlreadyExists { .. }) => same_object(remote, &key, v).await,
            Err(e) => Err(describe(&e)),
        };
    }
    // A large upload is worth a HEAD first: after a crash between publish
    // and record, the rerun compares instead of sending it all again.
    match store.head(&key).await {
        Ok(_) => return same_object(remote, &key, v).await,
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(describe(&e)),
    }
    let staging = object_path(&remote.url.key(&format!("{STAGING}/{}", v.path)))?;
    multipart(store.as_ref(), &staging, &local, v).await?;
    let published = store.copy_if_not_exists(&staging, &key).await;
    // Best effort: a staging object left behind is never under videos/.
    let _ = store.delete(&staging).await;
    match published {
        Ok(()) => Ok(Done::Uploaded),
        Err(object_store::Error::AlreadyExists { .. }) => same_object(remote, &key, v).await,
        Err(e) => Err(format!("cannot publish {key}: {}", describe(&e))),
    }
}

fn object_path(key: &str) -> Result<ObjectPath, String> {
    ObjectPath::parse(key).map_err(|e| format!("`{key}` is not a usable object key: {e}"))
}

/// The local file is still what was downloaded.
fn check_local(local: &Path, v: &ToUpload, bytes: u64, sha256: &str) -> Result<(), String> {
    if bytes != v.bytes || sha256 != v.sha256 {
        return Err(format!(
            "{} changed since it was downloaded (now {bytes} bytes, sha256 {sha256}; recorded {} bytes, sha256 {}): run `vidbatch verify` on the state folder, then run again",
            local.display(),
            v.bytes,
            v.sha256
        ));
    }
    Ok(())
}

/// Stream `local` to `staging` in parts, hashing as it goes; completed only
/// when the bytes sent are the recorded ones.
async fn multipart(
    store: &dyn ObjectStore,
    staging: &ObjectPath,
    local: &Path,
    v: &ToUpload,
) -> Result<(), String> {
    let read_err = |e: std::io::Error| format!("cannot read {}: {e}", local.display());
    let mut file = tokio::fs::File::open(local).await.map_err(read_err)?;
    let upload = store
        .put_multipart(staging)
        .await
        .map_err(|e| describe(&e))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let failed = loop {
        if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
            break Some(describe(&e));
        }
        match file.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
                w.write(&buf[..n]);
            }
            Err(e) => break Some(read_err(e)),
        }
    };
    let failed =
        failed.or_else(|| check_local(local, v, total, &hex::encode(hasher.finalize())).err());
    if let Some(message) = failed {
        let _ = w.abort().await;
        return Err(message);
    }
    w.finish().await.map(|_| ()).map_err(|e| describe(&e))
}

/// The key exists: the same bytes as `v` (uploaded earlier), or a different
/// object that is left alone.
async fn same_object(remote: &Remote, key: &ObjectPath, v: &ToUpload) -> Result<Done, String> {
    let head = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    let found = remote
        .store
        .get_opts(key, head)
        .await
        .map_err(|e| describe(&e))?;
    let stored_sha = found
        .attributes
        .get(&Attribute::Metadata(SHA_META.into()))
        .map(|s| s.as_ref().to_string());
    let differs = |what: String| {
        Err(format!(
            "s3://{}/{key} already holds a different object ({what}); vidbatch never overwrites: move it away or choose another prefix, then run again",
            remote.url.bucket
        ))
    };
    if found.meta.size != v.bytes {
        return differs(format!("{} bytes, not {}", found.meta.size, v.bytes));
    }
    let sha = match stored_sha {
        Some(sha) => sha,
        // Published by a multipart copy (no metadata): read it back.
        None => {
            let mut body = remote
                .store
                .get(key)
                .await
                .map_err(|e| describe(&e))?
                .into_stream();
            let mut hasher = Sha256::new();
            while let Some(chunk) = body.next().await {
                hasher.update(chunk.map_err(|e| describe(&e))?);
            }
            hex::encode(hasher.finalize())
        }
    };
    if sha == v.sha256 {
        Ok(Done::AlreadyThere)
    } else {
        differs(format!("sha256 {sha}, not {}", v.sha256))
    }
}

/// Upload the batch's current view: `report.csv`, `summary.json`,
/// `index.html` (when present) and a consistent copy of `state.db` (SQLite's
/// `VACUUM INTO`, so a run still writing cannot tear it). These overwrite.
/// Returns the keys written.
pub async fn batch_files(remote: &Remote, batch_dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut written = Vec::new();
    for (name, content_type) in [
        ("report.csv", "text/csv"),
        ("summary.json", "application/json"),
        ("index.html", "text/html"),
    ] {
        let path = batch_dir.join(name);
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        written.push(put_file(remote, name, data, content_type).await?);
    }
    let copy = batch_dir.join(".state-upload.db");
    let _ = std::fs::remove_file(&copy);
    {
        let conn = state::open_ro(batch_dir)?;
        conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])
            .map_err(state::StateError::from)?;
    }
    let data = tokio::fs::read(&copy).await;
    let _ = std::fs::remove_file(&copy);
    let data = data.map_err(|source| StorageError::Io { path: copy, source })?;
    written.push(put_file(remote, "state.db", data, "application/vnd.sqlite3").await?);
    Ok(written)
}

/// Overwriting put of one batch file (its size is a report's, held in memory).
async fn put_file(
    remote: &Remote,
    name: &str,
    data: Vec<u8>,
    content_type: &'static str,
) -> Result<String, StorageError> {
    let key = match &remote.files_dir {
        Some(dir) => remote.url.key(&format!("{dir}/{name}")),
        None => remote.url.key(name),
    };
    let fail = |message: String| StorageError::Upload {
        key: key.clone(),
        message,
    };
    let path = object_path(&key).map_err(fail)?;
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.into());
    let opts = PutOptions {
        attributes,
        ..PutOptions::default()
    };
    remote
        .store
        .put_opts(&path, PutPayload::from(data), opts)
        .await
        .map_err(|e| fail(describe(&e)))?;
    Ok(key)
}
