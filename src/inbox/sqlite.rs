//! The inbox in one SQLite file (feature `sqlite`), through sqlx.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use std::fmt::Display;
use std::future::Future;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    Accepted, Announcer, Arrivals, EntryId, EntryState, EntrySummary, InTransaction, Inbox, Job,
    JobError, NewEntry, Next, Taken, stored,
};
use crate::error::BoxError;
use crate::idempotency::{DeliveryKey, Fingerprint};
use crate::verifier::{Clock, SystemClock};
use crate::{CallbackKind, Notification, PayoutCallback};

/// The schema version this crate writes and reads.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    // AUTOINCREMENT: an id is never reused, even after its entry is discarded.
    "CREATE TABLE cregis_inbox (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        kind           TEXT    NOT NULL,
        pid            INTEGER NOT NULL,
        cid            INTEGER NOT NULL,
        status         INTEGER NOT NULL,
        fingerprint    BLOB    NOT NULL,
        body           BLOB    NOT NULL,
        state          TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
        attempts       INTEGER NOT NULL DEFAULT 0,
        due_ms         INTEGER NOT NULL,
        lease_until_ms INTEGER,
        last_error     TEXT,
        accepted_ms    INTEGER NOT NULL,
        finished_ms    INTEGER,
        UNIQUE (kind, pid, cid, status)
    )",
    "CREATE INDEX cregis_inbox_due ON cregis_inbox (kind, state, due_ms)",
];

/// The inbox in one SQLite file: the embedded choice for a single instance.
///
/// [`open`](SqliteInbox::open) sets the connection up for durability: WAL (readers never
/// block the writer), `synchronous=FULL` (a committed entry survives a power cut, at the cost
/// of an fsync per commit; `NORMAL` would risk losing the last commits, already acknowledged,
/// on a power cut, though not on a process crash), and a 5 s busy timeout (writers wait for
/// each other instead of failing). The tables are created, and their schema version checked,
/// on open, in one `BEGIN IMMEDIATE` transaction, so several processes may open the file at
/// once.
///
/// Accepts are written by one task in batches: each commit (each fsync) records every
/// callback that arrived meanwhile, and each is answered only after that commit. Under load
/// this is many times the disk's fsync rate; alone, a callback is its own batch. The task runs
/// on the tokio runtime that opened the inbox: open it on the runtime that serves it.
///
/// Times (due dates, leases) are read from one clock, the process's ([`SystemClock`]) unless
/// [`with_clock`](SqliteInbox::with_clock) says otherwise: one instance, one clock. A clone is
/// the same inbox.
///
/// # Example
///
/// ```
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
///
/// let dir = tempfile::tempdir()?;
/// let inbox = SqliteInbox::open(dir.path().join("inbox.db")).await?;
/// assert!(inbox.list(&[EntryState::Dead]).await?.is_empty());
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    /// The queue of the task that writes accepted entries in batches (group commit).
    writer: mpsc::Sender<Write>,
    /// Wakes this process's idle workers when an entry is accepted.
    announcer: Announcer,
}

/// An entry waiting for the writer, and where to say what became of it.
#[derive(Debug)]
struct Write {
    key: DeliveryKey,
    fingerprint: Fingerprint,
    body: Vec<u8>,
    now_ms: i64,
    done: oneshot::Sender<Result<Accepted, String>>,
}

/// The most entries one commit writes.
const BATCH: usize = 128;

impl SqliteInbox {
    /// Opens (creating it if needed) the inbox in the SQLite file at `path`, with a pool of
    /// two connections (SQLite has one writer at a time; a handler's transaction holds one).
    ///
    /// # Example
    ///
    /// See [`SqliteInbox`].
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created, or holds a newer schema than this crate's.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteInbox, BoxError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // Switching a new file to WAL needs it alone, and SQLite answers "busy" at once, not
        // after the busy timeout, to the other processes opening it at the same moment.
        let mut waited = Duration::ZERO;
        loop {
            let opened = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options.clone())
                    .await?;
                SqliteInbox::from_pool(pool).await
            };
            match opened.await {
                Err(error) if is_busy(&error) && waited < Duration::from_secs(5) => {
                    let pause = Duration::from_millis(20);
                    tokio::time::sleep(pause).await;
                    waited += pause;
                }
                opened => return opened,
            }
        }
    }

    /// An inbox in memory, gone when it is dropped: for tests and examples.
    ///
    /// # Example
    ///
    /// See [`Verifier::accept`](crate::Verifier::accept).
    ///
    /// # Errors
    ///
    /// SQLite failed to start.
    pub async fn open_in_memory() -> Result<SqliteInbox, BoxError> {
        // One connection: each in-memory connection is a database of its own.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().in_memory(true))
            .await?;
        SqliteInbox::from_pool(pool).await
    }

    /// The inbox in the host's own `pool` (whose connection options are the host's: see
    /// [`open`](SqliteInbox::open) for the ones durability needs), creating its tables if
    /// needed.
    ///
    /// # Example
    ///
    /// ```
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::SqliteInbox;
    ///
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let inbox = SqliteInbox::from_pool(pool.clone()).await?;
    /// assert!(inbox.pool().size() >= 1);
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed, or holds a newer schema than this crate's.
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteInbox, BoxError> {
        migrate(&pool).await?;
        let (writer, queue) = mpsc::channel(4 * BATCH);
        tokio::spawn(write_batches(pool.clone(), queue));
        Ok(SqliteInbox {
            pool,
            clock: Arc::new(SystemClock),
            writer,
            announcer: Announcer::new(),
        })
    }

    /// The same inbox, its times read from `clock` (a
    /// [`ManualClock`](crate::testing::ManualClock) in tests).
    ///
    /// # Example
    ///
    /// ```
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::inbox::SqliteInbox;
    /// use cregis_payout_callback::testing::ManualClock;
    ///
    /// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    /// let inbox = SqliteInbox::open_in_memory().await?.with_clock(clock.clone());
    /// # drop(inbox);
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> SqliteInbox {
        SqliteInbox {
            clock: Arc::new(clock),
            ..self
        }
    }

    /// The pool, to share with the host's own queries.
    ///
    /// # Example
    ///
    /// See [`from_pool`](SqliteInbox::from_pool).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Marks `taken` done on `connection` (in the handler's transaction, for
    /// [`InTransaction`]); `false` if the run no longer holds it.
    async fn mark_done(
        &self,
        connection: &mut SqliteConnection,
        taken: &Taken,
    ) -> Result<bool, BoxError> {
        let done = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'done', lease_until_ms = NULL, last_error = NULL, finished_ms = ?
             WHERE id = ? AND attempts = ? AND state = 'pending' AND lease_until_ms IS NOT NULL",
        )
        .bind(self.now_ms())
        .bind(taken.id.0)
        .bind(i64::from(taken.attempt))
        .execute(&mut *connection)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Now, in milliseconds since the epoch, on the inbox's clock.
    fn now_ms(&self) -> i64 {
        millis(
            self.clock
                .now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }
}

/// Whether `error` is SQLite's "database is locked" (`SQLITE_BUSY`).
fn is_busy(error: &BoxError) -> bool {
    match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(database)) => database.code().as_deref() == Some("5"),
        _ => false,
    }
}

/// `duration` in whole milliseconds, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds back to a duration (negative ones as zero).
fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Creates the tables if they are missing and checks the schema's version, in one
/// `BEGIN IMMEDIATE` transaction: several instances opening the file at once take turns.
async fn migrate(pool: &SqlitePool) -> Result<(), BoxError> {
    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS cregis_inbox_schema (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM cregis_inbox_schema")
        .fetch_one(&mut *tx)
        .await?;
    if stored::must_create("inbox", version, SCHEMA_VERSION)? {
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO cregis_inbox_schema (version) VALUES (?)")
            .bind(SCHEMA_VERSION)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn key_of(row: &SqliteRow) -> Result<DeliveryKey, BoxError> {
    DeliveryKey::from_columns(
        row.try_get("kind")?,
        row.try_get("pid")?,
        row.try_get("cid")?,
        row.try_get("status")?,
    )
}

fn attempts_of(row: &SqliteRow) -> Result<u32, BoxError> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(u32::try_from(attempts)?)
}

/// The writer: takes the entries waiting to be accepted, as many as have come (up to
/// [`BATCH`]), writes them in one transaction and commits once, then answers each. Under load
/// an fsync serves a whole batch (group commit); alone, an entry is its own batch. Nothing is
/// answered before its commit.
async fn write_batches(pool: SqlitePool, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        match write_batch(&pool, &batch).await {
            Ok(accepted) => {
                for (write, accepted) in batch.drain(..).zip(accepted) {
                    let _ = write.done.send(Ok(accepted));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for write in batch.drain(..) {
                    let _ = write.done.send(Err(error.clone()));
                }
            }
        }
    }
}

async fn write_batch(pool: &SqlitePool, batch: &[Write]) -> Result<Vec<Accepted>, BoxError> {
    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut accepted = Vec::with_capacity(batch.len());
    for write in batch {
        accepted.push(write_one(&mut tx, write).await?);
    }
    tx.commit().await?;
    Ok(accepted)
}

/// One entry, in the writer's transaction (which holds the write lock, so the row it finds
/// cannot change before it is read).
async fn write_one(tx: &mut SqliteConnection, write: &Write) -> Result<Accepted, BoxError> {
    let key = write.key;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO cregis_inbox
             (kind, pid, cid, status, fingerprint, body, state, due_ms, accepted_ms)
         VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)
         ON CONFLICT (kind, pid, cid, status) DO NOTHING
         RETURNING id",
    )
    .bind(key.kind.as_str())
    .bind(key.pid)
    .bind(key.cid)
    .bind(i64::from(key.fact.code()))
    .bind(&write.fingerprint.as_bytes()[..])
    .bind(&write.body)
    .bind(write.now_ms)
    .bind(write.now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(Accepted::New(EntryId(id)));
    }
    let row = sqlx::query(
        "SELECT id, fingerprint FROM cregis_inbox
         WHERE kind = ? AND pid = ? AND cid = ? AND status = ?",
    )
    .bind(key.kind.as_str())
    .bind(key.pid)
    .bind(key.cid)
    .bind(i64::from(key.fact.code()))
    .fetch_one(&mut *tx)
    .await?;
    let id = EntryId(row.try_get("id")?);
    let stored: Vec<u8> = row.try_get("fingerprint")?;
    Ok(stored::existing(id, &stored, &write.fingerprint))
}

impl Inbox for SqliteInbox {
    async fn accept(&self, entry: &NewEntry<'_>) -> Result<Accepted, BoxError> {
        let (done, accepted) = oneshot::channel();
        let write = Write {
            key: entry.key,
            fingerprint: entry.fingerprint,
            body: entry.body.to_vec(),
            now_ms: self.now_ms(),
            done,
        };
        let stopped = || BoxError::from("the inbox's writer has stopped (its runtime shut down)");
        self.writer.send(write).await.map_err(|_| stopped())?;
        let accepted = accepted.await.map_err(|_| stopped())?;
        if let Ok(Accepted::New(_)) = accepted {
            self.announcer.announce();
        }
        accepted.map_err(BoxError::from)
    }

    fn arrivals(&self) -> Arrivals {
        self.announcer.subscribe()
    }

    async fn take(&self, kind: CallbackKind, lease: Duration) -> Result<Option<Taken>, BoxError> {
        let now = self.now_ms();
        let row = sqlx::query(
            "UPDATE cregis_inbox
             SET attempts = attempts + 1, lease_until_ms = ?1 + ?2
             WHERE id = (
                 SELECT id FROM cregis_inbox
                 WHERE kind = ?3 AND state = 'pending' AND due_ms <= ?1
                   AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
                 ORDER BY due_ms, id
                 LIMIT 1
             )
             RETURNING id, kind, pid, cid, status, body, attempts, accepted_ms",
        )
        .bind(now)
        .bind(millis(lease))
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let accepted_ms: i64 = row.try_get("accepted_ms")?;
        Ok(Some(Taken {
            id: EntryId(row.try_get("id")?),
            key: key_of(&row)?,
            body: row.try_get("body")?,
            attempt: attempts_of(&row)?,
            age: duration_ms(now - accepted_ms),
        }))
    }

    async fn renew(&self, taken: &Taken, lease: Duration) -> Result<bool, BoxError> {
        let renewed = sqlx::query(
            "UPDATE cregis_inbox SET lease_until_ms = ? + ?
             WHERE id = ? AND attempts = ? AND state = 'pending' AND lease_until_ms IS NOT NULL",
        )
        .bind(self.now_ms())
        .bind(millis(lease))
        .bind(taken.id.0)
        .bind(i64::from(taken.attempt))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        let mut connection = self.pool.acquire().await?;
        self.mark_done(&mut connection, taken).await
    }

    async fn fail(&self, taken: &Taken, error: &str, next: Next) -> Result<bool, BoxError> {
        let now = self.now_ms();
        let query = match next {
            Next::RetryAfter(delay) => sqlx::query(
                "UPDATE cregis_inbox
                 SET due_ms = ? + ?, lease_until_ms = NULL, last_error = ?
                 WHERE id = ? AND attempts = ? AND state = 'pending'
                   AND lease_until_ms IS NOT NULL",
            )
            .bind(now)
            .bind(millis(delay)),
            Next::Dead => sqlx::query(
                "UPDATE cregis_inbox
                 SET state = 'dead', finished_ms = ?, lease_until_ms = NULL, last_error = ?
                 WHERE id = ? AND attempts = ? AND state = 'pending'
                   AND lease_until_ms IS NOT NULL",
            )
            .bind(now),
        };
        let failed = query
            .bind(error)
            .bind(taken.id.0)
            .bind(i64::from(taken.attempt))
            .execute(&self.pool)
            .await?;
        Ok(failed.rows_affected() == 1)
    }

    async fn list(&self, states: &[EntryState]) -> Result<Vec<EntrySummary>, BoxError> {
        let now = self.now_ms();
        let rows = sqlx::query(
            "SELECT id, kind, pid, cid, status, state, attempts, due_ms, lease_until_ms, last_error,
                    accepted_ms
             FROM cregis_inbox ORDER BY accepted_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::new();
        for row in rows {
            let stored: String = row.try_get("state")?;
            let due_ms: i64 = row.try_get("due_ms")?;
            let lease_until_ms: Option<i64> = row.try_get("lease_until_ms")?;
            let running = lease_until_ms.is_some_and(|until| until >= now);
            let state = stored::state(&stored, running, due_ms > now);
            if !states.contains(&state) {
                continue;
            }
            let accepted_ms: i64 = row.try_get("accepted_ms")?;
            entries.push(EntrySummary {
                id: EntryId(row.try_get("id")?),
                key: key_of(&row)?,
                state,
                attempts: attempts_of(&row)?,
                last_error: row.try_get("last_error")?,
                age: duration_ms(now - accepted_ms),
                due_in: (state == EntryState::Waiting).then(|| duration_ms(due_ms - now)),
            });
        }
        Ok(entries)
    }

    async fn replay(&self, id: EntryId) -> Result<bool, BoxError> {
        let replayed = sqlx::query(
            "UPDATE cregis_inbox SET state = 'pending', due_ms = ?, finished_ms = NULL
             WHERE id = ? AND state = 'dead'",
        )
        .bind(self.now_ms())
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(replayed.rows_affected() == 1)
    }

    async fn discard(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let removed = sqlx::query(
            "DELETE FROM cregis_inbox
             WHERE id = ?1 AND NOT (state = 'pending' AND coalesce(lease_until_ms >= ?2, 0))
             RETURNING kind, pid, cid, status",
        )
        .bind(id.0)
        .bind(self.now_ms())
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

/// A handler whose effect is written in the inbox's own SQLite database, in the transaction
/// that marks the entry done: see [`Worker::in_transaction`](super::Worker::in_transaction).
///
/// # Example
///
/// See [`Worker::in_transaction`](super::Worker::in_transaction).
pub trait SqliteHandler<C = PayoutCallback>: Send + Sync + 'static {
    /// The handler's error; its text is kept as the entry's last error.
    type Error: Display + Send;

    /// Applies `callback` with `tx`, the transaction that then marks the entry done. Returning
    /// an error (or panicking) rolls the transaction back: nothing of this run remains.
    fn handle(
        &self,
        callback: &C,
        tx: &mut SqliteConnection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// On SQLite, the transaction begins with `BEGIN IMMEDIATE`, so it holds the write lock while
/// the handler runs: keep the handler to its database work (no network calls inside), since
/// accepts and other writers wait for it (up to the busy timeout, 5 s).
impl<C: Notification, H: SqliteHandler<C>> Job<SqliteInbox> for InTransaction<H, C> {
    type Callback = C;

    async fn run(
        &self,
        inbox: &SqliteInbox,
        taken: &Taken,
        callback: &C,
    ) -> Result<bool, JobError> {
        let inbox_error = |error: sqlx::Error| JobError::Inbox(error.into());
        let mut tx = inbox
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(inbox_error)?;
        self.handler
            .handle(callback, &mut tx)
            .await
            .map_err(|error| JobError::Handler(error.to_string()))?;
        if !inbox
            .mark_done(&mut tx, taken)
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
