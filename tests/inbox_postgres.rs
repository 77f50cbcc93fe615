//! The durable inbox on a real PostgreSQL server: every state and operation on the
//! database's clock, two instances sharing one table, and the handler's effect committed with
//! "done".
//!
//! These tests need a server: `.ci/run` starts one and runs them with `--ignored`; by hand,
//! `.ci/with-postgres cargo test --test inbox_postgres -- --ignored --test-threads=1` (as root).
//! They share one table and empty it first, so they run one at a time.
#![cfg(feature = "postgres")]

mod common;
#[path = "../examples/inbox_postgres.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::idempotency::{DeliveryKey, Fingerprint};
use cregis_payout_callback::inbox::{
    Accepted, AfterFailure, EntryState, Inbox, NewEntry, PgHandler, PgInbox, Worker,
};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{CallbackStatus, PayoutCallback, Verifier};
use sqlx::PgConnection;

const LEASE: Duration = Duration::from_secs(60);

/// A fresh, empty inbox on `DATABASE_URL` (and the host's `effects` table, empty too).
async fn inbox() -> PgInbox {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)");
    let inbox = PgInbox::connect(&url)
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query("TRUNCATE cregis_inbox")
        .execute(inbox.pool())
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS effects (cid bigint NOT NULL, status integer NOT NULL)",
    )
    .execute(inbox.pool())
    .await
    .unwrap();
    sqlx::query("TRUNCATE effects")
        .execute(inbox.pool())
        .await
        .unwrap();
    inbox
}

fn entry(cid: i64, content: u8) -> NewEntry<'static> {
    NewEntry {
        key: DeliveryKey::new(
            CallbackKind::Payout,
            1382528827416576,
            cid,
            Fact::Status(CallbackStatus::TransactionSuccessful),
        ),
        fingerprint: Fingerprint::from_bytes([content; 16]),
        body: b"{}",
        origin: cregis_payout_callback::Origin::Cregis,
    }
}

fn body(cid: i64) -> String {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .memo("")
        .raw("fee", r#""0.000001""#)
        .body(&common::key())
        .unwrap()
}

async fn count(inbox: &PgInbox, state: EntryState) -> usize {
    inbox.list(&[state]).await.unwrap().len()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn accept_take_renew_and_succeed_keep_the_contract() {
    let inbox = inbox().await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        inbox.accept(&entry(1, 1)).await.unwrap(),
        Accepted::Duplicate(id)
    );
    assert_eq!(
        inbox.accept(&entry(1, 2)).await.unwrap(),
        Accepted::Conflict(id)
    );
    assert_eq!(count(&inbox, EntryState::Pending).await, 1);

    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (taken.id, taken.attempt, taken.body.as_slice()),
        (id, 1, &b"{}"[..])
    );
    assert_eq!(count(&inbox, EntryState::Running).await, 1);
    assert_eq!(
        inbox.take(CallbackKind::Payout, LEASE).await.unwrap(),
        None,
        "held by its lease"
    );
    assert!(inbox.renew(&taken, LEASE).await.unwrap());
    assert!(inbox.succeed(&taken).await.unwrap());
    assert!(!inbox.succeed(&taken).await.unwrap(), "once");
    assert_eq!(count(&inbox, EntryState::Done).await, 1);
    assert_eq!(
        inbox.accept(&entry(1, 1)).await.unwrap(),
        Accepted::Duplicate(id)
    );
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn retries_and_leases_run_on_the_database_clock() {
    let inbox = inbox().await;
    let Accepted::New(id) = inbox.accept(&entry(1, 1)).await.unwrap() else {
        panic!()
    };
    let first = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    let delay = Duration::from_millis(400);
    assert!(
        inbox
            .fail(&first, "ledger is down", AfterFailure::RetryAfter(delay))
            .await
            .unwrap()
    );
    let waiting = inbox.list(&[EntryState::Waiting]).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].last_error.as_deref(), Some("ledger is down"));
    assert!(waiting[0].due_in.unwrap() <= delay);
    assert!(
        !inbox.renew(&first, LEASE).await.unwrap(),
        "a failed run holds nothing"
    );
    assert_eq!(
        inbox.take(CallbackKind::Payout, LEASE).await.unwrap(),
        None,
        "not yet due"
    );
    tokio::time::sleep(delay + Duration::from_millis(100)).await;

    // Taken again under a short lease, which lapses: a third run takes it over.
    let second = inbox
        .take(CallbackKind::Payout, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id, second.attempt), (id, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.id, third.attempt), (id, 3));
    assert!(
        !inbox.succeed(&second).await.unwrap(),
        "the lapsed run lost it"
    );
    assert!(
        !inbox
            .fail(&second, "late", AfterFailure::Dead)
            .await
            .unwrap()
    );
    assert!(inbox.succeed(&third).await.unwrap());
    assert_eq!(
        inbox.list(&[EntryState::Done]).await.unwrap()[0].attempts,
        3
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn dead_entries_are_listed_replayed_and_discarded() {
    let inbox = inbox().await;
    for cid in [1, 2] {
        inbox.accept(&entry(cid, 1)).await.unwrap();
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
    }
    let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("payout row missing"));
    assert_eq!(inbox.take(CallbackKind::Payout, LEASE).await.unwrap(), None);
    assert!(inbox.replay(dead[0].id).await.unwrap());
    assert!(!inbox.replay(dead[0].id).await.unwrap());
    assert_eq!(inbox.replay_dead().await.unwrap(), 1);
    let again = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.attempt, 2);
    assert!(!inbox.discard(again.id, "running").await.unwrap());
    assert!(
        inbox
            .fail(&again, "still missing", AfterFailure::Dead)
            .await
            .unwrap()
    );
    assert!(inbox.discard(again.id, "settled by hand").await.unwrap());
    assert!(!inbox.discard(again.id, "again").await.unwrap());
    assert!(matches!(
        inbox.accept(&entry(again.key.cid, 1)).await.unwrap(),
        Accepted::New(new) if new != again.id
    ));
    // A pending entry, and a waiting one, can be discarded too.
    let Accepted::New(pending) = inbox.accept(&entry(9, 1)).await.unwrap() else {
        panic!()
    };
    assert!(inbox.discard(pending, "sent by mistake").await.unwrap());
    inbox.accept(&entry(10, 1)).await.unwrap();
    let taken = inbox
        .take(CallbackKind::Payout, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(
        inbox
            .fail(&taken, "busy", AfterFailure::RetryAfter(LEASE))
            .await
            .unwrap()
    );
    assert!(inbox.discard(taken.id, "refunded by hand").await.unwrap());
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn a_newer_schema_is_refused_not_misread() {
    let inbox = inbox().await;
    let url = std::env::var("DATABASE_URL").unwrap();
    sqlx::query("INSERT INTO cregis_inbox_schema (version) VALUES (4)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let refused = PgInbox::connect(&url).await.map(drop);
    sqlx::query("DELETE FROM cregis_inbox_schema WHERE version = 4")
        .execute(inbox.pool())
        .await
        .unwrap();
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the inbox's schema is version 4; this crate knows versions up to 3"
    );
    // Instances starting at once all find (or make) the same schema.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { PgInbox::connect(&url).await.map(drop) }
            })
        })
        .collect();
    for open in opened {
        open.await.unwrap().unwrap();
    }
}

/// Writes `effects`, then fails the first run of every payout (after writing).
#[derive(Default)]
struct Ledger {
    runs: Mutex<HashMap<i64, u32>>,
}

impl PgHandler for Ledger {
    type Error = String;

    async fn handle(&self, callback: &PayoutCallback, tx: &mut PgConnection) -> Result<(), String> {
        sqlx::query("INSERT INTO effects (cid, status) VALUES ($1, $2)")
            .bind(callback.cid)
            .bind(callback.status.code())
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.entry(callback.cid).or_insert(0);
            *run += 1;
            *run
        };
        if run == 1 {
            return Err("the ledger is busy".to_owned());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn two_instances_apply_each_effect_once_in_the_inbox_transaction() {
    let inbox = inbox().await;
    let url = std::env::var("DATABASE_URL").unwrap();
    let verifier = Verifier::new(common::key());
    for cid in 0..100 {
        assert!(verifier.accept(body(cid).as_bytes(), &inbox).await.is_ack());
    }
    assert!(
        verifier
            .accept(body(7).as_bytes(), &inbox)
            .await
            .is_duplicate()
    );
    // Two instances: their own pools, their own workers, one table.
    let ledger = Arc::new(Ledger::default());
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let instance = PgInbox::connect(&url).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::in_transaction(instance, SharedLedger(Arc::clone(&ledger)))
            .retry(cregis_payout_callback::inbox::RetryPolicy {
                initial: Duration::from_millis(10),
                ..Default::default()
            })
            .poll_interval(Duration::from_millis(10));
        workers.push(tokio::spawn(worker.run(async {
            let _ = stopped.await;
        })));
        stops.push(stop);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&inbox, EntryState::Done).await < 100 {
        assert!(tokio::time::Instant::now() < deadline, "not all done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for worker in workers {
        worker.await.unwrap();
    }
    // Every first run failed after writing its effect: rolled back. Each effect once.
    let effects: Vec<(i64, i64)> =
        sqlx::query_as("SELECT cid, count(*) FROM effects GROUP BY cid ORDER BY cid")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(effects.len(), 100);
    assert!(effects.iter().all(|&(_, n)| n == 1), "{effects:?}");
    let done = inbox.list(&[EntryState::Done]).await.unwrap();
    assert!(done.iter().all(|entry| entry.attempts == 2), "{done:?}");
}

/// One ledger shared by both instances' workers.
struct SharedLedger(Arc<Ledger>);

impl PgHandler for SharedLedger {
    type Error = String;

    async fn handle(&self, callback: &PayoutCallback, tx: &mut PgConnection) -> Result<(), String> {
        self.0.handle(callback, tx).await
    }
}

/// Whether the pool's connection is encrypted, as the server sees it.
async fn over_tls(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn connections_use_tls_when_the_url_asks_for_it() {
    let url = std::env::var("DATABASE_URL").unwrap();
    let ca = std::env::var("CREGIS_PG_CA")
        .expect("CREGIS_PG_CA names the server's certificate (see .ci/with-postgres)");
    // The server's certificate checked against its CA and its address, as in production.
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    let inbox = PgInbox::connect(&verified).await.unwrap();
    assert!(over_tls(inbox.pool()).await);
    let store = cregis_payout_callback::idempotency::PgIdempotencyStore::connect(&verified)
        .await
        .unwrap();
    assert!(over_tls(store.pool()).await);
    // `sslmode=disable` is plain text; a certificate the URL does not trust is refused.
    let plain = PgInbox::connect(&format!("{url}?sslmode=disable"))
        .await
        .unwrap();
    assert!(!over_tls(plain.pool()).await);
    let untrusted = PgInbox::connect(&format!("{url}?sslmode=verify-full")).await;
    assert!(untrusted.is_err(), "a self-signed certificate was trusted");
}

/// Counts the runs of each payout.
#[derive(Default)]
struct Runs(Mutex<HashMap<i64, u32>>);

impl cregis_payout_callback::AsyncCallbackHandler for Runs {
    type Error = std::convert::Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
        *self.0.lock().unwrap().entry(callback.cid).or_insert(0) += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn an_entry_accepted_by_one_instance_wakes_the_idle_worker_of_another() {
    let receiving = inbox().await;
    let url = std::env::var("DATABASE_URL").unwrap();
    // The worker's instance: its own pool. Its poll is an hour away, so only the NOTIFY of
    // the receiving instance's accept can wake it in time.
    let working = PgInbox::connect(&url).await.unwrap();
    let runs = Arc::new(Runs::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(working, Arc::clone(&runs))
            .poll_interval(Duration::from_secs(3600))
            .run(async {
                let _ = stopped.await;
            }),
    );
    // Let the worker make its first (empty) look and start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let verifier = Verifier::new(common::key());
    for cid in [11, 12] {
        assert!(
            verifier
                .accept(body(cid).as_bytes(), &receiving)
                .await
                .is_ack()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.0.lock().unwrap().get(&cid).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cid {cid} never ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = stop.send(());
    worker.await.unwrap();
    assert_eq!(count(&receiving, EntryState::Done).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
async fn the_example_applies_a_matching_callback_and_refuses_a_mismatch_loudly() {
    let inbox = inbox().await;
    sqlx::query("DROP TABLE IF EXISTS payouts")
        .execute(inbox.pool())
        .await
        .unwrap();
    sqlx::query(example::PAYOUTS)
        .execute(inbox.pool())
        .await
        .unwrap();
    // order-21 as the callback describes it; order-22 recorded to another address.
    for (id, address) in [
        ("order-21", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS"),
        ("order-22", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FT"),
    ] {
        sqlx::query(
            "INSERT INTO payouts (third_party_id, amount, currency, address)
             VALUES ($1, '1.1', 'TRX', $2)",
        )
        .bind(id)
        .bind(address)
        .execute(inbox.pool())
        .await
        .unwrap();
    }
    let verifier = Verifier::new(common::key());
    for cid in [21, 22] {
        assert!(verifier.accept(body(cid).as_bytes(), &inbox).await.is_ack());
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::in_transaction(inbox.clone(), example::Payouts)
            .retry(cregis_payout_callback::inbox::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            })
            .run(async {
                let _ = stopped.await;
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(&inbox, EntryState::Done).await + count(&inbox, EntryState::Dead).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap();
    let statuses: Vec<(String, Option<i32>)> =
        sqlx::query_as("SELECT third_party_id, status FROM payouts ORDER BY third_party_id")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("order-21".to_owned(), Some(6)),
            ("order-22".to_owned(), None)
        ]
    );
    let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some(
            "payout order-22: the callback says address TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS, \
             our record says TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FT"
        )
    );
}
