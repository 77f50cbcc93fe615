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
//!    [`DeliveryKey`] and [`Fingerprint`](crate::idempotency::Fingerprint)) in one atomic write, and answers `success` only once
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
#![doc = include_str!("../docs/inbox-guarantees.md")]
//!
//! # The defaults
//!
//! | default | value | why |
//! |---|---|---|
//! | [`DEFAULT_DEADLINE`] | 60 s | River's job timeout; a handler within its own timeouts finishes well within it |
//! | [`DEFAULT_IN_TRANSACTION_DEADLINE`] | 2 s | a transaction of a few statements takes milliseconds; this bounds what a stuck one costs an accept |
//! | [`DEFAULT_LEASE`] | 60 s | renewed every 20 s; a dead worker's entries run again a minute later |
//! | [`DEFAULT_SHUTDOWN_DEADLINE`] | 20 s | inside the 30 s an orchestrator waits before it kills the process |
//! | [`DEFAULT_RETENTION`] | 30 days | covers a month of console re-pushes; later, a re-push runs again |
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
//! | [`Running`](EntryState::Running) | a worker holds its lease | done, waiting, dead; pending again if the lease lapses or an operator [`release`](Inbox::release)s it (counted as interrupted) |
//! | [`Waiting`](EntryState::Waiting) | failed, its retry is due later | pending when due |
//! | [`Done`](EntryState::Done) | the handler succeeded | deleted after the [retention](Worker::retention) (until then, later deliveries are duplicates) |
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
//!
#![doc = include_str!("../docs/inbox-operating.md")]

mod accept;
mod arrivals;
pub mod backend;
mod policy;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod worker;

use std::fmt;
use std::future::Future;
use std::time::Duration;

// The backend author's items, where 0.2 had them.
#[doc(hidden)]
pub use backend::{
    Accepted, AfterFailure, Announcer, Arrivals, Job, JobError, NewEntry, Ran, Taken,
};
pub use policy::{DEFAULT_MAX_AGE, DEFAULT_MAX_ATTEMPTS, RetryPolicy};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgHandler, PgInbox};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteHandler, SqliteInbox};
pub use worker::{
    AtLeastOnce, DEFAULT_DEADLINE, DEFAULT_IN_TRANSACTION_DEADLINE, DEFAULT_LEASE,
    DEFAULT_POLL_INTERVAL, DEFAULT_RETENTION, DEFAULT_SHUTDOWN_DEADLINE, InTransaction, Worker,
};

use crate::CallbackKind;
use crate::error::BoxError;
use crate::idempotency::DeliveryKey;

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

impl EntryState {
    /// Every state, in the order an entry goes through them (the backends' listings and the
    /// console read them; the `inbox` feature alone has neither).
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres", feature = "admin")),
        allow(dead_code)
    )]
    pub(crate) const ALL: [EntryState; 5] = [
        EntryState::Pending,
        EntryState::Running,
        EntryState::Waiting,
        EntryState::Done,
        EntryState::Dead,
    ];

    /// The state's name, as `Display` writes it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Running => "running",
            EntryState::Waiting => "waiting",
            EntryState::Done => "done",
            EntryState::Dead => "dead",
        }
    }
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
    /// Who made the delivery: Cregis, or the [reconciler](crate::reconcile).
    pub origin: crate::Origin,
}

/// Which entries [`Inbox::page`] lists: those in any of `states` (all if empty), of `kind`
/// (any if `None`), with an id above `after`, at most `limit` of them (at most
/// [`Listing::MAX_LIMIT`]), by id.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::CallbackKind;
/// use cregis_payout_callback::inbox::{EntryId, EntryState, Listing};
///
/// let listing = Listing::new(&[EntryState::Dead]).kind(CallbackKind::Payout).after(EntryId(41)).limit(50);
/// assert_eq!((listing.states.as_slice(), listing.after, listing.limit), (&[EntryState::Dead][..], Some(EntryId(41)), 50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// The states listed; all of them if empty.
    pub states: Vec<EntryState>,
    /// The kind listed; every kind if `None`.
    pub kind: Option<CallbackKind>,
    /// The cursor: only entries with a greater id (the previous page's [`Page::next`]).
    pub after: Option<EntryId>,
    /// The most entries on the page, from 1 to [`Listing::MAX_LIMIT`].
    pub limit: usize,
}

impl Listing {
    /// The most entries one page holds.
    pub const MAX_LIMIT: usize = 1000;

    /// The first 100 entries in any of `states` (all if empty), of any kind.
    ///
    /// # Example
    ///
    /// See [`Listing`].
    pub fn new(states: &[EntryState]) -> Listing {
        Listing {
            states: states.to_vec(),
            kind: None,
            after: None,
            limit: 100,
        }
    }

    /// Only the entries of `kind`.
    ///
    /// # Example
    ///
    /// See [`Listing`].
    #[must_use]
    pub fn kind(mut self, kind: CallbackKind) -> Listing {
        self.kind = Some(kind);
        self
    }

    /// Only the entries after `id` (the previous page's [`Page::next`]).
    ///
    /// # Example
    ///
    /// See [`Listing`].
    #[must_use]
    pub fn after(mut self, id: EntryId) -> Listing {
        self.after = Some(id);
        self
    }

    /// At most `limit` entries, saturating to 1 ..= [`Listing::MAX_LIMIT`].
    ///
    /// # Example
    ///
    /// See [`Listing`].
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Listing {
        self.limit = limit.clamp(1, Listing::MAX_LIMIT);
        self
    }
}

/// One page of [`Inbox::page`].
///
/// # Example
///
/// See [`Inbox::page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, by id.
    pub entries: Vec<EntrySummary>,
    /// The cursor of the next page ([`Listing::after`]); `None` on the last page.
    pub next: Option<EntryId>,
}

/// How many entries of one kind are in one state, from [`Inbox::counts`].
///
/// # Example
///
/// See [`Inbox::counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// The entries' kind.
    pub kind: CallbackKind,
    /// Their state.
    pub state: EntryState,
    /// How many there are.
    pub entries: u64,
    /// How long ago the oldest of them was accepted.
    pub oldest: Duration,
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
/// use cregis_payout_callback::inbox::backend::{Accepted, NewEntry, AfterFailure};
/// use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
/// use cregis_payout_callback::idempotency::{DeliveryKey, Fact, Fingerprint};
/// use cregis_payout_callback::{CallbackKind, CallbackStatus, Origin};
///
/// let inbox = SqliteInbox::open_in_memory().await?;
/// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
/// let fingerprint = Fingerprint::from_bytes([7; 16]);
/// let entry = NewEntry { key, fingerprint, body: b"{}", origin: Origin::Cregis };
/// let Accepted::New(id) = inbox.accept(&entry).await? else { unreachable!() };
/// assert_eq!(inbox.accept(&entry).await?, Accepted::Duplicate(id));
///
/// let taken = inbox.take(CallbackKind::Payout, Duration::from_secs(60)).await?.expect("due");
/// assert_eq!((taken.id, taken.attempt), (id, 1));
/// assert!(inbox.fail(&taken, "database is down", AfterFailure::RetryAfter(Duration::from_secs(1))).await?);
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

    /// Takes up to `n` entries of `kind` due longest, as [`take`](Inbox::take) does each,
    /// in one statement where the backend can ([`SqliteInbox`] and [`PgInbox`] do); fewer, or
    /// none, if fewer are due. A [`Worker`] takes as many as it has handlers free. Defaults to
    /// `take` `n` times.
    ///
    /// # Errors
    ///
    /// The database failed: none was taken.
    fn take_many(
        &self,
        kind: CallbackKind,
        lease: Duration,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Taken>, BoxError>> + Send {
        async move {
            let mut taken = Vec::new();
            while taken.len() < n {
                match self.take(kind, lease).await? {
                    Some(entry) => taken.push(entry),
                    None => break,
                }
            }
            Ok(taken)
        }
    }

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
        next: AfterFailure,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// One page of the entries `listing` asks for, by id, read on an index: its cost does not
    /// grow with the entries it does not list (the done ones, usually).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::{EntryState, Inbox, Listing, SqliteInbox};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let mut listing = Listing::new(&[EntryState::Dead]).limit(100);
    /// loop {
    ///     let page = inbox.page(&listing).await?;
    ///     for dead in &page.entries {
    ///         println!("{}: {}", dead.key, dead.last_error.as_deref().unwrap_or(""));
    ///     }
    ///     match page.next {
    ///         Some(next) => listing = listing.after(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed.
    fn page(&self, listing: &Listing) -> impl Future<Output = Result<Page, BoxError>> + Send;

    /// Every entry in any of `states`, by id (page after page of [`page`](Inbox::page)).
    ///
    /// # Errors
    ///
    /// The database failed.
    fn list(
        &self,
        states: &[EntryState],
    ) -> impl Future<Output = Result<Vec<EntrySummary>, BoxError>> + Send {
        async move {
            let mut listing = Listing::new(states).limit(Listing::MAX_LIMIT);
            let mut entries = Vec::new();
            loop {
                let page = self.page(&listing).await?;
                entries.extend(page.entries);
                match page.next {
                    Some(next) => listing = listing.after(next),
                    None => return Ok(entries),
                }
            }
        }
    }

    /// How many entries there are in each state, per kind (the states with none left out),
    /// in one query.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let dead: u64 = inbox.counts().await?.iter()
    ///     .filter(|count| count.state == EntryState::Dead)
    ///     .map(|count| count.entries)
    ///     .sum();
    /// assert_eq!(dead, 0);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed.
    fn counts(&self) -> impl Future<Output = Result<Vec<Count>, BoxError>> + Send;

    /// One entry by its id, in any state; `None` if there is none (it was discarded, or
    /// pruned once done). One page of [`page`](Inbox::page).
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::{EntryId, Inbox, SqliteInbox};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// assert_eq!(inbox.entry(EntryId(7)).await?, None);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed.
    fn entry(
        &self,
        id: EntryId,
    ) -> impl Future<Output = Result<Option<EntrySummary>, BoxError>> + Send {
        async move {
            let listing = Listing::new(&[])
                .after(EntryId(id.0.saturating_sub(1)))
                .limit(1);
            let page = self.page(&listing).await?;
            Ok(page.entries.into_iter().find(|entry| entry.id == id))
        }
    }

    /// The bodies of the entries `ids` that are still there, as they were accepted (verified
    /// then), in any order: what an operator reads of each fact beyond its key (its
    /// `third_party_id`, `amount`, `memo`). [`SqliteInbox`] and [`PgInbox`] read them in one
    /// query; the default reads none, so that a custom backend without it still lists its
    /// entries by key.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::backend::{Accepted, NewEntry};
    /// use cregis_payout_callback::inbox::{Inbox, SqliteInbox};
    /// use cregis_payout_callback::idempotency::{DeliveryKey, Fact, Fingerprint};
    /// use cregis_payout_callback::{CallbackKind, CallbackStatus, Origin};
    ///
    /// let inbox = SqliteInbox::open_in_memory().await?;
    /// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
    /// let entry = NewEntry { key, fingerprint: Fingerprint::from_bytes([7; 16]), body: br#"{"cid":2}"#, origin: Origin::Cregis };
    /// let Accepted::New(id) = inbox.accept(&entry).await? else { unreachable!() };
    /// assert_eq!(inbox.bodies(&[id]).await?, vec![(id, br#"{"cid":2}"#.to_vec())]);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The database failed.
    fn bodies(
        &self,
        ids: &[EntryId],
    ) -> impl Future<Output = Result<Vec<(EntryId, Vec<u8>)>, BoxError>> + Send {
        let _ = ids;
        async { Ok(Vec::new()) }
    }

    /// Makes a dead entry pending again, due now: it runs once more (its attempts are kept, so
    /// it is dead again if that run fails). `false` if `id` is not dead.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn replay(&self, id: EntryId) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// [`replay`](Inbox::replay)s every dead entry, in one statement; returns how many. Once
    /// the cause is fixed (a downstream service back up), this sends them all round once more.
    ///
    /// # Errors
    ///
    /// The database failed: none was replayed.
    fn replay_dead(&self) -> impl Future<Output = Result<usize, BoxError>> + Send;

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
    /// unknown or running ([`release`](Inbox::release) it first if its worker is gone).
    ///
    /// # Errors
    ///
    /// The database failed.
    fn discard(
        &self,
        id: EntryId,
        reason: &str,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Releases a running entry whose worker is gone (its process hung, or was stopped
    /// before it could say so), for `reason`, kept as its last error: the entry is pending and
    /// due now, the run counts as interrupted ([`Taken::interrupted_runs`]), and the run that
    /// held it can no longer renew or settle it. `false` if `id` is not running.
    ///
    /// # Errors
    ///
    /// The database failed.
    fn release(
        &self,
        id: EntryId,
        reason: &str,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Deletes up to `limit` done entries of `kind` that finished more than `older_than` ago,
    /// oldest first; returns how many. A [`Worker`] calls it on its kind every minute
    /// ([`Worker::retention`]). Dead entries are never deleted by it. A fact delivered again
    /// after its entry is deleted is a new entry, and runs again.
    ///
    /// # Errors
    ///
    /// The database failed; the entries deleted before the failure stay deleted.
    fn prune(
        &self,
        kind: CallbackKind,
        older_than: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<usize, BoxError>> + Send;
}

/// Aborts its task when dropped: a task that must not outlive what started it.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
