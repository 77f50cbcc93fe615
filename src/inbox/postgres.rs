//! The inbox in PostgreSQL (feature `postgres`), through sqlx: for several instances.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use super::sql::{self, Dialect};
use super::{
    AbortOnDrop, Accepted, Announcer, Arrivals, Count, EntryId, InTransaction, Inbox, Job,
    JobError, Listing, NewEntry, Next, Page, Taken,
};
use crate::error::BoxError;
use crate::schema::{Schema, migrate_pg, sql_ms};
use crate::{CallbackKind, Notification, PayoutCallback};

const SCHEMA: Schema = Schema {
    name: "inbox",
    version_table: "cregis_inbox_schema",
    steps: &[
        &[
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
            "CREATE INDEX cregis_inbox_due ON cregis_inbox (kind, due_at, id)
             WHERE state = 'pending'",
        ],
        // Version 2: runs that ended without an outcome are counted; listing by state and
        // pruning done entries read an index, not the table.
        &[
            "ALTER TABLE cregis_inbox ADD COLUMN interrupted integer NOT NULL DEFAULT 0",
            "CREATE INDEX cregis_inbox_state ON cregis_inbox (state, id)",
            "CREATE INDEX cregis_inbox_finished ON cregis_inbox (kind, finished_at)
             WHERE state = 'done'",
        ],
    ],
};

/// PostgreSQL's way of writing the shared queries: times are `timestamptz`, now is the
/// database's.
const DIALECT: Dialect = Dialect {
    now: "now()",
    due: "due_at",
    lease: "lease_until",
    accepted: "accepted_at",
    ms_since: |column| format!("(extract(epoch FROM now() - {column}) * 1000)::bigint"),
    param: |n| format!("${n}"),
    first_param: 0,
};

/// The connections of the inbox's own statements (accepts, takes, renewals, outcomes), apart
/// from the pool the handlers' transactions use: however many handlers hold connections, an
/// accept finds one.
const RESERVED_CONNECTIONS: u32 = 4;

/// The inbox in PostgreSQL: one table that every instance shares.
///
/// Every time (due dates, leases, ages) is the database's `now()`, so the instances' own clocks
/// never matter: an instance whose clock jumps cannot take over a live lease. A worker takes
/// an entry with `FOR UPDATE SKIP LOCKED`, so any number of workers, in any number of
/// instances, take distinct entries without waiting for each other. The table is created, and
/// its schema version checked, under an advisory lock, so instances may start at once.
///
/// **Accepting never waits for a handler.** The inbox's own statements (accepts, takes,
/// renewals, outcomes, listings) run on a pool of their own, four connections opened with the
/// host pool's options, apart from the connections the in-transaction handlers hold; an
/// accept is a single-row insert that no handler's lock blocks. Each instance opens at most the
/// host pool's connections, these four, and one that listens.
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
    /// The host's pool: the in-transaction handlers' transactions.
    pool: PgPool,
    /// The inbox's own statements, on connections no handler holds.
    reserved: PgPool,
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
    notifier: OnceLock<AbortOnDrop<()>>,
    listener: OnceLock<AbortOnDrop<()>>,
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
        migrate_pg(&pool, &SCHEMA).await?;
        let reserved = PgPoolOptions::new()
            .max_connections(RESERVED_CONNECTIONS)
            .connect_lazy_with(PgConnectOptions::clone(&pool.connect_options()));
        Ok(PgInbox {
            pool,
            reserved,
            news: Arc::default(),
        })
    }

    /// The host's pool (the one given, or the one [`connect`](PgInbox::connect) opened), to
    /// share with the host's own queries; the in-transaction handlers' transactions use it.
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
                AbortOnDrop(runtime.spawn(notify(self.reserved.clone(), accepted)))
            });
        }
        self.news.outgoing.announce();
    }

    /// Marks `taken` done on `connection` (in the handler's transaction, for
    /// [`InTransaction`]); `false` if the run no longer holds it.
    ///
    /// The lease is checked against `clock_timestamp()`, the time of the check: `now()` is the
    /// time the transaction began, before the handler ran.
    async fn mark_done(connection: &mut PgConnection, taken: &Taken) -> Result<bool, BoxError> {
        let done = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'done', lease_until = NULL, last_error = NULL,
                 finished_at = clock_timestamp()
             WHERE id = $1 AND attempts = $2 AND state = 'pending'
               AND lease_until >= clock_timestamp()",
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
            .fetch_optional(&self.reserved)
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
            .fetch_optional(&self.reserved)
            .await?;
            if let Some(row) = found {
                let id = EntryId(row.try_get("id")?);
                let stored: Vec<u8> = row.try_get("fingerprint")?;
                return Ok(sql::existing(id, &stored, &entry.fingerprint));
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
             SET attempts = attempts + 1,
                 interrupted = interrupted + (lease_until IS NOT NULL)::integer,
                 lease_until = now() + $1 * interval '1 millisecond'
             WHERE id = (
                 SELECT id FROM cregis_inbox
                 WHERE state = 'pending' AND kind = $2 AND due_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY due_at, id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING id, kind, pid, cid, status::bigint AS status, body,
                       attempts::bigint AS attempts, interrupted::bigint AS interrupted,
                       (extract(epoch FROM now() - accepted_at) * 1000)::bigint AS age_ms",
        )
        .bind(sql_ms(lease))
        .bind(kind.as_str())
        .fetch_optional(&self.reserved)
        .await?;
        row.as_ref().map(sql::taken_of).transpose()
    }

    async fn renew(&self, taken: &Taken, lease: Duration) -> Result<bool, BoxError> {
        let renewed = sqlx::query(
            "UPDATE cregis_inbox SET lease_until = now() + $1 * interval '1 millisecond'
             WHERE id = $2 AND attempts = $3 AND state = 'pending' AND lease_until >= now()",
        )
        .bind(sql_ms(lease))
        .bind(taken.id.0)
        .bind(attempts(taken.attempt))
        .execute(&self.reserved)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        let mut connection = self.reserved.acquire().await?;
        PgInbox::mark_done(&mut connection, taken).await
    }

    async fn fail(&self, taken: &Taken, error: &str, next: Next) -> Result<bool, BoxError> {
        let (dead, delay) = match next {
            Next::RetryAfter(delay) => (false, sql_ms(delay)),
            Next::Dead => (true, 0),
        };
        let failed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = CASE WHEN $1 THEN 'dead' ELSE 'pending' END,
                 due_at = CASE WHEN $1 THEN due_at ELSE now() + $2 * interval '1 millisecond' END,
                 finished_at = CASE WHEN $1 THEN now() END,
                 lease_until = NULL,
                 last_error = $3
             WHERE id = $4 AND attempts = $5 AND state = 'pending' AND lease_until >= now()",
        )
        .bind(dead)
        .bind(delay)
        .bind(error)
        .bind(taken.id.0)
        .bind(attempts(taken.attempt))
        .execute(&self.reserved)
        .await?;
        Ok(failed.rows_affected() == 1)
    }

    async fn page(&self, listing: &Listing) -> Result<Page, BoxError> {
        let text = DIALECT.page(listing);
        let mut query = sqlx::query(AssertSqlSafe(text));
        if let Some(kind) = listing.kind {
            query = query.bind(kind.as_str());
        }
        let rows = query
            .bind(sql::after(listing))
            .bind(sql::limit(listing))
            .fetch_all(&self.reserved)
            .await?;
        let entries = rows
            .iter()
            .map(sql::summary_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = sql::next_cursor(&entries, listing);
        Ok(Page { entries, next })
    }

    async fn counts(&self) -> Result<Vec<Count>, BoxError> {
        let rows = sqlx::query(AssertSqlSafe(DIALECT.counts()))
            .fetch_all(&self.reserved)
            .await?;
        rows.iter().map(sql::count_row).collect()
    }

    async fn replay(&self, id: EntryId) -> Result<bool, BoxError> {
        let replayed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'pending', due_at = now(), finished_at = NULL, interrupted = 0
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id.0)
        .execute(&self.reserved)
        .await?;
        Ok(replayed.rows_affected() == 1)
    }

    async fn replay_dead(&self) -> Result<usize, BoxError> {
        let replayed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'pending', due_at = now(), finished_at = NULL, interrupted = 0
             WHERE state = 'dead'",
        )
        .execute(&self.reserved)
        .await?;
        Ok(usize::try_from(replayed.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn discard(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let removed = sqlx::query(
            "DELETE FROM cregis_inbox
             WHERE id = $1 AND NOT (state = 'pending' AND coalesce(lease_until >= now(), false))
             RETURNING kind, pid, cid, status::bigint AS status",
        )
        .bind(id.0)
        .fetch_optional(&self.reserved)
        .await?;
        sql::operated(removed.as_ref(), id, reason, super::worker::report_discard)
    }

    async fn release(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let released = sqlx::query(
            "UPDATE cregis_inbox
             SET lease_until = NULL, due_at = now(), last_error = $2,
                 interrupted = interrupted + 1
             WHERE id = $1 AND state = 'pending' AND lease_until >= now()
             RETURNING kind, pid, cid, status::bigint AS status",
        )
        .bind(id.0)
        .bind(reason)
        .fetch_optional(&self.reserved)
        .await?;
        sql::operated(released.as_ref(), id, reason, super::worker::report_release)
    }

    async fn prune(
        &self,
        kind: CallbackKind,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, BoxError> {
        let pruned = sqlx::query(
            "DELETE FROM cregis_inbox WHERE id IN (
                 SELECT id FROM cregis_inbox
                 WHERE kind = $1 AND state = 'done'
                   AND finished_at < now() - $2 * interval '1 millisecond'
                 ORDER BY finished_at
                 LIMIT $3
             )",
        )
        .bind(kind.as_str())
        .bind(sql_ms(older_than))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.reserved)
        .await?;
        Ok(usize::try_from(pruned.rows_affected()).unwrap_or(usize::MAX))
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

/// The transaction is on the host's pool, apart from the inbox's own connections: a handler
/// that holds its connection long delays nothing but the other handlers. The worker's
/// [`deadline`](super::Worker::deadline) ([`DEFAULT_IN_TRANSACTION_DEADLINE`](super::DEFAULT_IN_TRANSACTION_DEADLINE))
/// rolls back a handler that takes longer.
impl<C: Notification, H: PgHandler<C>> Job<PgInbox> for InTransaction<H, C> {
    type Callback = C;

    const DEADLINE: Duration = super::DEFAULT_IN_TRANSACTION_DEADLINE;

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
