//! The actix-web example's server, on loopback and called over real HTTP.

mod common;
mod e2e;
#[path = "../examples/actix.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use common::{DOC_EXAMPLE, KEY, example_with_status, signed_body};
use cregis_payout_callback::{
    AsyncCallbackHandler, CallbackStatus, MemoryIdempotencyStore, Verifier,
};
use e2e::{Failing, announce_huge_body, post, stream_endless_body};
use example::{Ledger, ROUTE, server};

/// Runs the example's server on an ephemeral loopback port, in the background.
fn serve<H: AsyncCallbackHandler + Send + 'static>(handler: Arc<H>) -> (SocketAddr, ServerHandle) {
    let verifier = Verifier::new(KEY)
        .unwrap()
        .idempotency(MemoryIdempotencyStore::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server(listener, verifier, handler).unwrap();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{ROUTE}")
}

#[actix_web::test]
async fn a_signed_callback_is_acknowledged_and_handled() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    let body = signed_body(&example_with_status("7"), KEY);
    let answer = post(&url(addr), body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        ledger.status("1e0fb3a0a9454ad8928d26b592e8b3c7"),
        Some(CallbackStatus::TransactionFailed)
    );
    server.stop(true).await;
}

#[actix_web::test]
async fn a_forged_callback_gets_401_and_never_reaches_the_handler() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    let answer = post(&url(addr), signed_body(DOC_EXAMPLE, "fake-attacker-key")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, "signature does not match")
    );
    assert_eq!(ledger.status("1e0fb3a0a9454ad8928d26b592e8b3c7"), None);
    server.stop(true).await;
}

#[actix_web::test]
async fn a_malformed_body_gets_400() {
    let (addr, server) = serve(Arc::new(Ledger::default()));
    for body in [&b"not json"[..], b"[1,2]", br#"{"a":1,"a":2}"#, b""] {
        let answer = post(&url(addr), body).await;
        assert_eq!(answer.status, 400, "{answer}");
        assert_ne!(answer.body, "success");
    }
    server.stop(true).await;
}

#[actix_web::test]
async fn a_body_over_the_limit_is_refused_without_being_read_whole() {
    let (addr, server) = serve(Arc::new(Ledger::default()));
    let status_line = announce_huge_body(addr, ROUTE).await;
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
    let status_line = stream_endless_body(addr, ROUTE, 64 * 1024 + 1).await;
    assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
    server.stop(true).await;
}

#[actix_web::test]
async fn a_failing_handler_gets_500() {
    let handler = Arc::new(Failing::default());
    let (addr, server) = serve(Arc::clone(&handler));
    let answer = post(&url(addr), signed_body(DOC_EXAMPLE, KEY)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (500, "internal error")
    );
    assert_eq!(handler.calls(), 1);
    server.stop(true).await;
}
