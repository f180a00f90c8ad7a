//! Account pools: creates spread by free capacity, every task polled with
//! the account that created it, a refused account drained while the others
//! finish.

use super::*;

/// A fake account named `name` with `concurrency` slots; its task ids start
/// with its name, so a poll at the wrong account finds nothing.
async fn account(name: &str, concurrency: usize) -> (Arc<Fake>, Account<Fake>) {
    let fake = Arc::new(Fake::new(&file_server().await, 3));
    fake.s.lock().unwrap().id_prefix = format!("{name}-");
    let account = Account {
        name: Some(name.into()),
        provider: fake.clone(),
        concurrency,
        concurrency_auto: false,
        learned: None,
        submit_rate: 1000.0,
        submit_rate_auto: false,
        takes_new: true,
    };
    (fake, account)
}

/// Item id → account name, from the state.
fn accounts_of(h: &Harness) -> HashMap<String, Option<String>> {
    h.records().into_iter().map(|r| (r.id, r.account)).collect()
}

#[tokio::test]
async fn creates_go_where_slots_are_free_and_each_task_is_polled_by_its_account() {
    let (fa, a) = account("a", 1).await;
    let (fb, b) = account("b", 3).await;
    let h = Harness::new();
    let out = h
        .run_accounts(vec![a, b], items(16), fast(), Arc::new(Stop::default()))
        .await;
    assert!(out.all_downloaded(), "{out:?}");
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let (made_a, made_b) = (
        fa.s.lock().unwrap().create_posts.len(),
        fb.s.lock().unwrap().create_posts.len(),
    );
    assert_eq!(made_a + made_b, 16);
    assert!(made_a >= 1 && made_b > made_a, "a {made_a}, b {made_b}");
    for r in h.records() {
        let task = r.task_id.clone().unwrap();
        let account = r.account.clone().unwrap();
        assert!(task.starts_with(&format!("{account}-")), "{r:?}");
    }
    assert!(fa.s.lock().unwrap().max_running <= 1);
    assert!(fb.s.lock().unwrap().max_running <= 3);
}

#[tokio::test]
async fn a_refused_account_is_drained_its_item_goes_elsewhere_and_the_batch_finishes() {
    let (fa, a) = account("a", 2).await;
    fa.s.lock()
        .unwrap()
        .script
        .push_back(Fault::Code(1102, ErrorClass::BatchFatal));
    let (fb, b) = account("b", 2).await;
    let h = Harness::new();
    let out = h
        .run_accounts(vec![a, b], items(8), fast(), Arc::new(Stop::default()))
        .await;
    assert!(out.all_downloaded(), "{out:?}");
    assert_eq!(out.aborted, None, "the other account finished the batch");
    assert_eq!(out.drained.len(), 1);
    assert_eq!(out.drained[0].0, "a");
    assert!(out.drained[0].1.contains("1102"), "{:?}", out.drained);
    // a was asked once (or twice, if a second create was already on its way)
    // and created nothing; b made every task.
    assert!(fa.s.lock().unwrap().tasks.is_empty());
    assert_eq!(fb.s.lock().unwrap().tasks.len(), 8);
    assert!(accounts_of(&h).values().all(|a| a.as_deref() == Some("b")));
}

#[tokio::test]
async fn every_account_refused_stops_the_batch_as_one_account_would() {
    let (fa, a) = account("a", 2).await;
    let (fb, b) = account("b", 2).await;
    for f in [&fa, &fb] {
        f.s.lock()
            .unwrap()
            .script
            .push_back(Fault::Code(1102, ErrorClass::BatchFatal));
    }
    let h = Harness::new();
    let out = h
        .run_accounts(vec![a, b], items(6), fast(), Arc::new(Stop::default()))
        .await;
    assert!(
        out.aborted.as_deref().is_some_and(|r| r.contains("1102")),
        "{out:?}"
    );
    assert_eq!(out.drained.len(), 2);
    assert_eq!(out.counts.get(&Status::Pending).copied(), Some(6));
}
