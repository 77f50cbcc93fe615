//! Accept latency and throughput of the SQLite inbox over real HTTP, next to the disk's own
//! fsync rate measured in the same run.
//!
//! ```sh
//! cargo bench --bench inbox_accept --features sqlite,axum   # 20,000 callbacks, 32 connections
//! # and PostgreSQL too, on a throwaway server (as root):
//! .ci/with-postgres cargo bench --bench inbox_accept --features sqlite,postgres,axum
//! ```
//!
//! The server is the axum `inbox_route` on an inbox file opened as in production (WAL,
//! `synchronous=FULL`); 32 clients, each on its own keep-alive connection, send distinct
//! payouts' callbacks (Cregis's field order, realistic values, `memo`, an unknown field) as
//! fast as they are acknowledged. Without `--bench` (as `cargo test --benches` runs it), it
//! sends 200 callbacks as a smoke test and times nothing.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, CallbackStatus, Verifier};

const CONNECTIONS: usize = 32;

fn key() -> ApiKey {
    ApiKey::new("fake-bench-key-not-a-secret").unwrap()
}

/// Payout `cid`'s successful callback, as Cregis sends it.
fn body(cid: i64) -> String {
    CallbackBuilder::new()
        .cid(1391751691788288 + cid)
        .third_party_id(&format!("{cid:032x}"))
        .amount(&format!("{}.{:02}", 10 + cid % 900, cid % 100))
        .status(CallbackStatus::TransactionSuccessful)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .body(&key())
        .unwrap()
}

/// fsyncs per second of a 4 KiB write on `dir`'s disk, for `for_how_long`.
fn fsync_rate(dir: &std::path::Path, for_how_long: Duration) -> f64 {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let block = [0u8; 4096];
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < for_how_long {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

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

    let bodies: Arc<Vec<String>> = Arc::new(
        (0..total)
            .map(|n| body(i64::try_from(n).unwrap()))
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (bodies, next, url) = (Arc::clone(&bodies), Arc::clone(&next), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(n) else { break };
                    let sent = Instant::now();
                    let response = client.post(&url).body(body.clone()).send().await.unwrap();
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    assert_eq!((status.as_u16(), text.as_str()), (200, "success"));
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    let elapsed = start.elapsed();
    server.abort();
    let recorded = inbox.list(&[EntryState::Pending]).await.unwrap().len();
    assert_eq!(
        recorded, total,
        "every acknowledged callback is in the inbox"
    );
    latencies.sort();
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
        let postgres = runtime.block_on(async {
            let inbox = cregis_payout_callback::inbox::PgInbox::connect(&url)
                .await
                .unwrap();
            sqlx::query("TRUNCATE cregis_inbox")
                .execute(inbox.pool())
                .await
                .unwrap();
            measure(inbox, total).await
        });
        report(
            "PostgreSQL inbox, default durability (fsync on commit)",
            total,
            &postgres,
        );
    }
}
