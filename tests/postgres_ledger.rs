//! The PostgreSQL ledger example against a real server: two app instances, one database.
//!
//! These tests need a PostgreSQL server, so plain `cargo test` skips them; `.ci/run` starts one
//! and runs them with `--ignored`. Given `DATABASE_URL`, they fail (never skip) if the
//! database cannot be reached. By hand:
//! `.ci/with-postgres cargo test --test postgres_ledger -- --ignored`.

mod common;
mod e2e;
#[path = "../examples/postgres_ledger.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use common::{DOC_EXAMPLE, KEY, key, signed_body};
use cregis_payout_callback::Verifier;
use e2e::post;
use example::{Payout, PgLedger, ROUTE, app};
use tokio::task::JoinHandle;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)")
}

/// One app instance: its own pool of connections, its own server on an ephemeral port.
async fn instance() -> (PgLedger, String, JoinHandle<()>) {
    let ledger = PgLedger::connect(&database_url(), 8)
        .await
        .expect("PostgreSQL is reachable at DATABASE_URL");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{ROUTE}", listener.local_addr().unwrap());
    let app = app(Verifier::new(key()), ledger.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (ledger, url, server)
}

/// A payout id and `cid` no other test (or earlier run) uses.
fn fresh_payout() -> (String, u64) {
    let n = RandomState::new().build_hasher().finish();
    (format!("pg-test-{n:016x}"), n % (1 << 62))
}

/// A signed callback for payout `id` / `cid` with `status`.
fn callback(id: &str, cid: u64, status: u8) -> String {
    let pairs: Vec<(&str, String)> = DOC_EXAMPLE
        .iter()
        .map(|&(k, v)| {
            let v = match k {
                "third_party_id" => format!("\"{id}\""),
                "cid" => cid.to_string(),
                "status" => status.to_string(),
                _ => v.to_owned(),
            };
            (k, v)
        })
        .collect();
    signed_body(&pairs, KEY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn two_instances_receiving_the_same_callbacks_apply_each_once() {
    let (ledger, first, _a) = instance().await;
    let (_, second, _b) = instance().await;
    let payouts: Vec<(String, u64)> = (0..10).map(|_| fresh_payout()).collect();
    for (id, _) in &payouts {
        ledger.add_payout(id, "1.1").await.unwrap();
    }
    // Each callback, 8 times at each instance, all at once.
    let mut deliveries = Vec::new();
    for (id, cid) in &payouts {
        let body = callback(id, *cid, 6);
        for url in [&first, &second].repeat(8) {
            let (url, body) = (url.clone(), body.clone());
            deliveries.push(tokio::spawn(async move { post(&url, body).await }));
        }
    }
    for delivery in deliveries {
        let answer = delivery.await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "success"),
            "{answer}"
        );
    }
    for (id, _) in &payouts {
        assert_eq!(
            ledger.payout(id).await.unwrap(),
            Some(Payout {
                status: Some(6),
                status_changes: 1
            }),
            "payout {id}"
        );
        assert_eq!(ledger.processed_deliveries(id).await.unwrap(), 1);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn a_failed_callback_rolls_back_and_a_re_push_applies_it() {
    let (ledger, url, _server) = instance().await;
    let (id, cid) = fresh_payout();
    let body = callback(&id, cid, 7);
    // The callback arrives before the host committed its own payout row.
    let answer = post(&url, body.clone()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (500, "internal error")
    );
    assert_eq!(ledger.processed_deliveries(&id).await.unwrap(), 0);
    ledger.add_payout(&id, "1.1").await.unwrap();
    assert_eq!(post(&url, body).await.body, "success");
    assert_eq!(
        ledger.payout(&id).await.unwrap(),
        Some(Payout {
            status: Some(7),
            status_changes: 1
        })
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn a_restarted_instance_still_applies_each_callback_once() {
    let (id, cid) = fresh_payout();
    let body = callback(&id, cid, 6);
    {
        let (ledger, url, server) = instance().await;
        ledger.add_payout(&id, "1.1").await.unwrap();
        assert_eq!(post(&url, body.clone()).await.body, "success");
        server.abort();
        let _ = server.await;
    }
    let (ledger, url, _server) = instance().await;
    assert_eq!(post(&url, body).await.body, "success");
    assert_eq!(ledger.payout(&id).await.unwrap().unwrap().status_changes, 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn a_forged_callback_changes_nothing() {
    let (ledger, url, _server) = instance().await;
    let (id, cid) = fresh_payout();
    ledger.add_payout(&id, "1.1").await.unwrap();
    let pairs_body = callback(&id, cid, 6).replace(r#""amount":"1.1""#, r#""amount":"9.9""#);
    assert_eq!(post(&url, pairs_body).await.status, 401);
    assert_eq!(ledger.payout(&id).await.unwrap().unwrap().status_changes, 0);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn a_callback_that_disagrees_with_the_ledger_is_refused_and_changes_nothing() {
    let (ledger, url, _server) = instance().await;
    let (id, cid) = fresh_payout();
    ledger.add_payout(&id, "2.5").await.unwrap();
    // Another amount than the host created the payout with (the callback says 1.1).
    assert_eq!(post(&url, callback(&id, cid, 6)).await.status, 500);
    assert_eq!(ledger.processed_deliveries(&id).await.unwrap(), 0);
    let (id, cid) = fresh_payout();
    ledger.add_payout(&id, "1.1").await.unwrap();
    assert_eq!(post(&url, callback(&id, cid, 6)).await.body, "success");
    // Failed after successful: a final status never changes.
    assert_eq!(post(&url, callback(&id, cid, 7)).await.status, 500);
    assert_eq!(
        ledger.payout(&id).await.unwrap(),
        Some(Payout {
            status: Some(6),
            status_changes: 1
        })
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn an_older_status_arriving_late_never_moves_the_payout_back() {
    let (ledger, url, _server) = instance().await;
    let (id, cid) = fresh_payout();
    ledger.add_payout(&id, "1.1").await.unwrap();
    assert_eq!(post(&url, callback(&id, cid, 5)).await.body, "success");
    assert_eq!(post(&url, callback(&id, cid, 1)).await.body, "success");
    assert_eq!(
        ledger.payout(&id).await.unwrap(),
        Some(Payout {
            status: Some(5),
            status_changes: 1
        })
    );
    assert_eq!(ledger.processed_deliveries(&id).await.unwrap(), 2);
    assert_eq!(post(&url, callback(&id, cid, 6)).await.body, "success");
    assert_eq!(ledger.payout(&id).await.unwrap().unwrap().status, Some(6));
}
