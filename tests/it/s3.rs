//! `vidbatch run --output s3://…` against a real S3 server (moto, see
//! `moto.rs`): where the videos and batch files land, exactly-once uploads,
//! create-if-absent, kill -9 mid-upload, shards, setup errors.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use vidbatch::emulator::EmulatorConfig;

use crate::common::*;
use crate::moto::*;

#[tokio::test(flavor = "multi_thread")]
async fn videos_land_under_the_prefix_with_the_reported_sha256_and_the_batch_files_beside_them() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cmd = s3_run(
        &moto,
        &manifest(dir.path(), 3),
        "runs/a",
        &state,
        &emu.base_url(),
    );
    // The most verbose logs must not carry the secret either.
    cmd.arg("-vv");
    let result = output(cmd).await;
    assert_exit(&result, 0);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("uploaded 3 video(s)"), "{stdout}");
    let all = format!("{stdout}{}", String::from_utf8_lossy(&result.stderr));
    assert!(!all.contains("test-secret-never-printed"), "{all}");

    let store = moto.store();
    let rows = report(&state);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let key = format!("runs/a/{}", &r[col("path")]);
        assert!(key.starts_with("runs/a/videos/"), "{key}");
        assert_eq!(sha_of(&store, &key).await, &r[col("sha256")], "{key}");
    }
    let keys: Vec<String> = list(&store, "runs/a")
        .await
        .into_iter()
        .map(|k| k.0)
        .collect();
    for name in ["report.csv", "summary.json", "index.html", "state.db"] {
        assert!(
            keys.contains(&format!("runs/a/{name}")),
            "{name} in {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains(".vidbatch-staging")),
        "{keys:?}"
    );
    // The state copy is a whole SQLite file that knows the uploads.
    let copy = dir.path().join("copy.db");
    let bytes = store
        .get(&ObjectPath::from("runs/a/state.db"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(&copy, &bytes).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let uploaded: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM uploads WHERE uploaded_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(uploaded, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_video_goes_up_as_soon_as_it_is_downloaded_while_the_batch_goes_on() {
    let Some(moto) = moto().await else { return };
    // One task at a time, each about a second: the batch takes seconds.
    let emu = emulator(EmulatorConfig {
        latency: Duration::from_millis(1000),
        jitter: Duration::from_millis(10),
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut cmd = s3_run(
        &moto,
        &manifest(dir.path(), 3),
        "runs/p",
        &state,
        &emu.base_url(),
    );
    cmd.args(["--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let store = moto.store();
    let deadline = Instant::now() + Duration::from_secs(60);
    while list(&store, "runs/p/videos").await.is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(Instant::now() < deadline, "no upload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        emu.stats().creates_accepted < 3,
        "the first video is up before the last task is even created"
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(list(&store, "runs/p/videos").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_share_the_videos_folder_and_keep_their_own_batch_files() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 6);
    for i in 0..2 {
        let state = dir.path().join(format!("state-{i}"));
        let mut cmd = s3_run(&moto, &m, "runs/s", &state, &emu.base_url());
        cmd.args(["--shard", &format!("{i}/2")]);
        assert_exit(&output(cmd).await, 0);
    }
    let store = moto.store();
    assert_eq!(list(&store, "runs/s/videos").await.len(), 6);
    let keys: Vec<String> = list(&store, "runs/s")
        .await
        .into_iter()
        .map(|k| k.0)
        .collect();
    for i in 0..2 {
        for name in ["report.csv", "summary.json", "state.db"] {
            let key = format!("runs/s/shard-{i}-of-2/{name}");
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
    }
    assert!(!keys.contains(&"runs/s/report.csv".to_string()), "{keys:?}");
    assert_eq!(emu.stats().creates_accepted, 6);
    // The shards' state folders merge as local shard folders do.
    let merged = dir.path().join("merged");
    let result = Command::new(bin())
        .env_clear()
        .arg("merge")
        .arg(dir.path().join("state-0"))
        .arg(dir.path().join("state-1"))
        .arg("--output")
        .arg(&merged)
        .output()
        .unwrap();
    assert_exit(&result, 0);
    assert_eq!(report(&merged).len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_uploads_nothing_twice() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let m = manifest(dir.path(), 3);
    moto.recorder("start-recording").await;
    assert_exit(
        &output(s3_run(&moto, &m, "runs/b", &state, &emu.base_url())).await,
        0,
    );
    let first = video_writes(&moto.recorded());
    assert_eq!(first.len(), 3, "one PUT per video: {first:?}");
    let store = moto.store();
    let before = list(&store, "runs/b/videos").await;
    assert_eq!(before.len(), 3);

    moto.recorder("reset-recording").await;
    moto.recorder("start-recording").await;
    let again = output(s3_run(&moto, &m, "runs/b", &state, &emu.base_url())).await;
    assert_exit(&again, 0);
    let recorded = moto.recorded();
    assert_eq!(video_writes(&recorded), Vec::<String>::new());
    // The recorder did see the rerun: it rewrote the batch's current view.
    assert!(
        recorded
            .iter()
            .any(|(m, u)| m == "PUT" && u.ends_with("/runs/b/report.csv")),
        "{recorded:?}"
    );
    assert_eq!(
        list(&store, "runs/b/videos").await,
        before,
        "same objects, same ETags"
    );
    assert_eq!(emu.stats().creates_accepted, 3);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("uploaded 0 video(s)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_already_there_is_never_overwritten() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = moto.store();
    store
        .put(
            &ObjectPath::from("runs/c/videos/clip-1.mp4"),
            b"someone else's".to_vec().into(),
        )
        .await
        .unwrap();
    let state = dir.path().join("state");
    let result = output(s3_run(
        &moto,
        &manifest(dir.path(), 2),
        "runs/c",
        &state,
        &emu.base_url(),
    ))
    .await;
    assert_exit(&result, 1);
    let bytes = store
        .get(&ObjectPath::from("runs/c/videos/clip-1.mp4"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"someone else's");
    let rows = report(&state);
    let failed = rows.iter().find(|r| &r[col("id")] == "clip-1").unwrap();
    assert!(
        failed[col("error_message")].contains("already holds a different object"),
        "{failed:?}"
    );
    let ok = rows.iter().find(|r| &r[col("id")] == "clip-0").unwrap();
    assert_eq!(
        sha_of(&store, "runs/c/videos/clip-0.mp4").await,
        &ok[col("sha256")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_is_retried_by_the_rerun_even_when_its_local_copy_is_gone() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = moto.store();
    let key = ObjectPath::from("runs/r/videos/clip-0.mp4");
    store
        .put(&key, b"in the way".to_vec().into())
        .await
        .unwrap();
    let state = dir.path().join("state");
    let m = manifest(dir.path(), 1);
    assert_exit(
        &output(s3_run(&moto, &m, "runs/r", &state, &emu.base_url())).await,
        1,
    );

    // The user clears the way, and the staged copy is gone too.
    store.delete(&key).await.unwrap();
    std::fs::remove_file(state.join("videos/clip-0.mp4")).unwrap();
    let again = output(s3_run(&moto, &m, "runs/r", &state, &emu.base_url())).await;
    assert_exit(&again, 0);
    let rows = report(&state);
    assert_eq!(&rows[0][col("error_message")], "");
    assert_eq!(
        sha_of(&store, "runs/r/videos/clip-0.mp4").await,
        &rows[0][col("sha256")]
    );
    let stats = emu.stats();
    assert_eq!(
        stats.creates_accepted, 1,
        "downloaded again, never created again"
    );
    assert_eq!(stats.requests_by_route.get("GET /videos/{file}"), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_upload_leaves_no_partial_video_and_the_rerun_completes_it() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(EmulatorConfig {
        video_pad_bytes: 48 * 1024 * 1024,
        ..quick()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let m = manifest(dir.path(), 1);
    let store = moto.store();
    let mut child = s3_run(&moto, &m, "runs/k", &state, &emu.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a multipart upload is under way, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    while moto.open_multipart_uploads().await == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before uploading"
        );
        assert!(Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        moto.open_multipart_uploads().await > 0,
        "killed mid-upload: the multipart upload is still open"
    );
    assert_eq!(
        list(&store, "runs/k/videos").await,
        vec![],
        "nothing visible"
    );

    let result = output(s3_run(&moto, &m, "runs/k", &state, &emu.base_url())).await;
    assert_exit(&result, 0);
    let rows = report(&state);
    let videos = list(&store, "runs/k/videos").await;
    assert_eq!(videos.len(), 1, "{videos:?}");
    assert_eq!(videos[0].1, 48 * 1024 * 1024);
    assert_eq!(
        sha_of(&store, "runs/k/videos/clip-0.mp4").await,
        &rows[0][col("sha256")]
    );
    assert_eq!(list(&store, "runs/k/.vidbatch-staging").await, vec![]);
    assert_eq!(emu.stats().creates_accepted, 1);
}

/// What the publish step of a large video relies on: the server refuses a
/// multipart copy's completion (`If-None-Match: *`) onto an existing key.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_refuses_a_conditional_publish_onto_an_existing_key() {
    let Some(moto) = moto().await else { return };
    let store = AmazonS3Builder::new()
        .with_endpoint(&moto.url)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
        .build()
        .unwrap();
    let (from, to) = (
        ObjectPath::from("p/staged"),
        ObjectPath::from("p/videos/v.mp4"),
    );
    store.put(&from, b"new".to_vec().into()).await.unwrap();
    store.put(&to, b"old".to_vec().into()).await.unwrap();
    let refused = store.copy_if_not_exists(&from, &to).await;
    assert!(
        matches!(refused, Err(object_store::Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    assert_eq!(
        &store.get(&to).await.unwrap().bytes().await.unwrap()[..],
        b"old"
    );
    let fresh = ObjectPath::from("p/videos/w.mp4");
    store.copy_if_not_exists(&from, &fresh).await.unwrap();
    assert_eq!(
        &store.get(&fresh).await.unwrap().bytes().await.unwrap()[..],
        b"new"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_aborts_before_any_create() {
    let Some(moto) = moto().await else { return };
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    // The same server, a bucket nobody made.
    let cmd = s3_run_to(
        &moto,
        &manifest(dir.path(), 2),
        "s3://no-such-bucket/x",
        &dir.path().join("state"),
        &emu.base_url(),
    );
    let result = output(cmd).await;
    assert_exit(&result, 3);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("s3://no-such-bucket/x"), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, not S3's XML: {stderr}"
    );
    assert!(!stderr.contains("test-secret-never-printed"), "{stderr}");
    assert_eq!(emu.stats().creates_accepted, 0);
    assert!(
        emu.stats().requests_by_route.is_empty(),
        "{:?}",
        emu.stats().requests_by_route
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_or_foreign_url_is_bad_input_before_anything_is_sent() {
    let emu = emulator(quick()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 1);
    for (url, says) in [
        ("s3://", "no bucket name"),
        ("s3:///x", "no bucket name"),
        ("s3://Bad_Bucket/x", "bucket name"),
        ("s3://bucket/a//b", "empty segment"),
        ("gs://bucket/x", "not built into"),
        ("az://container/x", "not built into"),
    ] {
        let result = output(run_cmd(&m, Path::new(url), &emu.base_url(), &[])).await;
        assert_exit(&result, 2);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains(url) && stderr.contains(says),
            "{url}: {stderr}"
        );
    }
    assert!(emu.stats().requests_by_route.is_empty());
}
