//! The SQLite ledger example against a real SQLite file, over real HTTP on loopback.

mod common;
mod e2e;
#[path = "../examples/sqlite_ledger.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::net::SocketAddr;
use std::path::Path;

use common::{KEY, example_with_status, key, signed_body};
use cregis_payout_callback::Verifier;
use e2e::post;
use example::{Payout, ROUTE, SqliteLedger, app};
use tokio::task::JoinHandle;

/// `third_party_id` of the documented example the bodies are built from.
const PAYOUT: &str = "1e0fb3a0a9454ad8928d26b592e8b3c7";

/// Opens the ledger at `path` and serves it on an ephemeral loopback port.
async fn start(path: &Path) -> (SqliteLedger, String, JoinHandle<()>) {
    let ledger = SqliteLedger::open(path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = app(Verifier::new(key()), ledger.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (ledger, format!("http://{addr}{ROUTE}"), server)
}

fn successful() -> String {
    signed_body(&example_with_status("6"), KEY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_change_the_payout_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, url, _server) = start(&dir.path().join("ledger.sqlite3")).await;
    ledger.add_payout(PAYOUT, "1.1").unwrap();
    let body = successful();
    let deliveries: Vec<_> = (0..50)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { post(&url, body).await })
        })
        .collect();
    for delivery in deliveries {
        let answer = delivery.await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "success"),
            "{answer}"
        );
    }
    assert_eq!(
        ledger.payout(PAYOUT).unwrap(),
        Some(Payout {
            status: Some(6),
            status_changes: 1
        })
    );
    assert_eq!(ledger.processed_deliveries().unwrap(), 1);
}

#[tokio::test]
async fn a_restarted_app_still_applies_each_callback_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let body = successful();
    {
        let (ledger, url, server) = start(&path).await;
        ledger.add_payout(PAYOUT, "1.1").unwrap();
        assert_eq!(post(&url, body.clone()).await.body, "success");
        // Kill the app: its task, its router and its connection go away at once.
        server.abort();
        let _ = server.await;
    }
    let (ledger, url, _server) = start(&path).await;
    assert_eq!(post(&url, body).await.body, "success");
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status_changes, 1);
    // A contradictory fact about the same payout (failed after successful) is refused loudly
    // (500, so the console shows it), and the final status stays.
    let failed = signed_body(&example_with_status("7"), KEY);
    assert_eq!(post(&url, failed).await.status, 500);
    assert_eq!(
        ledger.payout(PAYOUT).unwrap(),
        Some(Payout {
            status: Some(6),
            status_changes: 1
        })
    );
}

#[tokio::test]
async fn a_callback_that_disagrees_with_the_ledger_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, url, _server) = start(&dir.path().join("ledger.sqlite3")).await;
    ledger.add_payout(PAYOUT, "1.1").unwrap();
    // Another amount than the host created the payout with.
    let other_amount = signed_body(
        &common::with_field(&example_with_status("6"), "amount", r#""1000""#),
        KEY,
    );
    assert_eq!(post(&url, other_amount).await.status, 500);
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status_changes, 0);
    assert_eq!(ledger.processed_deliveries().unwrap(), 0);
    // The fact applied, then again with another transaction hash: a conflict, not a duplicate.
    assert_eq!(post(&url, successful()).await.body, "success");
    let other_txid = signed_body(
        &common::with_field(
            &example_with_status("6"),
            "txid",
            r#""0000000000000000000000000000000000000000000000000000000000000000""#,
        ),
        KEY,
    );
    assert_eq!(post(&url, other_txid).await.status, 500);
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status_changes, 1);
    assert_eq!(ledger.processed_deliveries().unwrap(), 1);
}

#[tokio::test]
async fn an_older_status_arriving_late_never_moves_the_payout_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, url, _server) = start(&dir.path().join("ledger.sqlite3")).await;
    ledger.add_payout(PAYOUT, "1.1").unwrap();
    let pending_signature = signed_body(&example_with_status("5"), KEY);
    let signature_approved = signed_body(&example_with_status("1"), KEY);
    assert_eq!(post(&url, pending_signature).await.body, "success");
    // Status 1 comes after 5: acknowledged and recorded, but the payout stays at 5.
    assert_eq!(post(&url, signature_approved).await.body, "success");
    assert_eq!(
        ledger.payout(PAYOUT).unwrap(),
        Some(Payout {
            status: Some(5),
            status_changes: 1
        })
    );
    assert_eq!(ledger.processed_deliveries().unwrap(), 2);
    // The final status still applies.
    assert_eq!(post(&url, successful()).await.body, "success");
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status, Some(6));
}

#[tokio::test]
async fn a_failed_callback_leaves_nothing_behind_and_a_re_push_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, url, _server) = start(&dir.path().join("ledger.sqlite3")).await;
    let body = successful();
    // The callback arrives before the host committed its own payout row.
    let answer = post(&url, body.clone()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (500, "internal error")
    );
    assert_eq!(
        ledger.processed_deliveries().unwrap(),
        0,
        "the delivery record was rolled back"
    );
    ledger.add_payout(PAYOUT, "1.1").unwrap();
    assert_eq!(post(&url, body).await.body, "success");
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status_changes, 1);
    assert_eq!(ledger.processed_deliveries().unwrap(), 1);
}

#[tokio::test]
async fn a_forged_callback_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, url, _server) = start(&dir.path().join("ledger.sqlite3")).await;
    ledger.add_payout(PAYOUT, "1.1").unwrap();
    let forged = signed_body(&example_with_status("6"), "fake-attacker-key");
    assert_eq!(post(&url, forged).await.status, 401);
    assert_eq!(ledger.payout(PAYOUT).unwrap().unwrap().status_changes, 0);
    assert_eq!(ledger.processed_deliveries().unwrap(), 0);
}
