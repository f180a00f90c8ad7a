//! What a download's outcome does, and starting downloads.
//!
//! Functions over the [`Ledger`] and the [`DownloadQueue`]: a finished file
//! is recorded, a failed one warned about (or retried from a fresh URL), and
//! an item whose files are all in is `downloaded`.

use std::path::Path;

use super::fetch::{DownloadQueue, video_rel_path};
use super::ledger::Ledger;
use super::workers::Workers;
use crate::download::{DownloadError, Downloaded};
use crate::provider::{Provider, ProviderError, RemoteStatus, TaskSnapshot};
use crate::state::{Status, Update};

/// A fresh URL came back for a video that failed: download it again.
pub(super) fn on_refreshed<P: Provider>(
    l: &mut Ledger,
    q: &mut DownloadQueue,
    w: &Workers<P>,
    dir: &Path,
    idx: usize,
    result: Result<TaskSnapshot, ProviderError>,
) {
    let id = l.items.id(idx).to_string();
    match result {
        Ok(TaskSnapshot {
            status: RemoteStatus::Succeeded { videos, .. },
            ..
        }) => {
            for (i, v) in videos.into_iter().enumerate() {
                let n = i as u32 + 1;
                if let Some(rec) = l.entries[idx].videos_mut().iter_mut().find(|r| r.n == n) {
                    rec.url = Some(v.url.clone());
                    l.write(Update::VideoUrl {
                        id: id.clone(),
                        n,
                        url: v.url,
                    });
                }
            }
            start(l, q, w, dir, idx);
        }
        Ok(other) => l.warn(
            idx,
            None,
            format!("task no longer reports a video (status {:?})", other.status),
        ),
        Err(e) => l.warn(
            idx,
            e.code,
            format!("could not refresh the video URL: {}", e.message),
        ),
    }
}

/// Record a download's outcome; `true`: the item wants a fresh URL.
pub(super) fn on_fetched(
    l: &mut Ledger,
    q: &mut DownloadQueue,
    dir: &Path,
    idx: usize,
    n: u32,
    result: Result<Downloaded, DownloadError>,
) -> bool {
    let id = l.items.id(idx).to_string();
    match result {
        Ok(d) => {
            let path = video_rel_path(&id, n, l.entries[idx].videos().len());
            if let Some(v) = l.entries[idx].videos_mut().iter_mut().find(|v| v.n == n) {
                v.path = Some(path.clone());
                v.bytes = Some(d.bytes);
                v.sha256 = Some(d.sha256.clone());
            }
            l.write(Update::Downloaded {
                id: id.clone(),
                n,
                path,
                bytes: d.bytes,
                sha256: d.sha256,
            });
        }
        Err(DownloadError::Expired { status }) => {
            if !q.url_expired(idx) {
                l.warn(
                    idx,
                    None,
                    format!("video URL keeps failing (HTTP {status}); rerun to try again"),
                );
            }
        }
        // An error page served as 200 is often an expired or hotlink-
        // protected URL: one fresh URL per run, then the item keeps the error.
        Err(DownloadError::NotAVideo { .. }) if q.not_a_video(idx) => {}
        Err(e @ (DownloadError::NotAVideo { .. } | DownloadError::TooLarge { .. })) => {
            l.warn(idx, None, format!("download refused: {e}"))
        }
        Err(DownloadError::Io { path, source })
            if source.kind() == std::io::ErrorKind::StorageFull =>
        {
            // Every further video would fail the same way, and every
            // further create would pay for one: stop submitting.
            l.warn(
                idx,
                None,
                format!("download failed: the disk is full ({})", path.display()),
            );
            l.abort(format!(
                "the disk holding {} is full: free some space, then run the same command again (finished tasks are downloaded then, nothing is created again)",
                dir.display()
            ));
            l.setup_stop = true;
        }
        Err(e) => l.warn(
            idx,
            None,
            format!("download failed: {e}; rerun to resume it"),
        ),
    }
    if q.downloading(idx) {
        return false;
    }
    if q.take_refresh(idx) {
        return true;
    } else if l.entries[idx].videos().iter().all(|v| v.sha256.is_some())
        && l.entries[idx].status == Status::Succeeded
    {
        l.write(Update::Status {
            id,
            status: Status::Downloaded,
        });
        // The store has the videos; the entry forgets them (`transition`).
        l.transition(idx, Status::Downloaded);
    }
    false
}

/// Queue the item's missing videos and start what the pool has room for.
pub(super) fn start<P: Provider>(
    l: &mut Ledger,
    q: &mut DownloadQueue,
    w: &Workers<P>,
    dir: &Path,
    idx: usize,
) {
    let id = l.items.id(idx).to_string();
    let mut queued = 0;
    for v in l.entries[idx].videos() {
        if v.sha256.is_none() && v.url.is_some() {
            q.push(idx, v.n);
            queued += 1;
        }
    }
    let e = &l.entries[idx];
    if queued == 0
        && !e.videos().is_empty()
        && e.videos().iter().all(|v| v.sha256.is_some())
        && e.status == Status::Succeeded
    {
        l.write(Update::Status {
            id,
            status: Status::Downloaded,
        });
        l.transition(idx, Status::Downloaded);
    }
    pump(l, q, w, dir);
}

/// Start queued downloads while the pool has room.
pub(super) fn pump<P: Provider>(l: &mut Ledger, q: &mut DownloadQueue, w: &Workers<P>, dir: &Path) {
    while let Some((idx, n)) = q.pop() {
        let count = l.entries[idx].videos().len();
        let url = l.entries[idx]
            .videos()
            .iter()
            .find(|v| v.n == n)
            .and_then(|v| v.url.clone());
        let Some(url) = url else {
            // Cannot happen (only videos with a URL are queued); keep the books straight.
            q.dropped(idx);
            continue;
        };
        let dest = dir.join(video_rel_path(l.items.id(idx), n, count));
        q.started();
        w.fetch(idx, n, url, dest);
    }
}
