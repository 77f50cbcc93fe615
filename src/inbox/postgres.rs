//! The inbox in PostgreSQL (feature `postgres`), through sqlx: for several instances.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::{
    Accepted, Announcer, Arrivals, EntryId, EntryState, EntrySummary, InTransaction, Inbox, Job,
    JobError, NewEntry, Next, Taken, stored,
};
use crate::error::BoxError;
use crate::idempotency::DeliveryKey;
use crate::{CallbackKind, Notification, PayoutCallback};

/// A set of tables the crate creates, and the version of them it writes and reads.
pub(crate) struct Schema {
    /// What the tables are, for errors ("inbox").
    pub(crate) name: &'static str,
    /// The one-column table that records the version created.
    pub(crate) version_table: &'static str,
    pub(crate) version: i32,
    /// What creates the tables at `version`.
    pub(crate) statements: &'static [&'static str],
}

/// The advisory lock that serializes schema creation between instances starting at once.
const SCHEMA_LOCK: i64 = 0x6372_6567_6973_0001;

const SCHEMA: Schema = Schema {
    name: "inbox",
    version_table: "cregis_inbox_schema",
    version: 1,
    statements: &[
        "CREATE TABLE cregis_inbox (
        kind        text        NOT NULL,
        id          bigserial   PRIMARY KEY,
        pid         bigint      NOT NULL,
        cid         bigint      NOT NULL,
        status      integer     NOT NULL,
        fingerprint bytea       NOT NULL,
        body        bytea       NOT NULL,
        state       text        NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts    integer     NOT NULL DEFAULT 0,
        due_at      timestamptz NOT NULL,
        lease_until timestamptz,
        last_error  text,
        accepted_at timestamptz NOT NULL,
        finished_at timestamptz,
        UNIQUE (kind, pid, cid, status)
    )",
        "CREATE INDEX cregis_inbox_due ON cregis_inbox (kind, due_at, id) WHERE state = 'pending'",
    ],
};

/// Milliseconds, as PostgreSQL interval arithmetic takes them (`$n * interval '1 ms'`).
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The inbox in PostgreSQL: one table that every instance shares.
///
/// Every time (due dates, leases, ages) is the database's `now()`, so the instances' own clocks
/// never matter: an instance whose clock jumps cannot take over a live lease. A worker takes
/// an entry with `FOR UPDATE SKIP LOCKED`, so any number of workers, in any number of
/// instances, take distinct entries without waiting for each other. The table is created, and
/// its schema version checked, under an advisory lock, so instances may start at once.
///
/// Connections use TLS when the URL asks for it (`sslmode=require`, `verify-full`, ...), as
/// production databases require; with `sslmode=prefer` (the default) TLS is used if the server
/// offers it.
///
/// # Example
///
/// ```no_run
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use cregis_payout_callback::inbox::{EntryState, Inbox, PgInbox};
///
/// let inbox = PgInbox::connect("postgres://app@db.internal/payments?sslmode=verify-full").await?;
/// for dead in inbox.list(&[EntryState::Dead]).await? {
///     println!("{}: {}", dead.key, dead.last_error.unwrap_or_default());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PgInbox {
    pool: PgPool,
    /// Wakes idle workers when any instance accepts an entry (`LISTEN`).
    news: Arc<News>,
}

/// The channel every instance's `accept` notifies and every worker's instance listens on.
const CHANNEL: &str = "cregis_inbox";

/// How the instances' workers hear of new entries: this instance's workers at once (through
/// `local`), every instance's through a `NOTIFY` that a task of its own sends after the
/// accepts (`outgoing`, coalesced: one `NOTIFY` for all the accepts of a 20 ms window), and a task that `LISTEN`s once a worker asks for news. Both tasks end with
/// the last clone of the inbox.
///
/// The `NOTIFY` is not in the accepting statement: PostgreSQL serializes the commits of
/// notifying transactions under one lock, which would hold each accept's commit (and its
/// fsync) behind every other's.
#[derive(Debug, Default)]
struct News {
    local: Announcer,
    outgoing: Announcer,
    notifier: OnceLock<AbortOnDrop>,
    listener: OnceLock<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The least time between two `NOTIFY`s of one instance: each takes a lock that every
/// notifying commit in the database waits for, so under load one serves many accepts. An idle
/// worker elsewhere hears of a new entry at most this much later.
const NOTIFY_GAP: Duration = Duration::from_millis(20);

/// Sends one `NOTIFY` on [`CHANNEL`] for each wave of `accepted` entries, at most one per
/// [`NOTIFY_GAP`].
async fn notify(pool: PgPool, mut accepted: Arrivals) {
    loop {
        accepted.next().await;
        tokio::time::sleep(NOTIFY_GAP).await;
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            // The other instances' workers find the entry at their next poll.
            super::worker::report_inbox_error("notify", &error.into());
        }
    }
}

/// Listens on [`CHANNEL`] on a connection of its own (not one of the host's pool), and
/// announces each notification. A lost connection is taken up again; since notifications
/// sent meanwhile are lost, it announces once more then, and the worker looks for itself.
async fn listen(options: PgConnectOptions, announcer: Announcer) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut listener = loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => break listener,
                Err(error) => super::worker::report_inbox_error("listen", &error.into()),
            },
            Err(error) => super::worker::report_inbox_error("listen", &error.into()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        match listener.try_recv().await {
            // A notification, or a lost connection (taken up again by the next call).
            Ok(_) => announcer.announce(),
            Err(error) => {
                super::worker::report_inbox_error("listen", &error.into());
                announcer.announce();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl PgInbox {
    /// Connects to the database at `url` with a pool of 8 connections, and creates the table
    /// if needed.
    ///
    /// # Example
    ///
    /// See [`PgInbox`].
    ///
    /// # Errors
    ///
    /// The URL is invalid, the database cannot be reached, or it holds a newer schema than this
    /// crate's.
    pub async fn connect(url: &str) -> Result<PgInbox, BoxError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        PgInbox::from_pool(pool).await
    }

    /// The inbox in the host's own `pool`, creating the table if needed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::PgInbox;
    ///
    /// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/payments").await?;
    /// let inbox = PgInbox::from_pool(pool.clone()).await?;
    /// # drop(inbox);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed, or holds a newer schema than this crate's.
    pub async fn from_pool(pool: PgPool) -> Result<PgInbox, BoxError> {
        migrate(&pool, &SCHEMA).await?;
        Ok(PgInbox {
            pool,
            news: Arc::default(),
        })
    }

    /// The pool, to share with the host's own queries.
    ///
    /// # Example
    ///
    /// See [`from_pool`](PgInbox::from_pool).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Tells the workers of this instance, and (by a `NOTIFY` sent after this) of every
    /// other, that a new entry was committed.
    fn announce(&self) {
        self.news.local.announce();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.news.notifier.get_or_init(|| {
                let accepted = self.news.outgoing.subscribe();
                AbortOnDrop(runtime.spawn(notify(self.pool.clone(), accepted)))
            });
        }
        self.news.outgoing.announce();
    }

    /// Marks `taken` done on `connection` (in the handler's transaction, for
    /// [`InTransaction`]); `false` if the run no longer holds it.
    async fn mark_done(connection: &mut PgConnection, taken: &Taken) -> Result<bool, BoxError> {
        let done = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'done', lease_until = NULL, last_error = NULL, finished_at = now()
             WHERE id = $1 AND attempts = $2 AND state = 'pending' AND lease_until IS NOT NULL",
        )
        .bind(taken.id.0)
        .bind(attempts(taken.attempt))
        .execute(&mut *connection)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn attempts(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

/// Creates `schema`'s tables if they are missing and checks their version, in one
/// transaction under an advisory lock: several instances starting at once take turns.
pub(crate) async fn migrate(pool: &PgPool, schema: &Schema) -> Result<(), BoxError> {
    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    // The table's name is one of the crate's constants, never input.
    let table = schema.version_table;
    let sql = |text: String| AssertSqlSafe(text);
    sqlx::query(sql(format!(
        "CREATE TABLE IF NOT EXISTS {table} (version integer NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    let version: Option<i32> = sqlx::query_scalar(sql(format!("SELECT max(version) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    let known = i64::from(schema.version);
    if stored::must_create(schema.name, version.map(i64::from), known)? {
        for statement in schema.statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query(sql(format!("INSERT INTO {table} (version) VALUES ($1)")))
            .bind(schema.version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn key_of(row: &PgRow) -> Result<DeliveryKey, BoxError> {
    DeliveryKey::from_columns(
        row.try_get("kind")?,
        row.try_get("pid")?,
        row.try_get("cid")?,
        row.try_get::<i32, _>("status")?.into(),
    )
}

fn attempts_of(row: &PgRow) -> Result<u32, BoxError> {
    let attempts: i32 = row.try_get("attempts")?;
    Ok(u32::try_from(attempts)?)
}

impl Inbox for PgInbox {
    async fn accept(&self, entry: &NewEntry<'_>) -> Result<Accepted, BoxError> {
        let key = entry.key;
        // An entry is never changed by `accept`, and only removed by `discard`: if the insert
        // finds a row and the row is then discarded before it is read, try again.
        for _ in 0..3 {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO cregis_inbox
                     (pid, cid, status, fingerprint, body, state, due_at, accepted_at, kind)
                 VALUES ($1, $2, $3, $4, $5, 'pending', now(), now(), $6)
                 ON CONFLICT (kind, pid, cid, status) DO NOTHING
                 RETURNING id",
            )
            .bind(key.pid)
            .bind(key.cid)
            .bind(key.fact.code())
            .bind(&entry.fingerprint.as_bytes()[..])
            .bind(entry.body)
            .bind(key.kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = inserted {
                self.announce();
                return Ok(Accepted::New(EntryId(id)));
            }
            let found = sqlx::query(
                "SELECT id, fingerprint FROM cregis_inbox
                 WHERE pid = $1 AND cid = $2 AND status = $3 AND kind = $4",
            )
            .bind(key.pid)
            .bind(key.cid)
            .bind(key.fact.code())
            .bind(key.kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = found {
                let id = EntryId(row.try_get("id")?);
                let stored: Vec<u8> = row.try_get("fingerprint")?;
                return Ok(stored::existing(id, &stored, &entry.fingerprint));
            }
        }
        Err(format!("the entry for {key} kept changing").into())
    }

    fn arrivals(&self) -> Arrivals {
        let arrivals = self.news.local.subscribe();
        // Outside a runtime there is no task to listen: the worker polls.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.news.listener.get_or_init(|| {
                let options = PgConnectOptions::clone(&self.pool.connect_options());
                AbortOnDrop(runtime.spawn(listen(options, self.news.local.clone())))
            });
        }
        arrivals
    }

    async fn take(&self, kind: CallbackKind, lease: Duration) -> Result<Option<Taken>, BoxError> {
        let row = sqlx::query(
            "UPDATE cregis_inbox
             SET attempts = attempts + 1, lease_until = now() + $1 * interval '1 millisecond'
             WHERE id = (
                 SELECT id FROM cregis_inbox
                 WHERE state = 'pending' AND kind = $2 AND due_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY due_at, id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING id, kind, pid, cid, status, body, attempts,
                       (extract(epoch FROM now() - accepted_at) * 1000)::bigint AS age_ms",
        )
        .bind(millis(lease))
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Taken {
            id: EntryId(row.try_get("id")?),
            key: key_of(&row)?,
            body: row.try_get("body")?,
            attempt: attempts_of(&row)?,
            age: duration_ms(row.try_get("age_ms")?),
        }))
    }

    async fn renew(&self, taken: &Taken, lease: Duration) -> Result<bool, BoxError> {
        let renewed = sqlx::query(
            "UPDATE cregis_inbox SET lease_until = now() + $1 * interval '1 millisecond'
             WHERE id = $2 AND attempts = $3 AND state = 'pending' AND lease_until IS NOT NULL",
        )
        .bind(millis(lease))
        .bind(taken.id.0)
        .bind(attempts(taken.attempt))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        let mut connection = self.pool.acquire().await?;
        PgInbox::mark_done(&mut connection, taken).await
    }

    async fn fail(&self, taken: &Taken, error: &str, next: Next) -> Result<bool, BoxError> {
        let (dead, delay) = match next {
            Next::RetryAfter(delay) => (false, millis(delay)),
            Next::Dead => (true, 0),
        };
        let failed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = CASE WHEN $1 THEN 'dead' ELSE 'pending' END,
                 due_at = CASE WHEN $1 THEN due_at ELSE now() + $2 * interval '1 millisecond' END,
                 finished_at = CASE WHEN $1 THEN now() END,
                 lease_until = NULL,
                 last_error = $3
             WHERE id = $4 AND attempts = $5 AND state = 'pending' AND lease_until IS NOT NULL",
        )
        .bind(dead)
        .bind(delay)
        .bind(error)
        .bind(taken.id.0)
        .bind(attempts(taken.attempt))
        .execute(&self.pool)
        .await?;
        Ok(failed.rows_affected() == 1)
    }

    async fn list(&self, states: &[EntryState]) -> Result<Vec<EntrySummary>, BoxError> {
        let rows = sqlx::query(
            "SELECT id, kind, pid, cid, status, state, attempts, last_error,
                    coalesce(lease_until >= now(), false) AS running,
                    (extract(epoch FROM now() - accepted_at) * 1000)::bigint AS age_ms,
                    (extract(epoch FROM due_at - now()) * 1000)::bigint AS due_in_ms
             FROM cregis_inbox ORDER BY accepted_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::new();
        for row in rows {
            let stored: String = row.try_get("state")?;
            let running: bool = row.try_get("running")?;
            let due_in_ms: i64 = row.try_get("due_in_ms")?;
            let state = stored::state(&stored, running, due_in_ms > 0);
            if !states.contains(&state) {
                continue;
            }
            entries.push(EntrySummary {
                id: EntryId(row.try_get("id")?),
                key: key_of(&row)?,
                state,
                attempts: attempts_of(&row)?,
                last_error: row.try_get("last_error")?,
                age: duration_ms(row.try_get("age_ms")?),
                due_in: (state == EntryState::Waiting).then(|| duration_ms(due_in_ms)),
            });
        }
        Ok(entries)
    }

    async fn replay(&self, id: EntryId) -> Result<bool, BoxError> {
        let replayed = sqlx::query(
            "UPDATE cregis_inbox SET state = 'pending', due_at = now(), finished_at = NULL
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(replayed.rows_affected() == 1)
    }

    async fn discard(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let removed = sqlx::query(
            "DELETE FROM cregis_inbox
             WHERE id = $1 AND NOT (state = 'pending' AND coalesce(lease_until >= now(), false))
             RETURNING kind, pid, cid, status",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        match removed {
            Some(row) => {
                super::worker::report_discard(id, key_of(&row)?, reason);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A handler whose effect is written in the inbox's own PostgreSQL database, in the
/// transaction that marks the entry done: see [`Worker::in_transaction`](super::Worker::in_transaction).
///
/// # Example
///
/// See [`Worker::in_transaction`](super::Worker::in_transaction).
pub trait PgHandler<C = PayoutCallback>: Send + Sync + 'static {
    /// The handler's error; its text is kept as the entry's last error.
    type Error: Display + Send;

    /// Applies `callback` with `tx`, the transaction that then marks the entry done. Returning
    /// an error (or panicking) rolls the transaction back: nothing of this run remains.
    fn handle(
        &self,
        callback: &C,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<C: Notification, H: PgHandler<C>> Job<PgInbox> for InTransaction<H, C> {
    type Callback = C;

    async fn run(&self, inbox: &PgInbox, taken: &Taken, callback: &C) -> Result<bool, JobError> {
        let inbox_error = |error: sqlx::Error| JobError::Inbox(error.into());
        let mut tx = inbox.pool.begin().await.map_err(inbox_error)?;
        self.handler
            .handle(callback, &mut tx)
            .await
            .map_err(|error| JobError::Handler(error.to_string()))?;
        if !PgInbox::mark_done(&mut tx, taken)
            .await
            .map_err(JobError::Inbox)?
        {
            // Lost the lease: roll the effect back (dropping the transaction does).
            return Ok(false);
        }
        tx.commit().await.map_err(inbox_error)?;
        Ok(true)
    }
}
