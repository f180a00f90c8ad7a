//! Where a batch's results end up: a local folder (as always) or an object
//! store prefix (`--output s3://bucket/prefix`).
//!
//! Why a separate stage rather than downloading straight into the bucket:
//! the downloader's guarantees (a `.part` file, fsync, rename, sha256, Range
//! resume) are about a local file, and the state that makes a rerun
//! exactly-once must stay a local SQLite file anyway. So an object-store run
//! works in a local staging folder (its `--state DIR`), exactly like a local
//! run, and the upload stage ([`pipeline`], beside the engine; [`upload`]
//! for one video) copies each finished video to
//! `<prefix>/videos/<same name>` — never overwriting an object that is
//! already there — and records every upload through the state writer, so a
//! rerun uploads nothing twice.
//!
//! [`Destination::parse`] checks the URL before anything is sent (bad input,
//! exit 2); [`remote::build`] makes the client from the usual `AWS_*`
//! variables and [`remote::probe`] lists the prefix before any task is
//! created (a missing bucket or a refused key is a setup problem, exit 3).
//!
//! Only `s3://` is built in (the `aws` feature of `object_store`): `gs://`
//! and `az://` are known schemes that this build refuses with a clear error
//! rather than pulling in two more cloud SDKs.

pub mod pipeline;
pub mod remote;
pub mod upload;

use std::path::{Path, PathBuf};

/// Where `--output` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local batch folder (the default kind).
    Local(PathBuf),
    /// An object store prefix; the batch works in a local staging folder.
    Object(ObjectUrl),
}

/// A checked `s3://bucket/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty (bucket root).
    pub prefix: String,
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl ObjectUrl {
    /// The object key of `rel` (a `/`-separated path inside the batch).
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

/// What can go wrong with an object-store destination.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The `--output` URL cannot be used (bad input: nothing was sent).
    #[error("--output {url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A known scheme this build does not include.
    #[error(
        "--output {url}: {scheme}:// is not built into this vidbatch (only s3:// and S3-compatible servers via AWS_ENDPOINT_URL)"
    )]
    NotBuiltIn { url: String, scheme: String },
    /// An option or `AWS_*` variable that cannot work (bad input).
    #[error("{0}")]
    BadConfig(String),
    /// The bucket cannot be used: missing, access denied, unreachable
    /// (setup problem, checked before anything is created).
    #[error("cannot use {url}: {message}")]
    Unusable { url: String, message: String },
    /// Uploading the batch's files (report, summary, state copy) failed.
    #[error("cannot upload {key}: {message}")]
    Upload { key: String, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl StorageError {
    /// Bad input (exit 2) rather than a setup problem (exit 3).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StorageError::BadUrl { .. }
                | StorageError::NotBuiltIn { .. }
                | StorageError::BadConfig(_)
        )
    }
}

impl Destination {
    /// Read `--output`: a `scheme://` URL is an object store (checked here,
    /// before anything is sent); anything else is a local folder.
    pub fn parse(output: &Path) -> Result<Destination, StorageError> {
        let Some(text) = output.to_str() else {
            return Ok(Destination::Local(output.to_path_buf()));
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Destination::Local(output.to_path_buf()));
        };
        let bad = |reason: &str| StorageError::BadUrl {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        match scheme {
            "s3" => {}
            "gs" | "az" | "azure" | "abfs" | "abfss" => {
                return Err(StorageError::NotBuiltIn {
                    url: text.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            _ => {
                return Err(bad(
                    "unknown scheme: use s3://bucket/prefix or a local folder",
                ));
            }
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name: write s3://bucket/prefix"));
        }
        check_bucket(bucket).map_err(|r| bad(&r))?;
        let prefix = prefix.trim_end_matches('/');
        check_prefix(prefix).map_err(|r| bad(&r))?;
        Ok(Destination::Object(ObjectUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }
}

/// S3's bucket naming rules (3–63 of a-z 0-9 . -, starting and ending with
/// a letter or digit, no `..`).
fn check_bucket(b: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    if let Some(c) = b.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "bucket name `{b}` has {c:?}: bucket names are lowercase letters, digits, `.` and `-`"
        ));
    }
    if !(3..=63).contains(&b.len()) {
        return Err(format!("bucket name `{b}` must be 3 to 63 characters long"));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(b.chars().next()) || !edge(b.chars().last()) || b.contains("..") {
        return Err(format!(
            "bucket name `{b}` must start and end with a letter or digit and have no `..`"
        ));
    }
    Ok(())
}

/// A prefix of `/`-separated segments: none empty, `.` or `..`, no control
/// characters or backslashes (they make keys other tools mishandle).
fn check_prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    for seg in p.split('/') {
        if seg.is_empty() {
            return Err(format!("prefix `{p}` has an empty segment (`//`)"));
        }
        if seg == "." || seg == ".." {
            return Err(format!("prefix `{p}` has a `{seg}` segment"));
        }
        if let Some(c) = seg.chars().find(|c| c.is_control() || *c == '\\') {
            return Err(format!("prefix `{p}` has {c:?}"));
        }
    }
    Ok(())
}

/// `--output` and `--state` of `vidbatch run`: the local batch folder to
/// work in (`None`: the default one) and, for an object-store output, its
/// client (built, not yet probed: nothing is sent here).
///
/// A shard (`shard` is its folder name, `shard-<i>-of-<N>`) keeps its own
/// state folder (`<default>/shard-<i>-of-<N>` unless `--state` is given) and
/// puts its batch files under `<prefix>/shard-<i>-of-<N>/`, so the shards of
/// one prefix never overwrite each other's report; videos of every shard go
/// to `<prefix>/videos/` (their names are the items' ids: no two collide).
pub fn resolve(
    output: Option<&Path>,
    state: Option<&Path>,
    shard: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<PathBuf>, Option<remote::Remote>), StorageError> {
    match output.map(Destination::parse).transpose()? {
        Some(Destination::Object(url)) => {
            let dir = state.map(Path::to_path_buf).unwrap_or_else(|| {
                let dir = default_state_dir(&url, env);
                shard.map_or_else(|| dir.clone(), |s| dir.join(s))
            });
            let mut remote = remote::build(&url, env)?;
            remote.files_dir = shard.map(str::to_string);
            Ok((Some(dir), Some(remote)))
        }
        Some(Destination::Local(_)) | None if state.is_some() => Err(StorageError::BadConfig(
            "--state is the local working folder of an object-store output: use it with --output s3://bucket/prefix (a local --output is its own state folder)".into(),
        )),
        Some(Destination::Local(dir)) => Ok((Some(dir), None)),
        None => Ok((None, None)),
    }
}

/// The local staging folder of an object-store batch when `--state` is not
/// given: `$XDG_CACHE_HOME/vidbatch/s3/<bucket>/<prefix>` (else
/// `$HOME/.cache/...`, else `output/.s3/...`). One folder per destination,
/// so the same command finds its state again from any working directory.
pub fn default_state_dir(url: &ObjectUrl, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = env("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(|v| PathBuf::from(v).join("vidbatch").join("s3"))
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache").join("vidbatch").join("s3"))
        })
        .unwrap_or_else(|| PathBuf::from("output").join(".s3"));
    let prefix = if url.prefix.is_empty() {
        "_root".to_string()
    } else {
        url.prefix.replace('/', "__")
    };
    base.join(&url.bucket).join(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Destination, StorageError> {
        Destination::parse(Path::new(s))
    }

    #[test]
    fn a_plain_path_is_a_local_folder() {
        assert_eq!(
            parse("output/x").unwrap(),
            Destination::Local("output/x".into())
        );
    }

    #[test]
    fn an_s3_url_names_bucket_and_prefix() {
        let Destination::Object(u) = parse("s3://my-bucket/runs/2026/").unwrap() else {
            panic!("not an object url")
        };
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.prefix, "runs/2026");
        assert_eq!(u.key("videos/a.mp4"), "runs/2026/videos/a.mp4");
        assert_eq!(u.to_string(), "s3://my-bucket/runs/2026");
        let Destination::Object(root) = parse("s3://my-bucket").unwrap() else {
            panic!()
        };
        assert_eq!(root.key("report.csv"), "report.csv");
    }

    #[test]
    fn malformed_urls_are_bad_input() {
        for url in [
            "s3://",
            "s3:///x",
            "s3://My_Bucket/x",
            "s3://ab/x",
            "s3://-bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/../b",
            "ftp://bucket/x",
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.is_bad_input(), "{url}: {e}");
            assert!(e.to_string().contains(url), "{e}");
        }
    }

    #[test]
    fn other_clouds_are_not_built_in() {
        for url in ["gs://bucket/x", "az://container/x"] {
            let e = parse(url).unwrap_err();
            assert!(matches!(e, StorageError::NotBuiltIn { .. }), "{e}");
            assert!(e.to_string().contains("not built into"), "{e}");
        }
    }

    #[test]
    fn a_shard_has_its_own_state_folder_and_batch_files_folder() {
        let env = |k: &str| (k == "XDG_CACHE_HOME").then(|| "/c".to_string());
        let (dir, remote) = resolve(
            Some(Path::new("s3://b-1/runs")),
            None,
            Some("shard-1-of-3"),
            &env,
        )
        .unwrap();
        assert_eq!(
            dir,
            Some(PathBuf::from("/c/vidbatch/s3/b-1/runs/shard-1-of-3"))
        );
        assert_eq!(remote.unwrap().files_dir.as_deref(), Some("shard-1-of-3"));
        let e = resolve(Some(Path::new("out")), Some(Path::new("st")), None, &env).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("--state"), "{e}");
    }

    #[test]
    fn the_default_state_folder_is_per_destination_in_the_cache() {
        let Destination::Object(u) = parse("s3://b-1/runs/x").unwrap() else {
            panic!()
        };
        let env = |k: &str| (k == "XDG_CACHE_HOME").then(|| "/c".to_string());
        assert_eq!(
            default_state_dir(&u, &env),
            PathBuf::from("/c/vidbatch/s3/b-1/runs__x")
        );
        assert_eq!(
            default_state_dir(&u, &|_| None),
            PathBuf::from("output/.s3/b-1/runs__x")
        );
    }
}
