//! The actix-web example's server (the crate's `callback_route`), on loopback and called over
//! real HTTP.

mod common;
mod e2e;
#[path = "../examples/actix.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;
#[path = "../examples/simulate.rs"]
#[allow(dead_code, unreachable_pub)]
mod simulate;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use common::{KEY, example_with_status, signed_body};
use cregis_payout_callback::{
    AsyncCallbackHandler, CallbackStatus, Verifier, idempotency::MemoryIdempotencyStore,
    verifier::DEFAULT_MAX_BODY_BYTES,
};
use e2e::{Failing, Panicking, Slow, checks, post};
use example::{Ledger, ROUTE, server};

/// Runs the example's server on an ephemeral loopback port, in the background, as its `main`
/// does (with the memory idempotency store).
fn serve<H: AsyncCallbackHandler + Send + 'static>(handler: Arc<H>) -> (SocketAddr, ServerHandle) {
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server(listener, verifier, handler).unwrap();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

#[actix_web::test]
async fn a_signed_callback_is_acknowledged_and_handled() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    let answer = post(
        &format!("http://{addr}{ROUTE}"),
        signed_body(&example_with_status("7"), KEY),
    )
    .await;
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
async fn a_client_disconnect_does_not_cancel_the_handler() {
    let slow = Arc::new(Slow::new(Duration::from_millis(300)));
    let (addr, server) = serve(Arc::clone(&slow));
    checks::disconnect_does_not_cancel_the_handler(addr, ROUTE, &slow).await;
    server.stop(true).await;
}

#[actix_web::test]
async fn forged_malformed_and_oversized_deliveries_are_refused() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    checks::bad_deliveries_are_refused(addr, ROUTE, DEFAULT_MAX_BODY_BYTES).await;
    assert_eq!(ledger.status("1e0fb3a0a9454ad8928d26b592e8b3c7"), None);
    server.stop(true).await;
}

#[actix_web::test]
async fn a_failing_handler_gets_500_and_a_re_push_runs_it_again() {
    let failing = Arc::new(Failing::default());
    let (addr, server) = serve(Arc::clone(&failing));
    checks::failing_handler_gets_500(addr, ROUTE, &failing).await;
    server.stop(true).await;
}

#[actix_web::test]
async fn a_panicking_handler_gets_500() {
    let (addr, server) = serve(Arc::new(Panicking));
    checks::panicking_handler_gets_500(addr, ROUTE).await;
    server.stop(true).await;
}

#[actix_web::test]
async fn simulate_is_acknowledged_and_its_forgery_refused() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    let url = format!("http://{addr}{ROUTE}");
    let options =
        simulate::Options::parse(&[url.clone(), "--id".into(), "order-7".into()]).unwrap();
    assert_eq!(
        simulate::run(&options, &common::key()).await.unwrap(),
        [(200, "success".to_owned())]
    );
    assert_eq!(
        ledger.status("order-7"),
        Some(CallbackStatus::TransactionSuccessful)
    );
    let tampered = simulate::Options {
        tamper: true,
        ..options
    };
    assert_eq!(
        simulate::run(&tampered, &common::key()).await.unwrap(),
        [(401, "signature does not match".to_owned())]
    );
    server.stop(true).await;
}
