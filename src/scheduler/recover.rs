//! Recovery: what a run starts from, and what it does first about each item.
//!
//! [`load`] turns the store's records into the coordinator's entries and
//! counts what earlier runs left holding (account slots, committed units);
//! [`plan`] says, per item, what resuming means — settle an unsettled create
//! by its key, poll a task created earlier, download a finished one, verify
//! the files of a downloaded one, retry a failed one. Both are pure, so the
//! resume rules are tested here without a provider, a store or a clock. The
//! coordinator carries the plan out; [`files_gone`] is its one file check.

use std::path::Path;

use super::entry::Entry;
use crate::state::{Progress, Status, VideoRecord};

/// The entries of a run and what earlier runs committed.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) entries: Vec<Entry>,
    /// Units charged (or else estimated) for every task earlier runs created.
    pub(super) already_spent: f64,
    /// Tasks from earlier runs that may hold account slots, per account.
    pub(super) holding_slots: Vec<usize>,
    /// Accounts that created tasks still to settle, poll or refresh, and
    /// that this run does not have (`""`: the unnamed default account).
    pub(super) missing_accounts: std::collections::BTreeSet<String>,
}

/// Entries for the batch's items from the store's `records` (manifest
/// order; moved, not copied: on 100k items the video records are tens of
/// megabytes). `estimates` are the items' estimated units, when known.
///
/// `accounts` are the run's account names by index (`None`: the unnamed
/// default account). A record names the account whose credentials created
/// its task; one the run does not have is reported in
/// [`Loaded::missing_accounts`] (its task could only be polled, or its
/// create settled, with those credentials).
pub(super) fn load(
    records: Vec<Progress>,
    estimates: &[Option<f64>],
    accounts: &[Option<String>],
) -> Loaded {
    let default = accounts.iter().position(Option::is_none);
    let mut missing_accounts = std::collections::BTreeSet::new();
    let mut already_spent = 0.0;
    let mut entries = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let bound = r.needs_its_account();
        // What earlier runs committed: the charge, else the estimate.
        if r.task_id.is_some() || r.status == Status::Submitting {
            already_spent += r
                .charged
                .or_else(|| estimates.get(i).copied().flatten())
                .unwrap_or(0.0);
        }
        let mut e = Entry::new(r.status, r.attempt.max(1));
        e.set_videos(r.videos);
        // Items done before this run need no task id in memory (a
        // downloaded one whose files are gone reads it back).
        if !matches!(e.status, Status::Downloaded | Status::Failed) {
            e.task_id = r.task_id;
        }
        if e.status == Status::Submitting {
            e.set_pending_key(r.external_task_id);
        }
        match (&r.account, default) {
            (Some(name), _) => match accounts.iter().position(|a| a.as_deref() == Some(&**name)) {
                Some(a) => e.account = a as u16,
                None if bound => {
                    missing_accounts.insert(name.to_string());
                }
                None => {}
            },
            (None, Some(a)) => e.account = a as u16,
            // A pool without the default account: an unsettled create
            // of unknown account is looked up in every account.
            (None, None) if e.status == Status::Submitting => e.account_unknown = true,
            (None, None) if bound => {
                missing_accounts.insert(String::new());
            }
            (None, None) => {}
        }
        if e.status.is_in_flight() {
            e.set_submitted_at(r.submitted_at);
        }
        entries.push(e);
    }
    let mut holding_slots = vec![0; accounts.len().max(1)];
    for e in &entries {
        if matches!(
            e.status,
            Status::Submitting | Status::Submitted | Status::Processing | Status::TimedOut
        ) && let Some(n) = holding_slots.get_mut(e.account as usize)
        {
            *n += 1;
        }
    }
    Loaded {
        entries,
        already_spent,
        holding_slots,
        missing_accounts,
    }
}

/// What resuming does about one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// A crash between intent and answer: settle by its key before creating anything.
    Settle,
    /// Created earlier, but the recorded task id cannot be polled (a
    /// poisoned id from an earlier build, or a hand-edited state): fail this
    /// item, never the batch.
    Unusable,
    /// Created earlier: poll it; a timed-out task is first `submitted` again
    /// (with a fresh deadline).
    Poll { timed_out: bool },
    /// Finished earlier: download its videos.
    Download,
    /// Downloaded earlier: check its files once the run has started
    /// (stat-ing many files should not delay the first request).
    Verify,
    /// Failed earlier and `--retry-failed`, or unknown and
    /// `--resubmit-unknown`: a new attempt under a new key.
    Retry,
    /// Left mid-create, and the provider cannot look a task up by our key:
    /// it may exist (and have been charged). Marked `unknown`, never resent
    /// by itself.
    Unknown,
}

/// What the user allowed this run to do again, and what the provider can check.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Policy {
    pub(super) retry_failed: bool,
    pub(super) resubmit_unknown: bool,
    /// The provider finds a task by our key (settles an unsettled create).
    pub(super) lookup: bool,
}

/// The steps of a resume, in manifest order; items with nothing to do
/// (pending, or failed without `--retry-failed`) are left out.
pub(super) fn plan(entries: &[Entry], policy: Policy) -> Vec<(usize, Step)> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(idx, e)| Some((idx, step(e, policy)?)))
        .collect()
}

fn step(e: &Entry, policy: Policy) -> Option<Step> {
    let usable = || {
        e.task_id
            .as_deref()
            .is_some_and(crate::provider::usable_task_id)
    };
    Some(match e.status {
        Status::Submitting if policy.lookup => Step::Settle,
        Status::Submitting => Step::Unknown,
        Status::Submitted | Status::Processing | Status::TimedOut if !usable() => Step::Unusable,
        Status::Submitted | Status::Processing | Status::TimedOut => Step::Poll {
            timed_out: e.status == Status::TimedOut,
        },
        Status::Succeeded => Step::Download,
        Status::Downloaded => Step::Verify,
        Status::Failed if policy.retry_failed => Step::Retry,
        Status::Unknown if policy.resubmit_unknown => Step::Retry,
        Status::Pending | Status::Failed | Status::Unknown => return None,
    })
}

/// The recorded videos of a downloaded item that are not on disk under
/// `batch_dir` with their recorded size and a video's first bytes (their
/// path, size and hash are cleared in `videos` too). Downloaded with no
/// video record at all counts video 1 as gone: nothing proves a file.
pub(super) fn files_gone(videos: &mut [VideoRecord], batch_dir: &Path) -> Vec<u32> {
    let mut gone = Vec::new();
    for v in videos.iter_mut() {
        let ok = match (&v.path, v.bytes) {
            (Some(p), Some(b)) => {
                let path = batch_dir.join(p);
                std::fs::metadata(&path)
                    .map(|m| m.is_file() && m.len() == b)
                    .unwrap_or(false)
                    // An error page an older build saved as .mp4 has a
                    // size too; its first bytes give it away.
                    && crate::download::looks_like_video(&path)
            }
            _ => false,
        };
        if !ok {
            v.path = None;
            v.bytes = None;
            v.sha256 = None;
            gone.push(v.n);
        }
    }
    if videos.is_empty() {
        gone.push(1);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: Policy = Policy {
        retry_failed: false,
        resubmit_unknown: false,
        lookup: true,
    };

    #[test]
    fn without_lookup_an_unsettled_create_is_unknown_and_only_resent_on_request() {
        let entries = [
            entry(Status::Submitting, None),
            entry(Status::Unknown, None),
            entry(Status::Pending, None),
        ];
        let no_lookup = Policy {
            lookup: false,
            ..LOOKUP
        };
        assert_eq!(plan(&entries, no_lookup), vec![(0, Step::Unknown)]);
        assert_eq!(
            plan(
                &entries,
                Policy {
                    resubmit_unknown: true,
                    ..no_lookup
                }
            ),
            vec![(0, Step::Unknown), (1, Step::Retry)]
        );
    }

    fn entry(status: Status, task_id: Option<&str>) -> Entry {
        let mut e = Entry::new(status, 1);
        e.task_id = task_id.map(Into::into);
        e
    }

    #[test]
    fn each_status_resumes_where_it_stopped() {
        let entries = [
            entry(Status::Pending, None),
            entry(Status::Submitting, None),
            entry(Status::Submitted, Some("t1")),
            entry(Status::Processing, Some("t2")),
            entry(Status::TimedOut, Some("t3")),
            entry(Status::Succeeded, Some("t4")),
            entry(Status::Downloaded, Some("t5")),
            entry(Status::Failed, Some("t6")),
        ];
        assert_eq!(
            plan(&entries, LOOKUP),
            vec![
                (1, Step::Settle),
                (2, Step::Poll { timed_out: false }),
                (3, Step::Poll { timed_out: false }),
                (4, Step::Poll { timed_out: true }),
                (5, Step::Download),
                (6, Step::Verify),
            ]
        );
        assert_eq!(
            plan(
                &entries,
                Policy {
                    retry_failed: true,
                    ..LOOKUP
                }
            )
            .last(),
            Some(&(7, Step::Retry))
        );
    }

    #[test]
    fn a_task_id_that_cannot_be_polled_fails_only_its_item() {
        let long = "x".repeat(crate::provider::MAX_TASK_ID_BYTES + 1);
        let entries = [
            entry(Status::Submitted, None),
            entry(Status::Processing, Some("")),
            entry(Status::TimedOut, Some(&long)),
            entry(Status::Submitted, Some("ok")),
        ];
        assert_eq!(
            plan(&entries, LOOKUP),
            vec![
                (0, Step::Unusable),
                (1, Step::Unusable),
                (2, Step::Unusable),
                (3, Step::Poll { timed_out: false }),
            ]
        );
    }

    #[test]
    fn a_downloaded_item_without_any_video_record_has_nothing_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(files_gone(&mut [], dir.path()), vec![1]);
        let mut videos = [VideoRecord {
            n: 2,
            path: Some("videos/a.mp4".into()),
            bytes: Some(10),
            sha256: Some("h".into()),
            ..VideoRecord::default()
        }];
        assert_eq!(files_gone(&mut videos, dir.path()), vec![2]);
        assert_eq!(videos[0].sha256, None);
    }
}
