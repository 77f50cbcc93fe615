//! The durable inbox on SQLite: what enters it, every state and operation on an injected
//! clock, the retry schedule, dead letters, leases and their heartbeat, and the worker.
#![cfg(feature = "sqlite")]

mod common;
#[path = "../examples/inbox.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::error::StoreOperation;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::idempotency::{DeliveryKey, Fingerprint};
use cregis_payout_callback::inbox::{
    Accepted, AfterFailure, AtLeastOnce, EntryId, EntryState, Inbox, NewEntry, RetryPolicy,
    SqliteInbox, Taken, Worker,
};
use cregis_payout_callback::testing::{CallbackBuilder, ManualClock};
use cregis_payout_callback::{CallbackStatus, Error, PayoutCallback, Verifier};

/// The moment the tests' inboxes start at.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_687_850_657_960)
}

const LEASE: Duration = Duration::from_secs(60);

/// A payout's callback as Cregis sends it: documented order, realistic values, `memo`, an
/// unknown field; `cid` and `status` chosen. `push` changes only `nonce` and `timestamp`, as a
/// console re-push does.
fn callback(cid: i64, status: CallbackStatus, push: u32) -> CallbackBuilder {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .status(status)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .nonce(&format!("n{push:05}"))
        .timestamp(1_687_850_657_960 + i64::from(push) * 1000)
}

fn body(cid: i64, push: u32) -> String {
    callback(cid, CallbackStatus::TransactionSuccessful, push)
        .body(&common::key())
        .unwrap()
}

/// A file inbox in a temporary directory, on `clock`.
async fn inbox_on(clock: &ManualClock) -> (SqliteInbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap()
        .with_clock(clock.clone());
    (inbox, dir)
}

fn key(cid: i64) -> DeliveryKey {
    DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        cid,
        Fact::Status(CallbackStatus::TransactionSuccessful),
    )
}

fn entry(cid: i64, content: u8) -> NewEntry<'static> {
    NewEntry {
        key: key(cid),
        fingerprint: Fingerprint::from_bytes([content; 16]),
        body: b"{}",
        origin: cregis_payout_callback::Origin::Cregis,
    }
}

async fn state_of(inbox: &SqliteInbox, id: EntryId) -> Option<EntryState> {
    let all = [
        EntryState::Pending,
        EntryState::Running,
        EntryState::Waiting,
        EntryState::Done,
        EntryState::Dead,
    ];
    let entries = inbox.list(&all).await.unwrap();
    entries.iter().find(|e| e.id == id).map(|e| e.state)
}

// ---- What enters the inbox ------------------------------------------------------------------

#[tokio::test]
async fn only_authentic_well_formed_callbacks_enter_and_each_fact_once() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let verifier = Verifier::new(common::key());

    let first = verifier.accept(body(7, 0).as_bytes(), &inbox).await;
    assert!(first.is_ack() && !first.is_duplicate(), "{first:?}");
    // A re-push (new nonce and timestamp, same business fields): acknowledged, no new entry.
    let again = verifier.accept(body(7, 1).as_bytes(), &inbox).await;
    assert!(again.is_ack() && again.is_duplicate(), "{again:?}");
    // Other content under the same fact: 409, nothing written.
    let other = callback(7, CallbackStatus::TransactionSuccessful, 2)
        .amount("1000")
        .body(&common::key())
        .unwrap();
    let conflict = verifier.accept(other.as_bytes(), &inbox).await;
    assert_eq!(conflict.status_code(), 409);
    assert_eq!(
        conflict.error(),
        Some(&Error::ConflictingDelivery { key: key(7) })
    );
    // Forged, malformed, not as documented: refused, never recorded.
    let forged = callback(8, CallbackStatus::TransactionSuccessful, 0)
        .body(&common::api_key("fake-attacker-key"))
        .unwrap();
    assert_eq!(
        verifier
            .accept(forged.as_bytes(), &inbox)
            .await
            .status_code(),
        401
    );
    assert_eq!(
        verifier.accept(b"{not json", &inbox).await.status_code(),
        400
    );
    let unknown_status = callback(9, CallbackStatus::TransactionSuccessful, 0)
        .status_code(9)
        .body(&common::key())
        .unwrap();
    assert_eq!(
        verifier
            .accept(unknown_status.as_bytes(), &inbox)
            .await
            .status_code(),
        400
    );

    let entries = inbox.list(&[EntryState::Pending]).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!((entries[0].key, entries[0].attempts), (key(7), 0));
}

#[tokio::test]
async fn an_inbox_that_cannot_write_is_answered_500_never_success() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    inbox.pool().close().await;
    let reply = Verifier::new(common::key())
        .accept(body(7, 0).as_bytes(), &inbox)
        .await;
    assert_eq!(reply.status_code(), 500);
    assert_eq!(reply.body(), "internal error");
    let Some(Error::Store { operation, .. }) = reply.error() else {
        panic!("{reply:?}")
    };
    assert_eq!(*operation, StoreOperation::Accept);
    assert!(
        reply
            .error()
            .unwrap()
            .to_string()
            .starts_with("inbox failed to record the delivery: "),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_stored_entry_keeps_the_raw_body_as_received() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let sent = body(7, 0);
    assert!(
        Verifier::new(common::key())
            .accept(sent.as_bytes(), &inbox)
            .await
            .is_ack()
    );
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.body, sent.as_bytes());
    assert_eq!(taken.key, key(7));
}

// ---- Every state and operation, on an injected clock ----------------------------------------

#[tokio::test]
async fn pending_entries_are_taken_oldest_first_under_a_lease() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(a) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    clock.advance(Duration::from_millis(1));
    let Accepted::New(b) = inbox.accept(&entry(2, 1)).await.unwrap() else {
        panic!()
    };
    assert_eq!(state_of(&inbox, a).await, Some(EntryState::Pending));

    let first = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.attempt), (a, 1));
    assert_eq!(state_of(&inbox, a).await, Some(EntryState::Running));
    let second = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, b);
    // Both running: nothing else is due.
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
}

#[tokio::test]
async fn a_running_entry_is_held_for_its_lease_then_taken_again() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    let dead_worker = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    clock.advance(LEASE);
    assert_eq!(
        inbox.take(CallbackKind::Payout, LEASE).await.unwrap(),
        None,
        "still within the lease"
    );
    clock.advance(Duration::from_millis(1));
    let next = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.id, next.attempt), (id, 2));
    // The earlier run lost the entry: none of its operations apply.
    assert!(!inbox.renew(&dead_worker, LEASE).await.unwrap());
    assert!(!inbox.succeed(&dead_worker).await.unwrap());
    assert!(
        !inbox
            .fail(&dead_worker, "late", AfterFailure::Dead)
            .await
            .unwrap()
    );
    assert_eq!(state_of(&inbox, id).await, Some(EntryState::Running));
    assert!(inbox.succeed(&next).await.unwrap());
    assert_eq!(state_of(&inbox, id).await, Some(EntryState::Done));
}

#[tokio::test]
async fn renewing_extends_the_lease_from_now() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    inbox.accept(&entry(1, 1)).await.unwrap();
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        clock.advance(LEASE / 2);
        assert!(inbox.renew(&taken, LEASE).await.unwrap());
        assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
    }
    // Two and a half leases later, still held; once renewals stop, it lapses.
    clock.advance(LEASE + Duration::from_millis(1));
    assert_eq!(
        inbox
            .take(CallbackKind::Payout, LEASE)
            .await
            .unwrap()
            .map(|t| t.attempt),
        Some(2)
    );
}

#[tokio::test]
async fn a_failed_entry_waits_for_its_retry_then_is_pending() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    let delay = Duration::from_millis(1500);
    assert!(
        inbox
            .fail(&taken, "database is down", AfterFailure::RetryAfter(delay))
            .await
            .unwrap()
    );
    let waiting = inbox.list(&[EntryState::Waiting]).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].id, waiting[0].attempts, waiting[0].due_in),
        (id, 1, Some(delay))
    );
    assert_eq!(waiting[0].last_error.as_deref(), Some("database is down"));
    // A failed run's operations no longer apply.
    assert!(!inbox.succeed(&taken).await.unwrap());
    assert!(!inbox.renew(&taken, LEASE).await.unwrap());
    clock.advance(delay.saturating_sub(Duration::from_millis(1)));
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(state_of(&inbox, id).await, Some(EntryState::Pending));
    assert_eq!(
        inbox
            .take(CallbackKind::Payout, LEASE)
            .await
            .unwrap()
            .map(|t| t.attempt),
        Some(2)
    );
}

#[tokio::test]
async fn a_done_entry_stays_done_and_makes_later_deliveries_duplicates() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(inbox.succeed(&taken).await.unwrap());
    assert_eq!(
        inbox.accept(&entry(1, 1)).await.unwrap(),
        Accepted::Duplicate(id)
    );
    assert_eq!(
        inbox.accept(&entry(1, 2)).await.unwrap(),
        Accepted::Conflict(id)
    );
    clock.advance(LEASE * 1000);
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
    assert!(
        !inbox.replay(id).await.unwrap(),
        "only a dead entry is replayed"
    );
    assert!(
        !inbox
            .fail(&taken, "late", AfterFailure::Dead)
            .await
            .unwrap()
    );
    assert_eq!(state_of(&inbox, id).await, Some(EntryState::Done));
}

#[tokio::test]
async fn a_dead_entry_is_listed_replayed_once_or_discarded() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(
        inbox
            .fail(&taken, "payout row missing", AfterFailure::Dead)
            .await
            .unwrap()
    );
    let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (id, 1));
    assert_eq!(dead[0].last_error.as_deref(), Some("payout row missing"));
    // Dead entries are never taken, and a re-delivery is a duplicate.
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
    assert_eq!(
        inbox.accept(&entry(1, 1)).await.unwrap(),
        Accepted::Duplicate(id)
    );

    // Replayed: due now, its attempts kept.
    assert!(inbox.replay(id).await.unwrap());
    assert!(!inbox.replay(id).await.unwrap(), "no longer dead");
    let again = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempt), (id, 2));
    // A running entry cannot be discarded.
    assert!(!inbox.discard(id, "test").await.unwrap());
    assert!(
        inbox
            .fail(&again, "still missing", AfterFailure::Dead)
            .await
            .unwrap()
    );

    // Every dead entry at once.
    let Accepted::New(other) = inbox.accept(&entry(2, 1)).await.unwrap() else {
        panic!()
    };
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, other);
    assert!(
        inbox
            .fail(&taken, "still missing", AfterFailure::Dead)
            .await
            .unwrap()
    );
    assert_eq!(inbox.list(&[EntryState::Dead]).await.unwrap().len(), 2);
    assert_eq!(inbox.replay_dead().await.unwrap(), 2);
    assert_eq!(inbox.replay_dead().await.unwrap(), 0);
    assert_eq!(inbox.list(&[EntryState::Pending]).await.unwrap().len(), 2);
    for _ in 0..2 {
        let taken = inbox
            .take(CallbackKind::Payout, LEASE)
            .await
            .unwrap()
            .unwrap();
        assert!(
            inbox
                .fail(&taken, "dead again", AfterFailure::Dead)
                .await
                .unwrap()
        );
    }

    // Discarded: gone; a later delivery of the fact is a new entry.
    assert!(inbox.discard(id, "payout cancelled by hand").await.unwrap());
    assert_eq!(state_of(&inbox, id).await, None);
    assert!(!inbox.discard(id, "again").await.unwrap());
    assert!(matches!(inbox.accept(&entry(1, 1)).await.unwrap(), Accepted::New(new) if new != id));
}

#[tokio::test]
async fn a_pending_or_waiting_entry_can_be_discarded_but_not_a_running_one() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let Accepted::New(pending) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    assert!(inbox.discard(pending, "sent by mistake").await.unwrap());
    assert_eq!(state_of(&inbox, pending).await, None);

    let Accepted::New(waiting) = inbox.accept(&entry(2, 1)).await.unwrap() else {
        panic!()
    };
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(!inbox.discard(waiting, "running").await.unwrap());
    assert!(
        inbox
            .fail(&taken, "ledger is down", AfterFailure::RetryAfter(LEASE))
            .await
            .unwrap()
    );
    assert_eq!(state_of(&inbox, waiting).await, Some(EntryState::Waiting));
    assert!(inbox.discard(waiting, "refunded by hand").await.unwrap());
    assert_eq!(state_of(&inbox, waiting).await, None);
    // A lapsed lease is not running any more: discardable too.
    let Accepted::New(lapsed) = inbox.accept(&entry(3, 1)).await.unwrap() else {
        panic!()
    };
    let _held = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    clock.advance(LEASE + Duration::from_millis(1));
    assert!(inbox.discard(lapsed, "its worker died").await.unwrap());
}

#[tokio::test]
async fn the_schema_is_created_once_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    // Several instances opening the same new file at once.
    let opened = futures_join_all((0..4).map(|_| SqliteInbox::open(path.clone()))).await;
    for inbox in &opened {
        assert!(inbox.is_ok(), "{inbox:?}");
    }
    let inbox = opened.into_iter().next().unwrap().unwrap();
    inbox.accept(&entry(1, 1)).await.unwrap();
    // Reopened, the entries are there.
    let reopened = SqliteInbox::open(&path).await.unwrap();
    assert_eq!(
        reopened.list(&[EntryState::Pending]).await.unwrap().len(),
        1
    );
    // A schema from a later version of the crate is refused, not misread.
    sqlx::query("INSERT INTO cregis_inbox_schema (version) VALUES (4)")
        .execute(reopened.pool())
        .await
        .unwrap();
    let err = SqliteInbox::open(&path).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the inbox's schema is version 4; this crate knows versions up to 3"
    );
}

/// Awaits every future of `futures`, concurrently.
async fn futures_join_all<F: Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

// ---- The worker ---------------------------------------------------------------------------

/// A handler that records each run of each payout, and fails the first `failures` runs of
/// each (panicking on the runs listed in `panics`).
#[derive(Default)]
struct Flaky {
    failures: usize,
    panics: Vec<usize>,
    runs: Mutex<HashMap<String, usize>>,
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
    delay: Duration,
}

impl Flaky {
    fn runs(&self, id: &str) -> usize {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

impl cregis_payout_callback::AsyncCallbackHandler for Flaky {
    type Error = String;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), String> {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.entry(callback.third_party_id.clone()).or_insert(0);
            *run += 1;
            *run
        };
        let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.concurrent.fetch_sub(1, Ordering::SeqCst);
        assert!(!self.panics.contains(&run), "bug on run {run}");
        if run <= self.failures {
            return Err(format!("database is down (run {run})"));
        }
        Ok(())
    }
}

/// Waits (up to 10 s of real time) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A worker running in the background until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the worker and waits until it has.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn spawn_worker(worker: Worker<SqliteInbox, AtLeastOnce<Arc<Flaky>>>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_schedule_is_exact_on_the_inbox_clock_and_the_entry_dies_at_the_limit() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    let verifier = Verifier::new(common::key());
    assert!(
        verifier
            .accept(body(7, 0).as_bytes(), &inbox)
            .await
            .is_ack()
    );
    let id = inbox.list(&[EntryState::Pending]).await.unwrap()[0].id;
    let policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let flaky = Arc::new(Flaky {
        failures: usize::MAX,
        panics: vec![2],
        ..Flaky::default()
    });
    let failing = spawn_worker(
        Worker::new(inbox.clone(), Arc::clone(&flaky))
            .retry(policy)
            .poll_interval(Duration::from_millis(5)),
    );
    for attempt in 1..=2u32 {
        eventually("the run failed", async || {
            inbox.list(&[EntryState::Waiting]).await.unwrap().len() == 1
        })
        .await;
        let waiting = &inbox.list(&[EntryState::Waiting]).await.unwrap()[0];
        // The delay the policy gives, to the millisecond, on the inbox's clock.
        let delay = policy.delay(id, attempt);
        let expected = Duration::from_millis(u64::try_from(delay.as_millis()).unwrap());
        assert_eq!(
            (waiting.attempts, waiting.due_in),
            (attempt, Some(expected))
        );
        let error = waiting.last_error.clone().unwrap();
        if attempt == 2 {
            assert_eq!(error, "the handler panicked: bug on run 2");
        } else {
            assert_eq!(error, "database is down (run 1)");
        }
        // Not a millisecond early.
        clock.advance(expected.saturating_sub(Duration::from_millis(1)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(flaky.runs("order-7"), attempt as usize);
        clock.advance(Duration::from_millis(1));
    }
    eventually("the entry is dead", async || {
        inbox.list(&[EntryState::Dead]).await.unwrap().len() == 1
    })
    .await;
    let dead = &inbox.list(&[EntryState::Dead]).await.unwrap()[0];
    assert_eq!((dead.id, dead.attempts), (id, 3));
    assert_eq!(dead.last_error.as_deref(), Some("database is down (run 3)"));
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        flaky.runs("order-7"),
        3,
        "a dead entry never runs on its own"
    );

    // Replayed, it runs once more (and this time the handler succeeds).
    failing.stop().await;
    let flaky_ok = Arc::new(Flaky::default());
    let _worker = spawn_worker(
        Worker::new(inbox.clone(), Arc::clone(&flaky_ok)).poll_interval(Duration::from_millis(5)),
    );
    assert!(inbox.replay(id).await.unwrap());
    eventually("the replay succeeded", async || {
        inbox.list(&[EntryState::Done]).await.unwrap().len() == 1
    })
    .await;
    assert_eq!(flaky.runs("order-7") + flaky_ok.runs("order-7"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_held_by_a_dead_worker_runs_again_after_its_lease() {
    let clock = ManualClock::new(t0());
    let (inbox, _dir) = inbox_on(&clock).await;
    assert!(
        Verifier::new(common::key())
            .accept(body(7, 0).as_bytes(), &inbox)
            .await
            .is_ack()
    );
    // A worker took it and died: nothing renews its lease.
    let _held: Taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    let flaky = Arc::new(Flaky::default());
    let _worker = spawn_worker(
        Worker::new(inbox.clone(), Arc::clone(&flaky)).poll_interval(Duration::from_millis(5)),
    );
    clock.advance(LEASE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(flaky.runs("order-7"), 0, "the lease still holds");
    clock.advance(Duration::from_millis(1));
    eventually("taken over and done", async || {
        inbox.list(&[EntryState::Done]).await.unwrap().len() == 1
    })
    .await;
    assert_eq!(flaky.runs("order-7"), 1);
    assert_eq!(
        inbox.list(&[EntryState::Done]).await.unwrap()[0].attempts,
        2
    );
}

/// Real time: a handler that runs three leases long is not run again meanwhile, by this
/// worker or another on the same inbox, because its lease is renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_long_handler_from_running_twice() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    assert!(
        Verifier::new(common::key())
            .accept(body(7, 0).as_bytes(), &inbox)
            .await
            .is_ack()
    );
    let lease = Duration::from_millis(300);
    let flaky = Arc::new(Flaky {
        delay: lease * 3,
        ..Flaky::default()
    });
    let workers: Vec<_> = (0..2)
        .map(|_| {
            spawn_worker(
                Worker::new(inbox.clone(), Arc::clone(&flaky))
                    .lease(lease)
                    .poll_interval(Duration::from_millis(10)),
            )
        })
        .collect();
    eventually("done", async || {
        inbox.list(&[EntryState::Done]).await.unwrap().len() == 1
    })
    .await;
    assert_eq!(flaky.runs("order-7"), 1);
    assert_eq!(
        inbox.list(&[EntryState::Done]).await.unwrap()[0].attempts,
        1
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_handlers_concurrently_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    let verifier = Verifier::new(common::key());
    for cid in 0..12 {
        assert!(
            verifier
                .accept(body(cid, 0).as_bytes(), &inbox)
                .await
                .is_ack()
        );
    }
    let flaky = Arc::new(Flaky {
        delay: Duration::from_millis(100),
        ..Flaky::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(inbox.clone(), Arc::clone(&flaky))
            .concurrency(4)
            .poll_interval(Duration::from_millis(5))
            .run(async {
                let _ = stopped.await;
            }),
    );
    eventually("four running", async || {
        flaky.concurrent.load(Ordering::SeqCst) == 4
    })
    .await;
    // Shutdown: the four running handlers finish and are recorded; nothing new starts.
    stop.send(()).unwrap();
    worker.await.unwrap();
    assert_eq!(flaky.concurrent.load(Ordering::SeqCst), 0);
    assert_eq!(flaky.max_concurrent.load(Ordering::SeqCst), 4);
    let done = inbox.list(&[EntryState::Done]).await.unwrap().len();
    let pending = inbox.list(&[EntryState::Pending]).await.unwrap().len();
    assert_eq!(done + pending, 12);
    assert!((4..12).contains(&done), "{done} done");
    assert!(inbox.list(&[EntryState::Running]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_runs_a_new_entry_at_once_not_at_its_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    let flaky = Arc::new(Flaky::default());
    // A poll an hour away: only the inbox's news of the entry can wake the worker in time.
    let worker = spawn_worker(
        Worker::new(inbox.clone(), Arc::clone(&flaky)).poll_interval(Duration::from_secs(3600)),
    );
    // The worker's first look found nothing; it is idle until the poll.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let verifier = Verifier::new(common::key());
    for cid in [1, 2] {
        let reply = verifier.accept(body(cid, 0).as_bytes(), &inbox).await;
        assert!(reply.is_ack(), "{reply:?}");
        eventually("the new entry ran", async || {
            flaky.runs(&format!("order-{cid}")) == 1
        })
        .await;
    }
    // A duplicate is no news.
    assert!(
        verifier
            .accept(body(1, 1).as_bytes(), &inbox)
            .await
            .is_ack()
    );
    worker.stop().await;
    assert_eq!(inbox.list(&[EntryState::Done]).await.unwrap().len(), 2);
    assert_eq!(flaky.runs("order-1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_applies_a_matching_callback_and_refuses_a_mismatch_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    sqlx::query(example::PAYOUTS)
        .execute(inbox.pool())
        .await
        .unwrap();
    // order-1 as the callbacks describe it; order-2 recorded with another amount.
    for (id, amount) in [("order-1", "1.1"), ("order-2", "2.5")] {
        sqlx::query(
            "INSERT INTO payouts (third_party_id, amount, currency, address)
             VALUES (?, ?, 'TRX', 'TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS')",
        )
        .bind(id)
        .bind(amount)
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    let verifier = Verifier::new(common::key());
    for cid in [1, 2] {
        assert!(
            verifier
                .accept(body(cid, 0).as_bytes(), &inbox)
                .await
                .is_ack()
        );
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::in_transaction(inbox.clone(), example::Payouts)
            .retry(RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            })
            .run(async {
                let _ = stopped.await;
            }),
    );
    eventually("both entries settled", async || {
        let settled = [EntryState::Done, EntryState::Dead];
        inbox.list(&settled).await.unwrap().len() == 2
    })
    .await;
    let _ = stop.send(());
    worker.await.unwrap();
    let statuses: Vec<(String, Option<i32>, Option<i64>)> =
        sqlx::query_as("SELECT third_party_id, status, cid FROM payouts ORDER BY third_party_id")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("order-1".to_owned(), Some(6), Some(1)),
            ("order-2".to_owned(), None, None)
        ]
    );
    let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, key(2));
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("payout order-2: the callback says amount 1.1, our record says 2.5")
    );
}
