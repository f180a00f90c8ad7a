use super::*;

/// A run of 100 (resumed: 2 created earlier) with one observed latency of 20 s.
fn busy() -> Tally {
    let mut t = Tally::default();
    t.observe(
        &RunEvent::Started {
            total: 100,
            counts: vec![
                (Status::Pending, 80),
                (Status::Submitted, 2),
                (Status::Downloaded, 18),
            ],
            batch_dir: "out".into(),
            concurrency: 10,
            concurrency_auto: false,
            in_flight_since: vec![("a".into(), 0), ("b".into(), 5_000)],
        },
        10_000,
    );
    let ev = |id: &str, from, to| RunEvent::Transition {
        id: id.into(),
        from,
        to,
    };
    t.observe(&ev("a", Status::Submitted, Status::Processing), 12_000);
    t.observe(&ev("a", Status::Processing, Status::Succeeded), 20_000);
    for (i, to) in [Status::Submitting, Status::Submitted, Status::Processing]
        .into_iter()
        .enumerate()
    {
        let id = format!("n{i}");
        t.observe(&ev(&id, Status::Pending, Status::Submitting), 20_000);
        if to != Status::Submitting {
            t.observe(&ev(&id, Status::Submitting, to), 20_500);
        }
    }
    t.observe(&ev("x", Status::Pending, Status::Failed), 21_000);
    t.observe(
        &RunEvent::WaitingForSlot {
            in_flight: 5,
            limit: 5,
        },
        21_000,
    );
    t.refresh(95_000);
    t
}

#[test]
fn snapshot_at_120_columns() {
    let line = render(&busy(), 120);
    assert_eq!(
        line,
        "[====>              ] 18/100 done · 1 failed · 5 in flight · 76 waiting · ETA 5m20s · account full, waiting for a slot"
    );
    assert!(line.chars().count() <= 120);
}

#[test]
fn snapshot_at_80_columns() {
    assert_eq!(
        render(&busy(), 80),
        "18/100 done · 1 failed · 5 in flight · 76 waiting · ETA 5m20s · acct full"
    );
}

#[test]
fn snapshot_at_60_columns() {
    assert_eq!(
        render(&busy(), 60),
        "18/100 done 1 failed 5 busy 76 wait · ETA 5m20s · acct full"
    );
}

#[test]
fn a_quiet_moment_shows_the_bar_and_the_breakdown() {
    let mut t = busy();
    t.apply(&RunEvent::SlotAvailable);
    assert_eq!(
        render(&t, 120),
        "18/100 done · 1 failed · 5 in flight · 76 waiting · ETA 5m20s · submitting 1, queued 2, rendering 1, downloading 1"
    );
    assert_eq!(
        render(&t, 80),
        "[===>          ] 18/100 done · 1 failed · 5 in flight · 76 waiting · ETA 5m20s"
    );
}

#[test]
fn every_width_from_60_keeps_the_counts_and_never_overflows() {
    let t = busy();
    for width in 60..=200 {
        let line = render(&t, width);
        assert!(line.chars().count() <= width, "{width}: {line}");
        for needle in ["18/100 done", "1 failed", "5 ", "76 wait", "ETA"] {
            assert!(line.contains(needle), "{width}: {line} lacks {needle}");
        }
    }
    // Narrower than planned: cut, still no overflow.
    assert_eq!(render(&t, 20).chars().count(), 20);
}

#[test]
fn failed_items_are_not_done_and_no_eta_before_a_task_ends() {
    let mut t = Tally::default();
    t.observe(
        &RunEvent::Started {
            total: 3,
            counts: vec![(Status::Pending, 3)],
            batch_dir: "out".into(),
            concurrency: 2,
            concurrency_auto: false,
            in_flight_since: vec![],
        },
        0,
    );
    t.observe(
        &RunEvent::Transition {
            id: "a".into(),
            from: Status::Pending,
            to: Status::Failed,
        },
        10,
    );
    assert_eq!((t.done(), t.failed()), (0, 1));
    assert_eq!(t.eta, None);
    assert_eq!(
        render(&t, 80),
        "[======>          ] 0/3 done · 1 failed · 0 in flight · 2 waiting · elapsed 0s"
    );
}

#[test]
fn human_durations() {
    assert_eq!(human(Duration::from_secs(45)), "45s");
    assert_eq!(human(Duration::from_secs(200)), "3m20s");
    assert_eq!(human(Duration::from_secs(3900)), "1h05m");
}
