//! The poll queue's schedule: what is asked when, by a query or a sweep.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn queue(threshold: usize, page_size: Option<u32>) -> PollQueue<u8> {
    PollQueue::new(10 * MS, 40 * MS, threshold, page_size)
}

#[test]
fn once_tasks_ended_a_fresh_one_is_first_asked_when_they_usually_end() {
    let mut q = queue(100, None);
    let t0 = Instant::now();
    // Three tasks seen running at 15 ms and ended by 25 ms: about 20 ms.
    for idx in 0..3 {
        q.track(idx, 1, Some(t0));
        q.saw_running(idx, t0 + 15 * MS);
        q.ended(idx, t0 + 25 * MS);
        q.untrack(idx);
    }
    q.track(3, 1, Some(t0));
    q.schedule(3, t0);
    assert_eq!(
        q.next_due().unwrap() - t0,
        20 * MS,
        "at the window, not the 10 ms interval"
    );
    q.heap.clear();
    q.schedule(3, t0 + 20 * MS);
    assert_eq!(
        q.next_due().unwrap() - t0,
        21 * MS,
        "then every twentieth of the interval (1 ms at least)"
    );
    // A task from an earlier run (age unknown) keeps the usual schedule.
    q.track(4, 1, None);
    q.heap.clear();
    q.schedule(4, t0);
    assert_eq!(q.next_due().unwrap() - t0, 10 * MS);
}

#[test]
fn polls_stretch_by_a_quarter_up_to_the_maximum() {
    let mut q = queue(100, Some(500));
    let t0 = Instant::now();
    let mut dues = Vec::new();
    for _ in 0..8 {
        q.schedule(0, t0);
        dues.push(q.next_due().unwrap() - t0);
        q.heap.clear();
    }
    let ms: Vec<u128> = dues.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![10, 12, 15, 17, 20, 22, 25, 27]);
}

#[test]
fn few_tasks_on_a_route_are_queried_one_by_one() {
    let mut q = queue(3, Some(500));
    let t0 = Instant::now();
    for idx in 0..2 {
        q.track(idx, 7, None);
        q.schedule_at(idx, t0);
    }
    let due = q.take_due(t0, |_| true, |_| 7);
    assert_eq!(due.queries, vec![0, 1]);
    assert!(due.sweeps.is_empty());
}

#[test]
fn many_tasks_on_a_route_are_swept_once_per_interval() {
    let mut q = queue(3, Some(500));
    let t0 = Instant::now();
    for idx in 0..4 {
        q.track(idx, 1, None);
        q.schedule_at(idx, t0);
    }
    let due = q.take_due(t0, |_| true, |_| 1);
    assert_eq!(
        due,
        Due {
            queries: vec![],
            sweeps: vec![1]
        }
    );
    let wanted = q.start_sweep(1, t0, |_| true, |i| Some(format!("t{i}")));
    assert_eq!(wanted.len(), 4);
    // While it is out, nothing of that route is due again.
    q.schedule_at(0, t0);
    assert_eq!(q.take_due(t0, |_| true, |_| 1).sweeps, Vec::<u8>::new());
}

#[test]
fn without_a_list_endpoint_nothing_is_ever_swept() {
    let mut q = queue(0, None);
    let t0 = Instant::now();
    for idx in 0..4 {
        q.track(idx, 1, None);
        q.schedule_at(idx, t0);
    }
    let due = q.take_due(t0, |_| true, |_| 1);
    assert_eq!(due.queries, vec![0, 1, 2, 3]);
    assert!(due.sweeps.is_empty());
}

#[test]
fn sweeps_that_never_see_our_tasks_are_given_up() {
    let mut q = queue(1, Some(500));
    for _ in 0..MAX_FRUITLESS_SWEEPS {
        assert!(!q.sweeps_off);
        q.sweep_returned(1, false, true);
    }
    assert!(q.sweeps_off);
}

#[test]
fn routes_are_counted_apart() {
    let mut q = queue(2, Some(500));
    let t0 = Instant::now();
    q.track(0, 1, None);
    q.track(1, 2, None);
    q.track(2, 2, None);
    for idx in 0..3 {
        q.schedule_at(idx, t0);
    }
    let due = q.take_due(t0, |_| true, |i| if i == 0 { 1 } else { 2 });
    assert_eq!(
        due,
        Due {
            queries: vec![0],
            sweeps: vec![2]
        }
    );
    q.untrack(1);
    assert_eq!(q.in_flight(), 2);
}

const S: Duration = Duration::from_secs(1);

/// A queue with the default poll interval (5 s: a single task is asked at
/// most every 250 ms) that lists 500 tasks a page.
fn default_queue(threshold: usize) -> PollQueue<u8> {
    PollQueue::new(5 * S, 30 * S, threshold, Some(500))
}

/// `n` tasks on `route` created at `t0`, then three of them (the last
/// ones) seen running at 1.99 s and ended by 2.01 s: the route's window is
/// about 2 s wide open.
fn with_window(q: &mut PollQueue<u8>, route: u8, first: usize, n: usize, t0: Instant) {
    for idx in first..first + n {
        q.track(idx, route, Some(t0));
    }
    for idx in first + n - 3..first + n {
        q.saw_running(idx, t0 + 1990 * MS);
        q.ended(idx, t0 + 2010 * MS);
        q.untrack(idx);
    }
}

#[test]
fn before_any_task_ended_a_swept_route_is_looked_at_by_the_age_of_its_oldest() {
    let mut q = default_queue(50);
    let t0 = Instant::now();
    // 12 in flight: a young route is swept from 10.
    for idx in 0..12 {
        q.track(idx, 1, Some(t0));
    }
    q.schedule(0, t0 + 16 * S);
    assert_eq!(
        q.next_due().unwrap() - t0,
        18 * S,
        "an eighth of 16 s later"
    );
    q.heap.clear();
    q.schedule(1, t0 + S);
    assert_eq!(
        q.next_due().unwrap() - t0,
        2250 * MS,
        "never sooner than a quarter of the 5 s poll interval"
    );
}

#[test]
fn inside_the_window_a_swept_task_is_looked_at_more_often_than_a_queried_one() {
    let mut q = default_queue(50);
    let t0 = Instant::now();
    with_window(&mut q, 1, 0, 60, t0);
    with_window(&mut q, 2, 100, 8, t0);
    q.heap.clear();
    q.schedule(0, t0 + 2 * S);
    assert_eq!(
        q.next_due().unwrap() - t0,
        2050 * MS,
        "swept: the 50 ms floor"
    );
    q.heap.clear();
    q.schedule(100, t0 + 2 * S);
    assert_eq!(q.next_due().unwrap() - t0, 2250 * MS, "queried: 250 ms");
}

#[test]
fn a_route_that_had_the_threshold_in_flight_stays_swept_until_its_last_task_ends() {
    let mut q = default_queue(50);
    let t0 = Instant::now();
    with_window(&mut q, 1, 0, 53, t0);
    // Route 2 never had 50 in flight: with its window known, 20 are queried.
    with_window(&mut q, 2, 100, 23, t0);
    let now = t0 + 3 * S;
    for idx in 0..30 {
        q.untrack(idx);
    }
    q.schedule_at(30, now);
    q.schedule_at(100, now);
    let due = q.take_due(now, |_| true, |i| if i < 100 { 1 } else { 2 });
    assert_eq!(due.sweeps, vec![1], "20 left of a route that had 50");
    assert_eq!(due.queries, vec![100]);
    for idx in 30..49 {
        q.untrack(idx);
    }
    q.schedule_at(49, now + S);
    let due = q.take_due(now + S, |_| true, |_| 1);
    assert_eq!(due.sweeps, vec![1], "its last task too");
    q.untrack(49);
    q.track(53, 1, Some(now));
    q.schedule_at(53, now + S);
    let due = q.take_due(now + S, |_| true, |_| 1);
    assert_eq!(due.queries, vec![53], "once empty, it starts again");
}

#[test]
fn a_callback_brings_the_routes_next_sweep_to_the_shortest_gap() {
    // 20 young tasks swept by their age: the next sweep would come a poll
    // interval (10 ms) after the last; a callback makes it 1 ms (interval / 20,
    // at least 1 ms) after it.
    let mut q = PollQueue::new(20 * MS, 40 * MS, 10, Some(500));
    let t0 = Instant::now();
    for idx in 0..20 {
        q.track(idx, 1, Some(t0));
        q.schedule_at(idx, t0);
    }
    let due = q.take_due(t0, |_| true, |_| 1);
    assert_eq!(due.sweeps, vec![1]);
    q.start_sweep(1, t0, |_| true, |i| Some(format!("t{i}")));
    q.sweep_returned(1, true, false);
    for idx in 0..20 {
        q.set_busy(idx, false);
        q.saw_running(idx, t0 + MS);
        q.schedule(idx, t0 + MS);
    }
    let soon = t0 + 2 * MS;
    assert!(q.take_due(soon, |_| true, |_| 1).sweeps.is_empty());
    q.called_back(5, soon);
    let due = q.take_due(soon, |_| true, |_| 1);
    assert_eq!(
        due.sweeps,
        vec![1],
        "at once: the last sweep began 2 ms ago"
    );
    // Told again at once: nothing more.
    q.start_sweep(1, soon, |_| true, |i| Some(format!("t{i}")));
    q.called_back(5, soon);
    assert!(!q.routes[&1].called_back);
}

#[test]
fn a_callback_while_an_answer_is_in_the_air_gets_a_running_task_looked_at_again() {
    let mut q = queue(100, None);
    let t0 = Instant::now();
    q.track(0, 1, Some(t0));
    q.set_busy(0, true); // a query is out
    q.called_back(0, t0);
    // Its answer (sent before the task ended) says it runs: again at once,
    // not at the usual gap.
    q.set_busy(0, false);
    q.saw_running(0, t0 + MS);
    q.heap.clear();
    q.schedule(0, t0 + MS);
    assert_eq!(q.next_due().unwrap(), t0 + MS);
    // Only once.
    q.heap.clear();
    q.schedule(0, t0 + MS);
    assert!(q.next_due().unwrap() > t0 + MS);
}

#[test]
fn a_one_page_route_looks_at_a_fresh_task_early_only_while_items_wait_for_slots() {
    let mut q = default_queue(50);
    let t0 = Instant::now();
    with_window(&mut q, 1, 0, 60, t0); // 57 in flight: one page
    with_window(&mut q, 2, 1000, 600, t0); // 597 in flight: two pages
    let t1 = t0 + 3 * S;
    q.track(100, 1, Some(t1));
    q.track(2000, 2, Some(t1));
    q.heap.clear();
    q.schedule(100, t1);
    assert_eq!(
        q.next_due().unwrap() - t1,
        1875 * MS,
        "a sixteenth of the 2 s window's start early"
    );
    q.heap.clear();
    q.schedule(2000, t1);
    assert_eq!(
        q.next_due().unwrap() - t1,
        2 * S,
        "two pages: at the window's start"
    );
    q.submitter_done();
    q.heap.clear();
    q.schedule(100, t1);
    assert_eq!(
        q.next_due().unwrap() - t1,
        2 * S,
        "nothing waits for its slot: at the window's start"
    );
}

#[test]
fn once_nothing_waits_for_a_slot_a_one_page_sweep_is_paid_for_by_its_ends_until_few_are_left() {
    let mut q = default_queue(50);
    let t0 = Instant::now();
    with_window(&mut q, 1, 0, 300, t0);
    // 20 more ended within 20 ms: with the window's three, about 255 a second.
    for idx in 0..20 {
        q.saw_running(idx, t0 + 1990 * MS);
        q.ended(idx, t0 + 2 * S + idx as u32 * MS);
        q.untrack(idx);
    }
    let now = t0 + 2100 * MS;
    assert_eq!(
        q.sweep_gap(&1, now),
        50 * MS,
        "items wait: the window's gap"
    );
    q.submitter_done();
    let paid = q.sweep_gap(&1, now);
    assert!(
        paid > 300 * MS && paid < 500 * MS,
        "100 ends a page at ~255 a second: {paid:?}"
    );
    for idx in 20..196 {
        q.untrack(idx);
    }
    assert!(q.sweep_gap(&1, now) > 300 * MS, "101 left: still paid for");
    q.untrack(196);
    assert_eq!(q.sweep_gap(&1, now), 50 * MS, "100 left: the window's gap");
}

#[test]
fn while_every_slot_is_taken_a_young_one_page_route_is_swept_four_times_as_often() {
    let mut q = PollQueue::new(400 * MS, 800 * MS, 10, Some(500));
    let t0 = Instant::now();
    for idx in 0..20 {
        q.track(idx, 1, Some(t0));
    }
    let now = t0 + 960 * MS;
    assert_eq!(
        q.sweep_gap(&1, now),
        120 * MS,
        "an eighth of the oldest's age"
    );
    q.set_slots_full(true);
    assert_eq!(
        q.sweep_gap(&1, now),
        30 * MS,
        "a thirty-second: the first end seen is the first refill"
    );
    assert_eq!(
        q.sweep_gap(&1, t0 + 320 * MS),
        20 * MS,
        "never closer than a single task is asked (interval / 20)"
    );
    q.submitter_done();
    assert_eq!(q.sweep_gap(&1, now), 120 * MS, "nothing waits for a slot");
}
