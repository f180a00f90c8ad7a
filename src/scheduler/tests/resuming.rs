//! Resuming: interrupted creates, finished batches, lost files, timeouts,
//! retries and creates whose outcome cannot be known.

use super::*;

#[tokio::test]
async fn resume_settles_interrupted_creates_before_submitting_anything_new() {
    let server = file_server().await;
    let fake = Arc::new(Fake::new(&server, 1));
    let h = Harness::new();
    // An earlier run crashed with two items mid-create: one reached the
    // provider, one did not.
    let (conn, batch_id) = state::open_rw(h.dir.path()).unwrap();
    let (_w, writer) = Writer::start(conn);
    let its = items(3);
    let new: Vec<NewItem> = its
        .iter()
        .enumerate()
        .map(|(i, it)| NewItem {
            id: it.id.clone(),
            seq: i as u64,
            kind: "text2video".into(),
            prompt: None,
            params_hash: "h".into(),
            ..NewItem::default()
        })
        .collect();
    writer.send(Update::SyncItems(new)).unwrap();
    for id in ["item0", "item1"] {
        let ext = ids::external_task_id(&batch_id, id, 1);
        writer
            .send_durable(Update::Intent {
                id: id.into(),
                external_task_id: ext,
                attempt: 1,
                account: None,
            })
            .await
            .unwrap();
    }
    let ext0 = ids::external_task_id(&batch_id, "item0", 1);
    fake.create(&its[0], &ext0).await.unwrap();
    fake.s.lock().unwrap().create_posts.clear();
    drop(writer);

    let out = h.run(fake.clone(), its, fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert!(
        !s.create_posts.contains(&ext0),
        "the task that existed was adopted, not created again"
    );
    assert_eq!(s.create_posts.len(), 2);
    drop(s);
    assert_eq!(fake.duplicates(), 0);
}

#[tokio::test]
async fn a_second_run_of_a_finished_batch_sends_nothing() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    assert!(h.run(fake.clone(), items(3), fast()).await.all_downloaded());
    let counts = |f: &Fake| {
        let s = f.s.lock().unwrap();
        (s.create_posts.len(), s.queries, s.lists)
    };
    let before = counts(&fake);
    assert!(h.run(fake.clone(), items(3), fast()).await.all_downloaded());
    let after = counts(&fake);
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_deleted_video_is_fetched_again_on_the_next_run() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    assert!(h.run(fake.clone(), items(2), fast()).await.all_downloaded());
    std::fs::remove_file(h.dir.path().join("videos/item1.mp4")).unwrap();
    let out = h.run(fake.clone(), items(2), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert!(h.dir.path().join("videos/item1.mp4").exists());
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        2,
        "no new task for a lost file"
    );
}

#[tokio::test]
async fn a_task_that_never_ends_times_out_and_is_polled_again_next_run() {
    let fake = Arc::new(Fake::new(&file_server().await, 1_000_000));
    let h = Harness::new();
    let settings = EngineSettings {
        task_timeout: Duration::from_millis(50),
        ..fast()
    };
    let out = h.run(fake.clone(), items(1), settings.clone()).await;
    assert_eq!(out.counts.get(&Status::TimedOut), Some(&1), "{out:?}");
    let queries = fake.s.lock().unwrap().queries;
    let _ = h.run(fake.clone(), items(1), settings).await;
    let s = fake.s.lock().unwrap();
    assert!(s.queries > queries, "polled again");
    assert_eq!(s.create_posts.len(), 1, "never resubmitted");
}

#[tokio::test]
async fn retry_failed_makes_a_new_attempt_under_a_new_external_id() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::Code(1301, ErrorClass::ItemInvalid)]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(1), fast()).await;
    assert_eq!(out.counts.get(&Status::Failed), Some(&1));
    let again = h.run(fake.clone(), items(1), fast()).await;
    assert_eq!(
        again.counts.get(&Status::Failed),
        Some(&1),
        "without the flag a failed item stays failed"
    );
    assert_eq!(fake.s.lock().unwrap().create_posts.len(), 1);
    let retried = h
        .run(
            fake.clone(),
            items(1),
            EngineSettings {
                retry_failed: true,
                ..fast()
            },
        )
        .await;
    assert!(retried.all_downloaded(), "{retried:?}");
    let s = fake.s.lock().unwrap();
    assert_eq!(s.create_posts.len(), 2);
    assert!(
        s.create_posts[0].ends_with("-1") && s.create_posts[1].ends_with("-2"),
        "{:?}",
        s.create_posts
    );
    drop(s);
    let r = &h.records()[0];
    assert_eq!((r.attempt, r.submit_requests), (2, 2));
}

#[tokio::test]
async fn without_lookup_a_lost_create_is_unknown_never_resent_until_asked() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.s.lock().unwrap().no_lookup = true;
    // One create made but its answer lost, one lost before it made anything:
    // from here the two are indistinguishable.
    fake.script(&[Fault::AmbiguousCreated, Fault::AmbiguousLost]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(4), fast()).await;
    assert_eq!(out.counts.get(&Status::Unknown), Some(&2), "{out:?}");
    assert_eq!(out.counts.get(&Status::Downloaded), Some(&2));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        4,
        "nothing resent"
    );
    assert!(
        out.failures
            .iter()
            .any(|f| f.status == Status::Unknown && f.message.contains("--resubmit-unknown"))
    );
    let again = h.run(fake.clone(), items(4), fast()).await;
    assert_eq!(again.counts.get(&Status::Unknown), Some(&2));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        4,
        "not on a rerun either"
    );
    let asked = h
        .run(
            fake.clone(),
            items(4),
            EngineSettings {
                resubmit_unknown: true,
                ..fast()
            },
        )
        .await;
    assert!(asked.all_downloaded(), "{asked:?}");
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        6,
        "exactly one new create per unknown item"
    );
}

#[tokio::test]
async fn a_crash_between_a_videos_rename_and_its_record_fetches_it_again_without_a_new_task() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    assert!(h.run(fake.clone(), items(2), fast()).await.all_downloaded());
    // The run that renamed item1's video died before the folder sync that
    // lets its `Downloaded` record go out: the file is in place, the state
    // knows only the finished task and its URL.
    let video = h.dir.path().join("videos/item1.mp4");
    let bytes = std::fs::read(&video).unwrap();
    {
        let (conn, _) = state::open_rw(h.dir.path()).unwrap();
        let (w, writer) = Writer::start(conn);
        let forget = Update::VideoGone {
            id: "item1".into(),
            n: 1,
        };
        writer.send_durable(forget).await.unwrap();
        drop(writer);
        w.join();
    }
    assert_eq!(h.records()[1].status(), Status::Succeeded);

    let out = h.run(fake.clone(), items(2), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(std::fs::read(&video).unwrap(), bytes, "the same video");
    let recorded = h.records()[1].videos[0].sha256.clone();
    let sha = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    assert_eq!(recorded, Some(hex::encode(sha)));
    assert!(!crate::download::part_path(&video).exists());
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        2,
        "downloaded again, never created again"
    );
}
