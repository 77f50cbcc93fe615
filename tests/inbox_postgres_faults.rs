//! Nothing lost, nothing twice, on PostgreSQL: 1,000 payouts over real HTTP to two instances
//! sharing one inbox table, with a handler that fails 30 % of its runs and panics in 2 %, each
//! instance `SIGKILL`ed once mid-run and restarted, and the database server restarted once.
//! Every payout's effect (a row the handler writes in the inbox's transaction) must be applied
//! exactly once, no entry may be dead, every callback must end acknowledged, and the only
//! refusals are 500s while the database was restarting.
//!
//! Needs a server: `.ci/run` runs it; by hand,
//! `.ci/with-postgres cargo test --test inbox_postgres_faults -- --ignored` (as root), which
//! also says how to restart the server (`CREGIS_PG_RESTART`).
#![cfg(feature = "postgres")]

mod common;
mod faults;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cregis_payout_callback::inbox::{PgHandler, PgInbox, Worker};
use cregis_payout_callback::{PayoutCallback, Verifier};
use faults::{Fate, PAYOUTS, Sent, Servers, start_server};
use sqlx::PgConnection;

const URL_VAR: &str = "CREGIS_INBOX_FAULTS_PG";

/// The host's handler: records the payout in `fault_effects`, in the inbox's transaction, then fails
/// or panics as fate says.
struct Ledger(Fate);

impl PgHandler for Ledger {
    type Error = String;

    async fn handle(&self, callback: &PayoutCallback, tx: &mut PgConnection) -> Result<(), String> {
        sqlx::query("INSERT INTO fault_effects (cid, status, amount) VALUES ($1, $2, $3)")
            .bind(callback.cid)
            .bind(callback.status.code())
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.after_effect(callback, Duration::ZERO).await
    }
}

/// One instance: the inbox route and the worker on the database `CREGIS_INBOX_FAULTS_PG` names.
#[test]
#[ignore = "the server half of a_thousand_payouts_survive_kills_and_a_database_restart"]
fn server() {
    let Some(url) = std::env::var_os(URL_VAR) else {
        return;
    };
    let url = url.into_string().unwrap();
    let runtime = common::server_runtime();
    runtime.block_on(async move {
        let inbox = PgInbox::connect(&url).await.unwrap();
        let worker = Worker::in_transaction(inbox.clone(), Ledger(Fate::new()))
            .retry(faults::retry_policy())
            .lease(Duration::from_millis(900))
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

/// Restarts the database server, as `.ci/with-postgres` says to.
fn restart_database() {
    let command = std::env::var("CREGIS_PG_RESTART")
        .expect("CREGIS_PG_RESTART says how to restart the server (see .ci/with-postgres)");
    let status = std::process::Command::new("sh")
        .args(["-c", &command])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
}

#[test]
#[ignore = "needs PostgreSQL: run through .ci/run or .ci/with-postgres"]
fn a_thousand_payouts_survive_kills_and_a_database_restart() {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a PostgreSQL database (see .ci/with-postgres)");
    let runtime = common::server_runtime();
    runtime.block_on(async {
        let inbox = PgInbox::connect(&url).await.unwrap();
        for statement in [
            "TRUNCATE cregis_inbox",
            "DROP TABLE IF EXISTS fault_effects",
            "CREATE TABLE fault_effects (cid bigint NOT NULL, status integer NOT NULL, amount text NOT NULL)",
        ] {
            sqlx::query(statement).execute(inbox.pool()).await.unwrap();
        }
    });
    let start = {
        let url = url.clone();
        move || start_server(&[(URL_VAR, std::ffi::OsStr::new(&url))])
    };
    let servers: Servers = Arc::new(RwLock::new(vec![start(), start()]));
    let sent = Arc::new(Sent::default());
    let down = Arc::new(std::sync::Mutex::new(None::<(Instant, Instant)>));
    let started = Instant::now();
    runtime.block_on(async {
        // Kill instance 0 at 300 acknowledgements, restart the database at 500, kill
        // instance 1 at 700; each instance comes back on the same database.
        let killer = {
            let (servers, sent, down) =
                (Arc::clone(&servers), Arc::clone(&sent), Arc::clone(&down));
            tokio::task::spawn_blocking(move || {
                faults::wait_for_acknowledged(&sent, 300);
                kill_and_restart(&servers, 0, &start);
                faults::wait_for_acknowledged(&sent, 500);
                let from = Instant::now();
                restart_database();
                *down.lock().unwrap() = Some((from, Instant::now()));
                faults::wait_for_acknowledged(&sent, 700);
                kill_and_restart(&servers, 1, &start);
            })
        };
        faults::send_all(&servers, &sent).await;
        killer.await.unwrap();

        let inbox = PgInbox::connect(&url).await.unwrap();
        let runs = faults::wait_all_done(&inbox).await;
        let effects: Vec<(i64, i64)> =
            sqlx::query_as("SELECT cid, count(*) FROM fault_effects GROUP BY cid ORDER BY cid")
                .fetch_all(inbox.pool())
                .await
                .unwrap();
        faults::assert_each_applied_once(&effects);
        assert!(
            runs > 1300,
            "{runs} runs: the handler failed less than it should"
        );
    });
    servers.write().unwrap().clear();
    assert_eq!(
        sent.acknowledged.load(Ordering::SeqCst),
        usize::try_from(PAYOUTS).unwrap()
    );
    // The only refusals: 500s while the database was down (and its pools reconnected).
    let (from, to) = down.lock().unwrap().expect("the database was restarted");
    for &(at, status) in sent.refusals.lock().unwrap().iter() {
        assert_eq!(status, 500);
        assert!(
            at >= from && at <= to + Duration::from_secs(5),
            "a refusal outside the restart"
        );
    }
    eprintln!(
        "1,000 payouts, 2 kills, 1 database restart ({} refusals meanwhile): {:?}",
        sent.refused.load(Ordering::SeqCst),
        started.elapsed()
    );
}

/// `SIGKILL`s instance `at` and starts it again.
fn kill_and_restart(
    servers: &Servers,
    at: usize,
    start: &impl Fn() -> (faults::ServerProcess, String),
) {
    let mut servers = servers.write().unwrap();
    servers[at].0.kill();
    servers[at] = start();
}
