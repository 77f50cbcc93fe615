//! `PgIdempotencyStore` and its example against a real server: two instances, one table.
//!
//! These tests need a PostgreSQL server, so plain `cargo test` skips them; `.ci/run` starts one
//! and runs them with `--ignored`. Given `DATABASE_URL`, they fail (never skip) if the
//! database cannot be reached. By hand:
//! `.ci/with-postgres cargo test --test postgres_store -- --ignored`.

mod common;
mod e2e;
#[path = "../examples/postgres_store.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DOC_EXAMPLE, KEY, signed_body, with_field};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::idempotency::{
    AsyncIdempotencyStore, Attempt, Claim, DeliveryKey, Fingerprint, PgIdempotencyStore,
};
use cregis_payout_callback::{AsyncCallbackHandler, CallbackStatus, PayoutCallback, Verifier};
use e2e::{post, post_and_hang_up};
use example::{ROUTE, app};

/// Long enough that the re-push within it lands in time on a loaded machine.
const LEASE: Duration = Duration::from_secs(5);

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)")
}

async fn store() -> PgIdempotencyStore {
    PgIdempotencyStore::connect(&database_url())
        .await
        .expect("PostgreSQL is reachable at DATABASE_URL")
}

/// The side effect, counted per `cid` across instances; each run waits `delay` first.
#[derive(Clone, Default)]
struct Effects {
    delay: Duration,
    counts: Arc<Mutex<HashMap<i64, usize>>>,
}

impl Effects {
    fn count(&self, cid: i64) -> usize {
        self.counts.lock().unwrap().get(&cid).copied().unwrap_or(0)
    }
}

impl AsyncCallbackHandler for Effects {
    type Error = std::convert::Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
        tokio::time::sleep(self.delay).await;
        *self.counts.lock().unwrap().entry(callback.cid).or_default() += 1;
        Ok(())
    }
}

/// One instance on the test's runtime: its own pool, its own verifier, its own server.
async fn instance(effects: Effects) -> String {
    let verifier = Verifier::builder(common::key())
        .idempotency(store().await)
        .claim_lease(LEASE)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{ROUTE}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app(verifier, effects)).await.unwrap();
    });
    url
}

/// A `cid` no other test (or earlier run) uses.
fn fresh_cid() -> i64 {
    i64::try_from(RandomState::new().hash_one(0u8) >> 2).unwrap()
}

/// The documented example for payout `cid`, with status 6 and `amount`, signed.
fn callback(cid: i64, amount: &str) -> String {
    let pairs = with_field(DOC_EXAMPLE, "cid", &cid.to_string());
    let pairs = with_field(&pairs, "status", "6");
    signed_body(&with_field(&pairs, "amount", &format!("\"{amount}\"")), KEY)
}

fn key(cid: i64) -> DeliveryKey {
    DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        cid,
        Fact::Status(CallbackStatus::TransactionSuccessful),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn concurrent_duplicates_across_two_instances_run_the_effect_once() {
    let effects = Effects {
        delay: Duration::from_millis(100),
        ..Effects::default()
    };
    let first = instance(effects.clone()).await;
    let second = instance(effects.clone()).await;
    let cids: Vec<i64> = (0..5).map(|_| fresh_cid()).collect();
    let mut deliveries = Vec::new();
    for &cid in &cids {
        let body = callback(cid, "1.1");
        for url in [&first, &second].repeat(8) {
            let (url, body) = (url.clone(), body.clone());
            deliveries.push(tokio::spawn(async move { post(&url, body).await }));
        }
    }
    for delivery in deliveries {
        let answer = delivery.await.unwrap();
        assert!(
            (answer.status, answer.body.as_str()) == (200, "success") || answer.status == 409,
            "{answer}"
        );
    }
    for &cid in &cids {
        assert_eq!(effects.count(cid), 1, "cid {cid}");
        // Settled: a re-push at either instance is acknowledged, and runs nothing.
        for url in [&first, &second] {
            let answer = post(url, callback(cid, "1.1")).await;
            assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
        }
        assert_eq!(effects.count(cid), 1, "cid {cid}");
        // The same fact with another amount is a conflict, at either instance.
        for url in [&first, &second] {
            let answer = post(url, callback(cid, "9.9")).await;
            assert_eq!(answer.status, 409, "{answer}");
            assert_eq!(
                answer.body,
                format!(
                    "delivery {} was already received with different content",
                    key(cid)
                )
            );
        }
    }
}

/// Instance A, on a runtime and thread of its own, so that it can be killed: every task of
/// it, the handler's included, is dropped mid-way, and nothing settles its claim.
struct Killable {
    addr: SocketAddr,
    kill: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_killable(effects: Effects) -> Killable {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = common::server_runtime();
        runtime.block_on(async move {
            let url = instance(effects).await;
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches(ROUTE)
                .parse()
                .unwrap();
            addr_tx.send(addr).unwrap();
            let _ = killed.await;
        });
        runtime.shutdown_background();
    });
    Killable {
        addr: addr_rx.recv().unwrap(),
        kill,
        thread,
    }
}

/// Delivers `body` (payout `cid`) to an instance whose handler takes 30 s, waits until that
/// handler holds the claim, and kills the instance.
async fn kill_mid_handler(store: &PgIdempotencyStore, effects: &Effects, body: &str, cid: i64) {
    let a = start_killable(Effects {
        delay: Duration::from_secs(30),
        ..effects.clone()
    });
    post_and_hang_up(a.addr, ROUTE, body.as_bytes(), Duration::from_millis(50)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store
        .claims_in_progress()
        .await
        .unwrap()
        .iter()
        .any(|claim| claim.key == key(cid))
    {
        assert!(tokio::time::Instant::now() < deadline, "A never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill.send(()).unwrap();
    a.thread.join().unwrap();
    assert_eq!(effects.count(cid), 0, "A died before its effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn an_instance_killed_mid_handler_is_taken_over_after_the_lease() {
    let store = store().await;
    let effects = Effects::default();
    let b = instance(effects.clone()).await;
    let cid = fresh_cid();
    let body = callback(cid, "1.1");
    kill_mid_handler(&store, &effects, &body, cid).await;

    // Within the lease, B refuses the re-push; after it, B takes the claim over and completes.
    let answer = post(&b, body.clone()).await;
    assert_eq!(answer.status, 409, "{answer}");
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let answer = post(&b, body.clone()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(effects.count(cid), 1);
    assert!(
        !store
            .claims_in_progress()
            .await
            .unwrap()
            .iter()
            .any(|claim| claim.key == key(cid))
    );
    assert_eq!(post(&b, body).await.body, "success");
    assert_eq!(effects.count(cid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn the_host_releases_a_stuck_claim_by_key() {
    let store = store().await;
    let effects = Effects::default();
    let cid = fresh_cid();
    let body = callback(cid, "1.1");
    kill_mid_handler(&store, &effects, &body, cid).await;
    let stuck = store.claims_in_progress().await.unwrap();
    let claim = stuck.iter().find(|claim| claim.key == key(cid)).unwrap();
    assert!(claim.lease_until > claim.started);
    assert!(store.release_claim(&key(cid)).await.unwrap());
    assert!(!store.release_claim(&key(cid)).await.unwrap());
    let b = instance(effects.clone()).await;
    assert_eq!(post(&b, body).await.body, "success");
    assert_eq!(effects.count(cid), 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn the_store_keeps_the_contract_and_says_when_it_takes_a_claim_over() {
    let store = store().await;
    // Leases run on the database's clock: this test waits for them in real time.
    let (key, lease) = (key(fresh_cid()), Duration::from_millis(800));
    let (content, other) = (
        Fingerprint::from_bytes([1; 16]),
        Fingerprint::from_bytes([2; 16]),
    );
    let at = |fingerprint| Attempt::new(key, fingerprint, std::time::SystemTime::now(), lease);
    let held = |store: &PgIdempotencyStore| {
        let store = store.clone();
        async move {
            let claims = store.claims_in_progress().await.unwrap();
            claims.iter().any(|claim| claim.key == key)
        }
    };

    // A new key is claimed; released, it is claimed anew (not taken over).
    let first = at(content);
    assert_eq!(store.claim(&first).await.unwrap(), Claim::Claimed);
    store.release(&first).await.unwrap();
    assert!(!held(&store).await);
    let first = at(content);
    assert_eq!(store.claim(&first).await.unwrap(), Claim::Claimed);
    // Within the lease: the same content is in progress, other content a conflict.
    assert_eq!(store.claim(&at(content)).await.unwrap(), Claim::InProgress);
    assert_eq!(store.claim(&at(other)).await.unwrap(), Claim::Conflict);
    // After the lease: taken over, and the claim says so; other content is still a conflict.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(store.claim(&at(other)).await.unwrap(), Claim::Conflict);
    let second = at(content);
    assert_eq!(store.claim(&second).await.unwrap(), Claim::TakenOver);
    // The attempt that lost its claim cannot free the one that took it.
    store.release(&first).await.unwrap();
    assert!(held(&store).await);
    assert_eq!(store.claim(&at(content)).await.unwrap(), Claim::InProgress);
    // Completed: the same content is done, other content a conflict.
    store.complete(&second).await.unwrap();
    assert!(!held(&store).await);
    assert_eq!(store.claim(&at(content)).await.unwrap(), Claim::AlreadyDone);
    assert_eq!(store.claim(&at(other)).await.unwrap(), Claim::Conflict);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn an_instance_whose_clock_jumped_ahead_cannot_take_over_a_live_claim() {
    let store = store().await;
    let key = key(fresh_cid());
    let content = Fingerprint::from_bytes([3; 16]);
    let lease = Duration::from_secs(60);
    let now = std::time::SystemTime::now();
    let live = Attempt::new(key, content, now, lease);
    assert_eq!(store.claim(&live).await.unwrap(), Claim::Claimed);
    // Another instance whose clock stepped an hour forward (NTP): by its clock the lease has
    // long ended, by the database's it has not.
    let jumped = Attempt::new(key, content, now + Duration::from_secs(3600), lease);
    assert_eq!(store.claim(&jumped).await.unwrap(), Claim::InProgress);
    let claims = store.claims_in_progress().await.unwrap();
    let claim = claims.iter().find(|claim| claim.key == key).unwrap();
    assert_eq!(
        claim.lease_until.duration_since(claim.started).unwrap(),
        lease
    );
    store.complete(&live).await.unwrap();
    assert_eq!(store.claim(&jumped).await.unwrap(), Claim::AlreadyDone);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres with --ignored"]
async fn a_second_final_status_of_a_payout_is_refused_across_instances() {
    // Two verifiers with their own pools: the pairs race across connections.
    let store = store().await;
    sqlx::query("DELETE FROM cregis_claims WHERE cid = 1 OR cid BETWEEN 100 AND 119")
        .execute(store.pool())
        .await
        .unwrap();
    let verifiers = [
        Verifier::builder(common::key()).idempotency(store).build(),
        Verifier::builder(common::key())
            .idempotency(self::store().await)
            .build(),
    ];
    let effects = Effects::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    common::final_statuses_exclude_each_other(|body| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (verifier, effects) = (verifiers[n % 2].clone(), effects.clone());
        async move { verifier.process_async(body.as_bytes(), &effects).await }
    })
    .await;
    let total: usize = effects.counts.lock().unwrap().values().sum();
    assert_eq!(total, 21);
}
