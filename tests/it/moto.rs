//! A real S3 server for the object-storage tests (`s3.rs`): moto
//! (`python3 -m moto.server`), started per test on a free loopback port,
//! with the test bucket made; and `vidbatch run` pointed at it.
//!
//! moto's request recorder (`/moto-api/recorder/…`) logs every request the
//! server handles, which is how the tests count uploads. Without moto
//! installed the tests print why and pass, unless `CI` is set: then a
//! missing moto fails them (`.ci/run` installs it).

use std::io::BufRead as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use sha2::{Digest, Sha256};

use crate::common::*;

pub(crate) const BUCKET: &str = "vb-test";

/// A moto server on a free loopback port; killed on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
    recording: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start moto and create the test bucket, or `None` (skip) when moto is not
/// installed and this is not CI.
pub(crate) async fn moto() -> Option<Moto> {
    let have = Command::new("python3")
        .args(["-c", "import moto.server, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto is not installed: python3 -m pip install \"moto[server]==5.2.1\""
        );
        eprintln!("skipped: moto is not installed (python3 -m pip install \"moto[server]\")");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("recording.jsonl");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("MOTO_RECORDER_FILEPATH", &recording)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
        recording,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(format!("{}/", m.url)).send().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // moto checks no signature: a plain PUT makes the bucket.
    let made = http
        .put(format!("{}/{BUCKET}", m.url))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");
    Some(m)
}

impl Moto {
    pub(crate) fn store(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    }

    pub(crate) async fn recorder(&self, action: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/recorder/{action}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{action}: {r:?}");
    }

    /// `(method, path)` of every request recorded since the last reset.
    pub(crate) fn recorded(&self) -> Vec<(String, String)> {
        let Ok(f) = std::fs::File::open(&self.recording) else {
            return Vec::new();
        };
        std::io::BufReader::new(f)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
                let url = v["url"].as_str().unwrap().to_string();
                (v["method"].as_str().unwrap().to_string(), url)
            })
            .collect()
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub(crate) async fn open_multipart_uploads(&self) -> usize {
        let body = reqwest::get(format!("{}/{BUCKET}?uploads", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.matches("<UploadId>").count()
    }
}

/// Keys under `prefix` with their size and ETag.
pub(crate) async fn list(store: &AmazonS3, prefix: &str) -> Vec<(String, u64, Option<String>)> {
    let mut out: Vec<_> = store
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
        .try_collect()
        .await
        .unwrap();
    out.sort();
    out
}

pub(crate) async fn sha_of(store: &AmazonS3, key: &str) -> String {
    let bytes = store
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    hex::encode(Sha256::digest(&bytes))
}

/// `vidbatch run` into `s3://vb-test/<prefix>` with its state in `state`.
pub(crate) fn s3_run(
    m: &Moto,
    manifest: &Path,
    prefix: &str,
    state: &Path,
    base_url: &str,
) -> Command {
    s3_run_to(
        m,
        manifest,
        &format!("s3://{BUCKET}/{prefix}"),
        state,
        base_url,
    )
}

pub(crate) fn s3_run_to(
    m: &Moto,
    manifest: &Path,
    url: &str,
    state: &Path,
    base_url: &str,
) -> Command {
    let mut cmd = run_cmd(manifest, Path::new(url), base_url, &[]);
    cmd.arg("--state")
        .arg(state)
        .env("AWS_ENDPOINT_URL", &m.url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-never-printed");
    cmd
}

/// Video uploads among recorded requests: writes of a key under videos/ or
/// the staging folder.
pub(crate) fn video_writes(recorded: &[(String, String)]) -> Vec<String> {
    recorded
        .iter()
        .filter(|(method, url)| {
            (method == "PUT" || method == "POST")
                && (url.contains("/videos/") || url.contains("/.vidbatch-staging/"))
        })
        .map(|(m, u)| format!("{m} {u}"))
        .collect()
}
