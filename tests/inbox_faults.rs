//! Nothing lost, nothing twice: 1,000 payouts through the SQLite inbox over real HTTP, with a
//! handler that fails 30 % of its runs and panics in 2 %, and the server process `SIGKILL`ed
//! twice mid-run and restarted on the same database file. Every payout's effect (a row the
//! handler writes in the inbox's transaction) must be applied exactly once, no entry may be
//! dead, and every callback must end acknowledged.
//!
//! The server is this test binary run again as a child process (the ignored test `server`,
//! which does nothing unless `CREGIS_INBOX_FAULTS_DB` is set), so that it can be killed.
#![cfg(feature = "sqlite")]

mod common;
mod faults;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cregis_payout_callback::inbox::{SqliteHandler, SqliteInbox, Worker};
use cregis_payout_callback::{PayoutCallback, Verifier};
use faults::{Fate, PAYOUTS, Sent, Servers, start_server};
use sqlx::SqliteConnection;

const DB_VAR: &str = "CREGIS_INBOX_FAULTS_DB";

/// The host's handler: records the payout's new status in `effects`, in the inbox's
/// transaction, then fails or panics as fate says (after writing, so that only a rollback
/// keeps the effect from counting).
struct Ledger(Fate);

impl SqliteHandler for Ledger {
    type Error = String;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), String> {
        sqlx::query("INSERT INTO effects (cid, status, amount) VALUES (?, ?, ?)")
            .bind(callback.cid)
            .bind(callback.status.code())
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        // A moment inside the transaction, for the kills to land in.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.after_effect(callback, Duration::ZERO).await
    }
}

/// The child process: the inbox route and the worker, on the database `CREGIS_INBOX_FAULTS_DB`
/// names, until it is killed.
#[test]
#[ignore = "the server half of a_thousand_payouts_survive_kills_and_failures_exactly_once"]
fn server() {
    let Some(db) = std::env::var_os(DB_VAR) else {
        return;
    };
    let runtime = common::server_runtime();
    runtime.block_on(async move {
        let inbox = SqliteInbox::open(Path::new(&db)).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS effects
                 (cid INTEGER NOT NULL, status INTEGER NOT NULL, amount TEXT NOT NULL)",
        )
        .execute(inbox.pool())
        .await
        .unwrap();
        let worker = Worker::in_transaction(inbox.clone(), Ledger(Fate::new()))
            .retry(faults::retry_policy())
            .lease(Duration::from_millis(600))
            .poll_interval(Duration::from_millis(5));
        tokio::spawn(worker.run(std::future::pending()));
        let app = axum::Router::new().route(
            "/cb",
            cregis_payout_callback::axum::inbox_route(Verifier::new(common::key()), inbox),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

#[test]
fn a_thousand_payouts_survive_kills_and_failures_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let start = |db: &Path| start_server(&[(DB_VAR, db.as_os_str())]);
    let servers: Servers = Arc::new(RwLock::new(vec![start(&db)]));
    let sent = Arc::new(Sent::default());

    let runtime = common::server_runtime();
    let started = Instant::now();
    runtime.block_on(async {
        // The killer: SIGKILL the server after 300 and after 700 acknowledgements, and start
        // it again on the same file.
        let killer = {
            let (servers, sent, db) = (Arc::clone(&servers), Arc::clone(&sent), db.clone());
            tokio::task::spawn_blocking(move || {
                for at in [300, 700] {
                    faults::wait_for_acknowledged(&sent, at);
                    let mut servers = servers.write().unwrap();
                    servers[0].0.kill();
                    servers[0] = start(&db);
                }
            })
        };
        faults::send_all(&servers, &sent).await;
        killer.await.unwrap();
        assert_applied_exactly_once(&db).await;
    });
    servers.write().unwrap().clear();
    assert_eq!(
        sent.acknowledged.load(Ordering::SeqCst),
        usize::try_from(PAYOUTS).unwrap()
    );
    // No delivery was ever refused: while the server was up, every answer was `success`.
    assert_eq!(sent.refused.load(Ordering::SeqCst), 0);
    eprintln!("1,000 payouts, 2 kills: {:?}", started.elapsed());
}

/// Waits until every entry is done (through the restarted server's worker), then checks that
/// none is dead and that each payout's effect is in the ledger once.
async fn assert_applied_exactly_once(db: &Path) {
    let inbox = SqliteInbox::open(db).await.unwrap();
    let runs = faults::wait_all_done(&inbox).await;
    let effects: Vec<(i64, i64)> =
        sqlx::query_as("SELECT cid, count(*) FROM effects GROUP BY cid ORDER BY cid")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    faults::assert_each_applied_once(&effects);
    // The handler really failed and panicked along the way: more runs than payouts.
    assert!(runs > 1300, "{runs} runs");
}
