//! The durable inbox: record each authentic callback, acknowledge it, then run the handler
//! until it succeeds (feature `inbox`, with a backend: `sqlite` for one instance, `postgres`
//! for several).
//!
//! Cregis never retries a callback: a delivery answered with an error waits until an operator
//! re-pushes it from the console. In the direct mode ([`Verifier::process_async`](crate::Verifier::process_async)), every
//! failure of the host's handler (a database hiccup, a deploy mid-request, a panic) is such a
//! delivery. With the inbox, the route does only what cannot fail for the host's reasons:
//!
//! 1. [`Verifier::accept`](crate::Verifier::accept) verifies and parses the body, then records it (its raw body, its
//!    [`DeliveryKey`] and [`Fingerprint`]) in one atomic write, and answers `success` only once
//!    that write is committed. A duplicate (same key, same content) is acknowledged without a
//!    second entry; other content under a known key is a 409
//!    [`ConflictingDelivery`](crate::Error::ConflictingDelivery); nothing unauthentic or
//!    malformed ever enters. If the write fails, the answer is 500 (not `success`), so the
//!    console shows a failed callback that a later re-push delivers.
//! 2. A [`Worker`], a future the host spawns on its own runtime, takes due entries and runs the
//!    host's [`AsyncCallbackHandler`](crate::AsyncCallbackHandler) on them. Success marks the
//!    entry done; a failure or a panic schedules a retry ([`RetryPolicy`]: 1 s doubling to
//!    10 min, with jitter); after the policy's limit the entry is dead, listed for an
//!    operator, never dropped. While a handler runs, the worker renews its lease, so a long
//!    handler is never run twice at once; an entry whose worker died runs again once its lease
//!    lapses.
//!
//! # What "exactly once" means here
//!
//! Every authentic callback that was acknowledged is in the inbox and is run until it succeeds
//! or is dead. The handler may run more than once for one entry: after a failure (by design),
//! and when a worker dies after the handler's effect but before the entry was marked done.
//! An effect in the inbox's own database is applied exactly once with
//! [`Worker::in_transaction`]: the effect and "entry done" commit in one transaction, or
//! neither does. An effect outside the database (an email, a message to another service) is
//! at-least-once under the lease ([`Worker::new`]): key it on the fact's [`DeliveryKey`].
//!
//! # States
//!
//! | state | meaning | next |
//! |---|---|---|
//! | [`Pending`](EntryState::Pending) | accepted, due, not yet run | a worker takes it: running |
//! | [`Running`](EntryState::Running) | a worker holds its lease | done, waiting, dead; pending again if the lease lapses |
//! | [`Waiting`](EntryState::Waiting) | failed, its retry is due later | pending when due |
//! | [`Done`](EntryState::Done) | the handler succeeded | (stays: later deliveries are duplicates) |
//! | [`Dead`](EntryState::Dead) | failed past the policy's limit | [`replay`](Inbox::replay): pending; [`discard`](Inbox::discard): gone |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use cregis_payout_callback::inbox::{SqliteInbox, Worker};
//! use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier, testing::CallbackBuilder};
//!
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! let verifier = Verifier::new(key.clone());
//! let inbox = SqliteInbox::open_in_memory().await?;
//!
//! // The route: verify, record, acknowledge.
//! let body = CallbackBuilder::new().body(&key)?;
//! let reply = verifier.accept(body.as_bytes(), &inbox).await;
//! assert_eq!((reply.status_code(), reply.body()), (200, "success"));
//!
//! // The worker, beside the server, until shutdown.
//! let handler = |callback: &PayoutCallback| {
//!     let id = callback.third_party_id.clone();
//!     async move { Ok::<(), String>(println!("{id} settled")) }
//! };
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let worker = tokio::spawn(Worker::new(inbox.clone(), handler).run(async {
//!     let _ = stopped.await;
//! }));
//! # tokio::time::sleep(std::time::Duration::from_millis(200)).await;
//! let _ = stop.send(());
//! worker.await?;
//! # Ok(())
//! # }
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

mod accept;
mod arrivals;
mod policy;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod worker;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use arrivals::{Announcer, Arrivals};
pub use policy::{DEFAULT_MAX_AGE, DEFAULT_MAX_ATTEMPTS, RetryPolicy};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgHandler, PgInbox};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteHandler, SqliteInbox};
pub use worker::{
    AtLeastOnce, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, InTransaction, Job, JobError, Worker,
};

use crate::CallbackKind;
use crate::error::BoxError;
use crate::idempotency::{DeliveryKey, Fingerprint};

/// An inbox entry's id, unique in its inbox.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::EntryId;
///
/// assert_eq!(EntryId(7).to_string(), "entry 7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub i64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.0)
    }
}

/// Where an entry is in its life (see the [module docs](self) for the transitions).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::EntryState;
///
/// assert_eq!(EntryState::Dead.to_string(), "dead");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryState {
    /// Accepted (or replayed, or its lease lapsed) and due: the next worker takes it.
    Pending,
    /// A worker holds it under a live lease.
    Running,
    /// Failed; due again at a later time.
    Waiting,
    /// The handler succeeded.
    Done,
    /// Failed past the retry policy's limit: an operator replays or discards it.
    Dead,
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryState::Pending => "pending",
            EntryState::Running => "running",
            EntryState::Waiting => "waiting",
            EntryState::Done => "done",
            EntryState::Dead => "dead",
        })
    }
}

/// What every SQL backend shares: how a stored row reads, and the schema's version check.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod stored {
    use super::{Accepted, EntryId, EntryState};
    use crate::error::BoxError;
    use crate::idempotency::Fingerprint;

    /// The state of an entry stored as `stored` (`pending`, `done` or `dead`), whose lease is
    /// live (`running`) or whose retry is due later (`waiting`).
    pub(crate) fn state(stored: &str, running: bool, waiting: bool) -> EntryState {
        match stored {
            "done" => EntryState::Done,
            "dead" => EntryState::Dead,
            _ if running => EntryState::Running,
            _ if waiting => EntryState::Waiting,
            _ => EntryState::Pending,
        }
    }

    /// What accepting an entry with `fingerprint` is when entry `id`, with `stored`, already
    /// holds its key.
    pub(crate) fn existing(id: EntryId, stored: &[u8], fingerprint: &Fingerprint) -> Accepted {
        if stored == fingerprint.as_bytes() {
            Accepted::Duplicate(id)
        } else {
            Accepted::Conflict(id)
        }
    }

    /// Whether `what`'s tables must be created, given the schema version found (`None`: none
    /// yet).
    pub(crate) fn must_create(
        what: &str,
        found: Option<i64>,
        known: i64,
    ) -> Result<bool, BoxError> {
        match found {
            None => Ok(true),
            Some(version) if version == known => Ok(false),
            Some(other) => Err(format!(
                "the {what}'s schema is version {other}; this crate knows version {known}"
            )
            .into()),
        }
    }
}

/// An authentic, well-formed callback to record: what the handler needs (its raw body) and
/// what identifies it.
///
/// # Example
///
/// See [`Inbox::accept`].
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// The fact it reports; at most one entry per key.
    pub key: DeliveryKey,
    /// Its business content, to tell a duplicate from a conflict.
    pub fingerprint: Fingerprint,
    /// The body as received (verified already).
    pub body: &'a [u8],
}

/// What [`Inbox::accept`] did with an entry.
///
/// # Example
///
/// See [`Inbox::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// A new entry, committed.
    New(EntryId),
    /// The key has an entry with the same content already (in any state): nothing written.
    Duplicate(EntryId),
    /// The key has an entry with other content: nothing written.
    Conflict(EntryId),
}

/// An entry a worker has taken, under a lease; the token of its operations.
///
/// # Example
///
/// See [`Inbox::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The entry.
    pub id: EntryId,
    /// Its fact.
    pub key: DeliveryKey,
    /// The body as accepted.
    pub body: Vec<u8>,
    /// Which run of the entry this is, from 1; also the lease's token: the inbox refuses
    /// [`renew`](Inbox::renew), [`succeed`](Inbox::succeed) and [`fail`](Inbox::fail) from an
    /// older run.
    pub attempt: u32,
    /// How long ago the entry was accepted, on the inbox's clock.
    pub age: Duration,
}

/// What becomes of a failed run.
///
/// # Example
///
/// See [`Inbox::fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Due again after this long.
    RetryAfter(Duration),
    /// Dead: kept for an operator.
    Dead,
}

/// One entry, as an operator sees it.
///
/// # Example
///
/// See [`Inbox::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// The entry.
    pub id: EntryId,
    /// Its fact.
    pub key: DeliveryKey,
    /// Its state.
    pub state: EntryState,
    /// How many times it was taken.
    pub attempts: u32,
    /// The last run's error (a handler's error text, or its panic's message).
    pub last_error: Option<String>,
    /// How long ago it was accepted.
    pub age: Duration,
    /// For a waiting entry, how long until it is due.
    pub due_in: Option<Duration>,
}

/// Where accepted callbacks wait for a worker. Implemented by [`SqliteInbox`] (feature
/// `sqlite`) and [`PgInbox`] (feature `postgres`); implement it for another database with the
/// same contract, atomically, on one clock (the database's, where it has one).
///
/// A clone of an inbox (all of them are cheap handles) is the same inbox.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use std::time::Duration;
/// use cregis_payout_callback::inbox::{Accepted, EntryState, Inbox, NewEntry, Next, SqliteInbox};
/// use cregis_payout_callback::idempotency::{DeliveryKey, Fact, Fingerprint};
/// use cregis_payout_callback::{CallbackKind, CallbackStatus};
///
/// let inbox = SqliteInbox::open_in_memory().await?;
/// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
/// let entry = NewEntry { key, fingerprint: Fingerprint::from_bytes([7; 16]), body: b"{}" };
/// let Accepted::New(id) = inbox.accept(&entry).await? else { unreachable!() };
/// assert_eq!(inbox.accept(&entry).await?, Accepted::Duplicate(id));
///
/// let taken = inbox.take(CallbackKind::Payout, Duration::from_secs(60)).await?.expect("due");
/// assert_eq!((taken.id, taken.attempt), (id, 1));
/// assert!(inbox.fail(&taken, "database is down", Next::RetryAfter(Duration::from_secs(1))).await?);
/// assert_eq!(inbox.list(&[EntryState::Waiting]).await?[0].last_error.as_deref(), Some("database is down"));
/// # Ok(())
/// # }
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub trait Inbox: Clone + Send + Sync + 'static {
    /// Records `entry` in one atomic write, unless its key has an entry already.
    ///
    /// # Errors
    ///
    /// The write failed: the entry is not recorded.
    fn accept(
        &self,
        entry: &NewEntry<'_>,
    ) -> impl Future<Output = Result<Accepted, BoxError>> + Send;

    /// Takes the entry of `kind` due longest (pending, a waiting one now due, or a running one
    /// whose lease lapsed), under a lease of `lease`, and counts the attempt; `None` if none is
    /// due. A [`Worker`] takes the entries of its handler's kind only.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn take(
        &self,
        kind: CallbackKind,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Taken>, BoxError>> + Send;

    /// Extends the lease of `taken` to `lease` from now. `false` if the run no longer holds the
    /// entry (its lease lapsed and another run took it, or an operator discarded it).
    ///
    /// # Errors
    ///
    /// The database failed.
    fn renew(
        &self,
        taken: &Taken,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Marks the entry done. `false` if the run no longer holds it.
    ///
    /// # Errors
    ///
    /// The database failed: the entry stays running until its lease lapses, then runs again.
    fn succeed(&self, taken: &Taken) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Records a failed run with its `error`, and what comes next. `false` if the run no longer
    /// holds the entry.
    ///
    /// # Errors
    ///
    /// The database failed: the entry stays running until its lease lapses, then runs again.
    fn fail(
        &self,
        taken: &Taken,
        error: &str,
        next: Next,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// The entries in any of `states`, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn list(
        &self,
        states: &[EntryState],
    ) -> impl Future<Output = Result<Vec<EntrySummary>, BoxError>> + Send;

    /// Makes a dead entry pending again, due now: it runs once more (its attempts are kept, so
    /// it is dead again if that run fails). `false` if `id` is not dead.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn replay(&self, id: EntryId) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// [`replay`](Inbox::replay)s every dead entry; returns how many. Once the cause is fixed
    /// (a downstream service back up), this sends them all round once more.
    ///
    /// # Errors
    ///
    /// The database failed; the entries replayed before the failure stay replayed.
    fn replay_dead(&self) -> impl Future<Output = Result<usize, BoxError>> + Send {
        async move {
            let mut replayed = 0;
            for entry in self.list(&[EntryState::Dead]).await? {
                if self.replay(entry.id).await? {
                    replayed += 1;
                }
            }
            Ok(replayed)
        }
    }

    /// News of entries accepted from now on, so that an idle [`Worker`] runs them at once
    /// rather than at its next poll. [`SqliteInbox`] announces what this process accepts;
    /// [`PgInbox`] what any instance accepts (`LISTEN`/`NOTIFY`). Defaults to
    /// [`Arrivals::none`]: the workers find new entries by polling.
    ///
    /// # Example
    ///
    /// See [`Announcer`].
    fn arrivals(&self) -> Arrivals {
        Arrivals::none()
    }

    /// Removes an entry that is not running (dead, usually), for `reason`, which the `tracing`
    /// event carries. A later delivery of its fact is then a new entry. `false` if `id` is
    /// unknown or running.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn discard(
        &self,
        id: EntryId,
        reason: &str,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;
}
