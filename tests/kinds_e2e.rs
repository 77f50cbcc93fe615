//! The sub-address payout callback and the approval request over real HTTP on loopback,
//! through each adapter's routes: a withdrawal handled once by `callback_route` and through
//! the inbox, and `approval_route` answering `ok` only to an approval, `deny` on every failure.
#![cfg(all(feature = "sqlite", feature = "axum", feature = "actix-web"))]

mod common;
mod e2e;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::key;
use cregis_payout_callback::approval::{ApprovalHandler, Decision};
use cregis_payout_callback::error::BoxError;
use cregis_payout_callback::idempotency::{
    AsyncIdempotencyStore, Attempt, Claim, DEFAULT_CLAIM_LEASE, IdempotencyStore,
    MemoryIdempotencyStore, NoStore, Store,
};
use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox, Worker};
use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder, WithdrawalBuilder};
use cregis_payout_callback::{
    ApprovalRequest, AsyncCallbackHandler, CallbackKind, Notification, PayoutCallback, Verifier,
    WithdrawalCallback,
};
use e2e::{Answer, announce_huge_body, checks::assert_refused, post};

const CALLBACK: &str = "/cregis/withdrawal-callback";
const APPROVAL: &str = "/cregis/payout-approval";

#[derive(Debug, Clone, Copy)]
enum Adapter {
    Axum,
    ActixWeb,
}

const ADAPTERS: [Adapter; 2] = [Adapter::Axum, Adapter::ActixWeb];

/// Serves `route` at `path` with `adapter`'s server on an ephemeral loopback port, in the
/// background: axum on this runtime, actix-web on its own worker thread.
fn serve<A, B>(adapter: Adapter, path: &'static str, axum_route: A, actix_route: B) -> SocketAddr
where
    A: FnOnce() -> axum::routing::MethodRouter,
    B: Fn() -> actix_web::Route + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    match adapter {
        Adapter::Axum => {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(path, axum_route());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        Adapter::ActixWeb => {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().route(path, actix_route())
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run();
            actix_web::rt::spawn(server);
        }
    }
    addr
}

fn serve_callback<C, H>(
    adapter: Adapter,
    verifier: Verifier<Store<MemoryIdempotencyStore>, C>,
    handler: Arc<H>,
) -> SocketAddr
where
    C: Notification + Send + Sync + 'static,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    let (v, h) = (verifier.clone(), Arc::clone(&handler));
    serve(
        adapter,
        CALLBACK,
        move || cregis_payout_callback::axum::callback_route(v, h),
        move || {
            cregis_payout_callback::actix_web::callback_route(verifier.clone(), handler.clone())
        },
    )
}

fn serve_inbox<C>(
    adapter: Adapter,
    verifier: Verifier<NoStore, C>,
    inbox: SqliteInbox,
) -> SocketAddr
where
    C: Notification + Send + Sync + 'static,
{
    let (v, i) = (verifier.clone(), inbox.clone());
    serve(
        adapter,
        CALLBACK,
        move || cregis_payout_callback::axum::inbox_route(v, i),
        move || cregis_payout_callback::actix_web::inbox_route(verifier.clone(), inbox.clone()),
    )
}

fn serve_approval<H: ApprovalHandler + 'static>(
    adapter: Adapter,
    verifier: Verifier<Store<Flaky>, ApprovalRequest>,
    handler: Arc<H>,
) -> SocketAddr {
    let (v, h) = (verifier.clone(), Arc::clone(&handler));
    serve(
        adapter,
        APPROVAL,
        move || cregis_payout_callback::axum::approval_route(v, h),
        move || {
            cregis_payout_callback::actix_web::approval_route(verifier.clone(), handler.clone())
        },
    )
}

/// A withdrawal as Cregis sends it: documented order, a `memo`, and a field added after the
/// docs were written.
fn withdrawal(cid: i64) -> WithdrawalBuilder {
    WithdrawalBuilder::new()
        .cid(cid)
        .currency("XRP")
        .string("memo", "104917")
        .string("network_fee", "0.000012")
}

/// The withdrawal `body` carries, as a verifier hands it to a handler.
fn as_verified(body: &str) -> WithdrawalCallback {
    let verifier = Verifier::new(key()).for_kind::<WithdrawalCallback>();
    verifier.verify_and_parse(body.as_bytes()).unwrap()
}

/// A withdrawal handler that keeps what it was handed.
#[derive(Debug, Default)]
struct Withdrawals(Mutex<Vec<WithdrawalCallback>>);

impl Withdrawals {
    fn handled(&self) -> Vec<WithdrawalCallback> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<WithdrawalCallback> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.handled().len() < n {
            assert!(Instant::now() < deadline, "{:?}", self.handled());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.handled()
    }
}

impl AsyncCallbackHandler<WithdrawalCallback> for Withdrawals {
    type Error = Infallible;

    async fn handle(&self, callback: &WithdrawalCallback) -> Result<(), Infallible> {
        self.0.lock().unwrap().push(callback.clone());
        Ok(())
    }
}

/// Posts a body of another kind and asserts the route refuses it as such.
async fn assert_wrong_kind(url: &str, body: String, found: &str, expected: &str) {
    let answer = post(url, body).await;
    assert_refused(&answer, 400);
    assert_eq!(
        answer.body,
        format!("body is a {found} callback, not a {expected} callback: check the callback_url")
    );
}

#[actix_web::test]
async fn a_withdrawal_is_handled_once_by_each_adapter_and_a_payout_body_is_refused() {
    for adapter in ADAPTERS {
        let handled = Arc::new(Withdrawals::default());
        let verifier = e2e::memory_verifier(DEFAULT_CLAIM_LEASE).for_kind::<WithdrawalCallback>();
        let addr = serve_callback(adapter, verifier, Arc::clone(&handled));
        let url = format!("http://{addr}{CALLBACK}");
        let sent = withdrawal(1391751691788288);
        let body = sent.body(&key()).unwrap();
        let answer = post(&url, body.clone()).await;
        assert_answered(&answer, (200, "success"), adapter);
        // A re-push: same fact, fresh nonce, timestamp and sign.
        let again = sent.clone().nonce("q7w8e9").timestamp(1686814999000);
        let answer = post(&url, again.body(&key()).unwrap()).await;
        assert_answered(&answer, (200, "success"), adapter);

        let payout = CallbackBuilder::new().body(&key()).unwrap();
        assert_wrong_kind(&url, payout, "payout", "withdrawal").await;
        let approval = ApprovalBuilder::new().body(&key()).unwrap();
        assert_wrong_kind(&url, approval, "approval", "withdrawal").await;

        let handled = handled.handled();
        assert_eq!(handled, vec![as_verified(&body)], "{adapter:?}");
        assert_eq!(handled[0].memo.as_deref(), Some("104917"));
        assert_eq!(handled[0].extra["network_fee"], "0.000012");

        // The wallet payout route refuses the other two kinds the same way.
        let settled = Arc::new(AtomicUsize::new(0));
        let settle = {
            let settled = Arc::clone(&settled);
            move |_: &PayoutCallback| {
                settled.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok::<(), Infallible>(()))
            }
        };
        let payouts = e2e::memory_verifier(DEFAULT_CLAIM_LEASE);
        let addr = serve_callback(adapter, payouts, Arc::new(settle));
        let url = format!("http://{addr}{CALLBACK}");
        assert_wrong_kind(&url, body, "withdrawal", "payout").await;
        let approval = ApprovalBuilder::new().body(&key()).unwrap();
        assert_wrong_kind(&url, approval, "approval", "payout").await;
        assert_eq!(settled.load(Ordering::SeqCst), 0, "{adapter:?}");
    }
}

#[actix_web::test]
async fn a_withdrawal_through_each_inbox_route_runs_once_in_a_withdrawal_worker() {
    for adapter in ADAPTERS {
        let dir = tempfile::tempdir().unwrap();
        let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
            .await
            .unwrap();
        let verifier = Verifier::new(key()).for_kind::<WithdrawalCallback>();
        let addr = serve_inbox(adapter, verifier, inbox.clone());
        let url = format!("http://{addr}{CALLBACK}");
        let sent = withdrawal(1391751691788301);
        let body = sent.body(&key()).unwrap();
        for body in [
            body.clone(),
            sent.clone().nonce("z1x2c3").body(&key()).unwrap(),
        ] {
            let answer = post(&url, body).await;
            assert_answered(&answer, (200, "success"), adapter);
        }
        let payout = CallbackBuilder::new().body(&key()).unwrap();
        assert_wrong_kind(&url, payout, "payout", "withdrawal").await;

        let handled = Arc::new(Withdrawals::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(inbox.clone(), Arc::clone(&handled));
        let running = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        assert_eq!(handled.wait_for(1).await, vec![as_verified(&body)]);
        stop.send(()).unwrap();
        running.await.unwrap();
        assert_eq!(handled.handled().len(), 1, "{adapter:?}");
        let done = inbox.list(&[EntryState::Done]).await.unwrap();
        assert_eq!(done.len(), 1, "{adapter:?}: {done:?}");
        assert!(inbox.list(&[EntryState::Pending]).await.unwrap().is_empty());
    }
}

/// How an [`Asking`] handler decides.
#[derive(Debug, Clone, Copy)]
enum How {
    Approve,
    /// Approves, after this long.
    Slowly(Duration),
    Panic,
}

/// An approval handler that counts how often it was asked.
#[derive(Debug)]
struct Asking {
    how: How,
    asked: AtomicUsize,
}

impl Asking {
    fn new(how: How) -> Arc<Asking> {
        Arc::new(Asking {
            how,
            asked: AtomicUsize::new(0),
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl ApprovalHandler for Asking {
    type Error = Infallible;

    fn decide(
        &self,
        _: &ApprovalRequest,
    ) -> impl Future<Output = Result<Decision, Infallible>> + Send {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let how = self.how;
        async move {
            match how {
                How::Approve => Ok(Decision::Approve),
                How::Slowly(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(Decision::Approve)
                }
                How::Panic => panic!("the approval handler's own bug"),
            }
        }
    }
}

/// What the idempotency store of a [`Flaky`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storing {
    Works,
    /// The database is down: no claim can be made.
    ClaimFails,
    /// Claims work, but a decision cannot be recorded (disk full).
    RecordFails,
    /// The database never answers a claim (a pool with no free connection).
    ClaimHangs,
}

/// The memory store, or one that fails as `storing` says.
#[derive(Debug)]
struct Flaky {
    storing: Storing,
    memory: MemoryIdempotencyStore,
}

impl AsyncIdempotencyStore for Flaky {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        match self.storing {
            Storing::ClaimFails => Err("connection refused".into()),
            Storing::ClaimHangs => std::future::pending().await,
            _ => IdempotencyStore::claim(&self.memory, attempt),
        }
    }

    async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        match self.storing {
            Storing::Works => IdempotencyStore::complete(&self.memory, attempt),
            _ => Err("disk full".into()),
        }
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        IdempotencyStore::release(&self.memory, attempt)
    }
}

fn approval_verifier(
    storing: Storing,
    timeout: Duration,
) -> Verifier<Store<Flaky>, ApprovalRequest> {
    Verifier::builder(key())
        .idempotency(Flaky {
            storing,
            memory: MemoryIdempotencyStore::default(),
        })
        .approval_timeout(timeout)
        .build()
        .for_kind::<ApprovalRequest>()
}

#[track_caller]
fn assert_answered(answer: &Answer, expected: (u16, &str), adapter: Adapter) {
    assert_eq!(
        (answer.status, answer.body.as_str()),
        expected,
        "{adapter:?}"
    );
}

#[track_caller]
fn assert_denied(answer: &Answer, status: u16, what: &str) {
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (status, "deny"),
        "{what}"
    );
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[actix_web::test]
async fn each_approval_route_answers_ok_once_decided_and_deny_to_every_bad_request() {
    for adapter in ADAPTERS {
        let asking = Asking::new(How::Approve);
        let verifier = approval_verifier(Storing::Works, Duration::from_secs(3));
        let addr = serve_approval(adapter, verifier, Arc::clone(&asking));
        let url = format!("http://{addr}{APPROVAL}");
        let request = ApprovalBuilder::new().cid(1391751691788400).amount("250.5");
        let answer = post(&url, request.body(&key()).unwrap()).await;
        assert_answered(&answer, (200, "ok"), adapter);
        // Asked again (fresh nonce and timestamp): the same decision, the handler not asked.
        let again = request.clone().nonce("k3j4h5").timestamp(1687850999999);
        let answer = post(&url, again.body(&key()).unwrap()).await;
        assert_answered(&answer, (200, "ok"), adapter);
        assert_eq!(asking.asked(), 1, "{adapter:?}");
        // Other content under the same cid: denied, never approved on the first decision.
        let other = request.clone().amount("25000.5").body(&key()).unwrap();
        assert_denied(&post(&url, other).await, 409, "other content");

        let forged = request.body_with_sign("0123456789abcdef0123456789abcdef");
        let wrong_key = request.body(&common::api_key("fake-attacker-key")).unwrap();
        let withdrawal = withdrawal(1391751691788401).body(&key()).unwrap();
        let payout = CallbackBuilder::new().body(&key()).unwrap();
        for (body, status, what) in [
            (forged, 401, "forged sign"),
            (wrong_key, 401, "signed with another key"),
            (request.unsigned_body(), 401, "missing sign"),
            (
                r#"{"pid":1382528827416576,"#.to_owned(),
                400,
                "malformed json",
            ),
            (String::new(), 400, "empty body"),
            (withdrawal, 400, "a withdrawal callback"),
            (payout, 400, "a payout callback"),
        ] {
            assert_denied(&post(&url, body).await, status, what);
        }
        let status_line = announce_huge_body(addr, APPROVAL).await;
        assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
        // What the `deny` of a body of another kind carries, for the host's logs: WrongKind.
        let service = cregis_payout_callback::service::CregisService::approvals(
            approval_verifier(Storing::Works, Duration::from_secs(3)),
            Arc::clone(&asking),
        );
        let wrong = axum::http::Request::post(APPROVAL)
            .body(crate::withdrawal(1391751691788402).body(&key()).unwrap())
            .unwrap();
        let response = service.handle(wrong).await;
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.extensions().get::<cregis_payout_callback::Error>(),
            Some(&cregis_payout_callback::Error::WrongKind {
                expected: CallbackKind::Approval,
                found: CallbackKind::Withdrawal,
            })
        );
        assert_eq!(
            asking.asked(),
            1,
            "{adapter:?}: only the authentic request was asked"
        );
    }
}

#[actix_web::test]
async fn each_approval_route_denies_a_handler_past_its_timeout_a_panic_and_a_failing_store() {
    let timeout = Duration::from_millis(200);
    for adapter in ADAPTERS {
        // Past the timeout: 500 deny at the timeout, not when the handler would have ended.
        let slow = Asking::new(How::Slowly(Duration::from_secs(3)));
        let addr = serve_approval(adapter, approval_verifier(Storing::Works, timeout), slow);
        let url = format!("http://{addr}{APPROVAL}");
        let request = ApprovalBuilder::new().cid(1391751691788500);
        let started = Instant::now();
        assert_denied(
            &post(&url, request.body(&key()).unwrap()).await,
            500,
            "timeout",
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // A panic: 500 deny, and the server goes on answering.
        let panicking = Asking::new(How::Panic);
        let addr = serve_approval(
            adapter,
            approval_verifier(Storing::Works, timeout),
            panicking,
        );
        let url = format!("http://{addr}{APPROVAL}");
        assert_denied(
            &post(&url, request.body(&key()).unwrap()).await,
            500,
            "panic",
        );
        assert_denied(&post(&url, "not json").await, 400, "after the panic");

        // A store that cannot claim: denied without asking the handler.
        let asking = Asking::new(How::Approve);
        let verifier = approval_verifier(Storing::ClaimFails, timeout);
        let addr = serve_approval(adapter, verifier, Arc::clone(&asking));
        let url = format!("http://{addr}{APPROVAL}");
        assert_denied(
            &post(&url, request.body(&key()).unwrap()).await,
            500,
            "claim fails",
        );
        assert_eq!(asking.asked(), 0);

        // A store that never answers: denied once the timeout and the half second left to
        // record a decision have passed, without asking the handler.
        let asking = Asking::new(How::Approve);
        let verifier = approval_verifier(Storing::ClaimHangs, timeout);
        let addr = serve_approval(adapter, verifier, Arc::clone(&asking));
        let url = format!("http://{addr}{APPROVAL}");
        let started = Instant::now();
        assert_denied(
            &post(&url, request.body(&key()).unwrap()).await,
            500,
            "claim hangs",
        );
        let took = started.elapsed();
        assert!(took >= timeout && took < Duration::from_secs(2), "{took:?}");
        assert_eq!(asking.asked(), 0);

        // A store that cannot record the approval: the handler approved, the answer is deny.
        let asking = Asking::new(How::Approve);
        let verifier = approval_verifier(Storing::RecordFails, timeout);
        let addr = serve_approval(adapter, verifier, Arc::clone(&asking));
        let url = format!("http://{addr}{APPROVAL}");
        assert_denied(
            &post(&url, request.body(&key()).unwrap()).await,
            500,
            "record fails",
        );
        assert_eq!(asking.asked(), 1);
    }
}
