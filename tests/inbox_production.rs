//! The SQLite inbox under production conditions: accepts while slow in-transaction handlers
//! hold the write lock, a commit that fails, and the shared scenarios of `production` (runs
//! that never end, deadlines, shutdown, lost leases, release, retention, paging, extremes).
#![cfg(feature = "sqlite")]

mod common;
mod faults;
mod production;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteHandler, SqliteInbox, Worker};
use cregis_payout_callback::{CallbackKind, PayoutCallback};
use production::Renewal;
use sqlx::SqliteConnection;

/// A file inbox in a temporary directory.
async fn inbox() -> (SqliteInbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    (inbox, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_never_end_count_and_the_entry_dies_at_the_limit() {
    let (inbox, _dir) = inbox().await;
    production::runs_that_never_end_count(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_deadline_is_aborted_and_counted() {
    let (inbox, _dir) = inbox().await;
    production::a_handler_past_its_deadline_is_aborted(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_by_its_shutdown_deadline_and_releases_the_entry() {
    let (inbox, _dir) = inbox().await;
    let took = production::shutdown_returns_by_its_deadline(inbox).await;
    eprintln!("Worker::run returned {took:?} after the shutdown signal (deadline 300 ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_renewals_never_let_two_runs_of_one_entry_overlap() {
    let (inbox, _dir) = inbox().await;
    let (runs, most) = production::a_run_without_its_lease_stops(inbox, Renewal::Fails).await;
    eprintln!("renewals failing: {runs} runs, at most {most} of one entry at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_run_at_once() {
    let (inbox, _dir) = inbox().await;
    let (runs, most) = production::a_run_without_its_lease_stops(inbox, Renewal::Lost).await;
    eprintln!("leases lost: {runs} runs, at most {most} of one entry at once");
}

#[tokio::test]
async fn an_operator_releases_a_running_entry_and_its_stale_run_is_fenced() {
    let (inbox, _dir) = inbox().await;
    production::a_released_entry_is_fenced_from_its_stale_run(inbox).await;
}

#[tokio::test]
async fn a_lapsed_lease_cannot_settle_the_entry() {
    let (inbox, _dir) = inbox().await;
    production::a_lapsed_lease_cannot_settle(inbox).await;
}

#[tokio::test]
async fn listing_pages_by_cursor_counts_in_one_query_and_replays_in_one() {
    let (inbox, _dir) = inbox().await;
    production::listing_pages_counts_and_replays(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_done_entries_while_callbacks_keep_coming() {
    let (inbox, _dir) = inbox().await;
    let pool = inbox.pool().clone();
    production::retention_prunes_done_entries_under_load(inbox, || async move {
        sqlx::query(
            "UPDATE cregis_inbox SET finished_ms = finished_ms - 31 * 24 * 3600 * 1000
             WHERE finished_ms IS NOT NULL",
        )
        .execute(&pool)
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_at_its_extremes_runs_without_a_panic() {
    let (inbox, _dir) = inbox().await;
    production::every_setting_at_its_extremes(inbox).await;
}

/// The host's ledger, written in the inbox's transaction; payouts in `slow` take 7 s there
/// (a lock wait, a stuck query), holding SQLite's write lock.
struct SlowLedger {
    started: Arc<AtomicU32>,
}

impl SqliteHandler for SlowLedger {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        sqlx::query("INSERT INTO ledger (cid, amount) VALUES (?, ?)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        tokio::time::sleep(Duration::from_secs(7)).await;
        Ok(())
    }
}

/// The reproduction of 0.2's 500s: two workers of four in-transaction handlers that each take
/// 7 s; callbacks arriving meanwhile are all answered `success`, each within about one
/// handler's deadline (2 s by default), never at the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_during_slow_in_transaction_handlers_are_all_answered_success() {
    let (inbox, _dir) = inbox().await;
    sqlx::query("CREATE TABLE ledger (cid INTEGER NOT NULL, amount TEXT NOT NULL)")
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
                .poll_interval(Duration::from_millis(10));
            tokio::spawn(worker.run(std::future::pending()))
        })
        .collect();
    production::wait_until(&started, 1).await;
    // 60 callbacks over 3 s, each its own request, as Cregis sends them.
    let latencies = production::accept_60_timed(&inbox, "during 7 s in-transaction handlers").await;
    for worker in workers {
        worker.abort();
    }
    let max = *latencies.last().unwrap();
    assert!(max < Duration::from_secs(3), "{max:?}");
    // The slow runs were aborted at their deadline, and count as failures.
    let waiting = inbox
        .list(&[
            EntryState::Waiting,
            EntryState::Pending,
            EntryState::Running,
        ])
        .await
        .unwrap();
    assert!(waiting.iter().any(|entry| {
        entry
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("deadline of 2s"))
    }));
}

/// The ledger's row must name a known order, checked at commit (a deferred foreign key).
struct DeferredLedger;

impl SqliteHandler for DeferredLedger {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ledger (order_id, amount) VALUES (?, ?)")
            .bind(&callback.third_party_id)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A commit that fails is a failed run, recorded with the database's error, and the entry
/// dies at the policy's limit (0.2 only logged it, and ran the entry for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_is_a_failed_run_and_dead_at_the_limit() {
    let (inbox, _dir) = inbox().await;
    for statement in [
        "CREATE TABLE orders (id TEXT PRIMARY KEY)",
        "CREATE TABLE ledger (
             order_id TEXT NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
             amount   TEXT NOT NULL
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
            && error.contains("FOREIGN KEY constraint failed"),
        "{error}"
    );
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(ledger, 0, "every run rolled back");
}

/// Listing one state reads the `(state, id)` index, never the whole table: its cost does not
/// grow with the done entries (measured in `benches/inbox_list`).
#[tokio::test]
async fn listing_a_state_reads_an_index_not_the_table() {
    let (inbox, _dir) = inbox().await;
    production::accept(&inbox, 1).await;
    // The shape of the listing's query for one stored state, as `page` writes it.
    let rows = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT id, last_error FROM cregis_inbox
         WHERE (state = 'dead') AND id > ?1 ORDER BY id LIMIT ?2",
    )
    .bind(i64::MIN)
    .bind(100)
    .fetch_all(inbox.pool())
    .await
    .unwrap();
    let details: Vec<String> = rows
        .iter()
        .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
        .collect();
    assert!(
        details
            .iter()
            .any(|detail| detail.contains("INDEX cregis_inbox_state")),
        "{details:?}"
    );
}

/// An inbox file written by 0.2 (schema version 1) is brought to version 2 on open, its
/// entries kept.
#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        for statement in [
            "CREATE TABLE cregis_inbox_schema (version INTEGER NOT NULL)",
            "INSERT INTO cregis_inbox_schema (version) VALUES (1)",
            "CREATE TABLE cregis_inbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, pid INTEGER NOT NULL,
                cid INTEGER NOT NULL, status INTEGER NOT NULL, fingerprint BLOB NOT NULL,
                body BLOB NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
                attempts INTEGER NOT NULL DEFAULT 0, due_ms INTEGER NOT NULL,
                lease_until_ms INTEGER, last_error TEXT, accepted_ms INTEGER NOT NULL,
                finished_ms INTEGER, UNIQUE (kind, pid, cid, status)
            )",
            "CREATE INDEX cregis_inbox_due ON cregis_inbox (kind, state, due_ms)",
            "INSERT INTO cregis_inbox (kind, pid, cid, status, fingerprint, body, state, attempts,
                 due_ms, lease_until_ms, accepted_ms)
             VALUES ('payout', 1382528827416576, 7, 6, x'00', x'7b7d', 'pending', 1, 0, 1, 0)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let inbox = SqliteInbox::open(&path).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM cregis_inbox_schema")
        .fetch_one(inbox.pool())
        .await
        .unwrap();
    assert_eq!(version, 3);
    // Its lapsed run (lease set, never settled) counts at the next take.
    let taken = inbox
        .take(CallbackKind::Payout, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (taken.key.cid, taken.attempt, taken.interrupted_runs),
        (7, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_of_one_fact_are_new_once_duplicate_or_conflict() {
    let (inbox, _dir) = inbox().await;
    production::concurrent_accepts_of_one_fact_are_new_once(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_marked_in_one_batch_never_settle_a_lapsed_run() {
    let (inbox, _dir) = inbox().await;
    production::a_batch_of_completions_keeps_the_fencing(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_final_status_of_a_payout_is_refused() {
    let (inbox, _dir) = inbox().await;
    production::final_statuses_exclude_each_other(inbox).await;
}

/// A handler that writes its ledger row, then hangs for payout [`HANGS`], and fails or
/// panics for two payouts in three of the others, by `cid`.
struct Mixed;

/// The payout [`Mixed`] hangs on.
const HANGS: i64 = 1000;

impl SqliteHandler for Mixed {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ledger (cid, amount) VALUES (?, ?)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        if callback.cid == HANGS {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        match callback.cid % 3 {
            1 => Err(sqlx::Error::Protocol("the ledger refused it".to_owned())),
            2 => panic!("the ledger panicked"),
            _ => Ok(()),
        }
    }
}

/// Runs that share one transaction keep each other's effects apart: a run that fails or
/// panics is rolled back to its own savepoint and dead (one attempt allowed), every other
/// run's effect is committed once, and nothing of the failed ones remains. (A handler that
/// hangs keeps the runs queued behind it waiting, sharing or not: see
/// `a_handler_past_its_deadline_is_aborted_and_counted`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_sharing_a_transaction_keep_each_others_effects_apart() {
    let (inbox, _dir) = inbox().await;
    sqlx::query("CREATE TABLE ledger (cid INTEGER NOT NULL, amount TEXT NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    let cids = 200..248_i64;
    for cid in cids.clone() {
        production::accept(&inbox, cid).await;
    }
    let worker = Worker::in_transaction(inbox.clone(), Mixed)
        .concurrency(32)
        .retry(production::policy(1))
        .poll_interval(Duration::from_millis(10));
    let running = tokio::spawn(worker.run(std::future::pending()));
    let done = production::wait_for(&inbox, EntryState::Done, 16).await;
    let dead = production::wait_for(&inbox, EntryState::Dead, 32).await;
    running.abort();
    let mut done: Vec<i64> = done.iter().map(|entry| entry.key.cid).collect();
    done.sort_unstable();
    let applied: Vec<i64> = cids.clone().filter(|cid| cid % 3 == 0).collect();
    assert_eq!(done, applied);
    for entry in &dead {
        let error = entry.last_error.as_deref().unwrap_or_default();
        let expected = if entry.key.cid % 3 == 1 {
            "the ledger refused it"
        } else {
            "the ledger panicked"
        };
        assert!(error.contains(expected), "{}: {error}", entry.key.cid);
    }
    let ledger: Vec<i64> = sqlx::query_scalar("SELECT cid FROM ledger ORDER BY cid")
        .fetch_all(inbox.pool())
        .await
        .unwrap();
    assert_eq!(
        ledger, applied,
        "each applied once, nothing of the failed runs"
    );
}

/// A run that hangs in a shared transaction is aborted at its deadline and rolled back to its
/// savepoint; the run applied before it in the same transaction is committed (aborted too,
/// while it waited for the commit, it is still done: its effect and mark committed), and
/// every done entry has exactly its one ledger row. On one thread, so that the runs take the
/// transaction in the order they were taken (the first applied, the second waiting to join).
#[tokio::test]
async fn a_run_hanging_in_a_shared_transaction_rolls_back_alone() {
    let (inbox, _dir) = inbox().await;
    sqlx::query("CREATE TABLE ledger (cid INTEGER NOT NULL, amount TEXT NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    // Taken in this order: the one applied, then the one that hangs.
    for cid in [HANGS - 1, HANGS] {
        production::accept(&inbox, cid).await;
    }
    let worker = Worker::in_transaction(inbox.clone(), Mixed)
        .concurrency(2)
        .deadline(Duration::from_millis(300))
        .retry(production::policy(1))
        .poll_interval(Duration::from_millis(10));
    let running = tokio::spawn(worker.run(std::future::pending()));
    let dead = production::wait_for_one(&inbox, EntryState::Dead).await;
    let done = production::wait_for_one(&inbox, EntryState::Done).await;
    running.abort();
    assert_eq!((done.key.cid, dead.key.cid), (HANGS - 1, HANGS));
    let error = dead.last_error.unwrap_or_default();
    assert!(error.contains("deadline of 300ms"), "{error}");
    let ledger: Vec<i64> = sqlx::query_scalar("SELECT cid FROM ledger")
        .fetch_all(inbox.pool())
        .await
        .unwrap();
    assert_eq!(ledger, [HANGS - 1]);
}
