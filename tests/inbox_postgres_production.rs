//! The PostgreSQL inbox under production conditions: accepts while in-transaction handlers
//! hold every connection of the host's pool, a commit that fails, and the shared scenarios of
//! `production`.
//!
//! These tests need a server: `.ci/run` starts one and runs them with `--ignored`; by hand,
//! `.ci/with-postgres cargo test --test inbox_postgres_production -- --ignored --test-threads=1`
//! (as root). They share the inbox's table and empty it first, so they run one at a time.
#![cfg(feature = "postgres")]

mod common;
mod faults;
mod production;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cregis_payout_callback::idempotency::{
    AsyncIdempotencyStore, Attempt, Claim, DeliveryKey, Fact, Fingerprint, PgIdempotencyStore,
};
use cregis_payout_callback::inbox::{EntryState, PgHandler, PgInbox, Worker};
use cregis_payout_callback::{CallbackKind, CallbackStatus, PayoutCallback};
use production::Renewal;
use sqlx::PgConnection;

/// A fresh, empty inbox on `DATABASE_URL`, the host's tables of these tests dropped.
async fn inbox() -> PgInbox {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)");
    let inbox = PgInbox::connect(&url)
        .await
        .expect("PostgreSQL is reachable");
    for statement in [
        "TRUNCATE cregis_inbox",
        "DROP TABLE IF EXISTS production_ledger",
        "DROP TABLE IF EXISTS production_orders",
    ] {
        sqlx::query(statement).execute(inbox.pool()).await.unwrap();
    }
    inbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn runs_that_never_end_count_and_the_entry_dies_at_the_limit() {
    production::runs_that_never_end_count(inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_handler_past_its_deadline_is_aborted_and_counted() {
    production::a_handler_past_its_deadline_is_aborted(inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn run_returns_by_its_shutdown_deadline_and_releases_the_entry() {
    let took = production::shutdown_returns_by_its_deadline(inbox().await).await;
    eprintln!("Worker::run returned {took:?} after the shutdown signal (deadline 300 ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn failing_renewals_never_let_two_runs_of_one_entry_overlap() {
    let (runs, most) =
        production::a_run_without_its_lease_stops(inbox().await, Renewal::Fails).await;
    eprintln!("renewals failing: {runs} runs, at most {most} of one entry at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_lost_lease_stops_the_run_at_once() {
    let (runs, most) =
        production::a_run_without_its_lease_stops(inbox().await, Renewal::Lost).await;
    eprintln!("leases lost: {runs} runs, at most {most} of one entry at once");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn an_operator_releases_a_running_entry_and_its_stale_run_is_fenced() {
    production::a_released_entry_is_fenced_from_its_stale_run(inbox().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_lapsed_lease_cannot_settle_the_entry() {
    production::a_lapsed_lease_cannot_settle(inbox().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn listing_pages_by_cursor_counts_in_one_query_and_replays_in_one() {
    production::listing_pages_counts_and_replays(inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn retention_deletes_old_done_entries_while_callbacks_keep_coming() {
    let inbox = inbox().await;
    let pool = inbox.pool().clone();
    production::retention_prunes_done_entries_under_load(inbox, || async move {
        sqlx::query(
            "UPDATE cregis_inbox SET finished_at = finished_at - interval '31 days'
             WHERE finished_at IS NOT NULL",
        )
        .execute(&pool)
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn every_setting_at_its_extremes_runs_without_a_panic() {
    production::every_setting_at_its_extremes(inbox().await).await;
}

/// A claim lease of `Duration::MAX` is stored as far ahead, not as an SQL error.
#[tokio::test]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn the_claims_table_takes_the_longest_lease_and_prunes() {
    let url = std::env::var("DATABASE_URL").unwrap();
    let store = PgIdempotencyStore::connect(&url).await.unwrap();
    sqlx::query("TRUNCATE cregis_claims")
        .execute(store.pool())
        .await
        .unwrap();
    let key = DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        77,
        Fact::Status(CallbackStatus::TransactionSuccessful),
    );
    let attempt = Attempt::new(
        key,
        Fingerprint::from_bytes([1; 16]),
        std::time::SystemTime::now(),
        Duration::MAX,
    );
    assert_eq!(store.claim(&attempt).await.unwrap(), Claim::Claimed);
    store.complete(&attempt).await.unwrap();
    assert_eq!(store.prune(Duration::MAX, usize::MAX).await.unwrap(), 0);
    sqlx::query("UPDATE cregis_claims SET started_at = started_at - interval '31 days'")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        store
            .prune(Duration::from_secs(30 * 24 * 3600), 1000)
            .await
            .unwrap(),
        1
    );
}

/// The host's ledger, written in the inbox's transaction, after a query that takes 7 s (a
/// lock wait, a slow plan): each run holds one of the host pool's connections for 7 s.
struct SlowLedger {
    started: Arc<AtomicU32>,
}

impl PgHandler for SlowLedger {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        sqlx::query("INSERT INTO production_ledger (cid, amount) VALUES ($1, $2)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_sleep(7)").execute(&mut *tx).await?;
        Ok(())
    }
}

/// The reproduction of 0.2's 500s after 30 s: two in-transaction workers (payout and
/// withdrawal in the reproduction; two of payouts here) of four handlers each hold all 8
/// connections of the host's pool for 7 s at a time; callbacks arriving meanwhile are all
/// answered `success` at once, on the inbox's own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn accepts_while_handlers_hold_every_pool_connection_are_all_answered_success() {
    let inbox = inbox().await;
    sqlx::query("CREATE TABLE production_ledger (cid bigint NOT NULL, amount text NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    for cid in 0..8 {
        production::accept(&inbox, cid).await;
    }
    let started = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let ledger = SlowLedger {
                started: Arc::clone(&started),
            };
            let worker = Worker::in_transaction(inbox.clone(), ledger)
                .deadline(Duration::from_secs(10))
                .poll_interval(Duration::from_millis(10));
            tokio::spawn(worker.run(std::future::pending()))
        })
        .collect();
    production::wait_until(&started, 8).await;
    let latencies =
        production::accept_60_timed(&inbox, "while 8 handlers hold the host's pool").await;
    for worker in workers {
        worker.abort();
    }
    let max = *latencies.last().unwrap();
    assert!(max < Duration::from_secs(2), "{max:?}");
}

/// The ledger's row must name a known order, checked at commit (a deferred foreign key).
struct DeferredLedger;

impl PgHandler for DeferredLedger {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO production_ledger (order_id, amount) VALUES ($1, $2)")
            .bind(&callback.third_party_id)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A commit that fails is a failed run, recorded with the database's error, and the entry
/// dies at the policy's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_commit_that_fails_is_a_failed_run_and_dead_at_the_limit() {
    let inbox = inbox().await;
    for statement in [
        "CREATE TABLE production_orders (id text PRIMARY KEY)",
        "CREATE TABLE production_ledger (
             order_id text NOT NULL REFERENCES production_orders (id) DEFERRABLE INITIALLY DEFERRED,
             amount   text NOT NULL
         )",
    ] {
        sqlx::query(statement).execute(inbox.pool()).await.unwrap();
    }
    production::accept(&inbox, 40).await;
    let worker = Worker::in_transaction(inbox.clone(), DeferredLedger)
        .retry(production::policy(3))
        .poll_interval(Duration::from_millis(10));
    let running = tokio::spawn(worker.run(std::future::pending()));
    let dead = production::wait_for_one(&inbox, EntryState::Dead).await;
    running.abort();
    assert_eq!(dead.attempts, 3);
    let error = dead.last_error.unwrap();
    assert!(
        error.starts_with("the inbox could not record the outcome: ")
            && error.contains("foreign key"),
        "{error}"
    );
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM production_ledger")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(ledger, 0, "every run rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn concurrent_accepts_of_one_fact_are_new_once_duplicate_or_conflict() {
    production::concurrent_accepts_of_one_fact_are_new_once(inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn completions_marked_in_one_batch_never_settle_a_lapsed_run() {
    production::a_batch_of_completions_keeps_the_fencing(inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_second_final_status_of_a_payout_is_refused() {
    production::final_statuses_exclude_each_other(inbox().await).await;
}
