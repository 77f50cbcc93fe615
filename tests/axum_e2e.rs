//! The axum example's app, served on loopback and called over real HTTP.

mod common;
mod e2e;
#[path = "../examples/axum.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{DOC_EXAMPLE, KEY, example_with_status, signed_body};
use cregis_payout_callback::{
    AsyncCallbackHandler, MemoryIdempotencyStore, Verifier, verify_and_parse,
};
use e2e::{Failing, announce_huge_body, post, stream_endless_body};
use example::{Ledger, ROUTE, app};

/// Serves `app` on an ephemeral loopback port, in the background.
async fn serve<H: AsyncCallbackHandler + Send + 'static>(handler: Arc<H>) -> SocketAddr {
    let verifier = Verifier::new(KEY)
        .unwrap()
        .idempotency(MemoryIdempotencyStore::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(verifier, handler)).await.unwrap() });
    addr
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{ROUTE}")
}

#[tokio::test]
async fn a_signed_callback_is_acknowledged_and_handled_as_sent() {
    let ledger = Arc::new(Ledger::default());
    let addr = serve(Arc::clone(&ledger)).await;
    let body = signed_body(&example_with_status("6"), KEY);
    let answer = post(&url(addr), body.clone()).await;
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(answer.body, "success");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let expected = verify_and_parse(body.as_bytes(), KEY).unwrap();
    assert_eq!(
        ledger.last("1e0fb3a0a9454ad8928d26b592e8b3c7"),
        Some(expected)
    );
    // A repeated delivery is acknowledged, and the ledger still holds one payout.
    assert_eq!(post(&url(addr), body).await.body, "success");
    assert_eq!(ledger.payouts(), 1);
}

#[tokio::test]
async fn a_forged_callback_gets_401_and_never_reaches_the_handler() {
    let ledger = Arc::new(Ledger::default());
    let addr = serve(Arc::clone(&ledger)).await;
    let forged = signed_body(DOC_EXAMPLE, "fake-attacker-key");
    let answer = post(&url(addr), forged).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, "signature does not match")
    );
    assert_eq!(ledger.payouts(), 0);
}

#[tokio::test]
async fn a_malformed_body_gets_400() {
    let addr = serve(Arc::new(Ledger::default())).await;
    for body in [&b"not json"[..], b"[1,2]", br#"{"a":1,"a":2}"#, b""] {
        let answer = post(&url(addr), body).await;
        assert_eq!(answer.status, 400, "{answer}");
        assert_ne!(answer.body, "success");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_without_being_read_whole() {
    let addr = serve(Arc::new(Ledger::default())).await;
    let status_line = announce_huge_body(addr, ROUTE).await;
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
    let status_line = stream_endless_body(addr, ROUTE, 64 * 1024 + 1).await;
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
}

#[tokio::test]
async fn a_failing_handler_gets_500_and_a_re_push_runs_it_again() {
    let handler = Arc::new(Failing::default());
    let addr = serve(Arc::clone(&handler)).await;
    let body = signed_body(DOC_EXAMPLE, KEY);
    for attempt in 1..=2 {
        let answer = post(&url(addr), body.clone()).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (500, "internal error")
        );
        assert_eq!(handler.calls(), attempt);
    }
}
