//! Accept latency and throughput of the SQLite inbox over real HTTP, next to the disk's own
//! fsync rate measured in the same run.
//!
//! ```sh
//! cargo bench --bench inbox_accept --features sqlite,axum   # 20,000 callbacks, 32 connections
//! # and PostgreSQL too, on a throwaway server (as root):
//! .ci/with-postgres cargo bench --bench inbox_accept --features sqlite,postgres,axum
//! # (PostgreSQL twice: one statement per accept, then group commit, the default)
//! ```
//!
//! The server is the axum `inbox_route` on an inbox file opened as in production (WAL,
//! `synchronous=FULL`); 32 clients, each on its own keep-alive connection, send distinct
//! payouts' callbacks (Cregis's field order, realistic values, `memo`, an unknown field) as
//! fast as they are acknowledged. Without `--bench` (as `cargo test --benches` runs it), it
//! sends 200 callbacks as a smoke test and times nothing.

mod inbox_fixtures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cregis_payout_callback::Verifier;
use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
use inbox_fixtures::{CONNECTIONS, fsync_rate, key, percentile};

/// Serves `inbox` through the axum route and sends it `total` callbacks from 32 connections;
/// returns the throughput and every latency, sorted.
async fn measure<I: Inbox>(inbox: I, total: usize) -> (f64, Vec<Duration>) {
    let app = axum::Router::new().route(
        "/cb",
        cregis_payout_callback::axum::inbox_route(Verifier::new(key()), inbox.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let start = Instant::now();
    let (_, latencies) =
        inbox_fixtures::send_over_http(&url, 0, total, Duration::MAX, Arc::new(|_| {})).await;
    let elapsed = start.elapsed();
    server.abort();
    let recorded = inbox.list(&[EntryState::Pending]).await.unwrap().len();
    assert_eq!(
        recorded, total,
        "every acknowledged callback is in the inbox"
    );
    #[allow(clippy::cast_precision_loss)]
    let throughput = total as f64 / elapsed.as_secs_f64();
    (throughput, latencies)
}

fn report(what: &str, total: usize, (throughput, latencies): &(f64, Vec<Duration>)) {
    println!(
        "{what}, {CONNECTIONS} connections, {total} callbacks: {throughput:.0} accepted/s, \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(latencies, 0.50).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    let timing = std::env::args().any(|arg| arg == "--bench");
    let total: usize = if timing { 20_000 } else { 200 };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sqlite = runtime.block_on(async {
        let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
            .await
            .unwrap();
        measure(inbox, total).await
    });
    if !timing {
        println!(
            "inbox_accept: smoke run only ({total} callbacks; use `cargo bench --bench inbox_accept` to time)"
        );
        return;
    }
    report("SQLite inbox, synchronous=FULL", total, &sqlite);
    let rate = fsync_rate(dir.path(), Duration::from_secs(2));
    println!("the same disk: {rate:.0} fsyncs/s (4 KiB write + fdatasync)");
    // With the `postgres` feature and `DATABASE_URL` (`.ci/with-postgres cargo bench ...`).
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        // One statement per accept, then group commit (the default), in the same run.
        for group_commit in [false, true] {
            let postgres = runtime.block_on(async {
                let inbox = cregis_payout_callback::inbox::PgInbox::connect(&url)
                    .await
                    .unwrap()
                    .group_commit(group_commit);
                for statement in ["TRUNCATE cregis_inbox", "VACUUM FULL cregis_inbox"] {
                    sqlx::query(statement).execute(inbox.pool()).await.unwrap();
                }
                measure(inbox, total).await
            });
            let how = if group_commit {
                "group commit"
            } else {
                "one statement each"
            };
            report(
                &format!("PostgreSQL inbox, default durability (fsync on commit), {how}"),
                total,
                &postgres,
            );
        }
    }
}
