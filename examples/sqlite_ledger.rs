//! Exactly-once payout callbacks on SQLite: the embedded default for a service on one machine.
//!
//! ```sh
//! CREGIS_API_KEY=... SQLITE_PATH=ledger.sqlite3 PORT=3000 cargo run --example sqlite_ledger
//! # in another terminal (the demo creates payouts order-1 to order-100):
//! cargo run --example simulate -- --id order-7
//! ```
//!
//! The handler applies each callback in one SQLite transaction: it records the delivery in
//! `processed_deliveries` (keyed by `pid`, `cid`, `status`) and updates the host's own row in
//! `payouts`, then commits. A duplicate finds its delivery already recorded, changes nothing and
//! is acknowledged; a failure or a crash before the commit leaves nothing behind, so a re-push
//! applies it later. The record lives in the same database as the business data, so the two can
//! never disagree: that is why this is a transactional handler rather than a separate
//! `IdempotencyStore`.
//!
//! The handler is the part to copy: it checks the callback against the host's own row (the
//! amount), refuses loudly a callback that would change a final status or that repeats a fact
//! with other content (500: the console shows it), and never moves a payout backwards (an
//! older status arriving late is recorded and changes nothing).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use cregis_payout_callback::axum::callback_route;
use cregis_payout_callback::{
    ApiKey, AsyncCallbackHandler, CallbackStatus, PayoutCallback, Verifier,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Where Cregis POSTs the callbacks.
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS payouts (
        third_party_id TEXT PRIMARY KEY,
        amount         TEXT NOT NULL,
        status         INTEGER,
        txid           TEXT,
        status_changes INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS processed_deliveries (
        pid            INTEGER NOT NULL,
        cid            INTEGER NOT NULL,
        status         INTEGER NOT NULL,
        third_party_id TEXT NOT NULL,
        amount         TEXT NOT NULL,
        txid           TEXT,
        processed_ms   INTEGER NOT NULL,
        PRIMARY KEY (pid, cid, status)
    );
";

/// The host's payouts and the record of processed deliveries, in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
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
    /// The database failed.
    Sqlite(rusqlite::Error),
    /// The blocking task running the transaction died.
    Task(String),
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
            LedgerError::Sqlite(e) => write!(f, "sqlite: {e}"),
            LedgerError::Task(e) => write!(f, "ledger task: {e}"),
        }
    }
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LedgerError::Sqlite(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Sqlite(e)
    }
}

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`, with its schema.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or the schema created.
    pub fn open(path: &Path) -> rusqlite::Result<SqliteLedger> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLedger {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a payout the host created (what `third_party_id` in callbacks refers to).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn add_payout(&self, third_party_id: &str, amount: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO payouts (third_party_id, amount) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![third_party_id, amount],
        )?;
        Ok(())
    }

    /// The payout `third_party_id`, if the host has it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn payout(&self, third_party_id: &str) -> rusqlite::Result<Option<Payout>> {
        self.conn()
            .query_row(
                "SELECT status, status_changes FROM payouts WHERE third_party_id = ?1",
                [third_party_id],
                |row| {
                    Ok(Payout {
                        status: row.get(0)?,
                        status_changes: row.get(1)?,
                    })
                },
            )
            .optional()
    }

    /// How many deliveries are recorded as processed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn processed_deliveries(&self) -> rusqlite::Result<i64> {
        self.conn()
            .query_row("SELECT count(*) FROM processed_deliveries", [], |row| {
                row.get(0)
            })
    }

    /// Applies `callback` once: in one transaction, checks it against the host's own row,
    /// records the delivery and moves the payout forward. Returns whether it changed anything
    /// (`false` for a duplicate, or an older status arriving late).
    ///
    /// # Errors
    ///
    /// The payout is unknown, the callback disagrees with the ledger (its amount, a final
    /// status it would change, a fact applied before with other content), or the database
    /// failed; nothing was changed.
    pub fn apply(&self, callback: &PayoutCallback) -> Result<bool, LedgerError> {
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock up front: concurrent deliveries queue here.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = &callback.third_party_id;
        let row: Option<(String, Option<i32>)> = tx
            .query_row(
                "SELECT amount, status FROM payouts WHERE third_party_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((amount, status)) = row else {
            return Err(LedgerError::UnknownPayout(id.clone()));
        };
        if amount != callback.amount {
            return Err(LedgerError::AmountMismatch {
                third_party_id: id.clone(),
                callback: callback.amount.clone(),
                ours: amount,
            });
        }
        // The same fact again: a duplicate if its content is the same, else a conflict.
        let seen: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT amount, txid FROM processed_deliveries
                 WHERE pid = ?1 AND cid = ?2 AND status = ?3",
                params![callback.pid, callback.cid, callback.status.code()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some(seen) = seen {
            if seen != (callback.amount.clone(), callback.txid.clone()) {
                return Err(LedgerError::Conflict(callback.delivery_key().to_string()));
            }
            return Ok(false);
        }
        let current = status.map(CallbackStatus::try_from).transpose();
        let current = current.map_err(|e| LedgerError::Task(e.to_string()))?;
        if let Some(current) = current.filter(|current| current.is_final()) {
            if current != callback.status {
                return Err(LedgerError::AlreadyFinal {
                    third_party_id: id.clone(),
                    status: current,
                    reported: callback.status,
                });
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        tx.execute(
            "INSERT INTO processed_deliveries
                 (pid, cid, status, third_party_id, amount, txid, processed_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                callback.pid,
                callback.cid,
                callback.status.code(),
                id,
                callback.amount,
                callback.txid,
                now_ms
            ],
        )?;
        // Forward only: an older status arriving late is recorded, and changes nothing.
        let forward = current.is_none_or(|current| current.can_move_to(callback.status));
        if forward {
            tx.execute(
                "UPDATE payouts SET status = ?1, txid = ?2, status_changes = status_changes + 1
                 WHERE third_party_id = ?3",
                params![callback.status.code(), callback.txid, id],
            )?;
        }
        tx.commit()?;
        Ok(forward)
    }
}

impl AsyncCallbackHandler for SqliteLedger {
    type Error = LedgerError;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), LedgerError> {
        let (ledger, owned) = (self.clone(), callback.clone());
        // SQLite blocks: keep it off the async workers.
        let applied = tokio::task::spawn_blocking(move || ledger.apply(&owned))
            .await
            .map_err(|e| LedgerError::Task(e.to_string()))?
            // Loudly: a refused callback is a payout someone must look at.
            .inspect_err(|error| eprintln!("REFUSED {error}"))?;
        if applied {
            println!(
                "payout {} is now {}",
                callback.third_party_id, callback.status
            );
        }
        Ok(())
    }
}

/// The application: one route (the crate's ready route for axum).
pub fn app(verifier: Verifier, ledger: SqliteLedger) -> Router {
    Router::new().route(ROUTE, callback_route(verifier, ledger))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let path = std::env::var("SQLITE_PATH").unwrap_or_else(|_| "cregis-ledger.sqlite3".to_owned());
    let ledger = SqliteLedger::open(Path::new(&path))?;
    for n in 1..=100 {
        ledger.add_payout(&format!("order-{n}"), "1.1")?;
    }
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "ledger {path}; listening on http://{}{ROUTE}",
        listener.local_addr()?
    );
    println!("try: cargo run --example simulate -- --id order-7");
    axum::serve(listener, app(Verifier::new(api_key), ledger)).await?;
    Ok(())
}
