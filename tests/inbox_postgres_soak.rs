//! The soak, on PostgreSQL: callbacks at a fixed rate (150 a second by default) for 60 s over
//! real HTTP, to two instances sharing one inbox, whose in-transaction handler stalls past its
//! deadline in 5 % of its runs, fails in 20 % and panics in 1 %; one instance is `SIGKILL`ed
//! halfway and restarted. Every callback must be acknowledged (no answer but `success` while the server is up),
//! every effect applied exactly once, and the backlog drained; the accept latencies and the
//! largest backlog are printed.
//!
//! 150 a second, not the SQLite soak's 300: the two instances, the sender and the server share
//! the VM's two cores, and the debug build's TLS to the database takes most of them.
//!
//! Needs a server and over a minute: `.ci/run` runs it; by hand,
//! `.ci/with-postgres cargo test --test inbox_postgres_soak -- --ignored --nocapture` (as root;
//! `CREGIS_SOAK_RATE`, `CREGIS_SOAK_SECS` change the rate and the length).
#![cfg(feature = "postgres")]

mod common;
mod faults;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cregis_payout_callback::inbox::{PgHandler, PgInbox, Worker};
use cregis_payout_callback::{PayoutCallback, Verifier};
use faults::{Fate, Servers, start_server};
use sqlx::PgConnection;

const URL_VAR: &str = "CREGIS_SOAK_PG";

/// The in-transaction handlers' deadline in the soak: a stall (5 % of runs) holds its
/// transaction and connection this long, then is rolled back.
const DEADLINE: Duration = Duration::from_millis(50);

/// The host's ledger: the payout's effect in the inbox's transaction, then its fate.
struct Ledger(Fate);

impl PgHandler for Ledger {
    type Error = String;

    async fn handle(&self, callback: &PayoutCallback, tx: &mut PgConnection) -> Result<(), String> {
        sqlx::query("INSERT INTO soak_effects (cid, amount) VALUES ($1, $2)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        self.0.after_effect(callback, DEADLINE * 3).await
    }
}

/// One instance: the inbox route and the worker on the database `CREGIS_SOAK_PG` names.
#[test]
#[ignore = "the server half of the soak"]
fn server() {
    let Some(url) = std::env::var_os(URL_VAR) else {
        return;
    };
    let url = url.into_string().unwrap();
    let runtime = common::server_runtime();
    runtime.block_on(async move {
        let inbox = PgInbox::connect(&url).await.unwrap();
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
#[ignore = "needs PostgreSQL and a minute: .ci/run runs it"]
fn a_minute_at_a_fixed_rate_with_stalls_failures_panics_and_a_kill() {
    let (rate, secs) = (
        setting("CREGIS_SOAK_RATE", 150),
        setting("CREGIS_SOAK_SECS", 60),
    );
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)");
    let runtime = common::server_runtime();
    runtime.block_on(async {
        let inbox = PgInbox::connect(&url).await.unwrap();
        for statement in [
            "TRUNCATE cregis_inbox",
            "DROP TABLE IF EXISTS soak_effects",
            "CREATE TABLE soak_effects (cid bigint NOT NULL, amount text NOT NULL)",
        ] {
            sqlx::query(statement).execute(inbox.pool()).await.unwrap();
        }
    });
    let start = {
        let url = url.clone();
        move || start_server(&[(URL_VAR, std::ffi::OsStr::new(&url))])
    };
    let servers: Servers = Arc::new(RwLock::new(vec![start(), start()]));
    runtime.block_on(async {
        let inbox = PgInbox::connect(&url).await.unwrap();
        let kill = {
            let servers = Arc::clone(&servers);
            move || {
                let mut servers = servers.write().unwrap();
                servers[0].0.kill();
                servers[0] = start();
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
            sqlx::query_as("SELECT cid, count(*) FROM soak_effects GROUP BY cid ORDER BY cid")
                .fetch_all(inbox.pool())
                .await
                .unwrap();
        faults::assert_each_of_n_applied_once(&effects, soak.sent);
        soak.report(
            &format!("PostgreSQL soak, 2 instances: {rate}/s for {secs} s"),
            runs,
        );
    });
    servers.write().unwrap().clear();
}
