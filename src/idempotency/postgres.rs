//! A shared, durable idempotency store in PostgreSQL (feature `postgres`), for the direct mode
//! on several instances.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{AsyncIdempotencyStore, Attempt, Claim, ClaimInProgress, DeliveryKey};
use crate::CallbackStatus;
use crate::error::BoxError;
use crate::schema::{Schema, migrate_pg};

/// The claims table, and the version of it this crate writes and reads.
const SCHEMA: Schema = Schema {
    name: "claims table",
    version_table: "cregis_claims_schema",
    steps: &[
        &["CREATE TABLE cregis_claims (
        kind        text        NOT NULL,
        pid         bigint      NOT NULL,
        cid         bigint      NOT NULL,
        status      integer     NOT NULL,
        fingerprint bytea       NOT NULL,
        done        boolean     NOT NULL,
        attempt     bigint      NOT NULL,
        started_at  timestamptz NOT NULL,
        lease_until timestamptz NOT NULL,
        PRIMARY KEY (kind, pid, cid, status)
    )"],
        // Version 2: what `prune` deletes, found without reading the table.
        &["CREATE INDEX cregis_claims_done ON cregis_claims (started_at) WHERE done"],
        // Version 3: a payout holds at most one final status. Where one already held two,
        // the later claims are kept, outside the index.
        &[
            "ALTER TABLE cregis_claims ADD COLUMN superseded boolean NOT NULL DEFAULT false",
            concat!(
                "UPDATE cregis_claims AS c SET superseded = true
                 WHERE c.status IN (",
                crate::schema::final_statuses!(),
                ") AND EXISTS (
                     SELECT 1 FROM cregis_claims AS f
                     WHERE f.kind = c.kind AND f.pid = c.pid AND f.cid = c.cid
                       AND f.status IN (",
                crate::schema::final_statuses!(),
                ") AND (f.started_at, f.status) < (c.started_at, c.status))"
            ),
            concat!(
                "CREATE UNIQUE INDEX cregis_claims_final ON cregis_claims (kind, pid, cid)
                 WHERE status IN (",
                crate::schema::final_statuses!(),
                ") AND NOT superseded"
            ),
        ],
    ],
};

/// Claims the key for the attempt: a new row, or the row of a lapsed claim with the same
/// content, taken over. A row comes back only if the attempt now holds the claim, saying
/// whether it is new: `xmax` is 0 on a row this statement inserted, not on one it updated.
const CLAIM: &str = "
INSERT INTO cregis_claims AS c
    (pid, cid, status, fingerprint, done, attempt, started_at, lease_until, kind)
VALUES ($1, $2, $3, $4, FALSE, $5, now(), now() + $6 * interval '1 millisecond', $7)
ON CONFLICT (kind, pid, cid, status) DO UPDATE
    SET attempt = EXCLUDED.attempt,
        started_at = EXCLUDED.started_at,
        lease_until = EXCLUDED.lease_until
    WHERE NOT c.done
      AND c.fingerprint = EXCLUDED.fingerprint
      AND c.lease_until < now()
RETURNING xmax = 0 AS inserted";

/// A shared, durable [`AsyncIdempotencyStore`] in PostgreSQL: one table, `cregis_claims`,
/// that every instance uses, for hosts that keep the direct mode
/// ([`Verifier::process_async`](crate::Verifier::process_async), the `callback_route`s) on
/// several instances. A callback delivered to two instances at once runs the handler on one;
/// a duplicate with other content is a conflict; and a claim whose instance died is taken
/// over by the next re-push once its lease has ended, on any instance.
///
/// Leases are measured on the database's clock (`now()`), never on an instance's own: an
/// instance whose clock steps forward (NTP) cannot take over a claim that is still live
/// elsewhere. So [`Attempt::started`] is not used; [`Attempt::lease`] is. The times
/// [`claims_in_progress`](Self::claims_in_progress) returns are the database's.
///
/// Prefer the [inbox](crate::inbox) ([`PgInbox`](crate::inbox::PgInbox)) where you can: with
/// this store, a handler failure is still a failed callback that only an operator's re-push
/// from the Cregis console brings back. And when the handler's effect is a row in the same
/// database, the inbox's [`Worker::in_transaction`](crate::inbox::Worker::in_transaction)
/// commits it with "done" in one transaction, which no separate store can.
///
/// Connections use TLS when the URL asks for it (`sslmode=require`, `verify-full`), as with
/// [`PgInbox`](crate::inbox::PgInbox). A row stays for each fact handled (about 100 bytes),
/// so that a re-push months later is still a duplicate.
///
/// # Example
///
/// ```no_run
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use cregis_payout_callback::{ApiKey, Verifier, idempotency::PgIdempotencyStore};
///
/// let store = PgIdempotencyStore::connect("postgres://app@db.internal/payments?sslmode=verify-full").await?;
/// for stuck in store.claims_in_progress().await? {
///     println!("in progress: {} since {:?}", stuck.key, stuck.started);
/// }
/// let verifier = Verifier::builder(ApiKey::new(std::env::var("CREGIS_API_KEY")?)?)
///     .idempotency(store)
///     .build();
/// // axum: Router::new().route("/cregis/payout-callback", callback_route(verifier, handler))
/// # drop(verifier);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    pool: PgPool,
}

impl PgIdempotencyStore {
    /// Connects to the database at `url` with a pool of 8 connections, and creates the table
    /// if needed (safely, when several instances start at once).
    ///
    /// # Example
    ///
    /// See [`PgIdempotencyStore`].
    ///
    /// # Errors
    ///
    /// The URL is invalid, the database cannot be reached, or it holds a newer schema than this
    /// crate's.
    pub async fn connect(url: &str) -> Result<PgIdempotencyStore, BoxError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        PgIdempotencyStore::from_pool(pool).await
    }

    /// The store in the host's own `pool`, creating the table if needed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::idempotency::PgIdempotencyStore;
    ///
    /// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/payments").await?;
    /// let store = PgIdempotencyStore::from_pool(pool.clone()).await?;
    /// assert_eq!(store.pool().size(), pool.size());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed, or holds a newer schema than this crate's.
    pub async fn from_pool(pool: PgPool) -> Result<PgIdempotencyStore, BoxError> {
        migrate_pg(&pool, &SCHEMA).await?;
        Ok(PgIdempotencyStore { pool })
    }

    /// The pool, to share with the host's own queries.
    ///
    /// # Example
    ///
    /// See [`from_pool`](PgIdempotencyStore::from_pool).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every claim in progress (lease live or lapsed), oldest first, in the database's time:
    /// for the host to see what is stuck.
    ///
    /// # Example
    ///
    /// See [`PgIdempotencyStore`].
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn claims_in_progress(&self) -> Result<Vec<ClaimInProgress>, BoxError> {
        let rows = sqlx::query(
            "SELECT kind, pid, cid, status,
                    (extract(epoch FROM started_at) * 1000)::bigint AS started_ms,
                    (extract(epoch FROM lease_until) * 1000)::bigint AS lease_until_ms
             FROM cregis_claims WHERE NOT done ORDER BY started_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let key = DeliveryKey::from_columns(
                    row.try_get("kind")?,
                    row.try_get("pid")?,
                    row.try_get("cid")?,
                    row.try_get::<i32, _>("status")?.into(),
                )?;
                Ok(ClaimInProgress::new(
                    key,
                    time_of(row.try_get("started_ms")?),
                    time_of(row.try_get("lease_until_ms")?),
                ))
            })
            .collect()
    }

    /// Frees the claim in progress on `key`, whoever holds it; returns whether there was one.
    /// For a host that checked that the effect did not happen and will not wait for the lease.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc(store: cregis_payout_callback::idempotency::PgIdempotencyStore) -> Result<(), cregis_payout_callback::error::BoxError> {
    /// for stuck in store.claims_in_progress().await? {
    ///     // ... after checking the host's own records for the payout:
    ///     store.release_claim(&stuck.key).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn release_claim(&self, key: &DeliveryKey) -> Result<bool, BoxError> {
        let deleted = sqlx::query(
            "DELETE FROM cregis_claims
             WHERE pid = $1 AND cid = $2 AND status = $3 AND kind = $4 AND NOT done",
        )
        .bind(key.pid)
        .bind(key.cid)
        .bind(key.fact.code())
        .bind(key.kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Deletes up to `limit` settled claims older than `older_than` (by when they were
    /// claimed), oldest first; returns how many. Call it periodically (every few minutes, until
    /// it returns less than `limit`) to keep the table small. A fact re-pushed after its claim
    /// is deleted runs the handler again, so keep `older_than` longer than the latest a re-push
    /// can come (the inbox's workers keep 30 days:
    /// [`DEFAULT_RETENTION`](crate::inbox::DEFAULT_RETENTION)). Claims in progress are never
    /// deleted.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc(store: cregis_payout_callback::idempotency::PgIdempotencyStore) -> Result<(), cregis_payout_callback::error::BoxError> {
    /// use std::time::Duration;
    ///
    /// let thirty_days = Duration::from_secs(30 * 24 * 60 * 60);
    /// while store.prune(thirty_days, 1000).await? == 1000 {}
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed; the batches deleted before stay deleted.
    pub async fn prune(&self, older_than: Duration, limit: usize) -> Result<usize, BoxError> {
        let deleted = sqlx::query(
            "DELETE FROM cregis_claims WHERE ctid IN (
                 SELECT ctid FROM cregis_claims
                 WHERE done AND started_at < now() - $1 * interval '1 millisecond'
                 ORDER BY started_at
                 LIMIT $2
             )",
        )
        .bind(crate::schema::sql_ms(older_than))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
    }
}

/// A time the database gave in milliseconds since the epoch.
fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The attempt id as PostgreSQL's signed 64-bit integer (the same bits).
fn attempt_id(attempt: &Attempt) -> i64 {
    i64::from_ne_bytes(attempt.id.to_ne_bytes())
}

fn lease_ms(attempt: &Attempt) -> i64 {
    crate::schema::sql_ms(attempt.lease)
}

impl PgIdempotencyStore {
    /// The final status `key`'s payout holds, if any.
    async fn recorded_final(&self, key: &DeliveryKey) -> Result<Option<CallbackStatus>, BoxError> {
        let code: Option<i32> = sqlx::query_scalar(concat!(
            "SELECT status FROM cregis_claims
             WHERE kind = $1 AND pid = $2 AND cid = $3 AND NOT superseded AND status IN (",
            crate::schema::final_statuses!(),
            ")"
        ))
        .bind(key.kind.as_str())
        .bind(key.pid)
        .bind(key.cid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(code.and_then(|code| CallbackStatus::try_from(code).ok()))
    }
}

impl AsyncIdempotencyStore for PgIdempotencyStore {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        let key = &attempt.key;
        let fingerprint = &attempt.fingerprint.as_bytes()[..];
        // A row released between the two statements is claimed on the next round.
        for _ in 0..3 {
            let claimed: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar(CLAIM)
                .bind(key.pid)
                .bind(key.cid)
                .bind(key.fact.code())
                .bind(fingerprint)
                .bind(attempt_id(attempt))
                .bind(lease_ms(attempt))
                .bind(key.kind.as_str())
                .fetch_optional(&self.pool)
                .await;
            let claimed = match claimed {
                Err(sqlx::Error::Database(error))
                    if error.constraint() == Some("cregis_claims_final") =>
                {
                    // The payout holds another final status (unless it was released since).
                    match self.recorded_final(key).await? {
                        Some(recorded) => return Ok(Claim::OtherFinal { recorded }),
                        None => continue,
                    }
                }
                claimed => claimed?,
            };
            if let Some(inserted) = claimed {
                return Ok(if inserted {
                    Claim::Claimed
                } else {
                    Claim::TakenOver
                });
            }
            let found = sqlx::query(
                "SELECT done, fingerprint = $4 AS same FROM cregis_claims
                 WHERE pid = $1 AND cid = $2 AND status = $3 AND kind = $5",
            )
            .bind(key.pid)
            .bind(key.cid)
            .bind(key.fact.code())
            .bind(fingerprint)
            .bind(key.kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = found {
                let (done, same): (bool, bool) = (row.try_get("done")?, row.try_get("same")?);
                return Ok(match (done, same) {
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
        sqlx::query(
            "INSERT INTO cregis_claims
                 (pid, cid, status, fingerprint, done, attempt, started_at, lease_until, kind)
             VALUES ($1, $2, $3, $4, TRUE, $5, now(), now(), $6)
             ON CONFLICT (kind, pid, cid, status) DO UPDATE SET done = TRUE",
        )
        .bind(key.pid)
        .bind(key.cid)
        .bind(key.fact.code())
        .bind(&attempt.fingerprint.as_bytes()[..])
        .bind(attempt_id(attempt))
        .bind(key.kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        let key = &attempt.key;
        sqlx::query(
            "DELETE FROM cregis_claims
             WHERE pid = $1 AND cid = $2 AND status = $3 AND NOT done AND attempt = $4
               AND kind = $5",
        )
        .bind(key.pid)
        .bind(key.cid)
        .bind(key.fact.code())
        .bind(attempt_id(attempt))
        .bind(key.kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
