//! What the shards' runs add up to, beyond their items: requests, times and
//! endings summed from each shard's own `summary.json`, and the merged
//! `summary.json` itself.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::csv::{ReportError, rfc3339};
use super::super::summary::{BatchNotes, ByStatus, DrainedAccount, SUMMARY_FILE};
use super::{MergeError, Merged, ShardDir, canonical};
use crate::scheduler::Requests;
use crate::state::{self, Status};

/// What the shards' own `summary.json` files add up to (what a merge cannot
/// learn from the states: requests made, the runs' times and endings).
#[derive(Debug, Default)]
pub(super) struct ShardSummaries {
    pub(super) started_at: Option<String>,
    pub(super) finished_at: Option<String>,
    pub(super) interrupted: bool,
    pub(super) aborted: Vec<String>,
    /// Accounts drained in any shard's run, with the shard named in the reason.
    pub(super) drained: Vec<DrainedAccount>,
    pub(super) nothing_to_do: bool,
    pub(super) at_start: BTreeMap<Status, u64>,
    pub(super) requests: Requests,
    pub(super) problems: u64,
    pub(super) batch: BatchNotes,
}

impl ShardSummaries {
    pub(super) fn read(shards: &[ShardDir]) -> ShardSummaries {
        let mut s = ShardSummaries {
            nothing_to_do: true,
            ..ShardSummaries::default()
        };
        for shard in shards {
            let Some(v) = std::fs::read(shard.dir.join(SUMMARY_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                s.nothing_to_do = false;
                continue;
            };
            let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let num =
                |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let flag = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
            if let Some(t) = text("started_at") {
                s.started_at = Some(s.started_at.map_or(t.clone(), |o| o.min(t)));
            }
            if let Some(t) = text("finished_at") {
                s.finished_at = Some(s.finished_at.map_or(t.clone(), |o| o.max(t)));
            }
            s.interrupted |= flag("interrupted");
            s.nothing_to_do &= flag("nothing_to_do");
            if let Some(reason) = text("aborted") {
                s.aborted.push(format!("shard {}: {reason}", shard.shard));
            }
            for d in v
                .get("drained_accounts")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                if let (Some(account), Some(reason)) = (
                    d.get("account").and_then(|x| x.as_str()),
                    d.get("reason").and_then(|x| x.as_str()),
                ) {
                    s.drained.push(DrainedAccount {
                        account: account.to_string(),
                        reason: format!("shard {}: {reason}", shard.shard),
                    });
                }
            }
            if let Some(map) = v.get("at_start").and_then(|x| x.as_object()) {
                for (k, n) in map {
                    if let (Some(st), Some(n)) = (Status::parse(k), n.as_u64()) {
                        *s.at_start.entry(st).or_default() += n;
                    }
                }
            }
            if let Some(r) = v.get("requests") {
                s.requests.create += num(r, "create");
                s.requests.query += num(r, "query");
                s.requests.list += num(r, "list");
                s.requests.lookup += num(r, "lookup");
                s.requests.download += num(r, "download");
                s.requests.retries += num(r, "retries");
            }
            s.problems += num(&v, "problems_this_run");
            if let Some(b) = v.get("batch") {
                s.batch.rebuilt_state |=
                    b.get("rebuilt_state").and_then(|x| x.as_bool()) == Some(true);
                for (key, list) in [
                    ("changed_kept", &mut s.batch.changed_kept),
                    ("resubmitted", &mut s.batch.resubmitted),
                ] {
                    if let Some(ids) = b.get(key).and_then(|x| x.as_array()) {
                        list.extend(ids.iter().filter_map(|x| x.as_str().map(str::to_string)));
                    }
                }
            }
        }
        s
    }

    /// From the first shard's start to the last shard's end.
    pub(super) fn wall_time_s(&self) -> f64 {
        let parse =
            |t: &Option<String>| t.as_deref().and_then(|t| humantime::parse_rfc3339(t).ok());
        match (parse(&self.started_at), parse(&self.finished_at)) {
            (Some(a), Some(b)) => b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

pub(super) fn by_status(counts: &BTreeMap<Status, u64>) -> ByStatus {
    ByStatus(
        Status::ALL
            .iter()
            .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
            .collect(),
    )
}

/// `summary.json`: the batch's [`Summary`] plus a `shards` object (which
/// shards were merged, which are missing, from where).
pub(super) fn write_summary(
    out: &Path,
    merged: &Merged,
    shards: &[ShardDir],
) -> Result<(), MergeError> {
    let path = out.join(SUMMARY_FILE);
    let io = |source: std::io::Error| ReportError {
        path: path.clone(),
        source,
    };
    let mut value = serde_json::to_value(&merged.summary).map_err(|e| io(e.into()))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "shards".into(),
            serde_json::json!({
                "total": merged.total,
                "merged": shards.iter().map(|s| s.shard.index).collect::<Vec<_>>(),
                "missing": merged.missing,
                "dirs": shards.iter().map(|s| canonical(&s.dir).unwrap_or_else(|_| s.dir.clone())).collect::<Vec<_>>(),
                "manifest_items": merged.manifest_items,
                "merged_at": rfc3339(state::now_ms()),
            }),
        );
    }
    let mut text = serde_json::to_vec_pretty(&value).map_err(|e| io(e.into()))?;
    text.push(b'\n');
    let tmp = out.join(".summary.json.tmp");
    std::fs::write(&tmp, &text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}
