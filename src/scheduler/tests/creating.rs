//! Creating: each item created once, slot pressure, errors, aborts.

use super::*;

#[tokio::test]
async fn every_item_is_created_once_polled_and_downloaded() {
    let fake = Arc::new(Fake::new(&file_server().await, 2));
    let h = Harness::new();
    let out = h.run(fake.clone(), items(10), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake.s.lock().unwrap().create_posts.len(), 10);
    for r in h.records() {
        assert_eq!(r.status(), Status::Downloaded);
        let v = &r.videos[0];
        let bytes = std::fs::read(h.dir.path().join(v.path.as_ref().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, v.bytes.unwrap());
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            *v.sha256.as_ref().unwrap()
        );
    }
    assert!(
        !h.dir.path().join("videos").read_dir().unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "part"))
    );
}

#[tokio::test]
async fn ambiguous_creates_are_settled_by_external_id_never_duplicated() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[
        Fault::AmbiguousCreated,
        Fault::AmbiguousLost,
        Fault::AmbiguousCreated,
        Fault::AmbiguousLost,
    ]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(6), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake.duplicates(), 0);
    let s = fake.s.lock().unwrap();
    assert_eq!(s.by_ext.len(), 6, "one task per item");
    assert_eq!(
        s.create_posts.len(),
        8,
        "the two lost requests were sent again, the created ones were adopted"
    );
}

#[tokio::test]
async fn a_full_account_slows_the_batch_but_never_fails_an_item() {
    let fake = Arc::new(Fake::new(&file_server().await, 3));
    fake.s.lock().unwrap().slot_limit = Some(2);
    let h = Harness::new();
    let out = h
        .run(
            fake.clone(),
            items(8),
            EngineSettings {
                concurrency: 6,
                ..fast()
            },
        )
        .await;
    assert!(out.all_downloaded(), "{out:?}");
    assert!(out.failures.is_empty());
    assert_eq!(fake.duplicates(), 0);
    assert!(fake.s.lock().unwrap().max_running <= 2);
}

#[tokio::test]
async fn a_create_past_the_accounts_limit_goes_again_when_a_task_of_ours_ends_not_after_a_backoff()
{
    let fake = Arc::new(Fake::new(&file_server().await, 2));
    fake.s.lock().unwrap().slot_limit = Some(2);
    let h = Harness::new();
    let settings = EngineSettings {
        concurrency: 3,
        // A backoff (30–60 s at this base) would outlast the test: the
        // refused create must wait for a slot of ours instead.
        retry_base: Duration::from_secs(3600),
        ..fast()
    };
    let run = h.run(fake.clone(), items(6), settings);
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("a refused create waited for a backoff");
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake.duplicates(), 0);
    let s = fake.s.lock().unwrap();
    assert!(s.max_running <= 2);
    assert_eq!(s.by_ext.len(), 6, "one task per item");
}

#[tokio::test]
async fn transient_errors_back_off_and_succeed() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::RetryLater, Fault::RetryLater, Fault::SlotFull]);
    let h = Harness::new();
    let out = h.run(fake.clone(), items(3), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
}

#[tokio::test]
async fn an_invalid_item_fails_alone_and_the_batch_goes_on() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.script(&[Fault::Code(1301, ErrorClass::ItemInvalid)]);
    let h = Harness::new();
    let mut its = items(4);
    its.push(t2v("risky", "please FAIL remotely"));
    let out = h
        .run(
            fake.clone(),
            its,
            EngineSettings {
                concurrency: 1,
                ..fast()
            },
        )
        .await;
    assert_eq!(out.counts.get(&Status::Failed), Some(&2), "{out:?}");
    assert_eq!(out.counts.get(&Status::Downloaded), Some(&3));
    let recs = h.records();
    let rejected = recs.iter().find(|r| r.id == "item0").unwrap();
    assert_eq!(
        (rejected.status(), rejected.error_code),
        (Status::Failed, Some(1301))
    );
    let risky = recs.iter().find(|r| r.id == "risky").unwrap();
    assert_eq!(risky.error_message.as_deref(), Some("content risk"));
}

#[tokio::test]
async fn balance_exhausted_stops_submitting_and_finishes_what_is_in_flight() {
    let fake = Arc::new(Fake::new(&file_server().await, 2));
    fake.script(&[Fault::Code(1102, ErrorClass::BatchFatal)]);
    let h = Harness::new();
    let out = h
        .run(
            fake.clone(),
            items(5),
            EngineSettings {
                concurrency: 1,
                ..fast()
            },
        )
        .await;
    assert!(
        out.aborted
            .as_deref()
            .unwrap_or("")
            .contains("resource pack"),
        "{out:?}"
    );
    assert_eq!(out.counts.get(&Status::Pending), Some(&5));
    assert_eq!(
        fake.s.lock().unwrap().create_posts.len(),
        1,
        "no create after the fatal answer"
    );
}
