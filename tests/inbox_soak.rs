//! The soak, on SQLite: callbacks at a fixed rate (300 a second by default) for 60 s over real
//! HTTP, to a server whose in-transaction handler stalls past its deadline in 5 % of its
//! runs, fails in 20 % and panics in 1 %, `SIGKILL`ed once halfway and restarted on the same
//! file. Every callback must be acknowledged (no answer but `success` while the server is up),
//! every effect applied exactly once, and the backlog drained; the accept latencies and the
//! largest backlog are printed.
//!
//! Over a minute, so not in plain `cargo test`: `.ci/run` runs it; by hand,
//! `cargo test --release --test inbox_soak -- --ignored --nocapture` (`CREGIS_SOAK_RATE`,
//! `CREGIS_SOAK_SECS` change the rate and the length).
#![cfg(feature = "sqlite")]

mod common;
mod faults;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cregis_payout_callback::inbox::{SqliteHandler, SqliteInbox, Worker};
use cregis_payout_callback::{PayoutCallback, Verifier};
use faults::{Fate, Servers, start_server};
use sqlx::SqliteConnection;

const DB_VAR: &str = "CREGIS_SOAK_DB";

/// The in-transaction handlers' deadline in the soak: a stall (5 % of runs) holds SQLite's
/// write lock this long, then is rolled back.
const DEADLINE: Duration = Duration::from_millis(10);

/// The host's ledger: the payout's effect in the inbox's transaction, then its fate.
struct Ledger(Fate);

impl SqliteHandler for Ledger {
    type Error = String;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), String> {
        sqlx::query("INSERT INTO effects (cid, amount) VALUES (?, ?)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        self.0.after_effect(callback, DEADLINE * 3).await
    }
}

/// The child process: the inbox route and the worker on the file `CREGIS_SOAK_DB` names.
#[test]
#[ignore = "the server half of the soak"]
fn server() {
    let Some(db) = std::env::var_os(DB_VAR) else {
        return;
    };
    let runtime = common::server_runtime();
    runtime.block_on(async move {
        let inbox = SqliteInbox::open(Path::new(&db)).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS effects (cid INTEGER NOT NULL, amount TEXT NOT NULL)",
        )
        .execute(inbox.pool())
        .await
        .unwrap();
        let worker = Worker::in_transaction(inbox.clone(), Ledger(Fate::soak()))
            .retry(faults::retry_policy())
            .deadline(DEADLINE)
            .lease(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(10));
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

/// A setting of the soak from the environment, or its default.
pub fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a minute long: .ci/run runs it"]
fn a_minute_at_a_fixed_rate_with_stalls_failures_panics_and_a_kill() {
    let (rate, secs) = (
        setting("CREGIS_SOAK_RATE", 300),
        setting("CREGIS_SOAK_SECS", 60),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let start = |db: &Path| start_server(&[(DB_VAR, db.as_os_str())]);
    let servers: Servers = Arc::new(RwLock::new(vec![start(&db)]));
    let runtime = common::server_runtime();
    runtime.block_on(async {
        let inbox = SqliteInbox::open(&db).await.unwrap();
        let kill = {
            let (servers, db) = (Arc::clone(&servers), db.clone());
            move || {
                let mut servers = servers.write().unwrap();
                servers[0].0.kill();
                servers[0] = start(&db);
            }
        };
        let soak = faults::soak(
            &servers,
            &inbox,
            rate,
            Duration::from_secs(secs.into()),
            kill,
        )
        .await;
        let runs = faults::wait_done(&inbox, soak.sent).await;
        let effects: Vec<(i64, i64)> =
            sqlx::query_as("SELECT cid, count(*) FROM effects GROUP BY cid ORDER BY cid")
                .fetch_all(inbox.pool())
                .await
                .unwrap();
        faults::assert_each_of_n_applied_once(&effects, soak.sent);
        soak.report(&format!("SQLite soak: {rate}/s for {secs} s"), runs);
    });
    servers.write().unwrap().clear();
}
