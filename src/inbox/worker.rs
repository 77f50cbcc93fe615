//! The worker: takes due entries and runs the handler on them until each succeeds or is dead.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{EntryId, Inbox, Next, RetryPolicy, Taken};
use crate::error::BoxError;
use crate::idempotency::DeliveryKey;
use crate::wire::Params;
use crate::{AsyncCallbackHandler, Error, Notification, PayoutCallback};

/// The default [`Worker::lease`]: a minute, renewed every third of it while the handler runs.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The default [`Worker::poll_interval`]: how long an idle worker waits before it looks for
/// due entries again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How a [`Worker`] runs the handler on an entry and records its success: [`AtLeastOnce`] for
/// any [`AsyncCallbackHandler`], or `InTransaction` (SQLite) to commit the handler's effect
/// and "done" together.
pub trait Job<I: Inbox>: Send + Sync + 'static {
    /// The kind of callback the job runs on: the worker takes entries of this kind only.
    type Callback: Notification;

    /// Runs the handler on `callback`, and on success records `taken` as done. `Ok(false)`:
    /// the run no longer held the entry, and nothing was recorded.
    ///
    /// # Errors
    ///
    /// The handler failed ([`JobError::Handler`]), or the inbox did ([`JobError::Inbox`]).
    fn run(
        &self,
        inbox: &I,
        taken: &Taken,
        callback: &Self::Callback,
    ) -> impl Future<Output = Result<bool, JobError>> + Send;
}

/// Why a [`Job`] did not complete.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::JobError;
///
/// let error = JobError::Handler("database is down".to_owned());
/// assert_eq!(error.to_string(), "database is down");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum JobError {
    /// The handler failed: its error's text. The entry is retried, or dead.
    Handler(String),
    /// The inbox failed to record the outcome: the entry's lease lapses and it runs again.
    Inbox(BoxError),
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Handler(error) => f.write_str(error),
            JobError::Inbox(error) => write!(f, "the inbox failed: {error}"),
        }
    }
}

impl std::error::Error for JobError {}

/// The [`Job`] of an [`AsyncCallbackHandler`]: the handler runs, then the entry is marked
/// done. Its effect is at-least-once: a worker that dies after the effect and before the mark
/// leaves the entry to run again once its lease lapses. Make the effect idempotent (keyed on
/// the fact's [`DeliveryKey`]) or, on SQLite, use `Worker::in_transaction`.
///
/// # Example
///
/// See [`Worker::new`].
#[derive(Debug)]
pub struct AtLeastOnce<H, C = PayoutCallback> {
    handler: H,
    kind: PhantomData<fn() -> C>,
}

impl<H, C> AtLeastOnce<H, C> {
    /// The job of running `handler`, an [`AsyncCallbackHandler`] of callbacks of kind `C`.
    ///
    /// # Example
    ///
    /// See [`Worker::with_job`].
    pub fn new(handler: H) -> Self {
        AtLeastOnce {
            handler,
            kind: PhantomData,
        }
    }
}

impl<I, H, C> Job<I> for AtLeastOnce<H, C>
where
    I: Inbox,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    type Callback = C;

    async fn run(&self, inbox: &I, taken: &Taken, callback: &C) -> Result<bool, JobError> {
        self.handler
            .handle(callback)
            .await
            .map_err(|error| JobError::Handler(error.to_string()))?;
        inbox.succeed(taken).await.map_err(JobError::Inbox)
    }
}

/// The [`Job`] of a handler that writes its effect in the inbox's own database, in the
/// transaction that marks the entry done (`inbox::SqliteHandler`, `inbox::PgHandler`): the
/// effect and "entry done" commit together or not at all. A run that lost its lease (another
/// run took the entry) rolls back, and so does a process killed mid-run: every effect is
/// applied exactly once.
///
/// # Example
///
/// See [`Worker::in_transaction`].
#[derive(Debug)]
pub struct InTransaction<H, C = PayoutCallback> {
    // Read by the backends' `Worker::in_transaction` (features `sqlite`, `postgres`).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(super) handler: H,
    kind: PhantomData<fn() -> C>,
}

/// Runs the host's handler on the inbox's due entries, until each succeeds or is dead.
///
/// [`run`](Worker::run) is a future the host spawns on its own runtime, beside the server, and
/// stops with a shutdown signal: it then takes no new entry, and waits for the handlers that
/// are running. Any number of workers may share an inbox (in one process or, with a shared
/// database, in several): an entry is run by one at a time.
///
/// For each entry taken, the handler runs in a task of its own, so that a panic is a failure
/// like any other. While it runs, the entry's lease is renewed every third of
/// [`lease`](Worker::lease), so a long handler is never run a second time meanwhile; if the
/// worker's process dies, the lease lapses and another worker takes the entry. Success marks
/// the entry done; a failure (or a panic) is recorded with its error text, and the
/// [`RetryPolicy`] says when the entry runs again or that it is dead.
///
/// # Example
///
/// See the [module docs](super).
#[derive(Debug)]
#[must_use = "a worker does nothing until `run` is awaited"]
pub struct Worker<I, J> {
    inbox: I,
    job: Arc<J>,
    policy: RetryPolicy,
    lease: Duration,
    poll_interval: Duration,
    concurrency: usize,
}

impl<I, H, C> Worker<I, AtLeastOnce<H, C>>
where
    I: Inbox,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    /// A worker running `handler` on the entries of `inbox` ([`AtLeastOnce`]), with the default
    /// policy, lease ([`DEFAULT_LEASE`]), poll interval ([`DEFAULT_POLL_INTERVAL`]) and 4
    /// handlers at a time.
    ///
    /// # Example
    ///
    /// See the [module docs](super).
    pub fn new(inbox: I, handler: H) -> Worker<I, AtLeastOnce<H, C>> {
        Worker::with_job(inbox, AtLeastOnce::new(handler))
    }
}

impl<I, H, C> Worker<I, InTransaction<H, C>>
where
    I: Inbox,
    InTransaction<H, C>: Job<I>,
{
    /// A worker whose handler writes its effect in the inbox's own transaction
    /// ([`InTransaction`]: an `inbox::SqliteHandler` on a `SqliteInbox`, an
    /// `inbox::PgHandler` on a `PgInbox`): effect and "done" commit together, exactly once.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::PayoutCallback;
    /// use cregis_payout_callback::inbox::{SqliteHandler, SqliteInbox, Worker};
    /// use sqlx::SqliteConnection;
    ///
    /// struct Ledger;
    ///
    /// impl SqliteHandler for Ledger {
    ///     type Error = sqlx::Error;
    ///     async fn handle(&self, callback: &PayoutCallback, tx: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    ///         sqlx::query("UPDATE payouts SET status = ? WHERE id = ? AND amount = ?")
    ///             .bind(callback.status.code())
    ///             .bind(&callback.third_party_id)
    ///             .bind(&callback.amount)
    ///             .execute(&mut *tx)
    ///             .await?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let worker = Worker::in_transaction(inbox, Ledger);
    /// # drop(worker);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn in_transaction(inbox: I, handler: H) -> Self {
        let job = InTransaction {
            handler,
            kind: PhantomData,
        };
        Worker::with_job(inbox, job)
    }
}

impl<I, J> Worker<I, J>
where
    I: Inbox,
    J: Job<I>,
{
    /// A worker running `job` on the entries of `inbox`, with the defaults of
    /// [`new`](Worker::new).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::PayoutCallback;
    /// use cregis_payout_callback::inbox::{AtLeastOnce, SqliteInbox, Worker};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let handler = |_: &PayoutCallback| async { Ok::<(), String>(()) };
    /// let worker = Worker::with_job(inbox, AtLeastOnce::new(handler)); // the same as Worker::new
    /// # drop(worker);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn with_job(inbox: I, job: J) -> Worker<I, J> {
        Worker {
            inbox,
            job: Arc::new(job),
            policy: RetryPolicy::default(),
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            concurrency: 4,
        }
    }

    /// Sets when failed entries run again and when they are dead.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use std::time::Duration;
    /// use cregis_payout_callback::PayoutCallback;
    /// use cregis_payout_callback::inbox::{RetryPolicy, SqliteInbox, Worker};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let handler = |_: &PayoutCallback| async { Ok::<(), String>(()) };
    /// let worker = Worker::new(inbox, handler)
    ///     .retry(RetryPolicy { max_attempts: 10, ..RetryPolicy::default() })
    ///     .lease(Duration::from_secs(30))
    ///     .poll_interval(Duration::from_millis(250))
    ///     .concurrency(8);
    /// # drop(worker);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the lease an entry is taken under (and renewed to while its handler runs).
    /// Defaults to [`DEFAULT_LEASE`]. Shorter, a dead worker's entries run again sooner; the
    /// renewals come every third of it, so it must leave the inbox's database time to answer.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Sets how long an idle worker waits before it looks for due entries again. Defaults to
    /// [`DEFAULT_POLL_INTERVAL`]. An entry accepted while the worker is idle runs at once when
    /// the inbox announces it ([`Inbox::arrivals`]), else within the interval; a retry runs
    /// within it of falling due.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets how many handlers run at once (at least 1). Defaults to 4.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.max(1);
        self
    }

    /// Runs until `shutdown` completes, then waits for the running handlers to end.
    ///
    /// An inbox that fails (its database is down) is reported and tried again after the poll
    /// interval: the worker never stops on its own.
    ///
    /// `shutdown` is polled between the worker's own steps: make it a signal (a channel, a
    /// `ctrl_c`), not a future that queries the inbox, which would hold one of its connections
    /// while the worker waits for one.
    ///
    /// # Example
    ///
    /// See the [module docs](super).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let shared = Arc::new(self);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut running = JoinSet::new();
        let mut arrivals = shared.inbox.arrivals();
        let kind = <J::Callback as crate::Callback>::KIND;
        loop {
            while running.len() < shared.concurrency {
                match shared.inbox.take(kind, shared.lease).await {
                    Ok(Some(taken)) => {
                        running.spawn(Arc::clone(&shared).run_entry(taken));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        report_inbox_error("take", &error);
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = arrivals.next() => {}
                () = tokio::time::sleep(shared.poll_interval) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// One run of one entry: the handler in a task of its own, the lease renewed meanwhile,
    /// then the outcome recorded.
    async fn run_entry(self: Arc<Self>, taken: Taken) {
        let callback = match parse::<J::Callback>(&taken.body) {
            Ok(callback) => callback,
            Err(error) => {
                // It was verified and parsed when accepted: only a changed row gets here.
                let error = format!("the stored body no longer parses: {error}");
                self.record_failure(&taken, &error, Next::Dead).await;
                return;
            }
        };
        let mut task = {
            let (job, inbox, taken) = (Arc::clone(&self.job), self.inbox.clone(), taken.clone());
            tokio::spawn(async move { job.run(&inbox, &taken, &callback).await })
        };
        let mut heartbeat = tokio::time::interval(self.lease / 3);
        heartbeat.tick().await;
        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                _ = heartbeat.tick() => match self.inbox.renew(&taken, self.lease).await {
                    Ok(true) => {}
                    Ok(false) => report_lost(&taken),
                    Err(error) => report_inbox_error("renew", &error),
                },
            }
        };
        match joined {
            Ok(Ok(true)) => report_succeeded(&taken),
            Ok(Ok(false)) => report_lost(&taken),
            Ok(Err(JobError::Inbox(error))) => report_inbox_error("succeed", &error),
            Ok(Err(JobError::Handler(error))) => {
                let next = self.policy.next(taken.id, taken.attempt, taken.age);
                self.record_failure(&taken, &error, next).await;
            }
            // Cancelled (the runtime is shutting down): the lease lapses and the entry runs
            // again.
            Err(join) => {
                if let Ok(panic) = join.try_into_panic() {
                    let error = crate::error::panic_text(&*panic);
                    let next = self.policy.next(taken.id, taken.attempt, taken.age);
                    self.record_failure(&taken, &error, next).await;
                }
            }
        }
    }

    async fn record_failure(&self, taken: &Taken, error: &str, next: Next) {
        match self.inbox.fail(taken, error, next).await {
            Ok(true) => report_failed(taken, error, next),
            Ok(false) => report_lost(taken),
            Err(failure) => report_inbox_error("fail", &failure),
        }
    }
}

/// The callback in a body the inbox accepted (verified then).
fn parse<C: Notification>(body: &[u8]) -> Result<C, Error> {
    let mut params = Params::empty();
    params.read_body(body)?;
    crate::verifier::parse(&params)
}

// ---- Events (feature `tracing`): target `cregis_payout_callback`, never a key. ----

#[cfg(feature = "tracing")]
mod events {
    use super::{BoxError, DeliveryKey, EntryId, Next, Taken};
    use crate::trace::TARGET;

    pub(super) fn succeeded(taken: &Taken) {
        tracing::info!(
            target: TARGET,
            event = "succeeded",
            entry = taken.id.0,
            attempt = taken.attempt,
            pid = taken.key.pid,
            cid = taken.key.cid,
            kind = taken.key.kind.as_str(),
            fact = %taken.key.fact,
            "cregis inbox entry succeeded"
        );
    }

    pub(super) fn failed(taken: &Taken, error: &str, next: Next) {
        let (id, key, attempt) = (taken.id.0, taken.key, taken.attempt);
        match next {
            Next::RetryAfter(delay) => tracing::warn!(
                target: TARGET,
                event = "retry scheduled",
                entry = id,
                attempt,
                pid = key.pid,
                cid = key.cid,
                kind = key.kind.as_str(),
                fact = %key.fact,
                error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "cregis inbox entry failed; retry scheduled"
            ),
            Next::Dead => tracing::error!(
                target: TARGET,
                event = "dead",
                entry = id,
                attempt,
                pid = key.pid,
                cid = key.cid,
                kind = key.kind.as_str(),
                fact = %key.fact,
                error,
                "cregis inbox entry is dead"
            ),
        }
    }

    pub(super) fn lost(taken: &Taken) {
        tracing::warn!(
            target: TARGET,
            event = "lease lost",
            entry = taken.id.0,
            attempt = taken.attempt,
            "cregis inbox entry: the run no longer holds its lease"
        );
    }

    pub(super) fn discarded(id: EntryId, key: DeliveryKey, reason: &str) {
        tracing::warn!(
            target: TARGET,
            event = "discarded",
            entry = id.0,
            pid = key.pid,
            cid = key.cid,
            kind = key.kind.as_str(),
            fact = %key.fact,
            reason,
            "cregis inbox entry discarded"
        );
    }

    pub(super) fn inbox_error(operation: &str, error: &BoxError) {
        tracing::error!(
            target: TARGET,
            event = "inbox failed",
            operation,
            error = %error,
            "cregis inbox failed"
        );
    }
}

fn report_succeeded(taken: &Taken) {
    #[cfg(feature = "tracing")]
    events::succeeded(taken);
    let _ = taken;
}

fn report_failed(taken: &Taken, error: &str, next: Next) {
    #[cfg(feature = "tracing")]
    events::failed(taken, error, next);
    let _ = (taken, error, next);
}

fn report_lost(taken: &Taken) {
    #[cfg(feature = "tracing")]
    events::lost(taken);
    let _ = taken;
}

pub(super) fn report_inbox_error(operation: &str, error: &BoxError) {
    #[cfg(feature = "tracing")]
    events::inbox_error(operation, error);
    let _ = (operation, error);
}

/// Reports an entry an operator discarded (each backend's `discard` calls it).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn report_discard(id: EntryId, key: DeliveryKey, reason: &str) {
    #[cfg(feature = "tracing")]
    events::discarded(id, key, reason);
    let _ = (id, key, reason);
}
