//! Static shards: `vidbatch run MANIFEST --shard i/N` runs only the items
//! whose id hashes to shard `i`, so N machines (a Kubernetes Indexed Job, a
//! Slurm array) can share one manifest without talking to each other.
//!
//! Why a hash of the id and not "every N-th row": an item keeps its shard when
//! rows are inserted, deleted or reordered, so a rerun of shard `i` after an
//! edit resumes the same items instead of meeting another shard's. Why the
//! batch *name* is not touched: every task's key derives from it and the item
//! id ([`crate::scheduler::ids`]), so an item asks for the same key whether it
//! runs sharded, unsharded or under another N — a reshard never pays twice.
//!
//! A shard keeps its own folder (`output/<stem>/shard-<i>-of-<N>`) and state.
//! The state's `meta` records which shard it holds ([`META_SHARD`]) and which
//! whole manifest the shard was cut from ([`META_MANIFEST_ID`],
//! [`META_MANIFEST_ITEMS`]); a run refuses a folder of another shard, and
//! `vidbatch merge` ([`crate::report::merge`]) refuses shards of different
//! manifests.

use std::path::Path;

use sha2::{Digest, Sha256};

/// `meta` key: the shard a folder holds, as `i/N`. Absent: an unsharded batch.
pub const META_SHARD: &str = "shard";
/// `meta` key: fingerprint of the whole manifest (every item's id and
/// parameters, in order) the shard was cut from.
pub const META_MANIFEST_ID: &str = "manifest_id";
/// `meta` key: items in the whole manifest (all shards together).
pub const META_MANIFEST_ITEMS: &str = "manifest_items";

/// Environment variables `--shard auto/N` reads, first one set wins.
pub const INDEX_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];

/// Most shards (Kubernetes allows 10^5 indexed completions).
pub const MAX_SHARDS: u64 = 100_000;

/// Why a shard cannot be run or continued. All are bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// `--shard` itself is malformed.
    #[error("--shard `{spec}`: {message}")]
    Spec { spec: String, message: String },
    /// `--shard auto/N` without a usable index in the environment.
    #[error("--shard `{spec}`: {message}")]
    Env { spec: String, message: String },
    /// The folder holds another shard (or an unsharded batch) than this run.
    #[error("{} holds {found}, not {wanted}: each shard keeps its own folder; drop -o to use output/<manifest stem>/shard-<i>-of-<N>, or choose another folder", dir.display())]
    OtherShard {
        dir: std::path::PathBuf,
        found: String,
        wanted: String,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Shard `index` of `total` (`index < total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub total: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

impl Shard {
    /// Parse `i/N` or `auto/N`; `env` reads an environment variable
    /// (injected for tests).
    pub fn parse(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let bad = |message: String| ShardError::Spec {
            spec: spec.to_string(),
            message,
        };
        let Some((index, total)) = spec.trim().split_once('/') else {
            return Err(bad(
                "expected i/N (e.g. 0/4: the first of 4 shards) or auto/N".into(),
            ));
        };
        let total: u64 = match total.trim().parse() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => n,
            Ok(_) => {
                return Err(bad(format!(
                    "the number of shards N must be 1 to {MAX_SHARDS}"
                )));
            }
            Err(_) => {
                return Err(bad(format!(
                    "the number of shards `{}` is not a whole number",
                    total.trim()
                )));
            }
        };
        let index = index.trim();
        if index.eq_ignore_ascii_case("auto") {
            return Shard::from_env(spec, total, env);
        }
        let index: u64 = index.parse().map_err(|_| {
            bad(format!(
                "the shard index `{index}` is not a whole number (or `auto`)"
            ))
        })?;
        if index >= total {
            return Err(bad(format!(
                "the shard index must be 0 to {} for {total} shards (they count from 0)",
                total - 1
            )));
        }
        Ok(Shard { index, total })
    }

    /// `auto/N`: the index a scheduler gives the process.
    fn from_env(
        spec: &str,
        total: u64,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        let fail = |message: String| ShardError::Env {
            spec: spec.to_string(),
            message,
        };
        let Some((var, value)) = INDEX_VARS
            .iter()
            .find_map(|v| env(v).filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
        else {
            return Err(fail(format!(
                "auto reads the shard index from {} (Kubernetes Indexed Job) or {} (Slurm array), and neither is set",
                INDEX_VARS[0], INDEX_VARS[1]
            )));
        };
        let index: u64 = value.trim().parse().map_err(|_| {
            fail(format!(
                "{var}=`{}` is not a whole number",
                value.chars().take(40).collect::<String>()
            ))
        })?;
        if index >= total {
            return Err(fail(format!(
                "{var}={index} is not a shard of {total} (0 to {}): does the job's size match N?",
                total - 1
            )));
        }
        Ok(Shard { index, total })
    }

    /// The shard an item id belongs to among `total`.
    pub fn of(id: &str, total: u64) -> u64 {
        let digest = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % total
    }

    pub fn contains(&self, id: &str) -> bool {
        Shard::of(id, self.total) == self.index
    }

    /// The folder of this shard under the batch's default folder.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.total)
    }
}

/// A shard cut from a manifest: what the run needs beyond its items.
#[derive(Debug, Clone)]
pub struct Selection {
    pub shard: Shard,
    /// [`META_MANIFEST_ID`] of the whole manifest.
    pub manifest_id: String,
    /// Items in the whole manifest.
    pub manifest_items: u64,
}

impl Selection {
    /// The `meta` entries a sharded folder holds.
    pub fn meta(&self) -> [(&'static str, String); 3] {
        [
            (META_SHARD, self.shard.to_string()),
            (META_MANIFEST_ID, self.manifest_id.clone()),
            (META_MANIFEST_ITEMS, self.manifest_items.to_string()),
        ]
    }
}

/// Refuse to continue a folder that holds another shard than `wanted`
/// (`None`: an unsharded run). A folder with no shard and no items yet
/// (a new one) takes any shard.
pub fn check_folder(
    conn: &rusqlite::Connection,
    dir: &Path,
    wanted: Option<Shard>,
) -> Result<(), ShardError> {
    let found = crate::state::meta(conn, META_SHARD)?;
    let wanted_text = wanted.map(|s| s.to_string());
    if found.as_deref() == wanted_text.as_deref() {
        return Ok(());
    }
    if found.is_none() {
        let items: i64 = conn
            .query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))
            .map_err(crate::state::StateError::from)?;
        if items == 0 {
            return Ok(());
        }
    }
    let describe = |s: Option<&str>| match s {
        Some(s) => format!("shard {s}"),
        None => "an unsharded batch".to_string(),
    };
    Err(ShardError::OtherShard {
        dir: dir.to_path_buf(),
        found: describe(found.as_deref()),
        wanted: describe(wanted_text.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_shard_is_the_first_8_bytes_of_sha256_big_endian_mod_n() {
        // sha256("clip-0") starts 0x…; computed independently here.
        let digest = Sha256::digest(b"clip-0");
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap());
        for total in [1, 2, 3, 7, 1000] {
            assert_eq!(Shard::of("clip-0", total), n % total);
        }
        assert_eq!(Shard::of("anything", 1), 0, "one shard holds everything");
    }

    #[test]
    fn every_id_lands_in_exactly_one_shard_and_the_shards_are_balanced() {
        let ids: Vec<String> = (0..3000).map(|i| format!("item-{i}")).collect();
        let mut sizes = [0usize; 3];
        for id in &ids {
            let owners: Vec<u64> = (0..3)
                .filter(|&i| Shard { index: i, total: 3 }.contains(id))
                .collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0] as usize] += 1;
        }
        for s in sizes {
            assert!((800..1200).contains(&s), "{sizes:?}");
        }
    }

    #[test]
    fn an_explicit_spec_parses() {
        assert_eq!(
            Shard::parse("2/3", &no_env).unwrap(),
            Shard { index: 2, total: 3 }
        );
        assert_eq!(
            Shard::parse(" 0/1 ", &no_env).unwrap(),
            Shard { index: 0, total: 1 }
        );
        assert_eq!(
            Shard::parse("2/3", &no_env).unwrap().dir_name(),
            "shard-2-of-3"
        );
    }

    #[test]
    fn malformed_specs_say_what_is_wrong() {
        for (spec, says) in [
            ("3/3", "0 to 2"),
            ("0/0", "1 to"),
            ("x/2", "`x` is not a whole number"),
            ("1/", "`` is not a whole number"),
            ("1", "expected i/N"),
            ("-1/2", "not a whole number"),
            ("1/two", "`two` is not a whole number"),
            ("0/100001", "1 to 100000"),
        ] {
            let e = Shard::parse(spec, &no_env).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--shard `{spec}`")), "{e}");
            assert!(e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn auto_reads_kubernetes_then_slurm() {
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert_eq!(Shard::parse("auto/3", &k8s).unwrap().index, 1);
        let slurm = |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| "2".to_string());
        assert_eq!(Shard::parse("AUTO/3", &slurm).unwrap().index, 2);
        let both = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("0".to_string()),
            _ => Some("2".to_string()),
        };
        assert_eq!(Shard::parse("auto/3", &both).unwrap().index, 0);
    }

    #[test]
    fn auto_without_a_usable_index_names_the_variables() {
        let e = Shard::parse("auto/3", &no_env).unwrap_err().to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX"), "{e}");
        assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
        let word = |_: &str| Some("three".to_string());
        let e = Shard::parse("auto/3", &word).unwrap_err().to_string();
        assert!(e.contains("`three` is not a whole number"), "{e}");
        let big = |_: &str| Some("3".to_string());
        let e = Shard::parse("auto/3", &big).unwrap_err().to_string();
        assert!(e.contains("=3 is not a shard of 3"), "{e}");
    }
}
