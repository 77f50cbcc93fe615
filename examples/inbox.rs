//! The recommended production setup for one instance: the durable inbox on SQLite.
//!
//! ```sh
//! CREGIS_API_KEY=... INBOX_PATH=cregis.sqlite3 PORT=3000 \
//!     cargo run --example inbox --features sqlite,axum
//! # in another terminal (the demo creates payouts order-1 to order-100):
//! cargo run --example simulate -- --id order-7
//! ```
//!
//! The route records each authentic callback in the inbox and answers `success` once it is
//! committed; the worker beside it applies each entry to the host's `payouts` table in the
//! inbox's own transaction, so the payout's new status and "entry done" commit together, and a
//! failure (the handler's error, a panic, a crash) leaves nothing half done: the entry is
//! retried with backoff until it succeeds or is dead (listed for an operator). One file holds
//! both, which is what makes the exactly-once commit possible.
//!
//! The handler is the part to copy: it checks the callback against the host's own row (amount,
//! currency, address; `PayoutCallback::check_against`), refuses a mismatch loudly (the entry fails, then is dead, and the error
//! is logged), and never moves a payout backwards or from one final status to another.

use std::time::Duration;

use axum::Router;
use cregis_payout_callback::axum::inbox_route;
use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteHandler, SqliteInbox, Worker};
use cregis_payout_callback::{
    ApiKey, CallbackStatus, PayoutCallback, PayoutRecord, Verdict, Verifier,
};
use sqlx::SqliteConnection;

/// Where Cregis POSTs the callbacks.
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

/// The host's own payouts, as it recorded them when it created each.
pub const PAYOUTS: &str = "
    CREATE TABLE IF NOT EXISTS payouts (
        third_party_id TEXT PRIMARY KEY,
        amount         TEXT NOT NULL,
        currency       TEXT NOT NULL,
        address        TEXT NOT NULL,
        cid            INTEGER,
        status         INTEGER,
        txid           TEXT
    )";

/// A row of `payouts`: amount, currency, address, Cregis's `cid` and the last status.
type PayoutRow = (String, String, String, Option<i64>, Option<i32>);

/// Applies payout callbacks to the host's `payouts` table, in the inbox's transaction.
#[derive(Debug)]
pub struct Payouts;

impl SqliteHandler for Payouts {
    type Error = String;

    async fn handle(
        &self,
        callback: &PayoutCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), String> {
        // Loudly: a refused callback is a payout someone must look at. (With the `tracing`
        // feature and a subscriber, the worker's `retry scheduled` and `dead` events say it too.)
        apply(callback, tx)
            .await
            .inspect_err(|error| eprintln!("REFUSED {error}"))
    }
}

/// Applies `callback` to its row of `payouts`, or says why not.
async fn apply(callback: &PayoutCallback, tx: &mut SqliteConnection) -> Result<(), String> {
    let id = &callback.third_party_id;
    let row: Option<PayoutRow> = sqlx::query_as(
        "SELECT amount, currency, address, cid, status FROM payouts WHERE third_party_id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let Some((amount, currency, address, cid, status)) = row else {
        return Err(format!("payout {id}: not in our records"));
    };
    let status = status.map(CallbackStatus::try_from).transpose();
    let status = status.map_err(|e| format!("payout {id}: stored status: {e}"))?;
    let ours = PayoutRecord {
        amount: &amount,
        currency: &currency,
        address: &address,
        cid,
        status,
    };
    // The callback must describe the payout this host created (the same amount, `12.5` or
    // `12.500000`; the same currency and address) and move it forward: never back, never
    // from one final status to another.
    match callback.check_against(&ours).map_err(|e| e.to_string())? {
        Verdict::Apply => {}
        // Nothing new, or an older status arriving late: the payout has moved on.
        _ => return Ok(()),
    }
    sqlx::query("UPDATE payouts SET status = ?, cid = ?, txid = ? WHERE third_party_id = ?")
        .bind(callback.status.code())
        .bind(callback.cid)
        .bind(callback.txid.as_deref())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    println!("payout {id}: now {}", callback.status);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let path = std::env::var("INBOX_PATH").unwrap_or_else(|_| "cregis.sqlite3".to_owned());
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;

    let inbox = SqliteInbox::open(&path).await?;
    sqlx::query(PAYOUTS).execute(inbox.pool()).await?;
    for n in 1..=100 {
        // The demo's payouts, as `simulate` describes them.
        sqlx::query(
            "INSERT INTO payouts (third_party_id, amount, currency, address) VALUES (?, '1.1', 'TRX',
                 'TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS') ON CONFLICT DO NOTHING",
        )
        .bind(format!("order-{n}"))
        .execute(inbox.pool())
        .await?;
    }
    for dead in inbox.list(&[EntryState::Dead]).await? {
        eprintln!(
            "dead: {} ({}) after {} runs: {}",
            dead.id,
            dead.key,
            dead.attempts,
            dead.last_error.as_deref().unwrap_or("")
        );
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|&stop| stop).await;
    };
    let worker = tokio::spawn(
        Worker::in_transaction(inbox.clone(), Payouts)
            .lease(Duration::from_secs(30))
            .run(shutdown(stopped.clone())),
    );
    let app = Router::new().route(ROUTE, inbox_route(Verifier::new(api_key), inbox));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{}{ROUTE} (inbox: {path})",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        })
        .await?;
    // The server has stopped: let the worker finish the handlers it runs.
    worker.await?;
    Ok(())
}
