//! Exactly-once payout callbacks on PostgreSQL: for services that run several instances.
//!
//! ```sh
//! DATABASE_URL=postgres://user:pass@127.0.0.1/db CREGIS_API_KEY=... PORT=3000 \
//!     cargo run --example postgres_ledger --features axum,postgres
//! # in another terminal (the demo creates payouts order-1 to order-100):
//! cargo run --example simulate -- --id order-7
//! ```
//!
//! Every instance points at the same database. The handler applies each callback in one
//! transaction: `INSERT ... ON CONFLICT DO NOTHING` into `processed_deliveries` (keyed by
//! `pid`, `cid`, `status`), then the update of the host's own `payouts` row, then `COMMIT`.
//! The handler checks the callback against that row (locked for the transaction): the amount
//! must match, a final status never changes, a repeated fact with other content is refused,
//! and an older status arriving late is recorded without moving the payout back.
//! When two instances receive the same callback at once, the second insert waits on the first
//! one's uncommitted row: if the first commits, the second finds the conflict and changes
//! nothing; if it rolls back, the second applies the callback. Either way it lands once.
//!
//! Driver: sqlx 0.9, the crate's own for the inbox: a URL with `sslmode=require` (or
//! `verify-full`) connects over TLS (rustls), as production databases require.
//!
//! This is the direct mode: a failure of the handler is answered 500, and only an operator's
//! re-push from the Cregis console brings the callback back. `examples/inbox_postgres.rs`
//! acknowledges once the callback is stored, then retries the handler itself.

use std::fmt;

use axum::Router;
use cregis_payout_callback::axum::callback_route;
use cregis_payout_callback::{
    ApiKey, AsyncCallbackHandler, CallbackStatus, PayoutCallback, Verifier,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

/// Where Cregis POSTs the callbacks.
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS payouts (
        third_party_id TEXT PRIMARY KEY,
        amount         TEXT NOT NULL,
        status         INTEGER,
        txid           TEXT,
        status_changes BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS processed_deliveries (
        pid            BIGINT NOT NULL,
        cid            BIGINT NOT NULL,
        status         INTEGER NOT NULL,
        third_party_id TEXT NOT NULL,
        amount         TEXT NOT NULL,
        txid           TEXT,
        processed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (pid, cid, status)
    )",
];

/// The host's payouts and the record of processed deliveries, in PostgreSQL.
/// (sqlx's `Debug` of the pool shows its options, never the password.)
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
}

/// One row of `payouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// The last status Cregis reported, if any.
    pub status: Option<i32>,
    /// How many callbacks changed it: 1 per distinct fact, never more.
    pub status_changes: i64,
}

/// Why a callback could not be applied; the transaction was rolled back.
#[derive(Debug)]
pub enum LedgerError {
    /// The callback names a payout this host does not have (yet).
    UnknownPayout(String),
    /// The callback's amount is not the one this host recorded for the payout.
    AmountMismatch {
        /// The payout.
        third_party_id: String,
        /// What the callback says.
        callback: String,
        /// What the host recorded.
        ours: String,
    },
    /// The payout already has a final status, and the callback reports another.
    AlreadyFinal {
        /// The payout.
        third_party_id: String,
        /// Its final status.
        status: CallbackStatus,
        /// What the callback reports.
        reported: CallbackStatus,
    },
    /// The same fact (`pid`, `cid`, `status`) was applied before with other content.
    Conflict(String),
    /// A stored status is not a documented one.
    StoredStatus(String),
    /// The database failed.
    Postgres(sqlx::Error),
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::UnknownPayout(id) => write!(f, "no payout {id:?} in the ledger"),
            LedgerError::AmountMismatch {
                third_party_id,
                callback,
                ours,
            } => write!(
                f,
                "payout {third_party_id:?}: the callback says {callback}, our ledger says {ours}"
            ),
            LedgerError::AlreadyFinal {
                third_party_id,
                status,
                reported,
            } => write!(
                f,
                "payout {third_party_id:?} is already {status}; refusing to change it to {reported}"
            ),
            LedgerError::Conflict(key) => {
                write!(f, "delivery {key} was applied before with other content")
            }
            LedgerError::StoredStatus(e) => write!(f, "stored status: {e}"),
            LedgerError::Postgres(e) => write!(f, "postgres: {e}"),
        }
    }
}

impl std::error::Error for LedgerError {}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Postgres(e)
    }
}

impl PgLedger {
    /// Connects to `database_url` with a pool of up to `pool_size` connections, and creates
    /// the schema if needed (safely, even when several instances start at once).
    ///
    /// # Errors
    ///
    /// The URL is invalid, or the database cannot be reached.
    pub async fn connect(
        database_url: &str,
        pool_size: u32,
    ) -> Result<PgLedger, Box<dyn std::error::Error>> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .connect(database_url)
            .await?;
        let mut tx = pool.begin().await?;
        // One instance at a time creates the tables.
        sqlx::query("SELECT pg_advisory_xact_lock(7171717171)")
            .execute(&mut *tx)
            .await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(PgLedger { pool })
    }

    /// Records a payout the host created (what `third_party_id` in callbacks refers to).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_payout(&self, third_party_id: &str, amount: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO payouts (third_party_id, amount) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(third_party_id)
        .bind(amount)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The payout `third_party_id`, if the host has it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn payout(&self, third_party_id: &str) -> Result<Option<Payout>, LedgerError> {
        let row: Option<(Option<i32>, i64)> =
            sqlx::query_as("SELECT status, status_changes FROM payouts WHERE third_party_id = $1")
                .bind(third_party_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(status, status_changes)| Payout {
            status,
            status_changes,
        }))
    }

    /// How many deliveries of the payout `third_party_id` are recorded as processed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn processed_deliveries(&self, third_party_id: &str) -> Result<i64, LedgerError> {
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM processed_deliveries WHERE third_party_id = $1",
        )
        .bind(third_party_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Applies `callback` once: in one transaction, checks it against the host's own row
    /// (locked, so that concurrent deliveries of one payout take turns), records the delivery
    /// and moves the payout forward. Returns whether it changed anything (`false` for a
    /// duplicate, or an older status arriving late).
    ///
    /// # Errors
    ///
    /// The payout is unknown, the callback disagrees with the ledger (its amount, a final
    /// status it would change, a fact applied before with other content), or the database
    /// failed; nothing was changed.
    pub async fn apply(&self, callback: &PayoutCallback) -> Result<bool, LedgerError> {
        let mut connection = self.pool.acquire().await?;
        let mut tx = connection.begin().await?;
        let id = &callback.third_party_id;
        let row =
            sqlx::query("SELECT amount, status FROM payouts WHERE third_party_id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else {
            return Err(LedgerError::UnknownPayout(id.clone()));
        };
        let (amount, status): (String, Option<i32>) = (row.try_get(0)?, row.try_get(1)?);
        if amount != callback.amount {
            return Err(LedgerError::AmountMismatch {
                third_party_id: id.clone(),
                callback: callback.amount.clone(),
                ours: amount,
            });
        }
        // The same fact again: a duplicate if its content is the same, else a conflict.
        let seen: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT amount, txid FROM processed_deliveries
             WHERE pid = $1 AND cid = $2 AND status = $3",
        )
        .bind(callback.pid)
        .bind(callback.cid)
        .bind(callback.status.code())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(seen) = seen {
            if seen != (callback.amount.clone(), callback.txid.clone()) {
                return Err(LedgerError::Conflict(callback.delivery_key().to_string()));
            }
            return Ok(false);
        }
        let current = status.map(CallbackStatus::try_from).transpose();
        let current = current.map_err(|e| LedgerError::StoredStatus(e.to_string()))?;
        if let Some(current) = current.filter(|current| current.is_final()) {
            if current != callback.status {
                return Err(LedgerError::AlreadyFinal {
                    third_party_id: id.clone(),
                    status: current,
                    reported: callback.status,
                });
            }
        }
        sqlx::query(
            "INSERT INTO processed_deliveries (pid, cid, status, third_party_id, amount, txid)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(callback.pid)
        .bind(callback.cid)
        .bind(callback.status.code())
        .bind(id)
        .bind(&callback.amount)
        .bind(callback.txid.as_deref())
        .execute(&mut *tx)
        .await?;
        // Forward only: an older status arriving late is recorded, and changes nothing.
        let forward = current.is_none_or(|current| current.can_move_to(callback.status));
        if forward {
            sqlx::query(
                "UPDATE payouts SET status = $1, txid = $2, status_changes = status_changes + 1
                 WHERE third_party_id = $3",
            )
            .bind(callback.status.code())
            .bind(callback.txid.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(forward)
    }
}

impl AsyncCallbackHandler for PgLedger {
    type Error = LedgerError;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), LedgerError> {
        let applied = self.apply(callback).await;
        // Loudly: a refused callback is a payout someone must look at.
        if let Err(error) = &applied {
            eprintln!("REFUSED {error}");
        }
        if applied? {
            println!(
                "payout {} is now {}",
                callback.third_party_id, callback.status
            );
        }
        Ok(())
    }
}

/// The application: one route (the crate's ready route for axum).
pub fn app(verifier: Verifier, ledger: PgLedger) -> Router {
    Router::new().route(ROUTE, callback_route(verifier, ledger))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL=postgres://...")?;
    let ledger = PgLedger::connect(&url, 16).await?;
    for n in 1..=100 {
        ledger.add_payout(&format!("order-{n}"), "1.1").await?;
    }
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    println!("try: cargo run --example simulate -- --id order-7");
    axum::serve(listener, app(Verifier::new(api_key), ledger)).await?;
    Ok(())
}
