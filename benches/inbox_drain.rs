//! How fast workers drain the inbox, beside how fast it accepts: on SQLite and, with
//! `DATABASE_URL`, PostgreSQL.
//!
//! ```sh
//! cargo bench --bench inbox_drain --features sqlite,axum
//! # and PostgreSQL too, on a throwaway server (as root):
//! .ci/with-postgres cargo bench --bench inbox_drain --features sqlite,postgres,axum
//! ```
//!
//! - **Burn-down**: `CREGIS_DRAIN_N` entries (50,000 by default) accepted first (through
//!   `Verifier::accept`, 64 at a time), then one worker drains them; the time from its start
//!   until the last is done, for `Worker::new` with a handler that does nothing and
//!   `Worker::in_transaction` with a one-row insert, at 4 and 32 handlers
//!   (`CREGIS_DRAIN_CONCURRENCY=32,128` for others).
//! - **Continuous**: 32 HTTP clients send callbacks to the axum `inbox_route` as fast as they
//!   are acknowledged for 10 s while a worker drains (`Worker::new` 128 handlers: a take is
//!   bounded by the handlers free; `Worker::in_transaction` 32); the accept rate, the drain
//!   rate, what is left, and the time from a callback's send to its handler's start.
//! - **Idle**: 200 callbacks, one every 20 ms, to an idle worker: the time from send to the
//!   handler's start (the inbox's notification, not the poll).
//!
//! Each run starts on a fresh database: SQLite a new file (WAL, `synchronous=FULL`);
//! PostgreSQL `TRUNCATE` then `VACUUM FULL` of the inbox and the effects table. The disk's
//! fsync rate is measured in the same run (`benches/inbox_accept` measures the accept path
//! alone, and on PostgreSQL both with group commit and one statement each). Without `--bench` (as `cargo test --benches` runs it), a smoke run of 300 entries.

mod inbox_fixtures;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cregis_payout_callback::inbox::backend::Job;
use cregis_payout_callback::inbox::{
    EntryState, InTransaction, Inbox, SqliteHandler, SqliteInbox, Worker,
};
use cregis_payout_callback::{PayoutCallback, Verifier};
use inbox_fixtures::{FIRST_CID, body, fsync_rate, key, p50_p99};

/// When each payout was sent, and how long after it its handler started.
#[derive(Debug)]
struct Clocks {
    base: Instant,
    sent: Vec<AtomicU64>,
    started: Mutex<Vec<Duration>>,
}

impl Clocks {
    fn new(n: usize) -> Arc<Clocks> {
        Arc::new(Clocks {
            base: Instant::now(),
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
            started: Mutex::default(),
        })
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn sent(&self, n: usize) {
        self.sent[n].store(self.nanos(), Ordering::Relaxed);
    }

    /// A handler started on `callback`: counts it, and its latency if its send was timed.
    fn started(&self, callback: &PayoutCallback) {
        let n = usize::try_from(callback.cid - FIRST_CID).unwrap();
        let sent = self.sent[n].load(Ordering::Relaxed);
        let latency = Duration::from_nanos(self.nanos().saturating_sub(sent));
        self.started.lock().unwrap().push(latency);
    }

    /// How many handlers started.
    fn count(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    fn latencies(&self) -> Vec<Duration> {
        let mut latencies = self.started.lock().unwrap().clone();
        latencies.sort();
        latencies
    }
}

/// Accepts payouts `0..n` through the verifier, 64 at a time.
async fn fill(inbox: &impl Inbox, n: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (inbox, next) = (inbox.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let verifier = Verifier::new(key());
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    if at >= n {
                        break;
                    }
                    let reply = verifier.accept(body(at).as_bytes(), &inbox).await;
                    assert_eq!(reply.body(), "success");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// How many entries are done.
async fn done(inbox: &impl Inbox) -> u64 {
    let counts = inbox.counts().await.unwrap();
    counts
        .iter()
        .filter(|count| count.state == EntryState::Done)
        .map(|count| count.entries)
        .sum()
}

/// Runs `worker` until `n` entries are done; entries/s. Its handlers' starts are counted in
/// `clocks` (the table is not read meanwhile: a count of a 50,000-row table every few
/// milliseconds would slow what it measures); the last ones' marks are then awaited.
async fn burn_down<I: Inbox, J: Job<I>>(
    inbox: &I,
    worker: Worker<I, J>,
    clocks: &Clocks,
    n: usize,
) -> f64 {
    let start = Instant::now();
    let running = tokio::spawn(worker.run(std::future::pending()));
    while clocks.count() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while done(inbox).await < n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    running.abort();
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / elapsed.as_secs_f64();
    rate
}

/// The continuous run: accepts over HTTP for `length` while `worker` drains. Prints the
/// figures under `what`.
async fn continuous<I: Inbox, J: Job<I>>(
    what: &str,
    inbox: &I,
    worker: Worker<I, J>,
    clocks: &Arc<Clocks>,
    length: Duration,
) {
    let app = axum::Router::new().route(
        "/cb",
        cregis_payout_callback::axum::inbox_route(Verifier::new(key()), inbox.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let running = tokio::spawn(worker.run(std::future::pending()));
    let start = Instant::now();
    let stamp = {
        let clocks = Arc::clone(clocks);
        Arc::new(move |n| clocks.sent(n))
    };
    let (accepted, latencies) =
        inbox_fixtures::send_over_http(&url, 0, clocks.sent.len(), length, stamp).await;
    let elapsed = start.elapsed();
    let drained = done(inbox).await;
    running.abort();
    server.abort();
    let seconds = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let (accept_rate, drain_rate) = (accepted as f64 / seconds, drained as f64 / seconds);
    println!(
        "{what}, continuous {:.0} s: accepted {accept_rate:.0}/s (accept {}), drained \
         {drain_rate:.0}/s, {} left; send to handler start {}",
        seconds,
        p50_p99(&latencies),
        accepted as u64 - drained.min(accepted as u64),
        p50_p99(&clocks.latencies()),
    );
}

/// The idle run: 200 callbacks one every 20 ms to an idle worker; send to handler start.
async fn idle<I: Inbox, J: Job<I>>(
    what: &str,
    inbox: &I,
    worker: Worker<I, J>,
    clocks: &Arc<Clocks>,
    n: usize,
) {
    let running = tokio::spawn(worker.run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let verifier = Verifier::new(key());
    for at in 0..n {
        clocks.sent(at);
        let reply = verifier.accept(body(at).as_bytes(), inbox).await;
        assert_eq!(reply.body(), "success");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while done(inbox).await < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.abort();
    println!(
        "{what}, idle worker: send to handler start {}",
        p50_p99(&clocks.latencies())
    );
}

/// The in-transaction job's effect: one row.
struct OneRow(Arc<Clocks>);

impl SqliteHandler for OneRow {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut sqlx::SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        self.0.started(callback);
        sqlx::query("INSERT INTO drain_effects (cid, amount) VALUES (?, ?)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl cregis_payout_callback::inbox::PgHandler for OneRow {
    type Error = sqlx::Error;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut sqlx::PgConnection,
    ) -> Result<(), sqlx::Error> {
        self.0.started(callback);
        sqlx::query("INSERT INTO drain_effects (cid, amount) VALUES ($1, $2)")
            .bind(callback.cid)
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// The no-op handler of `Worker::new`, timing its start.
fn no_op(
    clocks: &Arc<Clocks>,
) -> impl Fn(&PayoutCallback) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let clocks = Arc::clone(clocks);
    move |callback: &PayoutCallback| {
        clocks.started(callback);
        std::future::ready(Ok(()))
    }
}

/// A fresh SQLite inbox in `dir`, with the effects table.
async fn sqlite(dir: &std::path::Path, run: &str) -> SqliteInbox {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = RUNS.fetch_add(1, Ordering::Relaxed);
    let inbox = SqliteInbox::open(dir.join(format!("{run}-{seq}.db")))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE drain_effects (cid INTEGER NOT NULL, amount TEXT NOT NULL)")
        .execute(inbox.pool())
        .await
        .unwrap();
    inbox
}

/// The inbox on `url`, emptied and vacuumed, with an empty effects table.
#[cfg(feature = "postgres")]
async fn postgres(url: &str, group_commit: bool) -> cregis_payout_callback::inbox::PgInbox {
    let inbox = cregis_payout_callback::inbox::PgInbox::connect(url)
        .await
        .unwrap()
        .group_commit(group_commit);
    for statement in [
        "DROP TABLE IF EXISTS drain_effects",
        "CREATE TABLE drain_effects (cid bigint NOT NULL, amount text NOT NULL)",
        "TRUNCATE cregis_inbox",
        "VACUUM FULL cregis_inbox",
    ] {
        sqlx::query(statement).execute(inbox.pool()).await.unwrap();
    }
    inbox
}

/// Every run of one backend: `open(run)` gives a fresh inbox.
async fn runs<I, F, Fut>(backend: &str, n: usize, length: Duration, open: F)
where
    I: Inbox,
    InTransaction<OneRow>: Job<I>,
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = I>,
{
    for &concurrency in &concurrencies() {
        let clocks = Clocks::new(n);
        let inbox = open("burn-new").await;
        let start = Instant::now();
        fill(&inbox, n).await;
        #[allow(clippy::cast_precision_loss)]
        let filled = n as f64 / start.elapsed().as_secs_f64();
        let worker = Worker::new(inbox.clone(), no_op(&clocks)).concurrency(concurrency);
        let rate = burn_down(&inbox, worker, &clocks, n).await;
        println!(
            "{backend}, burn-down of {n} (filled at {filled:.0}/s), Worker::new, no-op, \
             {concurrency} handlers: {rate:.0} done/s"
        );
        let clocks = Clocks::new(n);
        let inbox = open("burn-tx").await;
        fill(&inbox, n).await;
        let worker = Worker::in_transaction(inbox.clone(), OneRow(Arc::clone(&clocks)))
            .concurrency(concurrency);
        let rate = burn_down(&inbox, worker, &clocks, n).await;
        println!(
            "{backend}, burn-down of {n}, Worker::in_transaction, one row, {concurrency} \
             handlers: {rate:.0} done/s"
        );
    }
    let clocks = Clocks::new(10 * n);
    let inbox = open("continuous-new").await;
    let worker = Worker::new(inbox.clone(), no_op(&clocks)).concurrency(128);
    continuous(
        &format!("{backend}, Worker::new"),
        &inbox,
        worker,
        &clocks,
        length,
    )
    .await;
    let clocks = Clocks::new(10 * n);
    let inbox = open("continuous-tx").await;
    let worker = Worker::in_transaction(inbox.clone(), OneRow(Arc::clone(&clocks))).concurrency(32);
    continuous(
        &format!("{backend}, Worker::in_transaction"),
        &inbox,
        worker,
        &clocks,
        length,
    )
    .await;
    let clocks = Clocks::new(200);
    let inbox = open("idle").await;
    let worker = Worker::new(inbox.clone(), no_op(&clocks));
    idle(backend, &inbox, worker, &clocks, 200).await;
}

/// The burn-downs' handler counts: `CREGIS_DRAIN_CONCURRENCY` (comma-separated), else 4 and 32.
fn concurrencies() -> Vec<usize> {
    std::env::var("CREGIS_DRAIN_CONCURRENCY")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .filter(|list: &Vec<usize>| !list.is_empty())
        .unwrap_or_else(|| vec![4, 32])
}

fn main() {
    let timing = std::env::args().any(|arg| arg == "--bench");
    let n: usize = if timing {
        std::env::var("CREGIS_DRAIN_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(50_000)
    } else {
        300
    };
    let length = if timing {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(300)
    };
    let dir = tempfile::tempdir().unwrap();
    println!(
        "inbox_drain: {} cores; SQLite: a new file per run (WAL, synchronous=FULL); \
         the disk: {:.0} fsyncs/s (4 KiB write + fdatasync)",
        std::thread::available_parallelism().map_or(0, usize::from),
        fsync_rate(dir.path(), Duration::from_secs(if timing { 2 } else { 0 })),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(runs("SQLite", n, length, |run| sqlite(dir.path(), run)));
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("PostgreSQL: TRUNCATE and VACUUM FULL before each run; TLS as the URL says");
        runtime.block_on(runs("PostgreSQL", n, length, |_| postgres(&url, true)));
    }
    if !timing {
        println!("inbox_drain: smoke run only (use `cargo bench --bench inbox_drain` to time)");
    }
}
