//! The shard folders a merge is given: what each one's state says it is
//! ([`ShardDir`]), and whether they belong together ([`check_compatible`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::MergeError;
use crate::shard::{META_MANIFEST_ID, META_MANIFEST_ITEMS, META_SHARD, Shard};
use crate::state::{self, StateError};

/// One shard folder, as its state's `meta` describes it.
#[derive(Debug, Clone)]
pub struct ShardDir {
    pub dir: PathBuf,
    pub shard: Shard,
    pub batch_name: String,
    pub batch_id: String,
    pub manifest_id: String,
    pub manifest_items: u64,
}

impl ShardDir {
    /// Read `dir`'s meta; a folder without a shard's meta is refused.
    pub fn open(dir: &Path) -> Result<ShardDir, MergeError> {
        let not = |why: &str| MergeError::NotAShard {
            dir: dir.to_path_buf(),
            why: why.to_string(),
        };
        let conn = match state::open_ro(dir) {
            Ok(c) => c,
            Err(StateError::Missing { .. }) => return Err(not("it has no state.db")),
            Err(e) => return Err(e.into()),
        };
        let get = |key: &str| state::meta(&conn, key);
        let Some(spec) = get(META_SHARD)? else {
            return Err(not("its state records no shard: an unsharded batch"));
        };
        let shard = Shard::parse(&spec, &|_| None)
            .map_err(|_| not(&format!("its state records shard `{spec}`")))?;
        Ok(ShardDir {
            dir: dir.to_path_buf(),
            shard,
            batch_name: get("batch_name")?.unwrap_or_default(),
            batch_id: get("batch_id")?.unwrap_or_default(),
            manifest_id: get(META_MANIFEST_ID)?.unwrap_or_default(),
            manifest_items: get(META_MANIFEST_ITEMS)?
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// Check that `shards` are distinct shards of one batch and one manifest.
pub fn check_compatible(shards: &[ShardDir]) -> Result<(), MergeError> {
    let Some(first) = shards.first() else {
        return Ok(());
    };
    let mut seen: BTreeMap<u64, &ShardDir> = BTreeMap::new();
    for s in shards {
        let pair = || (first.dir.clone(), s.dir.clone());
        if s.batch_name != first.batch_name {
            let (first_dir, second) = pair();
            return Err(MergeError::OtherBatch {
                first: first_dir,
                a: first.batch_name.clone(),
                second,
                b: s.batch_name.clone(),
            });
        }
        if s.manifest_id != first.manifest_id {
            let (first, second) = pair();
            return Err(MergeError::OtherManifest { first, second });
        }
        if s.shard.total != first.shard.total {
            let (first_dir, second) = pair();
            return Err(MergeError::MixedTotals {
                first: first_dir,
                a: format!("{} shards", first.shard.total),
                second,
                b: format!("{} shards", s.shard.total),
            });
        }
        if let Some(earlier) = seen.insert(s.shard.index, s) {
            return Err(MergeError::SameShard {
                shard: s.shard.to_string(),
                first: earlier.dir.clone(),
                second: s.dir.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::Shard;

    fn shard(dir: &str, name: &str, manifest: &str, index: u64, total: u64) -> ShardDir {
        ShardDir {
            dir: PathBuf::from(dir),
            shard: Shard { index, total },
            batch_name: name.into(),
            batch_id: crate::batch::batch_key(name),
            manifest_id: manifest.into(),
            manifest_items: 30,
        }
    }

    #[test]
    fn shards_of_one_batch_and_manifest_are_compatible() {
        let shards = [shard("a", "b", "m", 0, 3), shard("c", "b", "m", 2, 3)];
        assert!(check_compatible(&shards).is_ok());
    }

    #[test]
    fn mismatched_shards_are_refused_as_bad_input() {
        for (shards, says) in [
            (
                [shard("a", "b", "m", 0, 3), shard("c", "other", "m", 1, 3)],
                "different batches",
            ),
            (
                [shard("a", "b", "m", 0, 3), shard("c", "b", "m2", 1, 3)],
                "different manifests",
            ),
            (
                [shard("a", "b", "m", 0, 3), shard("c", "b", "m", 1, 4)],
                "3 shards and 4 shards",
            ),
            (
                [shard("a", "b", "m", 1, 3), shard("c", "b", "m", 1, 3)],
                "the same shard 1/3",
            ),
        ] {
            let e = check_compatible(&shards).unwrap_err();
            assert!(e.is_bad_input());
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
