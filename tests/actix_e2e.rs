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
use actix_web::dev::Service;
use actix_web::{App, HttpServer};
use common::{KEY, example_with_status, signed_body};
use cregis_payout_callback::{
    AsyncCallbackHandler, CallbackStatus, Verifier,
    idempotency::{DEFAULT_CLAIM_LEASE, MemoryIdempotencyStore, Store},
    verifier::DEFAULT_MAX_BODY_BYTES,
};
use cregis_payout_callback::{Error, actix_web::callback_route};
use e2e::{ByHand, Failing, Panicking, Seen, Slow, checks, post};
use example::{Ledger, ROUTE, server};

/// Runs the example's server on an ephemeral loopback port, in the background, as its `main`
/// does (with the memory idempotency store).
fn serve<H: AsyncCallbackHandler + Send + 'static>(handler: Arc<H>) -> (SocketAddr, ServerHandle) {
    let verifier = e2e::memory_verifier(DEFAULT_CLAIM_LEASE);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server(listener, verifier, handler).unwrap();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

/// A server like the example's, behind a logging middleware that records each response's
/// error.
fn serve_seen<H: AsyncCallbackHandler + Send + 'static>(
    handler: Arc<H>,
) -> (SocketAddr, ServerHandle, Seen) {
    serve_seen_with(e2e::memory_verifier(DEFAULT_CLAIM_LEASE), handler)
}

/// [`serve_seen`] with `verifier`.
fn serve_seen_with<H: AsyncCallbackHandler + Send + 'static>(
    verifier: Verifier<Store<MemoryIdempotencyStore>>,
    handler: Arc<H>,
) -> (SocketAddr, ServerHandle, Seen) {
    let seen = Seen::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            App::new()
                .wrap_fn(move |request, service| {
                    let response = service.call(request);
                    let seen = seen.clone();
                    async move {
                        let response = response.await?;
                        seen.record(response.response().extensions().get::<Error>());
                        Ok(response)
                    }
                })
                .route(
                    ROUTE,
                    callback_route(verifier.clone(), Arc::clone(&handler)),
                )
        }
    };
    let server = HttpServer::new(app)
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle, seen)
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
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn a_client_disconnect_does_not_cancel_the_handler() {
    let slow = Arc::new(Slow::new(Duration::from_millis(300)));
    let (addr, server) = serve(Arc::clone(&slow));
    checks::disconnect_does_not_cancel_the_handler(addr, ROUTE, &slow).await;
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn forged_malformed_and_oversized_deliveries_are_refused() {
    let ledger = Arc::new(Ledger::default());
    let (addr, server) = serve(Arc::clone(&ledger));
    checks::bad_deliveries_are_refused(addr, ROUTE, DEFAULT_MAX_BODY_BYTES).await;
    assert_eq!(ledger.status("1e0fb3a0a9454ad8928d26b592e8b3c7"), None);
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn a_failing_handler_gets_500_and_a_re_push_runs_it_again() {
    let failing = Arc::new(Failing::default());
    let (addr, server) = serve(Arc::clone(&failing));
    checks::failing_handler_gets_500(addr, ROUTE, &failing).await;
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn a_handler_past_its_claim_lease_is_stopped_and_never_runs_twice_at_once() {
    let lease = Duration::from_millis(300);
    let slow = Arc::new(Slow::new(Duration::from_secs(2)));
    let (addr, server, seen) = serve_seen_with(e2e::memory_verifier(lease), Arc::clone(&slow));
    checks::handler_past_its_lease_is_stopped(addr, ROUTE, &slow, &seen, lease).await;
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn a_panicking_handler_gets_500() {
    let (addr, server, seen) = serve_seen(Arc::new(Panicking));
    checks::panicking_handler_gets_500(addr, ROUTE, &seen).await;
    e2e::stop_actix(server).await;
}

#[actix_web::test]
async fn a_client_gone_mid_body_is_an_unreadable_body() {
    let slow = Arc::new(Slow::new(Duration::from_millis(10)));
    let (addr, server, seen) = serve_seen(Arc::clone(&slow));
    checks::a_body_cut_short_is_unreadable(addr, ROUTE, &seen, &slow).await;
    e2e::stop_actix(server).await;
}

/// actix-web spawns the delivery's task on the worker's local task set. Here the route's
/// future is polled by hand beside that set, which is dropped mid-handler (as a worker that
/// shuts down drops its tasks): the route answers 503 `HandlerCancelled`, not a panic.
#[test]
fn a_cancelled_handler_task_is_503() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tasks = tokio::task::LocalSet::new();
    let slow = Arc::new(Slow::new(Duration::from_secs(60)));
    let app = App::new().route(
        ROUTE,
        callback_route(Verifier::new(common::key()), Arc::clone(&slow)),
    );
    let service = runtime.block_on(tasks.run_until(actix_web::test::init_service(app)));
    let request = actix_web::test::TestRequest::post()
        .uri(ROUTE)
        .insert_header(("content-type", "application/json"))
        .set_payload(signed_body(&example_with_status("6"), KEY))
        .to_request();
    let delivery = {
        // The handler's task is spawned on the worker's tokio runtime.
        let _entered = (runtime.enter(), tasks.enter());
        let mut delivery = ByHand::new(service.call(request));
        assert!(
            delivery.poll().is_pending(),
            "the handler's task is spawned"
        );
        delivery
    };
    runtime.block_on(tasks.run_until(async {
        while slow.started() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    // The worker shuts down: its runtime, and the task with it, is gone.
    drop(tasks);
    drop(runtime);
    let response = delivery.wait().unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.response().extensions().get::<Error>(),
        Some(&Error::HandlerCancelled)
    );
    assert_eq!(slow.finished(), 0);
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
    e2e::stop_actix(server).await;
}
