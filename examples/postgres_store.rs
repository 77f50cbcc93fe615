//! A shared idempotency store on PostgreSQL, for several instances whose handler's effect is
//! not a row in that database (a message to a queue, a call to another service, an email).
//!
//! ```sh
//! DATABASE_URL=postgres://user@127.0.0.1/db CREGIS_API_KEY=... PORT=3000 \
//!     cargo run --example postgres_store --features axum
//! # in another terminal:
//! cargo run --example simulate
//! ```
//!
//! Every instance claims each delivery in one table, `cregis_deliveries`, keyed on (`pid`,
//! `cid`, `status`), with the delivery's fingerprint and a lease. So a callback delivered to
//! two instances at once runs the handler on one of them; a duplicate with other content is
//! refused as a conflict; and an instance that dies mid-handler leaves a claim that the next
//! re-push takes over once its lease has ended, on any instance.
//!
//! When the effect *is* a row in the same database, prefer `examples/postgres_ledger.rs`: the
//! record of the delivery commits in the same transaction as the effect, so a crash can never
//! leave one without the other.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use cregis_payout_callback::axum::callback_route;
use cregis_payout_callback::error::BoxError;
use cregis_payout_callback::idempotency::{
    AsyncIdempotencyStore, Attempt, Claim, ClaimInProgress, DeliveryKey, Store,
};
use cregis_payout_callback::{
    ApiKey, AsyncCallbackHandler, CallbackStatus, PayoutCallback, Verifier,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Where Cregis POSTs the callbacks (the `callback_url` given when creating a payout).
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

/// One row per fact: its content's fingerprint, and while in progress, the attempt holding it
/// and until when (milliseconds since the epoch, from the verifier's clock).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cregis_deliveries (
    pid            BIGINT  NOT NULL,
    cid            BIGINT  NOT NULL,
    status         INTEGER NOT NULL,
    fingerprint    BYTEA   NOT NULL,
    done           BOOLEAN NOT NULL,
    attempt        BIGINT  NOT NULL,
    started_ms     BIGINT  NOT NULL,
    lease_until_ms BIGINT  NOT NULL,
    PRIMARY KEY (pid, cid, status)
);";

/// Claims the key for the attempt: a new row, or the row of an expired claim with the same
/// content, taken over. A row comes back only if the attempt now holds the claim, saying
/// whether it is new: `xmax` is 0 on a row this statement inserted, not on one it updated.
const CLAIM: &str = "
INSERT INTO cregis_deliveries AS d
    (pid, cid, status, fingerprint, done, attempt, started_ms, lease_until_ms)
VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7)
ON CONFLICT (pid, cid, status) DO UPDATE
    SET attempt = EXCLUDED.attempt,
        started_ms = EXCLUDED.started_ms,
        lease_until_ms = EXCLUDED.lease_until_ms
    WHERE NOT d.done
      AND d.fingerprint = EXCLUDED.fingerprint
      AND EXCLUDED.started_ms > d.lease_until_ms
RETURNING xmax = 0";

/// A shared, durable [`AsyncIdempotencyStore`]: one PostgreSQL table that every instance
/// uses. Its operations follow the contract documented on `IdempotencyStore`, at millisecond
/// precision.
///
/// Leases are measured on each instance's own clock (the verifier's, so that tests can set
/// it): keep the instances' clocks in step (NTP) to well within the lease, or an instance whose
/// clock runs ahead could take over a claim that is still live elsewhere.
#[derive(Clone)]
pub struct PgIdempotencyStore {
    pool: Pool,
}

impl fmt::Debug for PgIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgIdempotencyStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Milliseconds since the epoch (0 before it).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The attempt id as PostgreSQL's signed 64-bit integer (the same bits).
fn attempt_id(attempt: &Attempt) -> i64 {
    i64::from_ne_bytes(attempt.id.to_ne_bytes())
}

impl PgIdempotencyStore {
    /// Connects with a pool of up to `pool_size` connections, and creates the table if needed
    /// (safely, even when several instances start at once).
    ///
    /// # Errors
    ///
    /// The URL is invalid, or the database cannot be reached.
    pub async fn connect(database_url: &str, pool_size: usize) -> Result<Self, BoxError> {
        let config = tokio_postgres::Config::from_str(database_url)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(config, NoTls, manager_config);
        let pool = Pool::builder(manager).max_size(pool_size).build()?;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7272727272)", &[])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(PgIdempotencyStore { pool })
    }

    /// Every claim in progress (lease live or expired), oldest first: for the host to see
    /// what is stuck.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn claims_in_progress(&self) -> Result<Vec<ClaimInProgress>, BoxError> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT pid, cid, status, started_ms, lease_until_ms FROM cregis_deliveries \
                 WHERE NOT done ORDER BY started_ms",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let key = DeliveryKey {
                    pid: row.get(0),
                    cid: row.get(1),
                    status: CallbackStatus::try_from(row.get::<_, i32>(2))?,
                };
                Ok(ClaimInProgress::new(
                    key,
                    time_of(row.get(3)),
                    time_of(row.get(4)),
                ))
            })
            .collect()
    }

    /// Frees the claim in progress on `key`, whoever holds it; returns whether there was one.
    /// For a host that checked that the effect did not happen and will not wait for the lease.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_claim(&self, key: &DeliveryKey) -> Result<bool, BoxError> {
        let deleted = self
            .pool
            .get()
            .await?
            .execute(
                "DELETE FROM cregis_deliveries \
                 WHERE pid = $1 AND cid = $2 AND status = $3 AND NOT done",
                &[&key.pid, &key.cid, &key.status.code()],
            )
            .await?;
        Ok(deleted > 0)
    }
}

impl AsyncIdempotencyStore for PgIdempotencyStore {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        let client = self.pool.get().await?;
        let key = &attempt.key;
        let fingerprint = &attempt.fingerprint.as_bytes()[..];
        // A row released between the two statements is claimed on the next round.
        for _ in 0..3 {
            let claimed = client
                .query_opt(
                    CLAIM,
                    &[
                        &key.pid,
                        &key.cid,
                        &key.status.code(),
                        &fingerprint,
                        &attempt_id(attempt),
                        &millis(attempt.started),
                        &millis(attempt.lease_until()),
                    ],
                )
                .await?;
            if let Some(row) = claimed {
                let inserted: bool = row.get(0);
                return Ok(if inserted {
                    Claim::Claimed
                } else {
                    Claim::TakenOver
                });
            }
            let found = client
                .query_opt(
                    "SELECT done, fingerprint = $4 FROM cregis_deliveries \
                     WHERE pid = $1 AND cid = $2 AND status = $3",
                    &[&key.pid, &key.cid, &key.status.code(), &fingerprint],
                )
                .await?;
            if let Some(row) = found {
                return Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
                    (_, false) => Claim::Conflict,
                    (true, true) => Claim::AlreadyDone,
                    (false, true) => Claim::InProgress,
                });
            }
        }
        Err(format!("the claim on {key} kept changing").into())
    }

    async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        let key = &attempt.key;
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO cregis_deliveries \
                     (pid, cid, status, fingerprint, done, attempt, started_ms, lease_until_ms) \
                 VALUES ($1, $2, $3, $4, TRUE, $5, $6, $6) \
                 ON CONFLICT (pid, cid, status) DO UPDATE SET done = TRUE",
                &[
                    &key.pid,
                    &key.cid,
                    &key.status.code(),
                    &&attempt.fingerprint.as_bytes()[..],
                    &attempt_id(attempt),
                    &millis(attempt.started),
                ],
            )
            .await?;
        Ok(())
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        let key = &attempt.key;
        self.pool
            .get()
            .await?
            .execute(
                "DELETE FROM cregis_deliveries \
                 WHERE pid = $1 AND cid = $2 AND status = $3 AND NOT done AND attempt = $4",
                &[&key.pid, &key.cid, &key.status.code(), &attempt_id(attempt)],
            )
            .await?;
        Ok(())
    }
}

/// The demo's business logic: an effect outside the database the store is in, stood in for
/// by a line on standard output.
#[derive(Debug, Default)]
pub struct Notifier;

impl AsyncCallbackHandler for Notifier {
    type Error = std::convert::Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
        println!(
            "notify: payout {} ({} {}) is now {}",
            callback.third_party_id, callback.amount, callback.currency, callback.status
        );
        Ok(())
    }
}

/// The application: one route, whatever the handler, with the shared store.
pub fn app(
    verifier: Verifier<Store<PgIdempotencyStore>>,
    handler: impl AsyncCallbackHandler + Send + 'static,
) -> Router {
    Router::new().route(ROUTE, callback_route(verifier, handler))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL=postgres://...")?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let store = PgIdempotencyStore::connect(&url, 16).await?;
    for stuck in store.claims_in_progress().await? {
        let age = stuck.age(SystemTime::now());
        eprintln!("claim in progress: {} for {age:?}", stuck.key);
    }
    let verifier = Verifier::builder(api_key).idempotency(store).build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    axum::serve(listener, app(verifier, Notifier)).await?;
    Ok(())
}
