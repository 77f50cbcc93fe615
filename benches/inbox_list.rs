//! The cost of listing the dead entries as the done ones pile up: `list(&[Dead])` (3 dead
//! entries) beside 100 and beside 1,000,000 done entries, on SQLite and, with `DATABASE_URL`,
//! PostgreSQL.
//!
//! ```sh
//! cargo bench --bench inbox_list --features sqlite
//! # and PostgreSQL too, on a throwaway server (as root):
//! .ci/with-postgres cargo bench --bench inbox_list --features sqlite,postgres
//! ```
//!
//! The done rows are written by SQL in one statement (a million accepts would take minutes),
//! each with a body the size of a real callback's; the dead ones go through the inbox's own
//! `accept`, `take` and `fail`. Each figure is the median of 200 listings. Without `--bench`
//! (as `cargo test --benches` runs it), it lists beside 100 and 1,000 rows and times nothing.

use std::time::{Duration, Instant};

use cregis_payout_callback::idempotency::{DeliveryKey, Fact, Fingerprint};
use cregis_payout_callback::inbox::backend::{AfterFailure, NewEntry};
use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, CallbackKind, CallbackStatus};

/// A callback's body, as Cregis sends it.
fn body() -> Vec<u8> {
    let key = ApiKey::new("fake-bench-key-not-a-secret").unwrap();
    CallbackBuilder::new()
        .memo("")
        .raw("fee", r#""0.000001""#)
        .body(&key)
        .unwrap()
        .into_bytes()
}

/// Makes three entries dead, through the inbox's own operations (cids above every done row's).
async fn three_dead(inbox: &impl Inbox) {
    let body = body();
    for cid in 0..3 {
        let key = DeliveryKey::new(
            CallbackKind::Payout,
            1382528827416576,
            i64::MAX - cid,
            Fact::Status(CallbackStatus::TransactionSuccessful),
        );
        let entry = NewEntry {
            key,
            fingerprint: Fingerprint::from_bytes([7; 16]),
            body: &body,
            origin: cregis_payout_callback::Origin::Cregis,
        };
        inbox.accept(&entry).await.unwrap();
        let taken = inbox
            .take(CallbackKind::Payout, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        inbox
            .fail(&taken, "the ledger refused it", AfterFailure::Dead)
            .await
            .unwrap();
    }
}

/// The median time of `list(&[Dead])` over `rounds`.
async fn median_listing(inbox: &impl Inbox, rounds: usize) -> Duration {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let dead = inbox.list(&[EntryState::Dead]).await.unwrap();
        times.push(start.elapsed());
        assert_eq!(dead.len(), 3);
    }
    times.sort();
    times[times.len() / 2]
}

/// A fresh SQLite inbox with `done` done rows and three dead ones.
async fn sqlite(dir: &std::path::Path, done: i64) -> SqliteInbox {
    let inbox = SqliteInbox::open(dir.join(format!("inbox-{done}.db")))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO cregis_inbox
             (kind, pid, cid, status, fingerprint, body, state, attempts, due_ms, accepted_ms,
              finished_ms)
         SELECT 'payout', 1382528827416576, i, 6, randomblob(16), ?2, 'done', 1, 0, 0, 0
         FROM n",
    )
    .bind(done)
    .bind(body())
    .execute(inbox.pool())
    .await
    .unwrap();
    three_dead(&inbox).await;
    inbox
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str, done: i64) -> cregis_payout_callback::inbox::PgInbox {
    let inbox = cregis_payout_callback::inbox::PgInbox::connect(url)
        .await
        .unwrap();
    sqlx::query("TRUNCATE cregis_inbox")
        .execute(inbox.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO cregis_inbox
             (kind, pid, cid, status, fingerprint, body, state, attempts, due_at, accepted_at,
              finished_at)
         SELECT 'payout', 1382528827416576, i, 6, decode(md5(i::text), 'hex'), $2, 'done', 1,
                now(), now(), now()
         FROM generate_series(1, $1) AS i",
    )
    .bind(done)
    .bind(body())
    .execute(inbox.pool())
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE cregis_inbox")
        .execute(inbox.pool())
        .await
        .unwrap();
    three_dead(&inbox).await;
    inbox
}

fn main() {
    let timing = std::env::args().any(|arg| arg == "--bench");
    let (small, large, rounds) = if timing {
        (100, 1_000_000, 200)
    } else {
        (100, 1_000, 3)
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for done in [small, large] {
        let time = runtime.block_on(async {
            let inbox = sqlite(dir.path(), done).await;
            median_listing(&inbox, rounds).await
        });
        results.push(("SQLite", done, time));
    }
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        for done in [small, large] {
            let time = runtime.block_on(async {
                let inbox = postgres(&url, done).await;
                median_listing(&inbox, rounds).await
            });
            results.push(("PostgreSQL", done, time));
        }
    }
    if !timing {
        println!("inbox_list: smoke run only (use `cargo bench --bench inbox_list` to time)");
        return;
    }
    for pair in results.chunks(2) {
        let [(backend, small, few), (_, large, many)] = pair else {
            continue;
        };
        println!(
            "{backend}: list(&[Dead]), 3 dead: {few:?} beside {small} done, {many:?} beside \
             {large} done ({:.2}x)",
            many.as_secs_f64() / few.as_secs_f64()
        );
    }
}
