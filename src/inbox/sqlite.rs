//! The inbox in one SQLite file (feature `sqlite`), through sqlx.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};

mod group;

use super::sql::{self, Dialect};
use super::{
    Accepted, AfterFailure, Announcer, Arrivals, Count, EntryId, InTransaction, Inbox, Job,
    JobError, Listing, NewEntry, Page, Ran, Taken,
};
use crate::error::BoxError;
use crate::idempotency::{DeliveryKey, Fingerprint};
use crate::schema::{Schema, migrate_sqlite, sql_ms};
use crate::verifier::{Clock, SystemClock};
use crate::{CallbackKind, Notification, Origin, PayoutCallback};

const SCHEMA: Schema = Schema {
    name: "inbox",
    version_table: "cregis_inbox_schema",
    steps: &[
        &[
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
        ],
        // Version 2: runs that ended without an outcome are counted; listing by state and
        // pruning done entries read an index, not the table.
        &[
            "ALTER TABLE cregis_inbox ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX cregis_inbox_state ON cregis_inbox (state, id)",
            "CREATE INDEX cregis_inbox_finished ON cregis_inbox (kind, finished_ms)
             WHERE state = 'done'",
        ],
        // Version 3: entries say who made their delivery; a payout holds at most one final
        // status.
        sql::version_3!(
            id: "INTEGER",
            lease: "lease_until_ms",
            finished: "finished_ms",
            now: "CAST(strftime('%s', 'now') AS INTEGER) * 1000"
        ),
    ],
};

/// SQLite's way of writing the shared queries: times are integers (milliseconds since the
/// epoch) on the inbox's clock, bound as `?1`.
const DIALECT: Dialect = Dialect {
    now: "?1",
    due: "due_ms",
    lease: "lease_until_ms",
    accepted: "accepted_ms",
    ms_since: |column| format!("(?1 - {column})"),
    param: |n| format!("?{n}"),
    first_param: 1,
};

/// How long an accept waits for SQLite's write lock when another process holds it (this
/// process's own writers take turns without SQLite's busy timeout): longer than any
/// in-transaction handler's deadline, so a slow handler elsewhere delays an accept but does
/// not fail it.
const ACCEPT_PATIENCE: Duration = Duration::from_secs(30);

/// The turns of this process's writers. SQLite has one writer at a time; left to its busy
/// timeout, a writer that finds the lock taken sleeps and retries, and a stream of handlers'
/// transactions can keep an accept out past the timeout. Here they queue instead, first come
/// first served (tokio's mutex is fair): the accepts' writer, the workers' short statements,
/// and one in-transaction handler at a time (`handlers`), so an accept waits for at most the
/// handler that holds the lock, never for the ones behind it.
#[derive(Debug, Default)]
struct Gate {
    write: Arc<Mutex<()>>,
    /// The in-transaction runs, which share a transaction (see [`group`]).
    runs: group::Runs,
}

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
/// Accepts are written by one task in batches, on a connection of its own: each commit (each
/// fsync) records every callback that arrived meanwhile, and each is answered only after that
/// commit. Under load this is many times the disk's fsync rate; alone, a callback is its own
/// batch. The task runs on the tokio runtime that opened the inbox: open it on the runtime
/// that serves it.
///
/// **Accepting never waits for more than one handler.** SQLite has one writer at a time, and
/// an in-transaction handler ([`Worker::in_transaction`](super::Worker::in_transaction))
/// holds the write lock while it runs. This process's writers take turns, first come first
/// served, with at most one handler holding or waiting for the lock: an accept waits for the
/// handler running, if any, and the others sharing its transaction (bounded by one
/// [deadline](super::Worker::deadline), 2 s by default, plus 5 ms), never for the handlers
/// queued behind it, and never fails at the busy timeout
/// because of them. Another process writing to the file is waited for up to 30 s.
///
/// Times (due dates, leases) are read from one clock, the process's ([`SystemClock`]) unless
/// [`with_clock`](SqliteInbox::with_clock) says otherwise: one instance, one clock. A clone is
/// the same inbox: open the file once per process and hand clones to the route, the workers
/// and the console. A second `open` of the same file has turns of its own, and its writes are
/// waited for as another process's are.
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
    /// The turns of this process's writers.
    gate: Arc<Gate>,
}

/// What waits for the writer: an entry to accept, a run to mark done (a completion of
/// [`Worker::new`](super::Worker::new)'s), or a worker's take of due entries, and where to say
/// what became of it. All that come during one commit share the next: one fsync for a batch
/// of accepts, completions and takes.
#[derive(Debug)]
enum Write {
    Accept {
        key: DeliveryKey,
        fingerprint: Fingerprint,
        body: Vec<u8>,
        origin: Origin,
        now_ms: i64,
        done: oneshot::Sender<Result<Accepted, String>>,
    },
    Done {
        id: EntryId,
        attempt: u32,
        now_ms: i64,
        done: oneshot::Sender<Result<bool, String>>,
    },
    Take {
        kind: CallbackKind,
        n: usize,
        now_ms: i64,
        lease_until_ms: i64,
        done: oneshot::Sender<Result<Vec<Taken>, String>>,
    },
}

/// What one write came to, once committed.
enum Written {
    Accepted(Accepted),
    Done(bool),
    Taken(Vec<Taken>),
}

impl Write {
    /// Says what became of it (after the commit, or the failure).
    fn answer(self, written: Result<Written, String>) {
        // `write_on` answers each write in kind; a mismatch would be a bug here, and is
        // answered as a failure, never as a success.
        fn mixed_up<T>() -> Result<T, String> {
            Err("the inbox's writer mixed up its answers".to_owned())
        }
        match self {
            Write::Accept { done, .. } => {
                let _ = done.send(match written {
                    Ok(Written::Accepted(accepted)) => Ok(accepted),
                    Ok(_) => mixed_up(),
                    Err(error) => Err(error),
                });
            }
            Write::Done { done, .. } => {
                let _ = done.send(match written {
                    Ok(Written::Done(marked)) => Ok(marked),
                    Ok(_) => mixed_up(),
                    Err(error) => Err(error),
                });
            }
            Write::Take { done, .. } => {
                let _ = done.send(match written {
                    Ok(Written::Taken(taken)) => Ok(taken),
                    Ok(_) => mixed_up(),
                    Err(error) => Err(error),
                });
            }
        }
    }
}

/// The most entries one commit writes.
const BATCH: usize = 128;

/// Where the writer writes: a connection of its own (a file: no handler can hold it), or the
/// pool (an in-memory database, which exists on its one connection only).
enum Target {
    Own {
        options: Box<SqliteConnectOptions>,
        connection: Option<SqliteConnection>,
        /// The inbox's pool: closed, the writer stops writing too.
        pool: SqlitePool,
    },
    Pool(SqlitePool),
}

impl SqliteInbox {
    /// Opens (creating it if needed) the inbox in the SQLite file at `path`, with a pool of
    /// two connections (SQLite has one writer at a time; a handler's transaction holds one)
    /// and one more of the accepts' own.
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
        migrate_sqlite(&pool, &SCHEMA).await?;
        let options = pool.connect_options();
        let filename = options.get_filename().to_string_lossy();
        // `sqlite::memory:` and `open_in_memory`: a database only the pool's connections see.
        let in_memory = filename == ":memory:" || filename.starts_with("file:sqlx-in-memory");
        let target = if in_memory {
            Target::Pool(pool.clone())
        } else {
            Target::Own {
                options: Box::new(SqliteConnectOptions::clone(&options)),
                connection: None,
                pool: pool.clone(),
            }
        };
        let gate = Arc::new(Gate::default());
        let (writer, queue) = mpsc::channel(4 * BATCH);
        tokio::spawn(write_batches(target, Arc::clone(&gate), queue));
        Ok(SqliteInbox {
            pool,
            clock: Arc::new(SystemClock),
            writer,
            announcer: Announcer::new(),
            gate,
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

    /// This process's turn to write (see [`Gate`]).
    async fn turn(&self) -> MutexGuard<'_, ()> {
        self.gate.write.lock().await
    }

    /// Hands `write` to the writer and waits for its answer.
    async fn write<T>(
        &self,
        write: Write,
        answer: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, BoxError> {
        let stopped = || BoxError::from("the inbox's writer has stopped (its runtime shut down)");
        self.writer.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?.map_err(BoxError::from)
    }

    /// Now, in milliseconds since the epoch, on the inbox's clock.
    fn now_ms(&self) -> i64 {
        let since = self.clock.now().duration_since(UNIX_EPOCH);
        i64::try_from(since.unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
    }

    /// Now plus `span`, in milliseconds, saturating.
    fn in_ms(&self, span: Duration) -> i64 {
        self.now_ms().saturating_add(sql_ms(span))
    }
}

/// Whether `error` is SQLite's "database is locked" (`SQLITE_BUSY`).
fn is_busy(error: &BoxError) -> bool {
    match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(database)) => database.code().as_deref() == Some("5"),
        _ => false,
    }
}

/// The writer: waits for an entry to accept and for its turn to write, then takes every entry
/// that came meanwhile (up to [`BATCH`]), writes them in one transaction and commits once, then
/// answers each. Under load an fsync serves a whole batch (group commit); alone, an entry is
/// its own batch. The entries that come while it waits for its turn (behind a handler's
/// transaction) go in the same batch, so none waits for a second turn. Nothing is answered
/// before its commit.
async fn write_batches(mut target: Target, gate: Arc<Gate>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let written = {
            let _turn = gate.write.lock().await;
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            write_batch(&mut target, &batch).await
        };
        match written {
            Ok(written) => {
                for (write, written) in batch.drain(..).zip(written) {
                    write.answer(Ok(written));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for write in batch.drain(..) {
                    write.answer(Err(error.clone()));
                }
            }
        }
    }
}

async fn write_batch(target: &mut Target, batch: &[Write]) -> Result<Vec<Written>, BoxError> {
    match target {
        Target::Pool(pool) => {
            let mut connection = pool.acquire().await?;
            write_on(&mut connection, batch).await
        }
        Target::Own {
            options,
            connection,
            pool,
        } => {
            // Closing the inbox's pool closes the inbox, its writer included.
            if pool.is_closed() {
                *connection = None;
                return Err(sqlx::Error::PoolClosed.into());
            }
            let mut own = match connection.take() {
                Some(own) => own,
                None => SqliteConnection::connect_with(options).await?,
            };
            let written = write_on(&mut own, batch).await;
            // A connection that failed is opened again for the next batch.
            if written.is_ok() {
                *connection = Some(own);
            }
            written
        }
    }
}

/// One batch in one transaction on `connection`, waiting for another process's write lock
/// for up to [`ACCEPT_PATIENCE`].
async fn write_on(
    connection: &mut SqliteConnection,
    batch: &[Write],
) -> Result<Vec<Written>, BoxError> {
    let started = Instant::now();
    let mut tx = loop {
        match connection.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => break tx,
            Err(error) => {
                let error = BoxError::from(error);
                if !is_busy(&error) || started.elapsed() >= ACCEPT_PATIENCE {
                    return Err(error);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // The completions first, in one statement: marking an entry done earlier in the
    // transaction changes nothing the others read (an entry under a live lease is neither
    // taken nor accepted anew).
    let marked = mark_all_done(&mut tx, batch).await?;
    let mut written = Vec::with_capacity(batch.len());
    for write in batch {
        written.push(match write {
            Write::Accept {
                key,
                fingerprint,
                body,
                origin,
                now_ms,
                ..
            } => {
                let entry = NewEntry {
                    key: *key,
                    fingerprint: *fingerprint,
                    body,
                    origin: *origin,
                };
                Written::Accepted(write_one(&mut tx, &entry, *now_ms).await?)
            }
            Write::Done { id, attempt, .. } => Written::Done(marked.contains(&(id.0, *attempt))),
            Write::Take {
                kind,
                n,
                now_ms,
                lease_until_ms,
                ..
            } => Written::Taken(take_on(&mut tx, *kind, *n, *now_ms, *lease_until_ms).await?),
        });
    }
    tx.commit().await?;
    Ok(written)
}

/// Marks done, in one statement, every entry of `batch`'s completions whose run still holds
/// its lease (as [`mark_done`] does one); the entries marked, with their run's attempt.
async fn mark_all_done(
    tx: &mut SqliteConnection,
    batch: &[Write],
) -> Result<HashSet<(i64, u32)>, BoxError> {
    use std::fmt::Write as _;
    // `[[id, attempt, now_ms], ...]`: integers only.
    let mut marks = String::from("[");
    for write in batch {
        if let Write::Done {
            id,
            attempt,
            now_ms,
            ..
        } = write
        {
            if marks.len() > 1 {
                marks.push(',');
            }
            let _ = write!(marks, "[{},{attempt},{now_ms}]", id.0);
        }
    }
    if marks.len() == 1 {
        return Ok(HashSet::new());
    }
    marks.push(']');
    // `+state`: the plan goes through the primary key, never a scan of the state index.
    let marked: Vec<(i64, u32)> = sqlx::query_as(
        "UPDATE cregis_inbox
         SET state = 'done', lease_until_ms = NULL, last_error = NULL, finished_ms = marks.now_ms
         FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now_ms
               FROM json_each(?1)) AS marks
         WHERE cregis_inbox.id = marks.id AND cregis_inbox.attempts = marks.attempt
           AND +cregis_inbox.state = 'pending' AND cregis_inbox.lease_until_ms >= marks.now_ms
         RETURNING cregis_inbox.id, cregis_inbox.attempts",
    )
    .bind(marks)
    .fetch_all(&mut *tx)
    .await?;
    Ok(marked.into_iter().collect())
}

/// Takes up to `n` entries of `kind` due at `now_ms` on `connection`, under a lease until
/// `lease_until_ms`.
async fn take_on(
    connection: &mut SqliteConnection,
    kind: CallbackKind,
    n: usize,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Vec<Taken>, BoxError> {
    let rows = sqlx::query(
        "UPDATE cregis_inbox
         SET attempts = attempts + 1,
             interrupted = interrupted + (lease_until_ms IS NOT NULL),
             lease_until_ms = ?2
         WHERE id IN (
             SELECT id FROM cregis_inbox
             WHERE kind = ?3 AND state = 'pending' AND due_ms <= ?1
               AND (lease_until_ms IS NULL OR lease_until_ms < ?1)
             ORDER BY due_ms, id
             LIMIT ?4
         )
         RETURNING id, kind, pid, cid, status, body, attempts, interrupted, origin,
                   ?1 - accepted_ms AS age_ms",
    )
    .bind(now_ms)
    .bind(lease_until_ms)
    .bind(kind.as_str())
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_all(&mut *connection)
    .await?;
    sql::taken_all(&rows)
}

/// Marks entry `id` done on `connection` (the writer's transaction, or the handler's, for
/// [`InTransaction`]) if run `attempt` still holds its lease at `now_ms`; whether it did.
async fn mark_done(
    connection: &mut SqliteConnection,
    id: EntryId,
    attempt: u32,
    now_ms: i64,
) -> Result<bool, BoxError> {
    let done = sqlx::query(
        "UPDATE cregis_inbox
         SET state = 'done', lease_until_ms = NULL, last_error = NULL, finished_ms = ?1
         WHERE id = ?2 AND attempts = ?3 AND state = 'pending' AND lease_until_ms >= ?1",
    )
    .bind(now_ms)
    .bind(id.0)
    .bind(i64::from(attempt))
    .execute(&mut *connection)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One entry, in the writer's transaction (which holds the write lock, so the row it finds
/// cannot change before it is read).
async fn write_one(
    tx: &mut SqliteConnection,
    entry: &NewEntry<'_>,
    now_ms: i64,
) -> Result<Accepted, BoxError> {
    let (key, fingerprint) = (entry.key, &entry.fingerprint);
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO cregis_inbox
             (kind, pid, cid, status, fingerprint, body, state, due_ms, accepted_ms, origin)
         VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(key.kind.as_str())
    .bind(key.pid)
    .bind(key.cid)
    .bind(i64::from(key.fact.code()))
    .bind(&fingerprint.as_bytes()[..])
    .bind(entry.body)
    .bind(now_ms)
    .bind(now_ms)
    .bind(entry.origin.as_str())
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
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = row {
        let id = EntryId(row.try_get("id")?);
        let stored: Vec<u8> = row.try_get("fingerprint")?;
        return Ok(sql::existing(id, &stored, fingerprint));
    }
    // Not inserted and not there: the payout holds another final status.
    let row = sqlx::query(concat!(
        "SELECT id, status FROM cregis_inbox
         WHERE kind = ? AND pid = ? AND cid = ? AND conflicts_with IS NULL AND status IN (",
        crate::schema::final_statuses!(),
        ")"
    ))
    .bind(key.kind.as_str())
    .bind(key.pid)
    .bind(key.cid)
    .fetch_one(&mut *tx)
    .await?;
    sql::other_final(&row)
}

impl Inbox for SqliteInbox {
    async fn accept(&self, entry: &NewEntry<'_>) -> Result<Accepted, BoxError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Accept {
            key: entry.key,
            fingerprint: entry.fingerprint,
            body: entry.body.to_vec(),
            origin: entry.origin,
            now_ms: self.now_ms(),
            done,
        };
        let accepted = self.write(write, answer).await?;
        if let Accepted::New(_) = accepted {
            self.announcer.announce();
        }
        Ok(accepted)
    }

    fn arrivals(&self) -> Arrivals {
        self.announcer.subscribe()
    }

    async fn take(&self, kind: CallbackKind, lease: Duration) -> Result<Option<Taken>, BoxError> {
        Ok(self.take_many(kind, lease, 1).await?.pop())
    }

    /// Through the writer: a take shares a commit with the accepts and completions beside it.
    async fn take_many(
        &self,
        kind: CallbackKind,
        lease: Duration,
        n: usize,
    ) -> Result<Vec<Taken>, BoxError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        let write = Write::Take {
            kind,
            n,
            now_ms: self.now_ms(),
            lease_until_ms: self.in_ms(lease),
            done,
        };
        self.write(write, answer).await
    }

    async fn renew(&self, taken: &Taken, lease: Duration) -> Result<bool, BoxError> {
        let _turn = self.turn().await;
        let renewed = sqlx::query(
            "UPDATE cregis_inbox SET lease_until_ms = ?2
             WHERE id = ?3 AND attempts = ?4 AND state = 'pending' AND lease_until_ms >= ?1",
        )
        .bind(self.now_ms())
        .bind(self.in_ms(lease))
        .bind(taken.id.0)
        .bind(i64::from(taken.attempt))
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Through the accepts' writer: the runs that end while it commits are marked done
    /// together in its next transaction (one fsync for many), each only if its lease is live.
    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        let (done, answer) = oneshot::channel();
        let write = Write::Done {
            id: taken.id,
            attempt: taken.attempt,
            now_ms: self.now_ms(),
            done,
        };
        self.write(write, answer).await
    }

    async fn fail(&self, taken: &Taken, error: &str, next: AfterFailure) -> Result<bool, BoxError> {
        let (dead, due) = match next {
            AfterFailure::RetryAfter(delay) => (false, self.in_ms(delay)),
            AfterFailure::Dead => (true, 0),
        };
        let _turn = self.turn().await;
        let failed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = CASE WHEN ?2 THEN 'dead' ELSE 'pending' END,
                 due_ms = CASE WHEN ?2 THEN due_ms ELSE ?3 END,
                 finished_ms = CASE WHEN ?2 THEN ?1 END,
                 lease_until_ms = NULL,
                 last_error = ?4
             WHERE id = ?5 AND attempts = ?6 AND state = 'pending' AND lease_until_ms >= ?1",
        )
        .bind(self.now_ms())
        .bind(dead)
        .bind(due)
        .bind(error)
        .bind(taken.id.0)
        .bind(i64::from(taken.attempt))
        .execute(&self.pool)
        .await?;
        Ok(failed.rows_affected() == 1)
    }

    async fn page(&self, listing: &Listing) -> Result<Page, BoxError> {
        let text = DIALECT.page(listing);
        let mut query = sqlx::query(AssertSqlSafe(text)).bind(self.now_ms());
        if let Some(kind) = listing.kind {
            query = query.bind(kind.as_str());
        }
        let rows = query
            .bind(sql::after(listing))
            .bind(sql::limit(listing))
            .fetch_all(&self.pool)
            .await?;
        let entries = rows
            .iter()
            .map(sql::summary_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = sql::next_cursor(&entries, listing);
        Ok(Page { entries, next })
    }

    async fn bodies(&self, ids: &[EntryId]) -> Result<Vec<(EntryId, Vec<u8>)>, BoxError> {
        let ids = serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<_>>())?;
        let rows = sqlx::query(
            "SELECT id, body FROM cregis_inbox WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        sql::bodies_of(&rows)
    }

    async fn counts(&self) -> Result<Vec<Count>, BoxError> {
        let rows = sqlx::query(AssertSqlSafe(DIALECT.counts()))
            .bind(self.now_ms())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::count_row).collect()
    }

    async fn replay(&self, id: EntryId) -> Result<bool, BoxError> {
        let _turn = self.turn().await;
        let replayed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'pending', due_ms = ?1, finished_ms = NULL, interrupted = 0
             WHERE id = ?2 AND state = 'dead'",
        )
        .bind(self.now_ms())
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        #[cfg(feature = "metrics")]
        crate::meter::replayed(replayed.rows_affected());
        Ok(replayed.rows_affected() == 1)
    }

    async fn replay_dead(&self) -> Result<usize, BoxError> {
        let _turn = self.turn().await;
        let replayed = sqlx::query(
            "UPDATE cregis_inbox
             SET state = 'pending', due_ms = ?1, finished_ms = NULL, interrupted = 0
             WHERE state = 'dead'",
        )
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        #[cfg(feature = "metrics")]
        crate::meter::replayed(replayed.rows_affected());
        Ok(usize::try_from(replayed.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn discard(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let _turn = self.turn().await;
        let removed = sqlx::query(
            "DELETE FROM cregis_inbox
             WHERE id = ?2 AND NOT (state = 'pending' AND coalesce(lease_until_ms >= ?1, 0))
             RETURNING kind, pid, cid, status",
        )
        .bind(self.now_ms())
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        sql::operated(removed.as_ref(), id, reason, super::worker::report_discard)
    }

    async fn release(&self, id: EntryId, reason: &str) -> Result<bool, BoxError> {
        let _turn = self.turn().await;
        let released = sqlx::query(
            "UPDATE cregis_inbox
             SET lease_until_ms = NULL, due_ms = ?1, last_error = ?3,
                 interrupted = interrupted + 1
             WHERE id = ?2 AND state = 'pending' AND lease_until_ms >= ?1
             RETURNING kind, pid, cid, status",
        )
        .bind(self.now_ms())
        .bind(id.0)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?;
        sql::operated(released.as_ref(), id, reason, super::worker::report_release)
    }

    async fn prune(
        &self,
        kind: CallbackKind,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, BoxError> {
        let before = self.now_ms().saturating_sub(sql_ms(older_than));
        let _turn = self.turn().await;
        let pruned = sqlx::query(
            "DELETE FROM cregis_inbox WHERE id IN (
                 SELECT id FROM cregis_inbox
                 WHERE kind = ?1 AND state = 'done' AND finished_ms < ?2
                 ORDER BY finished_ms
                 LIMIT ?3
             )",
        )
        .bind(kind.as_str())
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(pruned.rows_affected()).unwrap_or(usize::MAX))
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

    /// Applies `callback` with `tx`, the transaction that then marks the entry done, in a
    /// savepoint of the run's own (the runs that come together share one transaction and one
    /// commit). Returning an error (or panicking, or passing the deadline) rolls the run back
    /// to its savepoint: nothing of this run remains, and the other runs' effects stay. Leave
    /// the transaction open: never `COMMIT`, `ROLLBACK` or `RELEASE` what you did not begin.
    fn handle(
        &self,
        callback: &C,
        tx: &mut SqliteConnection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// On SQLite, the transaction begins with `BEGIN IMMEDIATE`, so it holds the write lock while
/// the handlers run: the inbox's accepts and other writers queue behind it (see
/// [`SqliteInbox`]), so keep the handler to its database work, bounded by the worker's
/// [`deadline`](super::Worker::deadline) ([`DEFAULT_IN_TRANSACTION_DEADLINE`](super::DEFAULT_IN_TRANSACTION_DEADLINE)).
/// This process's runs share the transaction, one at a time, each in a savepoint: it commits
/// once no run waits to join it, at 64 runs, or 5 ms after it began, and each run is
/// answered after that commit (one fsync for many entries).
impl<C: Notification, H: SqliteHandler<C>> Job<SqliteInbox> for InTransaction<H, C> {
    type Callback = C;

    const DEADLINE: Duration = super::DEFAULT_IN_TRANSACTION_DEADLINE;

    async fn run(&self, inbox: &SqliteInbox, taken: &Taken, callback: &C) -> Result<Ran, JobError> {
        group::run(inbox, &self.handler, taken, callback).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::EntryState;
    use crate::testing::CallbackBuilder;
    use crate::{ApiKey, CallbackStatus, Error, Verifier};

    /// A database of 0.2's schema (version 2) in which payout 1 came to hold two final
    /// statuses (a 6, done, then a 7, pending), opened by this version: both are kept, the
    /// later one is held dead for a person to look at, and the payout still refuses another.
    #[tokio::test]
    async fn an_inbox_holding_two_final_statuses_of_a_payout_keeps_both_and_holds_the_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite3");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let version_2 = Schema {
            steps: &SCHEMA.steps[..2],
            ..SCHEMA
        };
        migrate_sqlite(&pool, &version_2).await.unwrap();
        let pid = CallbackBuilder::new().callback().unwrap().pid;
        for (cid, status, state) in [(1, 6, "done"), (1, 7, "pending"), (2, 7, "pending")] {
            sqlx::query(
                "INSERT INTO cregis_inbox
                     (kind, pid, cid, status, fingerprint, body, state, due_ms, accepted_ms)
                 VALUES ('payout', ?, ?, ?, x'00', x'00', ?, 0, 0)",
            )
            .bind(pid)
            .bind(cid)
            .bind(status)
            .bind(state)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let inbox = SqliteInbox::open(&path).await.unwrap();
        let all = [EntryState::Pending, EntryState::Done, EntryState::Dead];
        let mut entries = inbox.list(&all).await.unwrap();
        entries.sort_by_key(|entry| entry.id.0);
        let states: Vec<_> = entries
            .iter()
            .map(|entry| (entry.key.cid, entry.key.fact.code(), entry.state))
            .collect();
        assert_eq!(
            states,
            [
                (1, 6, EntryState::Done),
                (1, 7, EntryState::Dead),
                (2, 7, EntryState::Pending)
            ]
        );
        let held = entries[1].last_error.as_deref().unwrap();
        assert!(held.ends_with("recorded first, as entry 1"), "{held}");

        let key = ApiKey::new("fake-api-key-for-tests").unwrap();
        let rejected = CallbackBuilder::new()
            .cid(1)
            .status(CallbackStatus::ApprovalRejected)
            .body(&key)
            .unwrap();
        let reply = Verifier::new(key).accept(rejected.as_bytes(), &inbox).await;
        assert!(
            matches!(
                reply.error(),
                Some(Error::ConflictingFinalStatus {
                    recorded: CallbackStatus::TransactionSuccessful,
                    ..
                })
            ),
            "{reply:?}"
        );
    }
}
