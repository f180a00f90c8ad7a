//! Polling and downloads: list sweeps and their fallback, interrupts,
//! expired video URLs, file names.

use super::*;

#[tokio::test]
async fn many_tasks_in_flight_are_polled_with_list_sweeps() {
    // Tasks end after 10 looks, well after all 60 are in flight.
    let fake = Arc::new(Fake::new(&file_server().await, 10));
    let h = Harness::new();
    let settings = EngineSettings {
        concurrency: 60,
        list_threshold: 10,
        poll_interval: Duration::from_millis(100),
        max_poll_interval: Duration::from_millis(200),
        ..fast()
    };
    let out = h.run(fake.clone(), items(60), settings).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert!(s.lists > 0);
    // Alone, every task would be asked 10 times (600 queries); only the
    // first ones (before 10 are in flight) and stragglers are asked alone.
    assert!(
        s.queries < 300,
        "single queries only for the first tasks and stragglers: {}",
        s.queries
    );
}

#[tokio::test]
async fn interrupt_returns_promptly_and_leaves_the_batch_resumable() {
    let fake = Arc::new(Fake::new(&file_server().await, 1_000_000));
    let h = Harness::new();
    let stop = Arc::new(Stop::default());
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stopper.stop();
    });
    let out = h.run_with(fake.clone(), items(5), fast(), stop).await;
    assert!(out.interrupted);
    let posts = fake.s.lock().unwrap().create_posts.len();
    // Second run with tasks that now finish: nothing is created twice.
    let fake2 = Arc::new(Fake::new(&file_server().await, 1));
    {
        let s1 = fake.s.lock().unwrap();
        let mut s2 = fake2.s.lock().unwrap();
        s2.tasks = s1
            .tasks
            .iter()
            .map(|(k, v)| (k.clone(), (v.0.clone(), v.1, 1_000_000, v.3)))
            .collect();
        s2.by_ext = s1.by_ext.clone();
        s2.next = s1.next;
    }
    let out = h.run(fake2.clone(), items(5), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(fake2.duplicates(), 0);
    assert_eq!(posts + fake2.s.lock().unwrap().create_posts.len(), 5);
}

#[tokio::test]
async fn an_expired_video_url_is_refreshed_by_querying_the_task_again() {
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    fake.s.lock().unwrap().expired_urls = 2;
    let h = Harness::new();
    let out = h.run(fake.clone(), items(1), fast()).await;
    assert!(out.all_downloaded(), "{out:?}");
    let r = &h.records()[0];
    assert!(
        !r.videos[0].url.as_deref().unwrap().contains("expired-"),
        "the fresh URL is recorded"
    );
    let s = fake.s.lock().unwrap();
    assert_eq!(
        (s.urls_handed, s.create_posts.len()),
        (2, 1),
        "two refreshes, one task"
    );
}

#[tokio::test]
async fn without_a_usable_list_endpoint_polling_falls_back_to_single_queries() {
    let fake = Arc::new(Fake::new(&file_server().await, 4));
    fake.s.lock().unwrap().list_broken = true;
    let h = Harness::new();
    let settings = EngineSettings {
        concurrency: 30,
        list_threshold: 5,
        ..fast()
    };
    let out = h.run(fake.clone(), items(30), settings).await;
    assert!(out.all_downloaded(), "{out:?}");
    let s = fake.s.lock().unwrap();
    assert_eq!(s.lists, 1, "one failed sweep, then single queries only");
}

#[test]
fn video_paths_stay_inside_the_videos_folder() {
    assert_eq!(video_rel_path("cat", 1, 1), "videos/cat.mp4");
    assert_eq!(video_rel_path("cat", 2, 3), "videos/cat.videos/2.mp4");
    // The second video of `cat` and the only video of an item `cat-2` (or
    // `cat.videos`) never share a file.
    assert_ne!(video_rel_path("cat", 2, 2), video_rel_path("cat-2", 1, 1));
    assert_ne!(
        video_rel_path("cat", 1, 2),
        video_rel_path("cat.videos", 1, 1)
    );
    assert!(!video_rel_path("cat.videos", 1, 2).starts_with(&video_rel_path("cat", 1, 2)));
    assert_eq!(
        video_rel_path("../../etc/passwd", 1, 1),
        "videos/_.._.._etc_passwd.mp4"
    );
    assert_eq!(video_rel_path("", 1, 1), "videos/_.mp4");
}

/// The ids of the tasks `fake` has created so far.
fn task_ids(fake: &Fake) -> Vec<String> {
    fake.s.lock().unwrap().tasks.keys().cloned().collect()
}

#[tokio::test]
async fn a_callback_that_a_task_ended_gets_it_queried_at_once_not_at_its_next_poll() {
    use crate::provider::Callback;
    // A task answers "succeeded" to the first look; the first poll would
    // come minutes from now (a twentieth of an hour).
    let fake = Arc::new(Fake::new(&file_server().await, 1));
    let h = Harness::new();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    *h.callbacks.lock().unwrap() = Some(rx);
    let settings = EngineSettings {
        poll_interval: Duration::from_secs(3600),
        max_poll_interval: Duration::from_secs(3600),
        ..fast()
    };
    let caller = {
        let fake = fake.clone();
        tokio::spawn(async move {
            // Steps on the way and tasks that are not ours are not looked at.
            while task_ids(&fake).len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let ids = task_ids(&fake);
            for id in ids.iter().chain([&"someone-elses".to_string()]) {
                let step = Callback {
                    task_id: id.clone(),
                    settled: false,
                };
                tx.send(step).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let queried_before = fake.s.lock().unwrap().queries;
            for id in ids {
                let ended = Callback {
                    task_id: id,
                    settled: true,
                };
                // Told twice: asked once.
                tx.send(ended.clone()).await.unwrap();
                tx.send(ended).await.unwrap();
            }
            queried_before
        })
    };
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        h.run(fake.clone(), items(3), settings),
    )
    .await
    .expect("the callbacks, not the hourly polls, finish the batch");
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(
        caller.await.unwrap(),
        0,
        "no query before a task was said to end"
    );
    assert_eq!(fake.s.lock().unwrap().queries, 3, "one query a task");
}
