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

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cregis_payout_callback::inbox::{
    EntryState, Inbox, RetryPolicy, SqliteHandler, SqliteInbox, Worker,
};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{CallbackStatus, PayoutCallback, Verifier};
use sqlx::SqliteConnection;

const PAYOUTS: i64 = 1000;

const DB_VAR: &str = "CREGIS_INBOX_FAULTS_DB";

/// A number in 0..100 for run `run` of payout `cid` in the process seeded `seed`: below 2 the
/// run panics, below 32 it fails.
fn fate(seed: u64, cid: i64, run: u64) -> u64 {
    let mut z = seed ^ u64::from_ne_bytes(cid.to_ne_bytes()) ^ (run << 40);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 100
}

/// The host's handler: records the payout's new status in `effects`, in the inbox's
/// transaction, then fails or panics as fate says (after writing, so that only a rollback
/// keeps the effect from counting). Runs are counted in memory (a rolled-back count would give
/// a retry the same fate), seeded per process.
struct Ledger {
    seed: u64,
    runs: std::sync::Mutex<std::collections::HashMap<i64, u64>>,
}

impl SqliteHandler for Ledger {
    type Error = String;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), String> {
        let error = |e: sqlx::Error| e.to_string();
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.entry(callback.cid).or_insert(0);
            *run += 1;
            *run
        };
        sqlx::query("INSERT INTO effects (cid, status, amount) VALUES (?, ?, ?)")
            .bind(callback.cid)
            .bind(callback.status.code())
            .bind(&callback.amount)
            .execute(&mut *tx)
            .await
            .map_err(error)?;
        // A moment inside the transaction, for the kills to land in.
        tokio::time::sleep(Duration::from_millis(2)).await;
        match fate(self.seed, callback.cid, run) {
            0..=1 => panic!("the handler's bug (payout {}, run {run})", callback.cid),
            2..=31 => Err(format!(
                "the ledger is busy (payout {}, run {run})",
                callback.cid
            )),
            _ => Ok(()),
        }
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let inbox = SqliteInbox::open(Path::new(&db)).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS effects
                 (cid INTEGER NOT NULL, status INTEGER NOT NULL, amount TEXT NOT NULL)",
        )
        .execute(inbox.pool())
        .await
        .unwrap();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let ledger = Ledger {
            seed: u64::from(seed),
            runs: std::sync::Mutex::default(),
        };
        let worker = Worker::in_transaction(inbox.clone(), ledger)
            .retry(RetryPolicy {
                initial: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
                max_attempts: 200,
                ..RetryPolicy::default()
            })
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

/// The server's process, killed when dropped (also when the test fails half-way).
struct ServerProcess(Child);

impl ServerProcess {
    /// SIGKILL, as a crash or an out-of-memory kill would.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the server on `db`; returns it and its URL.
fn start_server(db: &Path) -> (ServerProcess, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_VAR, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        // libtest writes `test server ... ` before the test's own output, on the same line.
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.to_owned();
        }
    };
    // Keep reading, so that the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (ServerProcess(child), format!("http://{addr}/cb"))
}

/// Payout `cid`'s callback, pushed for the `push`th time: same business fields, fresh
/// `nonce` and `timestamp`, as a console re-push.
fn delivery(cid: i64, push: u32) -> String {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .amount(&format!("{}.{:02}", 10 + cid % 90, cid % 100))
        .status(CallbackStatus::TransactionSuccessful)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .nonce(&format!(
            "{:06}",
            (cid * 7919 + i64::from(push)) % 1_000_000
        ))
        .timestamp(1_687_850_657_960 + i64::from(push))
        .body(&common::key())
        .unwrap()
}

#[test]
fn a_thousand_payouts_survive_kills_and_failures_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inbox.db");
    let (first, url) = start_server(&db);
    let server = Arc::new(RwLock::new((first, url)));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        // The killer: SIGKILL the server after 300 and after 700 acknowledgements, and start
        // it again on the same file.
        let killer = {
            let (server, acknowledged, db) =
                (Arc::clone(&server), Arc::clone(&acknowledged), db.clone());
            tokio::task::spawn_blocking(move || {
                for at in [300, 700] {
                    while acknowledged.load(Ordering::SeqCst) < at {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    let mut server = server.write().unwrap();
                    server.0.kill();
                    *server = start_server(&db);
                }
            })
        };
        // The sender: each callback is sent until it is acknowledged, and never after.
        let client = reqwest::Client::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(32));
        let mut sends = Vec::new();
        for cid in 0..PAYOUTS {
            let (client, server, permits) =
                (client.clone(), Arc::clone(&server), Arc::clone(&permits));
            let (acknowledged, refused) = (Arc::clone(&acknowledged), Arc::clone(&refused));
            sends.push(tokio::spawn(async move {
                let _permit = permits.acquire().await.unwrap();
                for push in 0.. {
                    let url = server.read().unwrap().1.clone();
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(delivery(cid, push))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    // An error: the server is down (killed, or not yet up again).
                    if let Ok(response) = sent {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_default();
                        if (status, text.as_str()) == (200, "success") {
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        for send in sends {
            send.await.unwrap();
        }
        killer.await.unwrap();

        assert_applied_exactly_once(&db).await;
    });
    server.write().unwrap().0.kill();
    assert_eq!(
        acknowledged.load(Ordering::SeqCst),
        usize::try_from(PAYOUTS).unwrap()
    );
    // No delivery was ever refused: while the server was up, every answer was `success`.
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    eprintln!("1,000 payouts, 2 kills: {:?}", started.elapsed());
}

/// Waits until every entry is done (through the restarted server's worker), then checks that
/// none is dead and that each payout's effect is in the ledger once.
async fn assert_applied_exactly_once(db: &Path) {
    // Every entry reaches done, through the restarted server's worker.
    let inbox = SqliteInbox::open(db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = inbox.list(&[EntryState::Done]).await.unwrap().len();
        if done == usize::try_from(PAYOUTS).unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} entries done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inbox.list(&[EntryState::Dead]).await.unwrap().is_empty());
    let effects: Vec<(i64, i64)> =
        sqlx::query_as("SELECT cid, count(*) FROM effects GROUP BY cid ORDER BY cid")
            .fetch_all(inbox.pool())
            .await
            .unwrap();
    assert_eq!(effects.len(), usize::try_from(PAYOUTS).unwrap());
    let twice: Vec<_> = effects.iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    // The handler really failed and panicked along the way: more runs than payouts.
    let runs: u32 = inbox
        .list(&[EntryState::Done])
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.attempts)
        .sum();
    assert!(runs > 1300, "{runs} runs");
}
