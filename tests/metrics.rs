//! The metrics (feature `metrics`), read back through `metrics-util`'s debugging recorder:
//! what a route, a worker, an operator and the reconciler count, with bounded labels only.

mod common;
mod faults;
mod production;

use std::collections::HashMap;
use std::time::Duration;

use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox, Worker};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, Verifier};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// Every metric recorded: `name{label=value,...}` (labels sorted) to its value.
fn recorded(recorder: &DebuggingRecorder) -> HashMap<String, DebugValue> {
    let mut all = HashMap::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        all.insert(format!("{}{{{}}}", key.name(), labels.join(",")), value);
    }
    all
}

fn counter(all: &HashMap<String, DebugValue>, name: &str) -> u64 {
    match all.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?} in {:?}", all.keys()),
    }
}

/// Three callbacks accepted, one re-pushed, one forged; a worker runs them (payout 3's
/// handler fails, and with one attempt its entry dies); an operator discards the dead one.
async fn a_route_a_worker_and_an_operator() {
    let inbox = SqliteInbox::open_in_memory().await.unwrap();
    let verifier = Verifier::new(common::key());
    for cid in [1, 2, 3] {
        let body = faults::delivery(cid, 0);
        assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    }
    let again = faults::delivery(1, 1);
    assert!(
        verifier
            .accept(again.as_bytes(), &inbox)
            .await
            .is_duplicate()
    );
    let forged = CallbackBuilder::new()
        .body(&ApiKey::new("fake-attacker-key").unwrap())
        .unwrap();
    let refused = verifier.accept(forged.as_bytes(), &inbox).await;
    assert_eq!(refused.status_code(), 401);

    // Payout 3's handler fails: with one attempt allowed, its entry is dead.
    let worker = Worker::new(
        inbox.clone(),
        production::failing_for(3, "the ledger refused it"),
    )
    .retry(production::policy(1));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let dead = loop {
        let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
        let done = inbox.list(&[EntryState::Done]).await.unwrap();
        if dead.len() == 1 && done.len() == 2 {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(inbox.replay_dead().await.unwrap(), 1);
    assert!(inbox.discard(dead[0].id, "refunded by hand").await.unwrap());
}

/// Records what `run` does on a runtime of this thread, where the local recorder is.
fn recording<F: std::future::Future<Output = ()>>(run: F) -> HashMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(run));
    recorded(&recorder)
}

fn histogram_len(all: &HashMap<String, DebugValue>, name: &str) -> usize {
    match all.get(name) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_route_a_worker_and_an_operator_are_counted_with_bounded_labels() {
    let all = recording(a_route_a_worker_and_an_operator());
    let count = |name| counter(&all, name);
    assert_eq!(
        count("cregis_callbacks_total{kind=payout,outcome=acknowledged}"),
        3
    );
    assert_eq!(
        count("cregis_callbacks_total{kind=payout,outcome=duplicate}"),
        1
    );
    assert_eq!(
        count("cregis_callbacks_total{kind=unknown,outcome=SignatureMismatch}"),
        1
    );
    assert_eq!(
        count("cregis_inbox_runs_total{kind=payout,outcome=succeeded}"),
        2
    );
    assert_eq!(
        count("cregis_inbox_runs_total{kind=payout,outcome=dead}"),
        1
    );
    assert_eq!(
        count("cregis_inbox_operator_total{action=discarded,kind=payout}"),
        1
    );
    assert_eq!(count("cregis_inbox_replayed_total{}"), 1);
    // Three new, one duplicate; three runs.
    assert_eq!(
        histogram_len(&all, "cregis_inbox_accept_seconds{kind=payout}"),
        4
    );
    assert_eq!(
        histogram_len(&all, "cregis_inbox_run_seconds{kind=payout}"),
        3
    );
    // The worker set the gauges as it started: three entries pending.
    match &all["cregis_inbox_entries{kind=payout,state=pending}"] {
        DebugValue::Gauge(n) => assert!((n.into_inner() - 3.0).abs() < f64::EPSILON, "{n}"),
        other => panic!("{other:?}"),
    }
    assert!(all.contains_key("cregis_inbox_oldest_unfinished_seconds{kind=payout}"));
    // Bounded labels only: never a cid, a pid or an error text.
    for name in all.keys() {
        let labels = &name[name.find('{').unwrap() + 1..name.len() - 1];
        for label in labels.split(',').filter(|label| !label.is_empty()) {
            let key = label.split('=').next().unwrap();
            assert!(
                ["kind", "outcome", "state", "action"].contains(&key),
                "{name}"
            );
        }
    }
}

#[test]
fn a_reconciler_pass_counts_its_queries_by_outcome() {
    use cregis_payout_callback::reconcile::{Pending, Reconciler};
    use cregis_payout_callback::request::{Client, RawResponse, Signer};
    use cregis_payout_callback::{CallbackKind, Reply};

    let all = recording(async {
        {
            // Cregis answers that payout 7 succeeded and is down for payout 8.
            let transport = |_: &'static str, body: String| async move {
                let status = if body.contains(r#""cid":8"#) {
                    503
                } else {
                    200
                };
                let body = r#"{"code":"00000","msg":"ok","data":{"pid":1382528827416576,
                    "chain_id":"195","token_id":"195","currency":"TRX",
                    "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","status":6,
                    "third_party_id":"order-7","txid":"6dd05b09","block_height":"34527604",
                    "block_time":1686814482000}}"#;
                Ok::<_, std::io::Error>(RawResponse {
                    status,
                    body: body.to_owned(),
                })
            };
            let client = Client::new(Signer::new(common::key(), 1382528827416576), transport);
            let deliver = |_: CallbackKind, _: Vec<u8>| async { Reply::ack() };
            let pending = |cid| {
                Pending::new(
                    CallbackKind::Payout,
                    cid,
                    std::time::SystemTime::now(),
                    "1.1",
                    "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
                )
            };
            let report = Reconciler::new(client, deliver)
                .grace(Duration::ZERO)
                .concurrency(1)
                .reconcile(&[pending(7), pending(8)])
                .await;
            assert_eq!(report.delivered + report.failed.len(), 2, "{report:?}");
        }
    });
    assert_eq!(
        counter(&all, "cregis_reconcile_queries_total{outcome=delivered}"),
        1
    );
    assert_eq!(
        counter(&all, "cregis_reconcile_queries_total{outcome=failed}"),
        1
    );
}
