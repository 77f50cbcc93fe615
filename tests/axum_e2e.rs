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

use axum::response::Response;
use common::{KEY, example_with_status, signed_body};
use cregis_payout_callback::Error;
use cregis_payout_callback::{
    AsyncCallbackHandler, Verifier,
    idempotency::{DEFAULT_CLAIM_LEASE, MemoryIdempotencyStore, Store},
    verifier::DEFAULT_MAX_BODY_BYTES,
};
use e2e::{ByHand, Failing, Panicking, Seen, Slow, checks, post};
use example::{Ledger, ROUTE, app};

/// Serves the example's app on an ephemeral loopback port, in the background, as its `main`
/// does (with the memory idempotency store).
async fn serve(handler: impl AsyncCallbackHandler + Send + 'static) -> SocketAddr {
    serve_seen(handler).await.0
}

/// [`serve`], behind a logging layer that records each response's error.
async fn serve_seen(handler: impl AsyncCallbackHandler + Send + 'static) -> (SocketAddr, Seen) {
    serve_seen_with(e2e::memory_verifier(DEFAULT_CLAIM_LEASE), handler).await
}

/// [`serve_seen`] with `verifier`.
async fn serve_seen_with(
    verifier: Verifier<Store<MemoryIdempotencyStore>>,
    handler: impl AsyncCallbackHandler + Send + 'static,
) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let log = {
        let seen = seen.clone();
        move |response: Response| {
            seen.record(response.extensions().get::<Error>());
            async move { response }
        }
    };
    let app = app(verifier, handler).layer(axum::middleware::map_response(log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
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
async fn a_handler_past_its_claim_lease_is_stopped_and_never_runs_twice_at_once() {
    let lease = Duration::from_millis(300);
    let slow = Arc::new(Slow::new(Duration::from_secs(2)));
    let (addr, seen) = serve_seen_with(e2e::memory_verifier(lease), Arc::clone(&slow)).await;
    checks::handler_past_its_lease_is_stopped(addr, ROUTE, &slow, &seen, lease).await;
}

#[tokio::test]
async fn a_panicking_handler_gets_500() {
    let (addr, seen) = serve_seen(Panicking).await;
    checks::panicking_handler_gets_500(addr, ROUTE, &seen).await;
}

#[tokio::test]
async fn a_client_gone_mid_body_is_an_unreadable_body() {
    let slow = Arc::new(Slow::new(Duration::from_millis(10)));
    let (addr, seen) = serve_seen(Arc::clone(&slow)).await;
    checks::a_body_cut_short_is_unreadable(addr, ROUTE, &seen, &slow).await;
}

/// The route's future is polled by hand on this thread, with runtime `handlers` entered: the
/// delivery's task goes there. Shutting `handlers` down mid-handler cancels that task; the
/// route answers 503 `HandlerCancelled`, not a panic.
#[test]
fn a_cancelled_handler_task_is_503_and_a_panicking_one_500() {
    use tower::ServiceExt;

    let request = |body: String| {
        axum::http::Request::post(ROUTE)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let body = signed_body(&example_with_status("6"), KEY);

    let handlers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let slow = Arc::new(Slow::new(Duration::from_secs(60)));
    let route = app(Verifier::new(common::key()), Arc::clone(&slow));
    let delivery = {
        let _entered = handlers.enter();
        let mut delivery = ByHand::new(route.oneshot(request(body.clone())));
        assert!(delivery.poll().is_pending(), "the handler is running");
        delivery
    };
    while slow.started() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    handlers.shutdown_background();
    let response = delivery.wait().unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.extensions().get::<Error>(),
        Some(&Error::HandlerCancelled)
    );
    assert_eq!(slow.finished(), 0);

    // The same route with a panicking handler, on a runtime that stays up: 500, the panic's
    // message kept.
    let handlers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let route = app(Verifier::new(common::key()), Panicking);
    let _entered = handlers.enter();
    let response = ByHand::new(route.oneshot(request(body))).wait().unwrap();
    assert_eq!(response.status(), 500);
    let error = response.extensions().get::<Error>().unwrap();
    assert_eq!(
        error.to_string(),
        "handler failed: the handler panicked: the handler's own bug"
    );
}

/// The extractor refuses as the route of its kind does: an approval request with `deny`, a
/// payout callback with the error's own text.
#[tokio::test]
async fn the_extractor_refuses_an_approval_with_deny_and_a_payout_with_its_error() {
    use axum::routing::post;
    use cregis_payout_callback::axum::VerifiedCallback;
    use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder};
    use cregis_payout_callback::{ApprovalRequest, PayoutCallback, Reply, Verifier};
    use tower::ServiceExt;

    let approvals = Verifier::new(common::key()).for_kind::<ApprovalRequest>();
    let payouts = Verifier::new(common::key());
    let approve = |VerifiedCallback(_): VerifiedCallback<ApprovalRequest>| async { Reply::APPROVE };
    let settle = |VerifiedCallback(_): VerifiedCallback<PayoutCallback>| async { Reply::ack() };
    let cases = [
        (
            axum::Router::new()
                .route("/", post(approve))
                .with_state(approvals),
            ApprovalBuilder::new().body_with_sign("0123456789abcdef0123456789abcdef"),
            ApprovalBuilder::new().body(&common::key()).unwrap(),
            "deny",
            "ok",
        ),
        (
            axum::Router::new()
                .route("/", post(settle))
                .with_state(payouts),
            CallbackBuilder::new().body_with_sign("0123456789abcdef0123456789abcdef"),
            CallbackBuilder::new().body(&common::key()).unwrap(),
            "signature does not match",
            "success",
        ),
    ];
    for (app, forged, signed, refused, answered) in cases {
        for (body, status, text) in [(forged, 401, refused), (signed, 200, answered)] {
            let request = axum::http::Request::post("/")
                .body(axum::body::Body::from(body))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status);
            let bytes = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(&bytes[..], text.as_bytes());
        }
    }
}
