//! The axum example's app (the crate's `callback_route`), served on loopback and called over
//! real HTTP.

mod common;
mod e2e;
#[path = "../examples/axum.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{KEY, example_with_status, signed_body};
use cregis_payout_callback::{
    AsyncCallbackHandler, Verifier, idempotency::MemoryIdempotencyStore,
    verifier::DEFAULT_MAX_BODY_BYTES,
};
use e2e::{Failing, Panicking, Slow, checks, post};
use example::{Ledger, ROUTE, app};

/// Serves the example's app on an ephemeral loopback port, in the background, as its `main`
/// does (with the memory idempotency store).
async fn serve(handler: impl AsyncCallbackHandler + Send + 'static) -> SocketAddr {
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(verifier, handler)).await.unwrap() });
    addr
}

#[tokio::test]
async fn a_signed_callback_is_acknowledged_and_handled_as_sent() {
    let ledger = Arc::new(Ledger::default());
    let addr = serve(Arc::clone(&ledger)).await;
    let url = format!("http://{addr}{ROUTE}");
    let body = signed_body(&example_with_status("6"), KEY);
    let answer = post(&url, body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let expected = Verifier::new(common::key())
        .verify_and_parse(body.as_bytes())
        .unwrap();
    assert_eq!(
        ledger.last("1e0fb3a0a9454ad8928d26b592e8b3c7"),
        Some(expected)
    );
    // A repeated delivery is acknowledged, and the ledger still holds one payout.
    assert_eq!(post(&url, body).await.body, "success");
    assert_eq!(ledger.payouts(), 1);
}

#[tokio::test]
async fn a_client_disconnect_does_not_cancel_the_handler() {
    let slow = Arc::new(Slow::new(Duration::from_millis(300)));
    let addr = serve(Arc::clone(&slow)).await;
    checks::disconnect_does_not_cancel_the_handler(addr, ROUTE, &slow).await;
}

#[tokio::test]
async fn forged_malformed_and_oversized_deliveries_are_refused() {
    let ledger = Arc::new(Ledger::default());
    let addr = serve(Arc::clone(&ledger)).await;
    checks::bad_deliveries_are_refused(addr, ROUTE, DEFAULT_MAX_BODY_BYTES).await;
    assert_eq!(ledger.payouts(), 0);
}

#[tokio::test]
async fn a_failing_handler_gets_500_and_a_re_push_runs_it_again() {
    let failing = Arc::new(Failing::default());
    let addr = serve(Arc::clone(&failing)).await;
    checks::failing_handler_gets_500(addr, ROUTE, &failing).await;
}

#[tokio::test]
async fn a_panicking_handler_gets_500() {
    let addr = serve(Panicking).await;
    checks::panicking_handler_gets_500(addr, ROUTE).await;
}
