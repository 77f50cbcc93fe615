//! The inbox under production conditions, written once for every backend: runs that never end,
//! handlers past their deadline, a shutdown with handlers running, renewals that fail, an
//! operator's release, retention under load, paging and counts, and every setting at its
//! extremes. Each backend's test file calls these on its own inbox.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cregis_payout_callback::error::BoxError;
use cregis_payout_callback::inbox::backend::{Accepted, AfterFailure, Arrivals, NewEntry, Taken};
use cregis_payout_callback::inbox::{
    Count, EntryId, EntryState, Inbox, Listing, Page, RetryPolicy, Worker,
};
use cregis_payout_callback::{CallbackKind, PayoutCallback, Verifier};

/// A handler that fails for payout `cid` with `error`, and succeeds for every other.
pub fn failing_for(
    cid: i64,
    error: &'static str,
) -> impl Fn(&PayoutCallback) -> std::future::Ready<Result<(), BoxError>> + Send + Sync + 'static {
    move |callback: &PayoutCallback| {
        std::future::ready(if callback.cid == cid {
            Err(error.into())
        } else {
            Ok(())
        })
    }
}

/// Accepts payout `cid`'s callback (first push) through the verifier, as the route does.
pub async fn accept(inbox: &impl Inbox, cid: i64) {
    let body = crate::faults::delivery(cid, 0);
    let reply = Verifier::new(crate::common::key())
        .accept(body.as_bytes(), inbox)
        .await;
    assert_eq!(
        (reply.status_code(), reply.body()),
        (200, "success"),
        "{reply:?}"
    );
}

/// The one entry of `inbox` in `state`, waiting up to 10 s for it.
pub async fn wait_for_one(
    inbox: &impl Inbox,
    state: EntryState,
) -> cregis_payout_callback::inbox::EntrySummary {
    wait_for(inbox, state, 1).await.remove(0)
}

/// The entries of `inbox` in `state`, once there are `n` of them (up to 20 s).
pub async fn wait_for(
    inbox: &impl Inbox,
    state: EntryState,
    n: usize,
) -> Vec<cregis_payout_callback::inbox::EntrySummary> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = inbox.list(&[state]).await.unwrap();
        if entries.len() >= n {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "{} entries {state}, expected {n}: {:?}",
            entries.len(),
            inbox.counts().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 10 s) until `counter` reaches `n`.
pub async fn wait_until(counter: &AtomicU32, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Accepts 60 callbacks (payouts 100 to 159) over 3 s, each its own request as Cregis sends
/// them, every one answered `success`; returns their latencies, sorted, and prints p50, p99
/// and the maximum under `what`.
pub async fn accept_60_timed<I: Inbox>(inbox: &I, what: &str) -> Vec<Duration> {
    let mut accepts = Vec::new();
    for cid in 100..160 {
        let inbox = inbox.clone();
        accepts.push(tokio::spawn(async move {
            let sent = Instant::now();
            accept(&inbox, cid).await;
            sent.elapsed()
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    for accept in accepts {
        latencies.push(accept.await.unwrap());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!(
        "60 accepts {what}: p50 {:?}, p99 {p99:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    latencies
}

/// A fast policy with `max_attempts`.
pub fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_attempts,
        ..RetryPolicy::default()
    }
}

/// A handler that counts its runs and never returns.
fn hanging(
    started: &Arc<AtomicU32>,
) -> impl Fn(&PayoutCallback) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let started = Arc::clone(started);
    move |_: &PayoutCallback| {
        started.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}

/// A run whose process dies (here: its worker dropped mid-run, which aborts the handler and
/// leaves the lease set, as a kill does) counts: after `max_attempts` such runs, the next take
/// makes the entry dead without running it, and says why.
pub async fn runs_that_never_end_count<I: Inbox>(inbox: I) {
    accept(&inbox, 1).await;
    let started = Arc::new(AtomicU32::new(0));
    let worker = || {
        Worker::new(inbox.clone(), hanging(&started))
            .retry(policy(3))
            .lease(Duration::from_millis(150))
            .poll_interval(Duration::from_millis(10))
    };
    for run in 1..=3 {
        let running = tokio::spawn(worker().run(std::future::pending()));
        wait_until(&started, run).await;
        // The process "dies": the run stops, its lease stays set until it lapses.
        running.abort();
        let _ = running.await;
    }
    let running = tokio::spawn(worker().run(std::future::pending()));
    let dead = wait_for_one(&inbox, EntryState::Dead).await;
    running.abort();
    assert_eq!(started.load(Ordering::SeqCst), 3, "never run a fourth time");
    assert_eq!(dead.attempts, 4);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the worker stopped or lost its lease during 3 runs")
    );
}

/// A handler that never returns is aborted at its deadline, each run a failure, and the entry
/// is dead at the policy's limit.
pub async fn a_handler_past_its_deadline_is_aborted<I: Inbox>(inbox: I) {
    accept(&inbox, 2).await;
    let started = Arc::new(AtomicU32::new(0));
    let worker = Worker::new(inbox.clone(), hanging(&started))
        .retry(policy(2))
        .deadline(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(10));
    let running = tokio::spawn(worker.run(std::future::pending()));
    let dead = wait_for_one(&inbox, EntryState::Dead).await;
    running.abort();
    assert_eq!((dead.attempts, started.load(Ordering::SeqCst)), (2, 2));
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the handler did not finish within its deadline of 200ms; aborted")
    );
}

/// Shut down with a handler that never returns, `Worker::run` returns by its shutdown
/// deadline (and the release after it), and the entry is due again at once, for the next
/// instance. Returns how long `run` took after the signal.
pub async fn shutdown_returns_by_its_deadline<I: Inbox>(inbox: I) -> Duration {
    accept(&inbox, 3).await;
    let started = Arc::new(AtomicU32::new(0));
    let worker = Worker::new(inbox.clone(), hanging(&started))
        .deadline(Duration::MAX)
        .shutdown_deadline(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    wait_until(&started, 1).await;
    let signalled = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), running)
        .await
        .expect("Worker::run returned within its shutdown deadline and the release")
        .unwrap();
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let pending = wait_for_one(&inbox, EntryState::Pending).await;
    assert_eq!(pending.attempts, 1);
    assert_eq!(
        pending.last_error.as_deref(),
        Some("the worker shut down before the handler finished; aborted")
    );
    took
}

/// How [`Flaky`] renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Every renewal fails (the database is unreachable for it).
    Fails,
    /// Every renewal says the lease is lost.
    Lost,
}

/// An inbox whose renewals fail as `renewal` says; everything else is `inner`'s.
#[derive(Debug, Clone)]
pub struct Flaky<I> {
    pub inner: I,
    pub renewal: Renewal,
}

impl<I: Inbox> Inbox for Flaky<I> {
    async fn accept(&self, entry: &NewEntry<'_>) -> Result<Accepted, BoxError> {
        self.inner.accept(entry).await
    }
    async fn take(&self, kind: CallbackKind, lease: Duration) -> Result<Option<Taken>, BoxError> {
        self.inner.take(kind, lease).await
    }
    async fn renew(&self, _: &Taken, _: Duration) -> Result<bool, BoxError> {
        match self.renewal {
            Renewal::Fails => Err("the database is unreachable".into()),
            Renewal::Lost => Ok(false),
        }
    }
    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        self.inner.succeed(taken).await
    }
    async fn fail(&self, taken: &Taken, error: &str, next: AfterFailure) -> Result<bool, BoxError> {
        self.inner.fail(taken, error, next).await
    }
    async fn page(&self, listing: &Listing) -> Result<Page, BoxError> {
        self.inner.page(listing).await
    }
    async fn counts(&self) -> Result<Vec<Count>, BoxError> {
        self.inner.counts().await
    }
    async fn replay(&self, id: EntryId) -> Result<bool, BoxError> {
        self.inner.replay(id).await
    }
    async fn replay_dead(&self) -> Result<usize, BoxError> {
        self.inner.replay_dead().await
    }
    fn arrivals(&self) -> Arrivals {
        self.inner.arrivals()
    }
    async fn discard(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        self.inner.discard(id, reason).await
    }
    async fn release(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        self.inner.release(id, reason).await
    }
    async fn prune(
        &self,
        kind: CallbackKind,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, BoxError> {
        self.inner.prune(kind, older_than, limit).await
    }
}

/// Counts the runs of each payout in progress at once, and the most seen.
#[derive(Debug, Default)]
pub struct Overlaps {
    running: Mutex<HashMap<i64, u32>>,
    most: AtomicU32,
    started: AtomicU32,
    finished: AtomicU32,
}

/// One run in progress, counted until it ends or is aborted.
struct InProgress(Arc<Overlaps>, i64);

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap().get_mut(&self.1).unwrap() -= 1;
    }
}

/// With renewals that fail (or say the lease is lost), two workers never run one entry twice
/// at once: each run stops before its lease can lapse. Returns (runs started, most at once).
pub async fn a_run_without_its_lease_stops<I: Inbox>(inbox: I, renewal: Renewal) -> (u32, u32) {
    let flaky = Flaky {
        inner: inbox.clone(),
        renewal,
    };
    for cid in 10..14 {
        accept(&inbox, cid).await;
    }
    let overlaps = Arc::new(Overlaps::default());
    let handler = {
        let overlaps = Arc::clone(&overlaps);
        move |callback: &PayoutCallback| {
            let overlaps = Arc::clone(&overlaps);
            let cid = callback.cid;
            async move {
                overlaps.started.fetch_add(1, Ordering::SeqCst);
                let now = {
                    let mut running = overlaps.running.lock().unwrap();
                    let now = running.entry(cid).or_insert(0);
                    *now += 1;
                    *now
                };
                overlaps.most.fetch_max(now, Ordering::SeqCst);
                let _counted = InProgress(Arc::clone(&overlaps), cid);
                tokio::time::sleep(Duration::from_secs(2)).await;
                overlaps.finished.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        }
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let worker = Worker::new(flaky.clone(), handler.clone())
                .lease(Duration::from_millis(300))
                .poll_interval(Duration::from_millis(10))
                .retry(policy(1000));
            tokio::spawn(worker.run(std::future::pending()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for worker in workers {
        worker.abort();
        let _ = worker.await;
    }
    let (started, most) = (
        overlaps.started.load(Ordering::SeqCst),
        overlaps.most.load(Ordering::SeqCst),
    );
    assert!(
        started >= 8,
        "the entries ran again once their leases lapsed: {started}"
    );
    assert_eq!(most, 1, "two runs of one entry at once");
    assert_eq!(
        overlaps.finished.load(Ordering::SeqCst),
        0,
        "every run was stopped"
    );
    (started, most)
}

/// An operator releases a running entry whose worker is gone: it is due at once, the run
/// counts as interrupted, and the stale run can neither renew nor settle it.
pub async fn a_released_entry_is_fenced_from_its_stale_run<I: Inbox>(inbox: I) {
    accept(&inbox, 20).await;
    let lease = Duration::from_secs(60);
    let stale = inbox
        .take(CallbackKind::Payout, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wait_for_one(&inbox, EntryState::Running).await.id, stale.id);
    assert!(
        !inbox
            .discard(stale.id, "refused while running")
            .await
            .unwrap()
    );
    assert!(
        inbox
            .release(stale.id, "its host was decommissioned")
            .await
            .unwrap()
    );
    assert!(!inbox.release(stale.id, "twice").await.unwrap());
    assert!(!inbox.renew(&stale, lease).await.unwrap());
    assert!(!inbox.succeed(&stale).await.unwrap());
    assert!(
        !inbox
            .fail(&stale, "late", AfterFailure::Dead)
            .await
            .unwrap()
    );
    let pending = wait_for_one(&inbox, EntryState::Pending).await;
    assert_eq!(
        pending.last_error.as_deref(),
        Some("its host was decommissioned")
    );
    let again = inbox
        .take(CallbackKind::Payout, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.attempt, again.interrupted_runs), (2, 1));
    assert!(inbox.succeed(&again).await.unwrap());
}

/// A run whose lease lapsed, even with no other run in its place, can no longer settle the
/// entry: the next take will run it, and counts the lapsed run.
pub async fn a_lapsed_lease_cannot_settle<I: Inbox>(inbox: I) {
    accept(&inbox, 21).await;
    let short = Duration::from_millis(50);
    let lapsed = inbox
        .take(CallbackKind::Payout, short)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!inbox.renew(&lapsed, short).await.unwrap());
    assert!(!inbox.succeed(&lapsed).await.unwrap());
    let next = inbox
        .take(CallbackKind::Payout, short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.attempt, next.interrupted_runs), (2, 1));
}

/// Pages by id with a cursor, filtered by state and kind; counts per state in one query;
/// every dead entry replayed in one statement.
pub async fn listing_pages_counts_and_replays<I: Inbox>(inbox: I) {
    for cid in 100..125 {
        accept(&inbox, cid).await;
    }
    // Five dead ones.
    for _ in 0..5 {
        let taken = inbox
            .take(CallbackKind::Payout, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(
            inbox
                .fail(&taken, "the ledger refused it", AfterFailure::Dead)
                .await
                .unwrap()
        );
    }
    let mut listing = Listing::new(&[EntryState::Pending])
        .kind(CallbackKind::Payout)
        .limit(8);
    let mut seen = Vec::new();
    loop {
        let page = inbox.page(&listing).await.unwrap();
        assert!(page.entries.len() <= 8);
        seen.extend(page.entries.iter().map(|entry| entry.id));
        match page.next {
            Some(next) => listing = listing.after(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "by id");
    let withdrawals = Listing::new(&[]).kind(CallbackKind::Withdrawal);
    assert!(inbox.page(&withdrawals).await.unwrap().entries.is_empty());
    let mut counts = inbox.counts().await.unwrap();
    counts.sort_by_key(|count| count.state.to_string());
    let summary: Vec<_> = counts
        .iter()
        .map(|c| (c.kind, c.state, c.entries))
        .collect();
    assert_eq!(
        summary,
        [
            (CallbackKind::Payout, EntryState::Dead, 5),
            (CallbackKind::Payout, EntryState::Pending, 20)
        ]
    );
    assert!(
        counts
            .iter()
            .all(|count| count.oldest < Duration::from_secs(60))
    );
    // One entry by id, and the bodies as accepted (what the operator console shows).
    let first = seen[0];
    let entry = inbox.entry(first).await.unwrap().expect("listed");
    assert_eq!((entry.id, entry.state), (first, EntryState::Pending));
    let asked = [first, seen[19], EntryId(i64::MAX)];
    let mut bodies = inbox.bodies(&asked).await.unwrap();
    bodies.sort_by_key(|(id, _)| *id);
    let cids: Vec<(EntryId, String)> = bodies
        .iter()
        .map(|(id, body)| {
            let callback: PayoutCallback =
                crate::common::verifier().verify_and_parse(body).unwrap();
            (*id, callback.third_party_id.clone())
        })
        .collect();
    let listed = inbox.list(&[EntryState::Pending]).await.unwrap();
    let order = |id: EntryId| {
        let entry = listed.iter().find(|entry| entry.id == id).unwrap();
        format!("order-{}", entry.key.cid)
    };
    assert_eq!(cids, [(first, order(first)), (seen[19], order(seen[19]))]);
    assert!(inbox.bodies(&[]).await.unwrap().is_empty());

    assert_eq!(inbox.replay_dead().await.unwrap(), 5);
    assert_eq!(inbox.replay_dead().await.unwrap(), 0);
    assert_eq!(inbox.list(&[EntryState::Pending]).await.unwrap().len(), 25);
    assert!(inbox.discard(first, "settled by hand").await.unwrap());
    assert_eq!(inbox.entry(first).await.unwrap(), None);
}

/// Done entries past the retention are deleted by the worker while callbacks keep coming;
/// the dead ones stay; every effect happens once. `age` moves the finish time of every done
/// and dead entry back 31 days (in the backend's own columns).
pub async fn retention_prunes_done_entries_under_load<I, F, Fut>(inbox: I, age: F)
where
    I: Inbox,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let effects: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let handler = {
        let effects = Arc::clone(&effects);
        move |callback: &PayoutCallback| {
            let (effects, cid) = (Arc::clone(&effects), callback.cid);
            async move {
                // Five payouts the ledger refuses: dead after one run, kept for an operator.
                if cid < 5 {
                    return Err(format!("order-{cid} is unknown"));
                }
                *effects.lock().unwrap().entry(cid).or_insert(0) += 1;
                Ok::<(), String>(())
            }
        }
    };
    let worker = || {
        Worker::new(inbox.clone(), handler.clone())
            .retry(policy(1))
            .poll_interval(Duration::from_millis(10))
            .concurrency(8)
    };
    for cid in 0..200 {
        accept(&inbox, cid).await;
    }
    let first = tokio::spawn(worker().run(std::future::pending()));
    wait_for(&inbox, EntryState::Done, 195).await;
    wait_for(&inbox, EntryState::Dead, 5).await;
    first.abort();
    let _ = first.await;
    age().await;
    // The load: 200 more callbacks, arriving while the new worker prunes.
    let load = {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            for cid in 1000..1200 {
                accept(&inbox, cid).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let second = tokio::spawn(worker().run(std::future::pending()));
    load.await.unwrap();
    let done = wait_for(&inbox, EntryState::Done, 200).await;
    second.abort();
    let _ = second.await;
    assert!(
        done.iter().all(|entry| entry.key.cid >= 1000),
        "the old done entries are gone"
    );
    assert_eq!(
        inbox.list(&[EntryState::Dead]).await.unwrap().len(),
        5,
        "dead are kept"
    );
    let effects = effects.lock().unwrap();
    assert_eq!(effects.len(), 395);
    assert!(effects.values().all(|runs| *runs == 1), "each effect once");
}

/// Every worker and policy setting at `Duration::ZERO` / `Duration::MAX` (and counts at 0 /
/// MAX) runs without a panic, a busy loop or an SQL error; the inbox's own operations take
/// the extremes too.
pub async fn every_setting_at_its_extremes<I: Inbox>(inbox: I) {
    let kind = CallbackKind::Payout;
    // The inbox's operations.
    accept(&inbox, 30).await;
    let taken = inbox.take(kind, Duration::MAX).await.unwrap().unwrap();
    assert!(inbox.renew(&taken, Duration::MAX).await.unwrap());
    assert!(
        inbox
            .fail(&taken, "far", AfterFailure::RetryAfter(Duration::MAX))
            .await
            .unwrap()
    );
    assert_eq!(
        inbox.prune(kind, Duration::MAX, usize::MAX).await.unwrap(),
        0
    );
    assert_eq!(inbox.prune(kind, Duration::ZERO, 0).await.unwrap(), 0);
    assert!(
        inbox.take(kind, Duration::ZERO).await.unwrap().is_none(),
        "due in 100 years"
    );
    let page = inbox
        .page(&Listing::new(&[]).limit(usize::MAX))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);

    // The worker's settings, each with a callback to run.
    let ran = Arc::new(AtomicUsize::new(0));
    let handler = {
        let ran = Arc::clone(&ran);
        move |_: &PayoutCallback| {
            ran.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        }
    };
    let extremes = [Duration::ZERO, Duration::MAX];
    let mut cid = 31;
    for extreme in extremes {
        let policies = [
            RetryPolicy {
                initial: extreme,
                max_delay: extreme,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max_age: Duration::MAX,
                max_attempts: u32::MAX,
                ..RetryPolicy::default()
            },
        ];
        for policy in policies {
            let before = ran.load(Ordering::SeqCst);
            accept(&inbox, cid).await;
            cid += 1;
            let worker = Worker::new(inbox.clone(), handler.clone())
                .lease(extreme)
                .poll_interval(extreme)
                .deadline(if extreme.is_zero() {
                    Duration::from_secs(5)
                } else {
                    extreme
                })
                .shutdown_deadline(extreme)
                .retention(extreme)
                .concurrency(if extreme.is_zero() { 0 } else { usize::MAX })
                .retry(policy);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(worker.run(async {
                let _ = stopped.await;
            }));
            let deadline = Instant::now() + Duration::from_secs(10);
            while ran.load(Ordering::SeqCst) == before {
                assert!(
                    Instant::now() < deadline,
                    "{extreme:?}, {policy:?}: never ran"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(10), running)
                .await
                .expect("stops")
                .unwrap();
        }
    }
    no_time_and_no_retries(&inbox, cid).await;
}

/// A deadline of zero (1 ms, the least) and a policy that allows no retry: a failure, dead, no
/// panic.
async fn no_time_and_no_retries(inbox: &impl Inbox, cid: i64) {
    accept(inbox, cid).await;
    let slow = |_: &PayoutCallback| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<(), String>(())
    };
    let worker = Worker::new(inbox.clone(), slow)
        .deadline(Duration::ZERO)
        .poll_interval(Duration::from_millis(10))
        .retry(RetryPolicy {
            max_attempts: 0,
            max_age: Duration::ZERO,
            ..RetryPolicy::default()
        });
    let running = tokio::spawn(worker.run(std::future::pending()));
    let dead = wait_for_one(inbox, EntryState::Dead).await;
    running.abort();
    assert_eq!(dead.attempts, 1);
}

/// Concurrent accepts (one batch, where the backend groups them) of the same fact: once new,
/// the same content a duplicate, other content a conflict; each answered after its commit.
pub async fn concurrent_accepts_of_one_fact_are_new_once<I: Inbox>(inbox: I) {
    use cregis_payout_callback::idempotency::{DeliveryKey, Fact, Fingerprint};
    use cregis_payout_callback::{CallbackKind, CallbackStatus};
    let key = DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        50,
        Fact::Status(CallbackStatus::TransactionSuccessful),
    );
    let body = crate::faults::delivery(50, 0).into_bytes();
    let mut accepts = Vec::new();
    for content in [1u8, 1, 2, 1, 2, 1, 1, 1] {
        let (inbox, body) = (inbox.clone(), body.clone());
        accepts.push(tokio::spawn(async move {
            let entry = NewEntry {
                key,
                fingerprint: Fingerprint::from_bytes([content; 16]),
                body: &body,
                origin: cregis_payout_callback::Origin::Cregis,
            };
            (content, inbox.accept(&entry).await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for accept in accepts {
        answers.push(accept.await.unwrap());
    }
    let new: Vec<_> = answers
        .iter()
        .filter(|(_, accepted)| matches!(accepted, Accepted::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "{answers:?}");
    let first = new[0].0;
    for (content, accepted) in &answers {
        match accepted {
            Accepted::New(_) => {}
            Accepted::Duplicate(_) => assert_eq!(*content, first, "{answers:?}"),
            Accepted::Conflict(_) => assert_ne!(*content, first, "{answers:?}"),
            _ => panic!("{answers:?}"),
        }
    }
    assert_eq!(inbox.list(&[EntryState::Pending]).await.unwrap().len(), 1);
}

/// Runs ending together are marked done together (in one batch, where the backend groups
/// them), and never one whose lease lapsed: the batch checks each run's own lease.
pub async fn a_batch_of_completions_keeps_the_fencing<I: Inbox>(inbox: I) {
    for cid in 60..70 {
        accept(&inbox, cid).await;
    }
    let kind = CallbackKind::Payout;
    let lapsing = inbox
        .take_many(kind, Duration::from_millis(50), 5)
        .await
        .unwrap();
    let held = inbox
        .take_many(kind, Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert_eq!((lapsing.len(), held.len()), (5, 5));
    tokio::time::sleep(Duration::from_millis(120)).await;
    let mut marks = Vec::new();
    for taken in lapsing.iter().chain(&held) {
        let (inbox, taken) = (inbox.clone(), taken.clone());
        marks.push(tokio::spawn(
            async move { inbox.succeed(&taken).await.unwrap() },
        ));
    }
    let mut marked = Vec::new();
    for mark in marks {
        marked.push(mark.await.unwrap());
    }
    assert_eq!(
        marked,
        [
            false, false, false, false, false, true, true, true, true, true
        ]
    );
    assert_eq!(inbox.list(&[EntryState::Done]).await.unwrap().len(), 5);
    // The lapsed ones run again, their lapsed runs counted.
    let again = inbox
        .take_many(kind, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 5);
    assert!(
        again
            .iter()
            .all(|taken| (taken.attempt, taken.interrupted_runs) == (2, 1))
    );
    // An entry's lapsed run and its live one, marked together: only the live one counts.
    let mut marks = Vec::new();
    for taken in lapsing.iter().zip(&again).flat_map(|(old, new)| [old, new]) {
        let (inbox, taken) = (inbox.clone(), taken.clone());
        marks.push(tokio::spawn(async move {
            (taken.attempt, inbox.succeed(&taken).await.unwrap())
        }));
    }
    for mark in marks {
        let (attempt, marked) = mark.await.unwrap();
        assert_eq!(marked, attempt == 2, "run {attempt}");
    }
    assert_eq!(inbox.list(&[EntryState::Done]).await.unwrap().len(), 10);
}

/// Cregis's final statuses exclude each other: once a payout holds one (6, done), another
/// (7), from a re-push or concurrent with the first, is refused with 409
/// `ConflictingFinalStatus` naming the recorded one, and nothing is written; a re-push of the
/// recorded one is still a duplicate.
pub async fn final_statuses_exclude_each_other<I: Inbox + Clone + 'static>(inbox: I) {
    use cregis_payout_callback::{CallbackStatus, Error};
    let verifier = Verifier::new(crate::common::key());
    let accept = |cid, push, status| {
        let (verifier, inbox) = (verifier.clone(), inbox.clone());
        async move {
            let body = crate::faults::delivery_of(cid, push, status);
            verifier.accept(body.as_bytes(), &inbox).await
        }
    };
    let (paid, failed) = (
        CallbackStatus::TransactionSuccessful,
        CallbackStatus::TransactionFailed,
    );
    assert!(accept(1, 0, paid).await.is_ack());
    let worker = Worker::new(inbox.clone(), |_: &PayoutCallback| async {
        Ok::<(), BoxError>(())
    });
    let running = tokio::spawn(worker.run(std::future::pending()));
    wait_for_one(&inbox, EntryState::Done).await;
    running.abort();
    let refused = accept(1, 1, failed).await;
    assert_eq!(refused.status_code(), 409, "{refused:?}");
    match refused.error() {
        Some(Error::ConflictingFinalStatus { key, recorded }) => {
            assert_eq!(
                (key.cid, key.fact.status(), *recorded),
                (1, Some(failed), paid)
            );
        }
        other => panic!("expected ConflictingFinalStatus, got {other:?}"),
    }
    assert!(accept(1, 2, paid).await.is_duplicate());

    // Both at once, for 40 payouts: one of each pair is accepted, the other refused.
    let mut both = Vec::new();
    for cid in 100..140 {
        both.push(tokio::spawn(accept(cid, 0, paid)));
        both.push(tokio::spawn(accept(cid, 0, failed)));
    }
    let mut answers = Vec::new();
    for answer in both {
        answers.push(answer.await.unwrap().status_code());
    }
    for answered in answers.chunks(2) {
        let mut codes = answered.to_vec();
        codes.sort_unstable();
        assert_eq!(codes, [200, 409]);
    }
    let total: u64 = inbox
        .counts()
        .await
        .unwrap()
        .iter()
        .map(|c| c.entries)
        .sum();
    assert_eq!(total, 41, "one entry per payout");
}
