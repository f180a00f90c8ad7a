use super::*;

fn item(id: &str, seq: u64) -> NewItem {
    NewItem {
        id: id.into(),
        seq,
        kind: "text2video".into(),
        prompt: Some(format!("prompt {id}")),
        params_hash: "h".into(),
        ..NewItem::default()
    }
}

async fn open(dir: &Path) -> (Writer, WriterHandle, String) {
    let (conn, batch) = open_rw(dir).unwrap();
    let (w, h) = Writer::start(conn);
    (w, h, batch)
}

#[tokio::test]
async fn a_new_batch_gets_a_stable_id_and_keeps_items_in_manifest_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, batch) = open(dir.path()).await;
    h.send_durable(Update::SyncItems(vec![item("b", 0), item("a", 1)]))
        .await
        .unwrap();
    let items = load_items(&open_ro(dir.path()).unwrap()).unwrap();
    assert_eq!(
        items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert!(
        items
            .iter()
            .all(|i| i.status() == Status::Pending && i.attempt == 1)
    );
    drop(h);
    let (_w2, _h2, batch2) = open(dir.path()).await;
    assert_eq!(batch, batch2, "reopening keeps the batch id");
}

#[tokio::test]
async fn intent_is_durable_before_the_ack_and_visible_to_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    h.send_durable(Update::SyncItems(vec![item("a", 0)]))
        .await
        .unwrap();
    h.send_durable(Update::Intent {
        id: "a".into(),
        external_task_id: "vb-x-a-1".into(),
        attempt: 1,
        account: None,
    })
    .await
    .unwrap();
    // A separate read-only connection (as `vidbatch status` uses) sees it at once.
    let items = load_items(&open_ro(dir.path()).unwrap()).unwrap();
    assert_eq!(items[0].status(), Status::Submitting);
    assert_eq!(items[0].external_task_id.as_deref(), Some("vb-x-a-1"));
    assert_eq!(items[0].submit_requests, 1);
}

#[tokio::test]
async fn a_full_life_is_recorded_with_videos() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    h.send(Update::SyncItems(vec![item("a", 0)])).unwrap();
    h.send(Update::Intent {
        id: "a".into(),
        external_task_id: "e".into(),
        attempt: 1,
        account: None,
    })
    .unwrap();
    h.send(Update::Created {
        id: "a".into(),
        task_id: "866889456698785798".into(),
        request_id: Some("r1".into()),
        at: 5,
        account: None,
    })
    .unwrap();
    h.send(Update::Status {
        id: "a".into(),
        status: Status::Processing,
    })
    .unwrap();
    let video = VideoRecord {
        n: 1,
        video_id: Some("v1".into()),
        url: Some("http://x/1.mp4".into()),
        ..Default::default()
    };
    h.send(Update::Succeeded {
        id: "a".into(),
        units: Some("2.5".into()),
        videos: vec![video],
        at: 9,
    })
    .unwrap();
    h.send(Update::Downloaded {
        id: "a".into(),
        n: 1,
        path: "videos/a.mp4".into(),
        bytes: 10,
        sha256: "ff".into(),
    })
    .unwrap();
    h.send(Update::Status {
        id: "a".into(),
        status: Status::Downloaded,
    })
    .unwrap();
    h.flush().await.unwrap();
    let r = &load_items(&open_ro(dir.path()).unwrap()).unwrap()[0];
    assert_eq!(r.status(), Status::Downloaded);
    assert_eq!(r.task_id.as_deref(), Some("866889456698785798"));
    assert_eq!(r.units.as_deref(), Some("2.5"));
    assert_eq!(r.videos.len(), 1);
    assert_eq!(r.videos[0].path.as_deref(), Some("videos/a.mp4"));
    assert_eq!(r.videos[0].sha256.as_deref(), Some("ff"));
    let counts = count_by_status(&open_ro(dir.path()).unwrap()).unwrap();
    assert_eq!(counts, vec![(Status::Downloaded, 1)]);
}

#[tokio::test]
async fn resyncing_a_submitted_item_keeps_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    h.send(Update::SyncItems(vec![item("a", 0)])).unwrap();
    h.send(Update::Intent {
        id: "a".into(),
        external_task_id: "e".into(),
        attempt: 1,
        account: None,
    })
    .unwrap();
    let mut edited = item("a", 3);
    edited.prompt = Some("edited".into());
    h.send_durable(Update::SyncItems(vec![edited]))
        .await
        .unwrap();
    let r = &load_items(&open_ro(dir.path()).unwrap()).unwrap()[0];
    assert_eq!(
        (r.seq, r.prompt.as_deref()),
        (3, Some("prompt a")),
        "order follows the manifest, params stay as submitted"
    );
}

#[tokio::test]
async fn retry_starts_a_clean_new_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    h.send(Update::SyncItems(vec![item("a", 0)])).unwrap();
    h.send(Update::Failed {
        id: "a".into(),
        code: Some(1301),
        message: "risk".into(),
        request_id: None,
        at: 1,
    })
    .unwrap();
    h.send_durable(Update::Retry {
        id: "a".into(),
        attempt: 2,
    })
    .await
    .unwrap();
    let r = &load_items(&open_ro(dir.path()).unwrap()).unwrap()[0];
    assert_eq!(
        (r.status(), r.attempt, r.error_code),
        (Status::Pending, 2, None)
    );
}

#[test]
fn a_second_runner_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let _first = BatchLock::acquire(dir.path()).unwrap();
    assert!(matches!(
        BatchLock::acquire(dir.path()),
        Err(StateError::Locked { .. })
    ));
}

#[test]
fn status_of_a_folder_without_state_says_so() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        open_ro(dir.path()),
        Err(StateError::Missing { .. })
    ));
}

#[test]
fn garbage_or_newer_state_files_are_refused_not_guessed_at() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        db_path(dir.path()),
        b"this is not sqlite at all, just some bytes................",
    )
    .unwrap();
    assert!(matches!(
        open_rw(dir.path()),
        Err(StateError::Corrupt { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(db_path(dir.path())).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        open_rw(dir.path()),
        Err(StateError::TooNew { found: 99, .. })
    ));
}

#[tokio::test]
async fn group_commit_keeps_thousands_of_updates_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    let items: Vec<NewItem> = (0..5000).map(|i| item(&format!("i{i}"), i)).collect();
    h.send(Update::SyncItems(items)).unwrap();
    for i in 0..5000 {
        h.send(Update::Status {
            id: format!("i{i}"),
            status: Status::Processing,
        })
        .unwrap();
    }
    h.flush().await.unwrap();
    assert_eq!(
        count_by_status(&open_ro(dir.path()).unwrap()).unwrap(),
        vec![(Status::Processing, 5000)]
    );
}

/// A copy of the checked-in state file written by schema 1 (three items:
/// two downloaded with units "2", one failed), in a fresh folder.
fn v1_batch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state/v1.db");
    std::fs::copy(fixture, db_path(dir.path())).unwrap();
    dir
}

#[test]
fn a_schema_1_file_reads_without_migrating() {
    let dir = v1_batch();
    let conn = open_ro(dir.path()).unwrap();
    let items = load_items(&conn).unwrap();
    assert_eq!(
        items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["sea-dawn", "neon-rain", "refused"]
    );
    assert!(
        items
            .iter()
            .all(|i| i.params.is_none() && i.est_units.is_none())
    );
    assert!(items.iter().all(|i| i.updated_at.is_some()));
    let o = overview(&conn).unwrap();
    assert_eq!(o.schema, 1);
    assert_eq!((o.total(), o.count(Status::Downloaded)), (3, 2));
    assert_eq!((o.units_charged, o.charged_items), (4.0, 2));
    assert_eq!((o.est_units, o.est_missing), (0.0, 3));
}

#[tokio::test]
async fn a_schema_1_file_migrates_and_a_sync_fills_in_what_was_submitted() {
    let dir = v1_batch();
    let before = load_items(&open_ro(dir.path()).unwrap()).unwrap();
    let (_w, h, batch) = open(dir.path()).await;
    assert_eq!(batch, "8912b3dc2bcc", "the batch keeps its id");
    let conn = open_ro(dir.path()).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), SCHEMA_VERSION);
    assert_eq!(
        meta(&conn, "manifest_fingerprint").unwrap(),
        None,
        "the next run syncs the manifest once"
    );
    // Same parameters as submitted: filled in. Changed since: left empty.
    let sync = |id: &str, seq: u64, hash: &str| NewItem {
        id: id.into(),
        seq,
        kind: "text2video".into(),
        prompt: Some("whatever the manifest says now".into()),
        params_hash: hash.into(),
        params: Some(format!(r#"{{"model_name":"m-{id}"}}"#)),
        est_units: Some(2.0),
        spec: None,
    };
    h.send_durable(Update::SyncItems(vec![
        sync("sea-dawn", 0, &before[0].params_hash),
        sync("neon-rain", 1, "edited-since"),
    ]))
    .await
    .unwrap();
    let after = load_items(&conn).unwrap();
    assert_eq!(
        after[0].params.as_deref(),
        Some(r#"{"model_name":"m-sea-dawn"}"#)
    );
    assert_eq!(after[0].est_units, Some(2.0));
    assert_eq!(after[1].params, None, "not what was submitted");
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.status, &a.task_id, &a.prompt),
            (b.status, &b.task_id, &b.prompt)
        );
        assert_eq!(a.videos, b.videos);
    }
}

#[tokio::test]
async fn a_pending_item_takes_the_manifest_s_current_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, h, _) = open(dir.path()).await;
    let mut a = item("a", 0);
    a.params = Some(r#"{"mode":"std"}"#.into());
    a.est_units = Some(1.0);
    h.send(Update::SyncItems(vec![a.clone()])).unwrap();
    a.params = Some(r#"{"mode":"pro"}"#.into());
    a.est_units = None;
    h.send_durable(Update::SyncItems(vec![a])).await.unwrap();
    let r = &load_items(&open_ro(dir.path()).unwrap()).unwrap()[0];
    assert_eq!(
        (r.params.as_deref(), r.est_units),
        (Some(r#"{"mode":"pro"}"#), None)
    );
}
