//! The worker: takes due entries and runs the handler on them until each succeeds or is dead.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deadline::{later, later_from};

use super::{AbortOnDrop, AfterFailure, EntryId, Inbox, RetryPolicy, Taken};
use crate::error::BoxError;
use crate::idempotency::DeliveryKey;
use crate::wire::Params;
use crate::{AsyncCallbackHandler, Error, Notification, PayoutCallback};

/// The default [`Worker::lease`]: a minute, renewed every third of it while the handler runs.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The default [`Worker::poll_interval`]: how long an idle worker waits before it looks for
/// due entries again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The default [`Worker::deadline`] of [`Worker::new`]'s handlers: a minute (as River's job
/// timeout). A handler still running then is aborted, and the run is a failure. A handler that
/// calls another service within its own timeouts finishes well within it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// The default [`Worker::deadline`] of [`Worker::in_transaction`]'s handlers: 2 s. An
/// in-transaction handler holds a transaction (on SQLite, the write lock, which the accepts
/// queue behind) while it runs: a database effect of a few statements takes milliseconds, and
/// 2 s bounds what a stuck one costs an accept well within the few seconds a webhook sender
/// waits. A handler that needs longer (an outside call) belongs in [`Worker::new`].
pub const DEFAULT_IN_TRANSACTION_DEADLINE: Duration = Duration::from_secs(2);

/// The default [`Worker::shutdown_deadline`]: 20 s, within the 30 s an orchestrator
/// (Kubernetes' `terminationGracePeriodSeconds`, systemd's `TimeoutStopSec` is 90 s) waits
/// before it kills the process, so the handlers still running are aborted and their entries
/// released by the worker, not by the lease.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// The default [`Worker::retention`]: done entries are kept 30 days, then deleted. While an
/// entry is kept, a re-push of its fact (an operator's, from the Cregis console) is a
/// duplicate; after, it is a new entry and the handler runs again. 30 days covers a month of
/// reconciliation: an operator re-pushes a callback when a payout looks unsettled, within days.
/// A handler whose effect is keyed on the fact ([`DeliveryKey`]) stays exactly-once even after.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The longest lease: a day. Longer leases saturate to it.
const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest lease: renewals come every third of it.
const MIN_LEASE: Duration = Duration::from_millis(30);
/// The longest poll interval: an hour.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The shortest poll interval: an idle worker never spins.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest deadline: a handler gets at least this long.
const MIN_DEADLINE: Duration = Duration::from_millis(1);
/// The shortest retention: a minute.
const MIN_RETENTION: Duration = Duration::from_secs(60);
/// The most handlers one worker runs at once.
const MAX_CONCURRENCY: usize = 10_000;
/// The most runs whose entry waits for its done mark, at least: past it (or past the
/// concurrency, if higher) the worker takes no more entries until marks are recorded.
const MIN_SETTLING: usize = 1024;

/// How often a running worker sets the inbox's gauges (feature `metrics`).
#[cfg(feature = "metrics")]
const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// How often a worker prunes done entries past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The most done entries one prune statement deletes, and the most statements of one round.
const PRUNE_BATCH: usize = 500;
const PRUNE_ROUNDS: usize = 20;
/// A retention this long keeps done entries for ever.
const KEEP_FOR_EVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
/// How long the worker gives its aborted runs, after the shutdown deadline, to release their
/// entries.
const RELEASE_TIME: Duration = Duration::from_secs(5);

/// How a [`Worker`] runs the handler on an entry and records its success: [`AtLeastOnce`] for
/// any [`AsyncCallbackHandler`], or `InTransaction` (SQLite) to commit the handler's effect
/// and "done" together.
pub trait Job<I: Inbox>: Send + Sync + 'static {
    /// The kind of callback the job runs on: the worker takes entries of this kind only.
    type Callback: Notification;

    /// The [`Worker::deadline`] a worker running this job starts with.
    const DEADLINE: Duration = DEFAULT_DEADLINE;

    /// Runs the handler on `callback`; on success, either records `taken` as done itself
    /// ([`Ran::Recorded`], in the handler's transaction) or leaves that to the worker
    /// ([`Ran::Succeeded`]), which frees the handler's slot at once and marks the entry done
    /// with the other runs that ended meanwhile. [`Ran::Lost`]: the run no longer held the
    /// entry, and nothing was recorded.
    ///
    /// # Errors
    ///
    /// The handler failed ([`JobError::Handler`]), or the inbox did ([`JobError::Inbox`]).
    fn run(
        &self,
        inbox: &I,
        taken: &Taken,
        callback: &Self::Callback,
    ) -> impl Future<Output = Result<Ran, JobError>> + Send;
}

/// What a successful [`Job::run`] did.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::backend::Ran;
///
/// // A job that records nothing itself: the worker marks the entry done.
/// let ran = Ran::Succeeded;
/// assert_ne!(ran, Ran::Recorded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The handler succeeded and the job recorded the entry done (in the transaction that
    /// holds the handler's effect).
    Recorded,
    /// The handler succeeded; the worker records the entry done, if the run still holds its
    /// lease then ([`Inbox::succeed`]).
    Succeeded,
    /// The run no longer held the entry: nothing was recorded (an in-transaction effect was
    /// rolled back).
    Lost,
}

/// Why a [`Job`] did not complete.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::backend::JobError;
///
/// let error = JobError::Handler("database is down".to_owned());
/// assert_eq!(error.to_string(), "database is down");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum JobError {
    /// The handler failed: its error's text. The entry is retried, or dead.
    Handler(String),
    /// The inbox failed to record the outcome (its transaction did not begin or commit): a
    /// failed run like the handler's, retried or dead.
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

/// The [`Job`] of an [`AsyncCallbackHandler`]: the handler runs, then the worker marks the
/// entry done (with the other runs that ended meanwhile, in one commit). Its effect is
/// at-least-once: a worker that dies after the effect and before the mark leaves the entry to
/// run again once its lease lapses. Make the effect idempotent (keyed on
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

    async fn run(&self, _: &I, _: &Taken, callback: &C) -> Result<Ran, JobError> {
        self.handler
            .handle(callback)
            .await
            .map_err(|error| JobError::Handler(error.to_string()))?;
        Ok(Ran::Succeeded)
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
/// Every run counts toward the policy's limit, however it ended:
///
/// | the run | recorded |
/// |---|---|
/// | the handler fails or panics | a failure with its text |
/// | the inbox cannot commit the outcome (the handler's transaction fails to commit) | a failure with the database's error |
/// | the handler passes its [`deadline`](Worker::deadline) | aborted; a failure |
/// | the renewal says the lease is lost, or no renewal succeeds for most of the lease | aborted; nothing (the run can no longer settle the entry: another run may hold it) |
/// | the worker shuts down and the handler passes the [`shutdown_deadline`](Worker::shutdown_deadline) | aborted; the entry due again at once |
/// | the process dies (a crash, a kill, an OOM) | nothing: counted when the entry is next taken ([`Taken::interrupted_runs`]), dead then if the limit is reached |
///
/// An abort takes effect at the handler's next `.await`: a handler that blocks its thread
/// (a loop with no await, a blocking call) cannot be aborted.
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
    deadline: Duration,
    shutdown_deadline: Duration,
    retention: Duration,
}

impl<I, H, C> Worker<I, AtLeastOnce<H, C>>
where
    I: Inbox,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    /// A worker running `handler` on the entries of `inbox` ([`AtLeastOnce`]), with the default
    /// policy, lease ([`DEFAULT_LEASE`]), poll interval ([`DEFAULT_POLL_INTERVAL`]), deadline
    /// ([`DEFAULT_DEADLINE`]), shutdown deadline ([`DEFAULT_SHUTDOWN_DEADLINE`]), retention
    /// ([`DEFAULT_RETENTION`]) and 4 handlers at a time.
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
    /// The handler holds a transaction while it runs (on SQLite, the database's one write
    /// lock, which accepts wait for): keep it to its database work. Its deadline defaults to
    /// [`DEFAULT_IN_TRANSACTION_DEADLINE`] (2 s), past which it is rolled back and the run is a
    /// failure. A handler that needs longer, or calls out (an HTTP request, a message to
    /// another service), belongs in [`Worker::new`], its effect keyed on the fact.
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
            deadline: J::DEADLINE,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            retention: DEFAULT_RETENTION,
        }
    }

    /// Sets when failed entries run again and when they are dead (its delays saturate to
    /// 100 years, "never").
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
    ///     .concurrency(8)
    ///     .deadline(Duration::from_secs(20))
    ///     .shutdown_deadline(Duration::from_secs(10))
    ///     .retention(Duration::from_secs(90 * 24 * 60 * 60));
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
    /// Defaults to [`DEFAULT_LEASE`]; saturates to 30 ms ..= 1 day. Shorter, a dead worker's
    /// entries run again sooner; the renewals come every third of it, so it must leave the
    /// inbox's database time to answer.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(MIN_LEASE, MAX_LEASE);
        self
    }

    /// Sets how long an idle worker waits before it looks for due entries again. Defaults to
    /// [`DEFAULT_POLL_INTERVAL`]; saturates to 10 ms ..= 1 hour. An entry accepted while the
    /// worker is idle runs at once when the inbox announces it ([`Inbox::arrivals`]), else
    /// within the interval; a retry runs within it of falling due.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
        self
    }

    /// Sets how many handlers run at once, 1 ..= 10,000. Defaults to 4. The worker takes
    /// entries in one statement ([`Inbox::take_many`]), as many as it has handlers free once a
    /// quarter of them are (or all are): more handlers, fewer takes per entry. To drain a
    /// backlog at the rate the route accepts, give `Worker::new` 128 (see
    /// `benches/inbox_drain.rs`): a take is bounded by the handlers free.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// Sets how long one run of the handler may take: past it, the handler is aborted and the
    /// run is a failure (retried, or dead, by the policy). Defaults to [`DEFAULT_DEADLINE`]
    /// for [`Worker::new`], [`DEFAULT_IN_TRANSACTION_DEADLINE`] for
    /// [`Worker::in_transaction`]; at least 1 ms, and `Duration::MAX` means none. An
    /// in-transaction deadline should stay well below the [`lease`](Worker::lease): on
    /// SQLite, the handler's renewals wait for its transaction.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.max(MIN_DEADLINE);
        self
    }

    /// Sets how long [`run`](Worker::run) lets running handlers finish once `shutdown` has
    /// completed; past it, they are aborted and their entries made due again at once (another
    /// instance takes them), and `run` returns within a few seconds more. Defaults to
    /// [`DEFAULT_SHUTDOWN_DEADLINE`]; `Duration::ZERO` aborts them at once.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.shutdown_deadline = deadline;
        self
    }

    /// Sets how long done entries of the worker's kind are kept: every minute, the worker
    /// deletes the ones done longer ago ([`Inbox::prune`], in batches of 500). Defaults to
    /// [`DEFAULT_RETENTION`] (see there for the trade-off); at least a minute, and
    /// `Duration::MAX` keeps them for ever. Dead entries are never deleted.
    ///
    /// # Example
    ///
    /// See [`retry`](Worker::retry).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention.max(MIN_RETENTION);
        self
    }

    /// Runs until `shutdown` completes, then stops taking entries, lets the running handlers
    /// finish until the [`shutdown_deadline`](Worker::shutdown_deadline), aborts the ones
    /// left and releases their entries.
    ///
    /// An inbox that fails (its database is down) is reported and tried again after the poll
    /// interval: the worker never stops on its own. Dropping the future aborts the handlers
    /// running (their leases lapse).
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
        // Dropped with this future: every run is aborted with it.
        let mut running = JoinSet::new();
        // The runs whose handler succeeded, waiting for their entry's done mark: their
        // handler's slot is free (the marks of many share a commit).
        let mut settling = JoinSet::new();
        let most_settling = shared.concurrency.max(MIN_SETTLING);
        let (stop, stopped) = watch::channel(false);
        let mut arrivals = shared.inbox.arrivals();
        let mut next_prune = Instant::now();
        #[cfg(feature = "metrics")]
        let mut next_gauges = Instant::now();
        let kind = <J::Callback as crate::Callback>::KIND;
        loop {
            if Instant::now() >= next_prune {
                shared.prune().await;
                next_prune = later(PRUNE_EVERY);
            }
            #[cfg(feature = "metrics")]
            if Instant::now() >= next_gauges {
                match shared.inbox.counts().await {
                    Ok(counts) => crate::meter::entries(kind, &counts),
                    Err(error) => report_inbox_error("counts", &error),
                }
                next_gauges = later(GAUGES_EVERY);
            }
            // As many as there are handlers free, in one statement, once a quarter of them
            // are (or all): a take is a write, and one per finished run would cost a commit
            // each.
            let free = shared.concurrency - running.len();
            if free > 0
                && (free >= shared.concurrency.div_ceil(4) || running.is_empty())
                && settling.len() < most_settling
            {
                // Before the lease begins: the run's own reckoning of it can only be earlier.
                let asked = Instant::now();
                match shared.inbox.take_many(kind, shared.lease, free).await {
                    Ok(taken) => {
                        for taken in taken {
                            let run = Arc::clone(&shared).run_entry(taken, asked, stopped.clone());
                            running.spawn(run);
                        }
                    }
                    Err(error) => report_inbox_error("take", &error),
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    // Every run that ended meanwhile: their handlers are taken for in one go.
                    let mut joined = Some(joined);
                    while let Some(ran) = joined.take().or_else(|| running.try_join_next()) {
                        shared.settle_later(&mut settling, ran);
                    }
                }
                Some(_) = settling.join_next(), if !settling.is_empty() => {
                    while settling.try_join_next().is_some() {}
                }
                () = arrivals.next() => {}
                () = tokio::time::sleep(shared.poll_interval) => {}
            }
        }
        // Stop taking; let the handlers finish until the deadline, and their marks.
        let deadline = tokio::time::sleep_until(later(shared.shutdown_deadline));
        let mut deadline = std::pin::pin!(deadline);
        while !(running.is_empty() && settling.is_empty()) {
            tokio::select! {
                Some(ran) = running.join_next(), if !running.is_empty() => {
                    shared.settle_later(&mut settling, ran);
                }
                Some(_) = settling.join_next(), if !settling.is_empty() => {}
                () = &mut deadline => break,
            }
        }
        if running.is_empty() && settling.is_empty() {
            return;
        }
        // Abort the rest; each releases its entry.
        let _ = stop.send(true);
        let _ = tokio::time::timeout(RELEASE_TIME, async {
            while running.join_next().await.is_some() {}
            while settling.join_next().await.is_some() {}
        })
        .await;
    }

    /// Deletes the done entries of the worker's kind past the retention, a few batches.
    async fn prune(&self) {
        if self.retention >= KEEP_FOR_EVER {
            return;
        }
        let kind = <J::Callback as crate::Callback>::KIND;
        for _ in 0..PRUNE_ROUNDS {
            match self.inbox.prune(kind, self.retention, PRUNE_BATCH).await {
                Ok(pruned) if pruned == PRUNE_BATCH => {}
                Ok(_) => return,
                Err(error) => return report_inbox_error("prune", &error),
            }
        }
    }

    /// One run of one entry: the handler in a task of its own, the lease renewed meanwhile,
    /// the deadline and the shutdown watched, then the outcome recorded; or, for a
    /// [`Ran::Succeeded`], the entry to mark done ([`settle`](Worker::settle)).
    /// `asked` is when the entry was asked for: its lease began later.
    async fn run_entry(
        self: Arc<Self>,
        taken: Taken,
        asked: Instant,
        mut stopped: watch::Receiver<bool>,
    ) -> Option<Taken> {
        // The earlier runs that never ended count: dead now if they reach the limit.
        if taken.interrupted_runs > 0 {
            let earlier = taken.attempt.saturating_sub(1);
            if self.policy.next(taken.id, earlier, taken.age) == AfterFailure::Dead {
                let error = interrupted_error(taken.interrupted_runs);
                self.record_failure(&taken, &error, AfterFailure::Dead)
                    .await;
                return None;
            }
        }
        let callback = match parse::<J::Callback>(&taken.body) {
            Ok(callback) => callback,
            Err(error) => {
                // It was verified and parsed when accepted: only a changed row gets here.
                let error = format!("the stored body no longer parses: {error}");
                self.record_failure(&taken, &error, AfterFailure::Dead)
                    .await;
                return None;
            }
        };
        let started = Instant::now();
        // Aborted when this run ends, however it ends (this future dropped included).
        let mut task = {
            let (job, inbox, taken) = (Arc::clone(&self.job), self.inbox.clone(), taken.clone());
            AbortOnDrop(tokio::spawn(async move {
                job.run(&inbox, &taken, &callback).await
            }))
        };
        let deadline = later_from(started, self.deadline);
        // The run stops before its lease can lapse unrenewed (another worker may take the
        // entry then), reckoned from before each lease began.
        let hold = self.lease.saturating_sub(self.lease / 6);
        let mut held_until = later_from(asked, hold);
        let mut heartbeat = tokio::time::interval_at(asked + self.lease / 3, self.lease / 3);
        let ended = loop {
            tokio::select! {
                joined = &mut task.0 => break Ended::Joined(joined),
                () = tokio::time::sleep_until(deadline) => break Ended::PastDeadline,
                () = tokio::time::sleep_until(held_until) => break Ended::Lost,
                // Sent once, at the shutdown deadline.
                Ok(()) = stopped.changed() => break Ended::Stopped,
                _ = heartbeat.tick() => {
                    let sent = Instant::now();
                    let renewed = tokio::time::timeout_at(
                        held_until,
                        self.inbox.renew(&taken, self.lease),
                    );
                    match renewed.await {
                        Ok(Ok(true)) => held_until = later_from(sent, hold),
                        Ok(Err(error)) => report_inbox_error("renew", &error),
                        // Lost, or not renewed before it would lapse.
                        Ok(Ok(false)) | Err(_) => break Ended::Lost,
                    }
                }
            }
        };
        drop(task);
        #[cfg(feature = "metrics")]
        crate::meter::ran_for(taken.key.kind, started.elapsed());
        match ended {
            Ended::Joined(Ok(Ok(Ran::Succeeded))) => return Some(taken),
            Ended::Joined(Ok(Ok(Ran::Recorded))) => report_succeeded(&taken),
            Ended::Joined(Ok(Ok(Ran::Lost))) | Ended::Lost => report_lost(&taken),
            Ended::Joined(Ok(Err(JobError::Handler(error)))) => self.failed(&taken, &error).await,
            Ended::Joined(Ok(Err(JobError::Inbox(error)))) => {
                self.not_recorded(&taken, &error).await;
            }
            Ended::Joined(Err(join)) => {
                // Cancelled (the runtime is shutting down): the lease lapses and the entry runs
                // again, counted then.
                if let Ok(panic) = join.try_into_panic() {
                    self.failed(&taken, &crate::error::panic_text(&*panic))
                        .await;
                }
            }
            Ended::PastDeadline => {
                let error = format!(
                    "the handler did not finish within its deadline of {:?}; aborted",
                    self.deadline
                );
                self.failed(&taken, &error).await;
            }
            Ended::Stopped => {
                let error = "the worker shut down before the handler finished; aborted";
                let next = match self.policy.next(taken.id, taken.attempt, taken.age) {
                    AfterFailure::Dead => AfterFailure::Dead,
                    AfterFailure::RetryAfter(_) => AfterFailure::RetryAfter(Duration::ZERO),
                };
                self.record_failure(&taken, error, next).await;
            }
        }
        None
    }

    /// Hands a run that ended to `settling` if its entry waits for its done mark.
    fn settle_later(
        self: &Arc<Self>,
        settling: &mut JoinSet<()>,
        ran: Result<Option<Taken>, tokio::task::JoinError>,
    ) {
        if let Ok(Some(taken)) = ran {
            settling.spawn(Arc::clone(self).settle(taken));
        }
    }

    /// Marks done the entry of a run whose handler succeeded, if the run still holds it.
    async fn settle(self: Arc<Self>, taken: Taken) {
        match self.inbox.succeed(&taken).await {
            Ok(true) => report_succeeded(&taken),
            Ok(false) => report_lost(&taken),
            Err(error) => self.not_recorded(&taken, &error).await,
        }
    }

    /// Records a run whose outcome the inbox failed to record: a failure like the handler's.
    async fn not_recorded(&self, taken: &Taken, error: &BoxError) {
        let error = format!("the inbox could not record the outcome: {error}");
        self.failed(taken, &error).await;
    }

    /// Records a failed run, the policy saying what comes next.
    async fn failed(&self, taken: &Taken, error: &str) {
        let next = self.policy.next(taken.id, taken.attempt, taken.age);
        self.record_failure(taken, error, next).await;
    }

    async fn record_failure(&self, taken: &Taken, error: &str, next: AfterFailure) {
        match self.inbox.fail(taken, error, next).await {
            Ok(true) => report_failed(taken, error, next),
            Ok(false) => report_lost(taken),
            Err(failure) => report_inbox_error("fail", &failure),
        }
    }
}

/// How a run ended.
enum Ended {
    /// The job returned, or panicked.
    Joined(Result<Result<Ran, JobError>, tokio::task::JoinError>),
    /// Past its deadline: aborted.
    PastDeadline,
    /// Its lease is lost, or could not be renewed in time: aborted.
    Lost,
    /// The worker shut down, past its shutdown deadline: aborted.
    Stopped,
}

/// The last error of an entry made dead at its take: its earlier runs never ended.
fn interrupted_error(runs: u32) -> String {
    let runs = if runs == 1 {
        "1 run".to_owned()
    } else {
        format!("{runs} runs")
    };
    format!("the worker stopped or lost its lease during {runs}")
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
    use super::{AfterFailure, BoxError, DeliveryKey, EntryId, Taken};
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
            origin = taken.origin.as_str(),
            "cregis inbox entry succeeded"
        );
    }

    pub(super) fn failed(taken: &Taken, error: &str, next: AfterFailure) {
        let (id, key, attempt) = (taken.id.0, taken.key, taken.attempt);
        match next {
            AfterFailure::RetryAfter(delay) => tracing::warn!(
                target: TARGET,
                event = "retry scheduled",
                entry = id,
                attempt,
                pid = key.pid,
                cid = key.cid,
                kind = key.kind.as_str(),
                fact = %key.fact,
                origin = taken.origin.as_str(),
                error,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "cregis inbox entry failed; retry scheduled"
            ),
            AfterFailure::Dead => tracing::error!(
                target: TARGET,
                event = "dead",
                entry = id,
                attempt,
                pid = key.pid,
                cid = key.cid,
                kind = key.kind.as_str(),
                fact = %key.fact,
                origin = taken.origin.as_str(),
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

    pub(super) fn released(id: EntryId, key: DeliveryKey, reason: &str) {
        tracing::warn!(
            target: TARGET,
            event = "released",
            entry = id.0,
            pid = key.pid,
            cid = key.cid,
            kind = key.kind.as_str(),
            fact = %key.fact,
            reason,
            "cregis inbox entry released by an operator"
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
    #[cfg(feature = "metrics")]
    crate::meter::run(taken.key.kind, "succeeded");
    let _ = taken;
}

fn report_failed(taken: &Taken, error: &str, next: AfterFailure) {
    #[cfg(feature = "tracing")]
    events::failed(taken, error, next);
    #[cfg(feature = "metrics")]
    crate::meter::run(
        taken.key.kind,
        match next {
            AfterFailure::RetryAfter(_) => "retry",
            AfterFailure::Dead => "dead",
        },
    );
    let _ = (taken, error, next);
}

fn report_lost(taken: &Taken) {
    #[cfg(feature = "tracing")]
    events::lost(taken);
    #[cfg(feature = "metrics")]
    crate::meter::run(taken.key.kind, "lost");
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
    #[cfg(feature = "metrics")]
    crate::meter::operator(key.kind, "discarded");
    let _ = (id, key, reason);
}

/// Reports a running entry an operator released (each backend's `release` calls it).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn report_release(id: EntryId, key: DeliveryKey, reason: &str) {
    #[cfg(feature = "tracing")]
    events::released(id, key, reason);
    #[cfg(feature = "metrics")]
    crate::meter::operator(key.kind, "released");
    let _ = (id, key, reason);
}
