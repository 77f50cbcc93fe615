//! The worker: takes due entries and runs the handler on them until each succeeds or is dead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{EntryId, Inbox, Next, RetryPolicy, Taken};
use crate::error::BoxError;
use crate::idempotency::DeliveryKey;
use crate::wire::Params;
use crate::{AsyncCallbackHandler, Error, PayoutCallback};

/// The default [`Worker::lease`]: a minute, renewed every third of it while the handler runs.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The default [`Worker::poll_interval`]: how long an idle worker waits before it looks for
/// due entries again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

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
pub struct Worker<I, H> {
    inbox: I,
    handler: Arc<H>,
    policy: RetryPolicy,
    lease: Duration,
    poll_interval: Duration,
    concurrency: usize,
}

impl<I, H> Worker<I, H>
where
    I: Inbox,
    H: AsyncCallbackHandler + Send + 'static,
{
    /// A worker running `handler` on the entries of `inbox`, with the default policy, lease
    /// ([`DEFAULT_LEASE`]), poll interval ([`DEFAULT_POLL_INTERVAL`]) and 4 handlers at a time.
    ///
    /// # Example
    ///
    /// See the [module docs](super).
    pub fn new(inbox: I, handler: H) -> Worker<I, H> {
        Worker {
            inbox,
            handler: Arc::new(handler),
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
    /// [`DEFAULT_POLL_INTERVAL`]: an entry accepted while the worker is idle runs within it.
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
    /// # Example
    ///
    /// See the [module docs](super).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let shared = Arc::new(self);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut running = JoinSet::new();
        loop {
            while running.len() < shared.concurrency {
                match shared.inbox.take(shared.lease).await {
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
                () = tokio::time::sleep(shared.poll_interval) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// One run of one entry: the handler in a task of its own, the lease renewed meanwhile,
    /// then the outcome recorded.
    async fn run_entry(self: Arc<Self>, taken: Taken) {
        let callback = match parse(&taken.body) {
            Ok(callback) => callback,
            Err(error) => {
                // It was verified and parsed when accepted: only a changed row gets here.
                let error = format!("the stored body no longer parses: {error}");
                self.record_failure(&taken, &error, Next::Dead).await;
                return;
            }
        };
        let handler = Arc::clone(&self.handler);
        let mut task = tokio::spawn(async move {
            handler
                .handle(&callback)
                .await
                .map_err(|error| error.to_string())
        });
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
            Ok(Ok(())) => match self.inbox.succeed(&taken).await {
                Ok(true) => report_succeeded(&taken),
                Ok(false) => report_lost(&taken),
                Err(error) => report_inbox_error("succeed", &error),
            },
            Ok(Err(error)) => {
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
fn parse(body: &[u8]) -> Result<PayoutCallback, Error> {
    let mut params = Params::empty();
    params.read_body(body)?;
    PayoutCallback::from_params(&params)
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
            status = taken.key.status.code(),
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
                status = key.status.code(),
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
                status = key.status.code(),
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
            status = key.status.code(),
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

fn report_inbox_error(operation: &str, error: &BoxError) {
    #[cfg(feature = "tracing")]
    events::inbox_error(operation, error);
    let _ = (operation, error);
}

/// Reports an entry an operator discarded (each backend's `discard` calls it).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(super) fn report_discard(id: EntryId, key: DeliveryKey, reason: &str) {
    #[cfg(feature = "tracing")]
    events::discarded(id, key, reason);
    let _ = (id, key, reason);
}
