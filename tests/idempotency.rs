//! Idempotency that never wedges a payout: leases on an injected clock, conflicting
//! re-deliveries, async stores, and every store operation in every state.

mod common;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{DOC_EXAMPLE, KEY, assert_handled, example_with_status, key, signed_body, with_field};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::{
    CallbackStatus, Error, PayoutCallback, Reply, Verifier,
    error::{BoxError, Cause, StoreOperation},
    idempotency,
    idempotency::{
        AsyncStoreSlot, Attempt, Claim, DEFAULT_CLAIM_LEASE, DeliveryKey, Fingerprint,
        IdempotencyStore, MemoryIdempotencyStore, SpawnBlocking, Store, SyncStoreSlot,
    },
    testing::{CallbackBuilder, ManualClock},
};

const LEASE: Duration = Duration::from_secs(60);

/// The moment the first delivery arrives.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1687850657960)
}

/// The documented example with status 6, signed: the fact 1382528827416576/1391751691788288/6.
fn success_body() -> String {
    signed_body(&example_with_status("6"), KEY)
}

const SUCCESS_KEY: DeliveryKey = DeliveryKey::new(
    CallbackKind::Payout,
    1382528827416576,
    1391751691788288,
    Fact::Status(CallbackStatus::TransactionSuccessful),
);

/// A handler that counts its calls and succeeds.
fn counting(calls: &AtomicUsize) -> impl Fn(&PayoutCallback) -> Result<(), String> + '_ {
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn verifier_with(
    store: &Arc<MemoryIdempotencyStore>,
    clock: &ManualClock,
) -> Verifier<Store<Arc<MemoryIdempotencyStore>>> {
    Verifier::builder(common::key())
        .idempotency(Arc::clone(store))
        .claim_lease(LEASE)
        .clock(clock.clone())
        .build()
}

/// `verifier`, with `clock` set to `now`.
fn at<'v, S>(verifier: &'v Verifier<S>, clock: &ManualClock, now: SystemTime) -> &'v Verifier<S> {
    clock.set(now);
    verifier
}

#[track_caller]
fn assert_duplicate(reply: &Reply) {
    assert!(reply.is_ack() && reply.is_duplicate(), "{reply:?}");
    assert_eq!((reply.body(), reply.error()), ("success", None));
}

/// Delivers `body` at `at` with a counting handler; returns the reply and whether the handler
/// ran.
fn deliver_at<S: SyncStoreSlot>(
    verifier: &Verifier<S>,
    clock: &ManualClock,
    body: &str,
    now: SystemTime,
) -> (Reply, bool) {
    let calls = AtomicUsize::new(0);
    let reply = at(verifier, clock, now).process(body.as_bytes(), &counting(&calls));
    (reply, calls.load(Ordering::SeqCst) == 1)
}

// ---- Leases, through the verifier, on an injected clock ------------------------------------

#[test]
fn a_panicked_claim_holds_exactly_for_its_lease_then_the_next_delivery_takes_it_over() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    let body = success_body();
    let panicking = |_: &PayoutCallback| -> Result<(), String> { panic!("handler bug") };
    let result = catch_unwind(AssertUnwindSafe(|| {
        at(&verifier, &clock, t0()).process(body.as_bytes(), &panicking)
    }));
    assert!(result.is_err());

    let claims = store.claims_in_progress();
    assert_eq!(claims.len(), 1);
    assert_eq!((claims[0].key, claims[0].started), (SUCCESS_KEY, t0()));
    assert_eq!(claims[0].age(t0() + LEASE), LEASE);

    // At the lease's end the claim still holds: 409, handler not called.
    let (reply, ran) = deliver_at(&verifier, &clock, &body, t0() + LEASE);
    assert_eq!(
        (reply.error(), ran),
        (Some(&Error::DeliveryInProgress), false)
    );
    // Just past it, the delivery takes the claim over and is handled.
    let just_past = t0() + LEASE + Duration::from_nanos(1);
    let (reply, ran) = deliver_at(&verifier, &clock, &body, just_past);
    assert_handled(&reply);
    assert!(ran);
    // ...and says so: the panicked attempt's effect is unknown.
    assert!(reply.took_over());
    // Then it is done: a duplicate, whenever it comes.
    let (reply, ran) = deliver_at(&verifier, &clock, &body, just_past + LEASE * 100);
    assert_duplicate(&reply);
    assert!(!ran);
    assert!(store.claims_in_progress().is_empty());
}

#[test]
fn a_dropped_async_delivery_recovers_after_its_lease() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    let body = success_body();
    let never = |_: &PayoutCallback| std::future::pending::<Result<(), String>>();
    {
        let mut delivery = pin!(at(&verifier, &clock, t0()).process_async(body.as_bytes(), &never));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(delivery.as_mut().poll(&mut cx).is_pending());
    }
    let (reply, ran) = deliver_at(&verifier, &clock, &body, t0() + LEASE);
    assert_eq!((reply.status_code(), ran), (409, false));
    let (reply, ran) = deliver_at(
        &verifier,
        &clock,
        &body,
        t0() + LEASE + Duration::from_nanos(1),
    );
    assert_handled(&reply);
    assert!(ran);
}

#[test]
fn the_lease_defaults_to_five_minutes() {
    let clock = ManualClock::new(t0());
    assert_eq!(DEFAULT_CLAIM_LEASE, Duration::from_secs(300));
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .clock(clock.clone())
        .build();
    let body = success_body();
    let never = |_: &PayoutCallback| std::future::pending::<Result<(), String>>();
    {
        let mut delivery = pin!(at(&verifier, &clock, t0()).process_async(body.as_bytes(), &never));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(delivery.as_mut().poll(&mut cx).is_pending());
    }
    let at_end = t0() + Duration::from_secs(300);
    assert_eq!(
        deliver_at(&verifier, &clock, &body, at_end).0.status_code(),
        409
    );
    let past = at_end + Duration::from_nanos(1);
    let (reply, ran) = deliver_at(&verifier, &clock, &body, past);
    assert_handled(&reply);
    assert!(ran);
}

/// A store around the memory store whose `complete` fails.
struct CompleteFails(MemoryIdempotencyStore);

impl IdempotencyStore for CompleteFails {
    fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        self.0.claim(attempt)
    }

    fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
        Err("disk full".into())
    }

    fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.0.release(attempt)
    }
}

#[test]
fn a_failed_complete_is_acknowledged_and_its_claim_lasts_until_the_lease_ends() {
    let clock = ManualClock::new(t0());
    let verifier = Verifier::builder(common::key())
        .idempotency(CompleteFails(MemoryIdempotencyStore::default()))
        .claim_lease(LEASE)
        .clock(clock.clone())
        .build();
    let body = success_body();
    let (reply, ran) = deliver_at(&verifier, &clock, &body, t0());
    assert!(ran && reply.is_ack() && reply.body() == "success");
    assert_eq!(
        reply.error(),
        Some(&Error::Store {
            operation: StoreOperation::Complete,
            cause: Cause::new("disk full"),
        })
    );
    // Not recorded as done: the claim holds off re-deliveries for its lease...
    let (reply, ran) = deliver_at(&verifier, &clock, &body, t0() + LEASE);
    assert_eq!((reply.status_code(), ran), (409, false));
    // ...and after it, a re-push runs the handler again (the documented cost).
    let (reply, ran) = deliver_at(&verifier, &clock, &body, t0() + LEASE * 2);
    assert!(ran && reply.is_ack());
}

// ---- Conflicting re-deliveries -----------------------------------------------------------

#[test]
fn the_same_fact_with_other_content_is_a_conflict_neither_handled_nor_acknowledged() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    assert_handled(&deliver_at(&verifier, &clock, &success_body(), t0()).0);

    for (field, raw) in [
        ("amount", r#""2.2""#),
        ("address", r#""TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE""#),
        (
            "txid",
            r#""0000000000000000000000000000000000000000000000000000000000000000""#,
        ),
        ("memo", r#""extra memo""#),
    ] {
        let other = signed_body(&with_field(&example_with_status("6"), field, raw), KEY);
        let (reply, ran) = deliver_at(&verifier, &clock, &other, t0() + Duration::from_secs(1));
        assert!(!ran, "{field}");
        assert_eq!(reply.status_code(), 409, "{field}");
        assert_eq!(
            reply.error(),
            Some(&Error::ConflictingDelivery { key: SUCCESS_KEY })
        );
        assert_eq!(
            reply.body(),
            "delivery payout/1382528827416576/1391751691788288/6 was already received with different content"
        );
        assert!(!reply.is_ack());
    }
}

#[test]
fn a_re_push_with_fresh_nonce_timestamp_or_number_spelling_is_the_same_content() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    assert_handled(&deliver_at(&verifier, &clock, &success_body(), t0()).0);
    let fresh = with_field(&example_with_status("6"), "nonce", r#""zzzzzz""#);
    let fresh = with_field(&fresh, "timestamp", "1787850657960");
    // Some Java back ends send 64-bit integers as strings: the signed text is the same.
    let fresh = with_field(&fresh, "cid", r#""1391751691788288""#);
    let (reply, ran) = deliver_at(
        &verifier,
        &clock,
        &signed_body(&fresh, KEY),
        t0() + LEASE * 10,
    );
    assert_duplicate(&reply);
    assert!(!ran);
}

#[test]
fn a_fact_first_delivered_from_the_query_is_the_same_content_as_its_callback() {
    // The reconciler delivers a fact as Cregis's query states it: the documented fields
    // only, and no `block_time` where the query said 0. The callback that arrives later
    // carries an undocumented field and `"block_time":0`: still the same fact, a duplicate.
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    let from_query = CallbackBuilder::new()
        .status(CallbackStatus::SignatureRejected)
        .remove("txid")
        .remove("block_height")
        .remove("block_time");
    assert_handled(&deliver_at(&verifier, &clock, &from_query.body(&key()).unwrap(), t0()).0);
    let callback = from_query
        .clone()
        .raw("block_time", "0")
        .string("network_fee", "0.35")
        .nonce("q8k2md")
        .timestamp(1_787_850_657_960);
    let (reply, ran) = deliver_at(
        &verifier,
        &clock,
        &callback.body(&key()).unwrap(),
        t0() + Duration::from_secs(1),
    );
    assert_duplicate(&reply);
    assert!(!ran);
    // A documented field that differs is still a conflict.
    let other = from_query.amount("2.2").body(&key()).unwrap();
    let (reply, ran) = deliver_at(&verifier, &clock, &other, t0() + Duration::from_secs(2));
    assert_eq!((reply.status_code(), ran), (409, false));
}

#[test]
fn other_content_while_the_first_is_in_progress_is_a_conflict_too() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    let other = signed_body(
        &with_field(&example_with_status("6"), "amount", r#""9.9""#),
        KEY,
    );
    let calls = AtomicUsize::new(0);
    let reentrant = |_: &PayoutCallback| -> Result<(), String> {
        let reply = at(&verifier, &clock, t0()).process(other.as_bytes(), &counting(&calls));
        assert_eq!(
            reply.error(),
            Some(&Error::ConflictingDelivery { key: SUCCESS_KEY })
        );
        Ok(())
    };
    let reply = at(&verifier, &clock, t0()).process(success_body().as_bytes(), &reentrant);
    assert_handled(&reply);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---- Every store operation in every state ---------------------------------------------------

const FP: Fingerprint = Fingerprint::from_bytes([1; 16]);
const OTHER_FP: Fingerprint = Fingerprint::from_bytes([2; 16]);

fn attempt_at(fingerprint: Fingerprint, started: SystemTime) -> Attempt {
    Attempt::new(SUCCESS_KEY, fingerprint, started, LEASE)
}

/// What a fresh attempt with the same content finds at `at` (claiming it if it can, so call
/// it last).
fn probe(store: &MemoryIdempotencyStore, at: SystemTime) -> Claim {
    store.claim(&attempt_at(FP, at)).unwrap()
}

/// Brings a fresh store's key to `state`, held by the returned attempt (started at t0).
fn store_in(state: &str) -> (MemoryIdempotencyStore, Attempt) {
    let store = MemoryIdempotencyStore::default();
    let holder = attempt_at(FP, t0());
    match state {
        "unknown" => {}
        "in progress" => assert_eq!(store.claim(&holder).unwrap(), Claim::Claimed),
        "done" => {
            assert_eq!(store.claim(&holder).unwrap(), Claim::Claimed);
            store.complete(&holder).unwrap();
        }
        _ => unreachable!(),
    }
    (store, holder)
}

const LIVE: Duration = LEASE;
const EXPIRED: Duration = LEASE.checked_add(Duration::from_nanos(1)).unwrap();

#[test]
fn claim_in_every_state() {
    // unknown
    let (store, _) = store_in("unknown");
    assert_eq!(probe(&store, t0()), Claim::Claimed);
    // in progress, lease live
    let (store, _) = store_in("in progress");
    assert_eq!(
        store.claim(&attempt_at(OTHER_FP, t0() + LIVE)).unwrap(),
        Claim::Conflict
    );
    assert_eq!(probe(&store, t0() + LIVE), Claim::InProgress);
    // in progress, lease expired: the same content takes it over; other content does not
    let (store, holder) = store_in("in progress");
    let late = t0() + EXPIRED;
    assert_eq!(
        store.claim(&attempt_at(OTHER_FP, late)).unwrap(),
        Claim::Conflict
    );
    let taker = attempt_at(FP, late);
    assert_eq!(store.claim(&taker).unwrap(), Claim::TakenOver);
    assert_eq!(store.claims_in_progress()[0].started, late);
    assert_ne!(taker.id, holder.id);
    // done
    let (store, _) = store_in("done");
    assert_eq!(
        store.claim(&attempt_at(OTHER_FP, t0())).unwrap(),
        Claim::Conflict
    );
    assert_eq!(probe(&store, t0() + LEASE * 1000), Claim::AlreadyDone);
}

#[test]
fn complete_in_every_state() {
    // unknown: recorded as done (the effect happened)
    let (store, holder) = store_in("unknown");
    store.complete(&holder).unwrap();
    assert_eq!(probe(&store, t0()), Claim::AlreadyDone);
    // in progress, by its holder or by an attempt whose lease was taken over
    let (store, holder) = store_in("in progress");
    store.complete(&holder).unwrap();
    assert_eq!(probe(&store, t0()), Claim::AlreadyDone);
    let (store, stale) = store_in("in progress");
    let taker = attempt_at(FP, t0() + EXPIRED);
    assert_eq!(store.claim(&taker).unwrap(), Claim::TakenOver);
    store.complete(&stale).unwrap();
    assert_eq!(probe(&store, t0() + EXPIRED), Claim::AlreadyDone);
    assert!(store.claims_in_progress().is_empty());
    // done: stays done
    let (store, holder) = store_in("done");
    store.complete(&holder).unwrap();
    assert_eq!(probe(&store, t0()), Claim::AlreadyDone);
}

#[test]
fn release_in_every_state() {
    // unknown: nothing
    let (store, holder) = store_in("unknown");
    store.release(&holder).unwrap();
    assert!(store.claims_in_progress().is_empty());
    assert_eq!(probe(&store, t0()), Claim::Claimed);
    // in progress: its holder frees it; another attempt does not
    let (store, holder) = store_in("in progress");
    store.release(&attempt_at(FP, t0())).unwrap();
    assert_eq!(probe(&store, t0()), Claim::InProgress);
    store.release(&holder).unwrap();
    assert_eq!(probe(&store, t0()), Claim::Claimed);
    // expired and taken over: the stale holder's release leaves the new claim alone
    let (store, stale) = store_in("in progress");
    let taker = attempt_at(FP, t0() + EXPIRED);
    assert_eq!(store.claim(&taker).unwrap(), Claim::TakenOver);
    store.release(&stale).unwrap();
    assert_eq!(probe(&store, t0() + EXPIRED), Claim::InProgress);
    store.release(&taker).unwrap();
    assert_eq!(probe(&store, t0() + EXPIRED), Claim::Claimed);
    // expired, not taken over: its holder may still release it
    let (store, holder) = store_in("in progress");
    store.release(&holder).unwrap();
    assert!(store.claims_in_progress().is_empty());
    // done: nothing
    let (store, holder) = store_in("done");
    store.release(&holder).unwrap();
    assert_eq!(probe(&store, t0()), Claim::AlreadyDone);
}

#[test]
fn the_host_lists_stuck_claims_and_releases_one_by_key() {
    let (store, _) = store_in("in progress");
    let claims = store.claims_in_progress();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].key, SUCCESS_KEY);
    assert_eq!(claims[0].lease_until, t0() + LEASE);
    assert!(!claims[0].is_expired(t0() + LIVE));
    assert!(claims[0].is_expired(t0() + EXPIRED));
    assert!(store.release_claim(&SUCCESS_KEY));
    assert!(!store.release_claim(&SUCCESS_KEY));
    assert_eq!(probe(&store, t0()), Claim::Claimed);
    // A key already handled is not released.
    let (store, _) = store_in("done");
    assert!(!store.release_claim(&SUCCESS_KEY));
    assert_eq!(probe(&store, t0()), Claim::AlreadyDone);
}

#[test]
fn verifier_clones_share_their_store() {
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    let clone = verifier.clone();
    assert_handled(&deliver_at(&clone, &clock, &success_body(), t0()).0);
    assert_duplicate(&deliver_at(&verifier, &clock, &success_body(), t0()).0);
}

// ---- Async stores -------------------------------------------------------------------------

/// The memory store behind an async interface that yields to the executor before and after
/// every operation, as a network round trip would.
#[derive(Default)]
struct YieldingStore {
    inner: MemoryIdempotencyStore,
    operations: AtomicUsize,
}

impl YieldingStore {
    async fn round_trip<T>(&self, operation: impl FnOnce() -> T) -> T {
        self.operations.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        let result = operation();
        tokio::task::yield_now().await;
        result
    }
}

// Named by its path rather than imported: the memory store implements both store traits, so
// with both in scope its method calls would be ambiguous.
impl idempotency::AsyncIdempotencyStore for YieldingStore {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        self.round_trip(|| IdempotencyStore::claim(&self.inner, attempt))
            .await
    }

    async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.round_trip(|| IdempotencyStore::complete(&self.inner, attempt))
            .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.round_trip(|| IdempotencyStore::release(&self.inner, attempt))
            .await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_store_does_not_block_a_current_thread_runtime() {
    let store = Arc::new(YieldingStore::default());
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    // Another task that counts how often it gets to run.
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    let calls = AtomicUsize::new(0);
    let handler = |_: &PayoutCallback| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), String>(()) }
    };
    let before = ticks.load(Ordering::SeqCst);
    let body = success_body();
    let reply = verifier.process_async(body.as_bytes(), &handler).await;
    let during = ticks.load(Ordering::SeqCst) - before;
    assert_handled(&reply);
    // claim and complete, each yielding twice: the other task ran meanwhile.
    assert_eq!(store.operations.load(Ordering::SeqCst), 2);
    assert!(during >= 2, "the other task ran {during} times");
    assert_duplicate(&verifier.process_async(body.as_bytes(), &handler).await);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    ticker.abort();
}

// A synchronous `process` with an async-only store no longer compiles (0.1 answered 500 on
// every request); the `compile_fail` example on `idempotency::SyncStoreSlot` shows it.

/// A blocking store that records the thread each operation ran on.
#[derive(Default)]
struct ThreadRecordingStore {
    inner: MemoryIdempotencyStore,
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl ThreadRecordingStore {
    fn record(&self) {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

impl IdempotencyStore for ThreadRecordingStore {
    fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        self.record();
        self.inner.claim(attempt)
    }

    fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.record();
        self.inner.complete(attempt)
    }

    fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.record();
        self.inner.release(attempt)
    }
}

#[test]
fn a_blocking_store_under_process_async_runs_on_the_blocking_pool() {
    // A current-thread runtime: its executor is this test's own thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let executor = std::thread::current().id();
    let store = Arc::new(SpawnBlocking::new(ThreadRecordingStore::default()));
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    let calls = AtomicUsize::new(0);
    let handler = |_: &PayoutCallback| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), String>(()) }
    };
    let body = success_body();
    let replies = runtime.block_on(async {
        let first = verifier.process_async(body.as_bytes(), &handler).await;
        let again = verifier.process_async(body.as_bytes(), &handler).await;
        (first, again)
    });
    assert_handled(&replies.0);
    assert_duplicate(&replies.1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // claim + complete, then the duplicate's claim: none of them on the executor's thread.
    let threads = store.get_ref().threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 3, "{threads:?}");
    assert!(
        threads.iter().all(|&thread| thread != executor),
        "{threads:?}"
    );
}

/// 16 async tasks on a multi-threaded runtime race one delivery through `process_async`.
async fn race_sixteen_tasks<S: AsyncStoreSlot>(verifier: Verifier<S>) {
    const TASKS: usize = 16;
    let body: Arc<str> = success_body().into();
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (verifier, body, calls, start) = (
                verifier.clone(),
                Arc::clone(&body),
                Arc::clone(&calls),
                Arc::clone(&start),
            );
            tokio::spawn(async move {
                let handler = |_: &PayoutCallback| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Hold the claim long enough for the others to run into it.
                    async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<(), String>(())
                    }
                };
                start.wait().await;
                verifier.process_async(body.as_bytes(), &handler).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for reply in &replies {
        assert!(reply.is_ack() || reply.status_code() == 409, "{reply:?}");
    }
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.is_ack() && !r.is_duplicate())
            .count(),
        1
    );
    let noop = |_: &PayoutCallback| async { Ok::<(), String>(()) };
    assert_duplicate(&verifier.process_async(body.as_bytes(), &noop).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_racing_one_delivery_run_the_handler_once_with_a_sync_store() {
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    race_sixteen_tasks(verifier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_racing_one_delivery_run_the_handler_once_with_an_async_store() {
    let verifier = Verifier::builder(common::key())
        .idempotency(YieldingStore::default())
        .build();
    race_sixteen_tasks(verifier).await;
}

#[test]
fn sixteen_threads_blocking_on_an_async_store_run_the_handler_once() {
    const THREADS: usize = 16;
    let verifier = Verifier::builder(common::key())
        .idempotency(YieldingStore::default())
        .build();
    let body = signed_body(DOC_EXAMPLE, KEY);
    let calls = AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(THREADS);
    let replies: Mutex<Vec<Reply>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let handler = |_: &PayoutCallback| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<(), String>(())
                    }
                };
                barrier.wait();
                let reply = runtime.block_on(verifier.process_async(body.as_bytes(), &handler));
                replies.lock().unwrap().push(reply);
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let replies = replies.into_inner().unwrap();
    assert!(replies.iter().all(|r| r.is_ack() || r.status_code() == 409));
}

#[test]
fn a_full_memory_store_frees_an_expired_claim_before_forgetting_a_handled_delivery() {
    let store = MemoryIdempotencyStore::new(2);
    let key = |cid| DeliveryKey::new(CallbackKind::Payout, SUCCESS_KEY.pid, cid, SUCCESS_KEY.fact);
    let done = Attempt::new(key(1), FP, t0(), LEASE);
    assert_eq!(store.claim(&done).unwrap(), Claim::Claimed);
    store.complete(&done).unwrap();
    let stuck = Attempt::new(key(2), FP, t0(), LEASE);
    assert_eq!(store.claim(&stuck).unwrap(), Claim::Claimed);
    // Full. While the stuck claim's lease is live, room comes from the handled delivery...
    let live = Attempt::new(key(3), FP, t0() + LIVE, LEASE);
    assert_eq!(store.claim(&live).unwrap(), Claim::Claimed);
    // (Forgotten: it is no longer a duplicate, and there is no room left to claim it.)
    let err = store
        .claim(&Attempt::new(key(1), FP, t0() + LIVE, LEASE))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory idempotency store is full of deliveries in progress"
    );
    // ...and once a lease has ended, from the expired claim, keeping what was handled.
    let store = MemoryIdempotencyStore::new(2);
    assert_eq!(store.claim(&done).unwrap(), Claim::Claimed);
    store.complete(&done).unwrap();
    assert_eq!(store.claim(&stuck).unwrap(), Claim::Claimed);
    let late = Attempt::new(key(3), FP, t0() + EXPIRED, LEASE);
    assert_eq!(store.claim(&late).unwrap(), Claim::Claimed);
    assert_eq!(
        store
            .claim(&Attempt::new(key(1), FP, t0() + EXPIRED, LEASE))
            .unwrap(),
        Claim::AlreadyDone
    );
    let in_progress: Vec<DeliveryKey> = store.claims_in_progress().iter().map(|c| c.key).collect();
    assert_eq!(in_progress, [key(3)]);
}

#[test]
fn the_same_amount_in_another_scale_is_the_same_content_another_number_a_conflict() {
    // The callback said `1.1`; a reconciled delivery (or a re-push) says `1.100000`, the scale
    // of Cregis's column: the same amount (`same_amount`), a duplicate.
    let clock = ManualClock::new(t0());
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = verifier_with(&store, &clock);
    assert_handled(&deliver_at(&verifier, &clock, &success_body(), t0()).0);
    for same in [r#""1.100000""#, r#""01.10""#] {
        let other = signed_body(&with_field(&example_with_status("6"), "amount", same), KEY);
        let (reply, ran) = deliver_at(&verifier, &clock, &other, t0() + Duration::from_secs(1));
        assert_duplicate(&reply);
        assert!(!ran, "{same}");
    }
    for differs in [r#""11""#, r#""1.10001""#, r#""1.1e0""#, r#""0.11""#] {
        let other = signed_body(
            &with_field(&example_with_status("6"), "amount", differs),
            KEY,
        );
        let (reply, ran) = deliver_at(&verifier, &clock, &other, t0() + Duration::from_secs(1));
        assert_eq!((reply.status_code(), ran), (409, false), "{differs}");
    }
}

#[tokio::test]
async fn the_memory_store_refuses_a_second_final_status_of_a_payout() {
    let verifier = Verifier::builder(key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let runs = AtomicUsize::new(0);
    let handler = |_: &PayoutCallback| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<(), BoxError>(())
    };
    common::final_statuses_exclude_each_other(|body| {
        let reply = verifier.process(body.as_bytes(), &handler);
        async move { reply }
    })
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 21);
}
