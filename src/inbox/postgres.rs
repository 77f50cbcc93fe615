//! The inbox in PostgreSQL (feature `postgres`), through sqlx: for several instances.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use super::sql::{self, Dialect};
use super::{
    AbortOnDrop, Accepted, AfterFailure, Announcer, Arrivals, Count, EntryId, InTransaction, Inbox,
    Job, JobError, Listing, NewEntry, Page, Ran, Taken,
};
use crate::error::BoxError;
use crate::idempotency::{DeliveryKey, Fingerprint};
use crate::schema::{Schema, migrate_pg, sql_ms};
use crate::{CallbackKind, Notification, Origin, PayoutCallback};

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
        // Version 3: entries say who made their delivery; a payout holds at most one final
        // status.
        sql::version_3!(
            id: "bigint",
            lease: "lease_until",
            finished: "finished_at",
            now: "now()"
        ),
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
const RESERVED_CONNECTIONS: u32 = 6;

/// The inbox in PostgreSQL: one table that every instance shares.
///
/// Every time (due dates, leases, ages) is the database's `now()`, so the instances' own clocks
/// never matter: an instance whose clock jumps cannot take over a live lease. A worker takes
/// an entry with `FOR UPDATE SKIP LOCKED`, so any number of workers, in any number of
/// instances, take distinct entries without waiting for each other. The table is created, and
/// its schema version checked, under an advisory lock, so instances may start at once.
///
/// **Accepting never waits for a handler.** The inbox's own statements (accepts, takes,
/// renewals, outcomes, listings) run on a pool of their own, six connections opened with the
/// host pool's options, apart from the connections the in-transaction handlers hold; an
/// accept is an insert that no handler's lock blocks. Concurrent accepts share one statement
/// and one commit ([`group_commit`](PgInbox::group_commit), three batches in flight at most),
/// each acknowledged after it. Each instance opens at most the host pool's connections, these
/// six, and one that listens.
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
    /// The queue of the task that writes accepts and completions in batches (group commit);
    /// `None`: one statement each.
    writer: Option<Arc<Writer>>,
}

/// The group-commit writers of one inbox: their queue, and their tasks (ended with the last
/// clone).
#[derive(Debug)]
struct Writer {
    queue: mpsc::Sender<Write>,
    _tasks: Vec<AbortOnDrop<()>>,
}

/// How many batches one inbox writes at once: while one commits, the next fills, and
/// PostgreSQL flushes the WAL of concurrent commits together.
const WRITERS: usize = 3;

/// What waits for the writer: an entry to accept, or a run to mark done, and where to say
/// what became of it.
#[derive(Debug)]
enum Write {
    Accept {
        key: DeliveryKey,
        fingerprint: Fingerprint,
        body: Vec<u8>,
        origin: Origin,
        done: oneshot::Sender<Result<Option<Accepted>, String>>,
    },
    Done {
        id: EntryId,
        attempt: u32,
        done: oneshot::Sender<Result<bool, String>>,
    },
}

/// The most writes one batch holds: 64 callbacks make a statement of about 40 KiB, which one
/// round trip and one WAL flush carry (`benches/inbox_accept`: 13,400 accepts/s over TLS,
/// p99 4.7 ms, three times one statement each, on the 2-core VM).
const BATCH: usize = 64;

/// A writer: waits for a write, takes every one that came meanwhile (up to [`BATCH`]), and
/// writes the accepts in one `INSERT` and the completions in one `UPDATE`, each its own
/// commit; each write is answered after its statement committed. Under load one commit (one
/// WAL flush, one round trip) serves many; alone, a write is its own batch. [`WRITERS`] of
/// them share the queue.
async fn write_batches(pool: PgPool, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Write>>>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let taken = queue.lock().await.recv_many(&mut batch, BATCH).await;
        if taken == 0 {
            return;
        }
        let (mut accepts, mut dones) = (Vec::new(), Vec::new());
        for write in batch.drain(..) {
            match write {
                Write::Accept { .. } => accepts.push(write),
                Write::Done { .. } => dones.push(write),
            }
        }
        if !accepts.is_empty() {
            accept_batch(&pool, accepts).await;
        }
        if !dones.is_empty() {
            done_batch(&pool, dones).await;
        }
    }
}

/// The accepts of a batch: one `INSERT` of them all; the keys it did not insert are read back
/// to tell duplicates from conflicts. An entry found neither way (discarded meanwhile) is
/// answered `None`, and its `accept` tries again on its own.
async fn accept_batch(pool: &PgPool, writes: Vec<Write>) {
    let mut entries = Vec::with_capacity(writes.len());
    let mut answers = Vec::with_capacity(writes.len());
    for write in writes {
        if let Write::Accept {
            key,
            fingerprint,
            body,
            origin,
            done,
        } = write
        {
            entries.push((key, fingerprint, body, origin));
            answers.push(done);
        }
    }
    match insert_all(pool, &entries).await {
        Ok(accepted) => {
            for (done, accepted) in answers.into_iter().zip(accepted) {
                let _ = done.send(Ok(accepted));
            }
        }
        Err(error) => {
            let error = error.to_string();
            for done in answers {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

/// Inserts `entries` in one statement; what became of each.
async fn insert_all(
    pool: &PgPool,
    entries: &[(DeliveryKey, Fingerprint, Vec<u8>, Origin)],
) -> Result<Vec<Option<Accepted>>, BoxError> {
    let columns = |entries: &[(DeliveryKey, Fingerprint, Vec<u8>, Origin)]| {
        let kinds: Vec<&str> = entries.iter().map(|(key, ..)| key.kind.as_str()).collect();
        let pids: Vec<i64> = entries.iter().map(|(key, ..)| key.pid).collect();
        let cids: Vec<i64> = entries.iter().map(|(key, ..)| key.cid).collect();
        let statuses: Vec<i32> = entries.iter().map(|(key, ..)| key.fact.code()).collect();
        (kinds, pids, cids, statuses)
    };
    let (kinds, pids, cids, statuses) = columns(entries);
    let fingerprints: Vec<&[u8]> = entries
        .iter()
        .map(|(_, fingerprint, ..)| &fingerprint.as_bytes()[..])
        .collect();
    let bodies: Vec<&[u8]> = entries
        .iter()
        .map(|(_, _, body, _)| body.as_slice())
        .collect();
    let origins: Vec<&str> = entries.iter().map(|(.., origin)| origin.as_str()).collect();
    let inserted = sqlx::query(
        "INSERT INTO cregis_inbox
             (pid, cid, status, fingerprint, body, state, due_at, accepted_at, kind, origin)
         SELECT pid, cid, status, fingerprint, body, 'pending', now(), now(), kind, origin
         FROM UNNEST($1::bigint[], $2::bigint[], $3::integer[], $4::bytea[], $5::bytea[],
                     $6::text[], $7::text[])
              WITH ORDINALITY AS t(pid, cid, status, fingerprint, body, kind, origin, n)
         ORDER BY n
         ON CONFLICT DO NOTHING
         RETURNING id, kind, pid, cid, status::bigint AS status",
    )
    .bind(&pids)
    .bind(&cids)
    .bind(&statuses)
    .bind(&fingerprints)
    .bind(&bodies)
    .bind(&kinds)
    .bind(&origins)
    .fetch_all(pool)
    .await?;
    let mut new = std::collections::HashMap::with_capacity(inserted.len());
    for row in &inserted {
        new.insert(sql::key_of(row)?, EntryId(row.try_get("id")?));
    }
    // The first write of a key inserted is new; the others of the batch, and the keys that
    // were there before, are found as they are now.
    let mut accepted = vec![None; entries.len()];
    let mut claimed = std::collections::HashSet::new();
    let mut unresolved = Vec::new();
    for (at, (key, ..)) in entries.iter().enumerate() {
        match new.get(key) {
            Some(&id) if claimed.insert(*key) => accepted[at] = Some(Accepted::New(id)),
            _ => unresolved.push(at),
        }
    }
    if unresolved.is_empty() {
        return Ok(accepted);
    }
    let wanted: Vec<_> = unresolved.iter().map(|&at| entries[at].clone()).collect();
    let (kinds, pids, cids, statuses) = columns(&wanted);
    let found = sqlx::query(
        "SELECT e.id, e.fingerprint, e.kind, e.pid, e.cid, e.status::bigint AS status
         FROM cregis_inbox AS e
         JOIN UNNEST($1::bigint[], $2::bigint[], $3::integer[], $4::text[])
              AS k(pid, cid, status, kind)
           ON e.pid = k.pid AND e.cid = k.cid AND e.status = k.status AND e.kind = k.kind",
    )
    .bind(&pids)
    .bind(&cids)
    .bind(&statuses)
    .bind(&kinds)
    .fetch_all(pool)
    .await?;
    let mut stored = std::collections::HashMap::with_capacity(found.len());
    for row in &found {
        let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
        stored.insert(
            sql::key_of(row)?,
            (EntryId(row.try_get("id")?), fingerprint),
        );
    }
    let mut finals = Vec::new();
    for at in unresolved {
        let (key, fingerprint, ..) = &entries[at];
        accepted[at] = stored
            .get(key)
            .map(|(id, stored)| sql::existing(*id, stored, fingerprint));
        if accepted[at].is_none() && sql::is_final(key) {
            finals.push(at);
        }
    }
    if finals.is_empty() {
        return Ok(accepted);
    }
    // Neither inserted nor there: the payout may hold another final status.
    let keys: Vec<DeliveryKey> = finals.iter().map(|&at| entries[at].0).collect();
    let recorded = other_finals(pool, &keys).await?;
    for at in finals {
        let key = &entries[at].0;
        accepted[at] = recorded.get(&(key.kind, key.pid, key.cid)).copied();
    }
    Ok(accepted)
}

/// The final status each of `keys`' payouts holds, if any, by payout.
async fn other_finals(
    pool: &PgPool,
    keys: &[DeliveryKey],
) -> Result<std::collections::HashMap<(CallbackKind, i64, i64), Accepted>, BoxError> {
    let kinds: Vec<&str> = keys.iter().map(|key| key.kind.as_str()).collect();
    let pids: Vec<i64> = keys.iter().map(|key| key.pid).collect();
    let cids: Vec<i64> = keys.iter().map(|key| key.cid).collect();
    let rows = sqlx::query(concat!(
        "SELECT e.id, e.kind, e.pid, e.cid, e.status::bigint AS status
         FROM cregis_inbox AS e
         JOIN (SELECT DISTINCT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]))
              AS k(pid, cid, kind)
           ON e.pid = k.pid AND e.cid = k.cid AND e.kind = k.kind
         WHERE e.conflicts_with IS NULL AND e.status IN (",
        crate::schema::final_statuses!(),
        ")"
    ))
    .bind(&pids)
    .bind(&cids)
    .bind(&kinds)
    .fetch_all(pool)
    .await?;
    let mut recorded = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = sql::key_of(row)?;
        recorded.insert((key.kind, key.pid, key.cid), sql::other_final(row)?);
    }
    Ok(recorded)
}

/// The completions of a batch: one `UPDATE` marks done every run that still holds its lease.
async fn done_batch(pool: &PgPool, writes: Vec<Write>) {
    let mut runs = Vec::with_capacity(writes.len());
    let mut answers = Vec::with_capacity(writes.len());
    for write in writes {
        if let Write::Done { id, attempt, done } = write {
            runs.push((id, attempt));
            answers.push(done);
        }
    }
    let ids: Vec<i64> = runs.iter().map(|(id, _)| id.0).collect();
    let attempts: Vec<i32> = runs
        .iter()
        .map(|(_, attempt)| self::attempts(*attempt))
        .collect();
    let marked = sqlx::query_as::<_, (i64, i32)>(
        "UPDATE cregis_inbox AS e
         SET state = 'done', lease_until = NULL, last_error = NULL,
             finished_at = clock_timestamp()
         FROM UNNEST($1::bigint[], $2::integer[]) AS d(id, attempts)
         WHERE e.id = d.id AND e.attempts = d.attempts AND e.state = 'pending'
           AND e.lease_until >= clock_timestamp()
         RETURNING e.id, e.attempts",
    )
    .bind(&ids)
    .bind(&attempts)
    .fetch_all(pool)
    .await;
    match marked {
        Ok(marked) => {
            // By run, not by entry: a lapsed run of an entry may be in the batch beside the
            // live one.
            let marked: std::collections::HashSet<(i64, i32)> = marked.into_iter().collect();
            for ((id, attempt), done) in runs.into_iter().zip(answers) {
                let _ = done.send(Ok(marked.contains(&(id.0, self::attempts(attempt)))));
            }
        }
        Err(error) => {
            let error = error.to_string();
            for done in answers {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
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
            writer: None,
        }
        .group_commit(true))
    }

    /// Whether accepts and completions are written in batches by one task per inbox (`true`,
    /// the default: concurrent accepts share a statement and a commit, each acknowledged
    /// after it) or one statement each (`false`: the way to compare, or for a database that
    /// must see each statement). Outside a tokio runtime there is no task: one statement each.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::PgInbox;
    ///
    /// let one_by_one = PgInbox::connect("postgres://app@127.0.0.1/payments").await?.group_commit(false);
    /// # drop(one_by_one);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn group_commit(mut self, on: bool) -> PgInbox {
        self.writer = match (on, tokio::runtime::Handle::try_current()) {
            (true, Ok(runtime)) => {
                let (queue, writes) = mpsc::channel(4 * BATCH);
                let writes = Arc::new(tokio::sync::Mutex::new(writes));
                let tasks = (0..WRITERS)
                    .map(|_| {
                        let batches = write_batches(self.reserved.clone(), Arc::clone(&writes));
                        AbortOnDrop(runtime.spawn(batches))
                    })
                    .collect();
                Some(Arc::new(Writer {
                    queue,
                    _tasks: tasks,
                }))
            }
            _ => None,
        };
        self
    }

    /// Hands `write` to the writer and waits for its answer.
    async fn write<T>(
        writer: &Writer,
        write: Write,
        answer: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, BoxError> {
        let stopped = || BoxError::from("the inbox's writer has stopped (its runtime shut down)");
        writer.queue.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?.map_err(BoxError::from)
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
        if let Some(writer) = &self.writer {
            let (done, answer) = oneshot::channel();
            let write = Write::Accept {
                key: entry.key,
                fingerprint: entry.fingerprint,
                body: entry.body.to_vec(),
                origin: entry.origin,
                done,
            };
            // `None`: its row was discarded between the insert and the read; on its own.
            if let Some(accepted) = PgInbox::write(writer, write, answer).await? {
                if let Accepted::New(_) = accepted {
                    self.announce();
                }
                return Ok(accepted);
            }
        }
        let key = entry.key;
        // An entry is never changed by `accept`, and only removed by `discard`: if the insert
        // finds a row and the row is then discarded before it is read, try again.
        for _ in 0..3 {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO cregis_inbox
                     (pid, cid, status, fingerprint, body, state, due_at, accepted_at, kind,
                      origin)
                 VALUES ($1, $2, $3, $4, $5, 'pending', now(), now(), $6, $7)
                 ON CONFLICT DO NOTHING
                 RETURNING id",
            )
            .bind(key.pid)
            .bind(key.cid)
            .bind(key.fact.code())
            .bind(&entry.fingerprint.as_bytes()[..])
            .bind(entry.body)
            .bind(key.kind.as_str())
            .bind(entry.origin.as_str())
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
            if sql::is_final(&key) {
                let recorded = other_finals(&self.reserved, &[key]).await?;
                if let Some(&accepted) = recorded.values().next() {
                    return Ok(accepted);
                }
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
        Ok(self.take_many(kind, lease, 1).await?.pop())
    }

    async fn take_many(
        &self,
        kind: CallbackKind,
        lease: Duration,
        n: usize,
    ) -> Result<Vec<Taken>, BoxError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id FROM cregis_inbox
                 WHERE state = 'pending' AND kind = $2 AND due_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY due_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE cregis_inbox AS e
             SET attempts = e.attempts + 1,
                 interrupted = e.interrupted + (e.lease_until IS NOT NULL)::integer,
                 lease_until = now() + $1 * interval '1 millisecond'
             FROM due WHERE e.id = due.id
             RETURNING e.id, e.kind, e.pid, e.cid, e.status::bigint AS status, e.body,
                       e.attempts::bigint AS attempts, e.interrupted::bigint AS interrupted,
                       e.origin,
                       (extract(epoch FROM now() - e.accepted_at) * 1000)::bigint AS age_ms",
        )
        .bind(sql_ms(lease))
        .bind(kind.as_str())
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&self.reserved)
        .await?;
        sql::taken_all(&rows)
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

    /// Through the writer, with group commit on: the runs that end while it writes are
    /// marked done together in its next statement, each only if its lease is live.
    async fn succeed(&self, taken: &Taken) -> Result<bool, BoxError> {
        if let Some(writer) = &self.writer {
            let (done, answer) = oneshot::channel();
            let write = Write::Done {
                id: taken.id,
                attempt: taken.attempt,
                done,
            };
            return PgInbox::write(writer, write, answer).await;
        }
        let mut connection = self.reserved.acquire().await?;
        PgInbox::mark_done(&mut connection, taken).await
    }

    async fn fail(&self, taken: &Taken, error: &str, next: AfterFailure) -> Result<bool, BoxError> {
        let (dead, delay) = match next {
            AfterFailure::RetryAfter(delay) => (false, sql_ms(delay)),
            AfterFailure::Dead => (true, 0),
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

    async fn bodies(&self, ids: &[EntryId]) -> Result<Vec<(EntryId, Vec<u8>)>, BoxError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query("SELECT id, body FROM cregis_inbox WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.reserved)
            .await?;
        sql::bodies_of(&rows)
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
        #[cfg(feature = "metrics")]
        crate::meter::replayed(replayed.rows_affected());
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
        #[cfg(feature = "metrics")]
        crate::meter::replayed(replayed.rows_affected());
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

    async fn run(&self, inbox: &PgInbox, taken: &Taken, callback: &C) -> Result<Ran, JobError> {
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
            return Ok(Ran::Lost);
        }
        tx.commit().await.map_err(inbox_error)?;
        Ok(Ran::Recorded)
    }
}
