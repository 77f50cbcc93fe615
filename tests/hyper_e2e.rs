//! The hyper example's server (the crate's `tower::Service`), on loopback and called over real
//! HTTP: the same checks the axum and actix-web adapters pass.
#![cfg(feature = "tower")]

mod common;
mod e2e;
#[path = "../examples/hyper.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cregis_payout_callback::idempotency::DEFAULT_CLAIM_LEASE;
use cregis_payout_callback::service::CregisService;
use cregis_payout_callback::verifier::DEFAULT_MAX_BODY_BYTES;
use cregis_payout_callback::{AsyncCallbackHandler, Error};
use e2e::{Failing, Panicking, Seen, Slow, checks};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

const PATH: &str = "/cregis/payout-callback";

/// Serves the example's server on an ephemeral loopback port, in the background.
async fn serve(handler: impl AsyncCallbackHandler + Send + 'static) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CregisService::callbacks(e2e::memory_verifier(DEFAULT_CLAIM_LEASE), handler);
    tokio::spawn(example::serve(listener, service));
    addr
}

/// A server like the example's, behind a tower layer that records each response's error.
async fn serve_seen(handler: impl AsyncCallbackHandler + Send + 'static) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let service = CregisService::callbacks(e2e::memory_verifier(DEFAULT_CLAIM_LEASE), handler);
    let recorded = {
        let seen = seen.clone();
        ServiceExt::<http::Request<hyper::body::Incoming>>::map_response(service, move |response| {
            seen.record(response.extensions().get::<Error>());
            response
        })
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(recorded.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_client_disconnect_does_not_cancel_the_handler() {
    let slow = Arc::new(Slow::new(Duration::from_millis(300)));
    let addr = serve(Arc::clone(&slow)).await;
    checks::disconnect_does_not_cancel_the_handler(addr, PATH, &slow).await;
}

#[tokio::test]
async fn forged_malformed_and_oversized_deliveries_are_refused() {
    let failing = Arc::new(Failing::default());
    let addr = serve(Arc::clone(&failing)).await;
    checks::bad_deliveries_are_refused(addr, PATH, DEFAULT_MAX_BODY_BYTES).await;
    assert_eq!(failing.calls(), 0, "no bad delivery reached the handler");
}

#[tokio::test]
async fn a_failing_handler_gets_500_and_a_re_push_runs_it_again() {
    let failing = Arc::new(Failing::default());
    let addr = serve(Arc::clone(&failing)).await;
    checks::failing_handler_gets_500(addr, PATH, &failing).await;
}

#[tokio::test]
async fn a_panicking_handler_gets_500() {
    let (addr, seen) = serve_seen(Panicking).await;
    checks::panicking_handler_gets_500(addr, PATH, &seen).await;
}

#[tokio::test]
async fn a_client_gone_mid_body_is_an_unreadable_body() {
    let slow = Arc::new(Slow::new(Duration::from_millis(10)));
    let (addr, seen) = serve_seen(Arc::clone(&slow)).await;
    checks::a_body_cut_short_is_unreadable(addr, PATH, &seen, &slow).await;
}

/// A service told to run its deliveries on a runtime of their own runs the handler there, and
/// answers the request on the runtime that serves it.
#[test]
fn deliveries_run_on_the_runtime_the_host_names() {
    use cregis_payout_callback::testing::CallbackBuilder;
    use cregis_payout_callback::{PayoutCallback, Verifier};

    let deliveries = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cregis-deliveries")
        .enable_all()
        .build()
        .unwrap();
    let ran_on = Arc::new(std::sync::Mutex::new(None));
    let settle = {
        let ran_on = Arc::clone(&ran_on);
        move |_: &PayoutCallback| {
            *ran_on.lock().unwrap() = std::thread::current().name().map(str::to_owned);
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        }
    };
    let service = CregisService::callbacks(Verifier::new(common::key()), settle)
        .on_runtime(deliveries.handle().clone());
    let request = http::Request::post(PATH)
        .body(CallbackBuilder::new().body(&common::key()).unwrap())
        .unwrap();
    let serving = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = serving.block_on(service.handle(request));
    assert_eq!(response.status(), 200);
    assert_eq!(ran_on.lock().unwrap().as_deref(), Some("cregis-deliveries"));
}
