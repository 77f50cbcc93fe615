//! Exactly-once processing: claim a delivery before the handler runs, settle it after.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};

use crate::params::Params;
use crate::{CallbackStatus, PayoutCallback};

/// What identifies one fact Cregis reports: this payout (`pid`, `cid`) reached this status.
///
/// Deliveries with the same key carry the same fact, whatever their `nonce` and `timestamp`
/// (a re-push from the Cregis console may carry fresh ones), so handling one is enough.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackStatus, DeliveryKey};
///
/// let key = DeliveryKey { pid: 1, cid: 1391751691788288, status: CallbackStatus::TransactionSuccessful };
/// assert_eq!(key.to_string(), "1/1391751691788288/6");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    /// Project id.
    pub pid: i64,
    /// Cregis's id of the payout.
    pub cid: i64,
    /// The status the payout reached.
    pub status: CallbackStatus,
}

impl fmt::Display for DeliveryKey {
    /// `pid/cid/status-code`: a compact form for a database key or a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.pid, self.cid, self.status.code())
    }
}

impl PayoutCallback {
    /// The key that identifies the fact this callback reports (see [`DeliveryKey`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// // Payout 2 of project 1 succeeded (status 6).
    /// let callback = CallbackBuilder::new().pid(1).cid(2).callback()?;
    /// assert_eq!(callback.delivery_key().to_string(), "1/2/6");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn delivery_key(&self) -> DeliveryKey {
        DeliveryKey {
            pid: self.pid,
            cid: self.cid,
            status: self.status,
        }
    }
}

/// A digest of a delivery's business content: every signed field except `nonce`, `timestamp`
/// and `sign`, as signed (numbers as sent, strings decoded, `null` and `""` left out).
///
/// Two deliveries of the same fact (the same [`DeliveryKey`]) carry the same fingerprint, even
/// when re-pushed with a fresh `nonce` and `timestamp`. A different fingerprint under a known
/// key means Cregis reported the same fact with other content (another amount, address or
/// `txid`): [`Error::ConflictingDelivery`](crate::Error::ConflictingDelivery), never a silent
/// duplicate. It is 16 bytes, to store next to the key.
///
/// It covers unknown fields too, since they are signed business content. Should Cregis ever
/// add a field that changes on every push (as `nonce` and `timestamp` do), every re-push would
/// be a conflict: the 409s with [`ConflictingDelivery`](crate::Error::ConflictingDelivery)
/// would show it at once.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::Fingerprint;
///
/// let stored = Fingerprint::from_bytes([7; 16]);
/// assert_eq!(Fingerprint::from_bytes(*stored.as_bytes()), stored);
/// assert_eq!(stored.to_string(), "07070707070707070707070707070707");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// A fingerprint read back from storage.
    ///
    /// # Example
    ///
    /// See [`Fingerprint`].
    pub const fn from_bytes(bytes: [u8; 16]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The 16 bytes to store.
    ///
    /// # Example
    ///
    /// See [`Fingerprint`].
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The fingerprint of a verified body's parameters. Each key and value is length-prefixed,
    /// so that no two different contents hash the same text (unlike the signature's plain
    /// concatenation).
    pub(crate) fn of(params: &Params<'_>) -> Fingerprint {
        let mut md5 = Md5::new();
        for (key, text) in params.signed() {
            if key == "nonce" || key == "timestamp" {
                continue;
            }
            for part in [key, text] {
                md5.update((part.len() as u64).to_le_bytes());
                md5.update(part.as_bytes());
            }
        }
        Fingerprint(md5.finalize().into())
    }
}

impl fmt::Display for Fingerprint {
    /// Lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// How long a claim in progress holds off other deliveries of the same fact unless
/// [`Verifier::claim_lease`](crate::Verifier::claim_lease) says otherwise: 5 minutes.
///
/// Far longer than any handler should run (web servers give up on a request within a minute),
/// so a live claim is never taken over; short enough that a delivery whose handler panicked,
/// was cancelled or died with its process is handled by the next re-push an operator makes
/// once it has expired, instead of being refused forever.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(5 * 60);

/// One delivery's claim on its [`DeliveryKey`], as the verifier hands it to an idempotency
/// store: what to record, when, for how long, and under which id.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cregis_payout_callback::{Attempt, CallbackStatus, DeliveryKey, Fingerprint};
///
/// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionSuccessful };
/// let now = SystemTime::now();
/// let attempt = Attempt::new(key, Fingerprint::from_bytes([0; 16]), now, Duration::from_secs(60));
/// assert_eq!(attempt.lease_until(), now + Duration::from_secs(60));
/// assert_ne!(attempt.id, Attempt::new(key, attempt.fingerprint, now, attempt.lease).id);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The fact being delivered.
    pub key: DeliveryKey,
    /// The delivery's business content.
    pub fingerprint: Fingerprint,
    /// Identifies this attempt among all others, across processes: a release by an attempt
    /// whose lease was taken over must not free the claim of the one that took it.
    pub id: u64,
    /// When the attempt began (the verifier's clock).
    pub started: SystemTime,
    /// How long its claim holds off other deliveries of the same key.
    pub lease: Duration,
}

impl Attempt {
    /// A new attempt at delivering `key`, with a fresh random [`id`](Self::id).
    ///
    /// # Example
    ///
    /// See [`Attempt`].
    pub fn new(
        key: DeliveryKey,
        fingerprint: Fingerprint,
        started: SystemTime,
        lease: Duration,
    ) -> Attempt {
        Attempt {
            key,
            fingerprint,
            id: fresh_id(),
            started,
            lease,
        }
    }

    /// When the claim stops holding off other deliveries: [`started`](Self::started) plus
    /// [`lease`](Self::lease) (saturating far in the future).
    ///
    /// # Example
    ///
    /// See [`Attempt`].
    pub fn lease_until(&self) -> SystemTime {
        self.started
            .checked_add(self.lease)
            .unwrap_or_else(|| self.started + Duration::from_secs(u64::from(u32::MAX)))
    }
}

/// A random id: the standard library's random hash keys over a per-process counter.
fn fresh_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Claim {
    /// The delivery is new (or its key's earlier claim expired with the same content), and is
    /// now claimed by the caller, who must settle it with
    /// [`complete`](IdempotencyStore::complete) or [`release`](IdempotencyStore::release).
    Claimed,
    /// A delivery with this key and the same fingerprint was already handled: acknowledge it
    /// without handling it again.
    AlreadyDone,
    /// Another attempt with this key and the same fingerprint holds a live claim right now:
    /// do not handle it.
    InProgress,
    /// A delivery with this key but another fingerprint was handled, or is being handled:
    /// the same fact with other content. Do not handle it, and do not acknowledge it.
    Conflict,
}

/// A store's failure, of whatever type the store uses (a [`BoxError`](crate::BoxError)).
pub type StoreError = crate::BoxError;

/// Remembers which deliveries were handled, so that each is handled once.
///
/// [`Verifier::idempotency`](crate::Verifier::idempotency) wires a store into
/// [`process`](crate::Verifier::process) and
/// [`process_async`](crate::Verifier::process_async); for a store whose operations are async
/// (a database driver), implement [`AsyncIdempotencyStore`] instead. Verifier clones share
/// their store.
///
/// # The contract
///
/// A key is in one of four states; each operation does exactly this (the crate's tests check
/// every cell against [`MemoryIdempotencyStore`]):
///
/// | state of `attempt.key` | `claim(attempt)` | `complete(attempt)` | `release(attempt)` |
/// |---|---|---|---|
/// | unknown | records it in progress for `attempt` until [`lease_until`](Attempt::lease_until); [`Claimed`](Claim::Claimed) | records it done | nothing |
/// | in progress, lease live | same fingerprint: [`InProgress`](Claim::InProgress); other: [`Conflict`](Claim::Conflict) | records it done | frees it if `attempt` holds it, else nothing |
/// | in progress, lease expired (`started` > lease end) | same fingerprint: taken over by `attempt`, [`Claimed`](Claim::Claimed); other: [`Conflict`](Claim::Conflict) | records it done | frees it if `attempt` holds it, else nothing |
/// | done | same fingerprint: [`AlreadyDone`](Claim::AlreadyDone); other: [`Conflict`](Claim::Conflict) | nothing | nothing |
///
/// `complete` records done whoever holds the claim: it is called only after the handler
/// succeeded, so the effect happened. `release` frees only the caller's own claim, so an
/// attempt that outlived its lease cannot free the claim of the attempt that took it over.
/// `claim` must be atomic: of two concurrent claims of one key, at most one gets
/// [`Claimed`](Claim::Claimed).
///
/// What the verifier does with each outcome:
/// - `claim` fails: 500, and the handler is not called;
/// - the handler succeeds: `complete`; if that fails, the delivery is still acknowledged (the
///   effect happened) and the error is kept in [`Reply::error`](crate::Reply::error), but the
///   key stays in progress, and once its lease ends a re-push would run the handler again;
/// - the handler fails: `release`, so that a re-push is handled; a failing `release` is added
///   to the handler's error;
/// - the handler panics, or its future is dropped: nothing, so the claim holds off
///   re-deliveries until its lease ends (whether the effect happened is unknown).
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use cregis_payout_callback::{Attempt, Claim, DeliveryKey, Fingerprint, IdempotencyStore, StoreError};
///
/// /// Each key's fingerprint, and `Some(attempt id, lease end)` while in progress.
/// #[derive(Default)]
/// struct Claims(Mutex<HashMap<DeliveryKey, (Fingerprint, Option<(u64, std::time::SystemTime)>)>>);
///
/// impl IdempotencyStore for Claims {
///     fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> {
///         let mut claims = self.0.lock().unwrap();
///         let claim = match claims.get(&attempt.key) {
///             None => Claim::Claimed,
///             Some((fingerprint, _)) if *fingerprint != attempt.fingerprint => Claim::Conflict,
///             Some((_, None)) => Claim::AlreadyDone,
///             Some((_, Some((_, until)))) if attempt.started > *until => Claim::Claimed,
///             Some(_) => Claim::InProgress,
///         };
///         if claim == Claim::Claimed {
///             claims.insert(attempt.key, (attempt.fingerprint, Some((attempt.id, attempt.lease_until()))));
///         }
///         Ok(claim)
///     }
///     fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> {
///         let mut claims = self.0.lock().unwrap();
///         claims.entry(attempt.key).or_insert((attempt.fingerprint, None)).1 = None;
///         Ok(())
///     }
///     fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
///         let mut claims = self.0.lock().unwrap();
///         if matches!(claims.get(&attempt.key), Some((_, Some((id, _)))) if *id == attempt.id) {
///             claims.remove(&attempt.key);
///         }
///         Ok(())
///     }
/// }
/// # let _ = Claims::default();
/// ```
pub trait IdempotencyStore: Send + Sync {
    /// Atomically claims `attempt.key`, as the table above says.
    ///
    /// # Errors
    ///
    /// The store could not answer; the delivery is then refused (500) and not handled.
    fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError>;

    /// Records that the delivery of `attempt.key` was handled.
    ///
    /// # Errors
    ///
    /// The store could not record it. The handler already succeeded, so the delivery is still
    /// acknowledged; the error is kept in the [`Reply`](crate::Reply) for logging.
    fn complete(&self, attempt: &Attempt) -> Result<(), StoreError>;

    /// Gives up `attempt`'s own claim, so that a later delivery can be handled.
    ///
    /// # Errors
    ///
    /// The store could not release it; the error is added to the reply's cause.
    fn release(&self, attempt: &Attempt) -> Result<(), StoreError>;
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> {
        (**self).claim(attempt)
    }

    fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> {
        (**self).complete(attempt)
    }

    fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
        (**self).release(attempt)
    }
}

/// [`IdempotencyStore`] for stores whose operations are async, such as a table reached through
/// an async database driver: the same contract, awaited without blocking the executor.
///
/// Wire it in with [`Verifier::idempotency_async`](crate::Verifier::idempotency_async); it
/// serves [`process_async`](crate::Verifier::process_async) (a synchronous
/// [`process`](crate::Verifier::process) cannot await it, and answers 500). Its futures must be
/// `Send`, so that `process_async`'s future stays `Send`.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{AsyncIdempotencyStore, Attempt, Claim, MemoryIdempotencyStore, IdempotencyStore, StoreError};
///
/// /// Stands for a store behind an async driver (here, the memory store with a yield).
/// struct Remote(MemoryIdempotencyStore);
///
/// impl AsyncIdempotencyStore for Remote {
///     async fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> {
///         // e.g. INSERT .. ON CONFLICT DO UPDATE .. WHERE (lease expired) RETURNING ..
///         self.0.claim(attempt)
///     }
///     async fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> {
///         self.0.complete(attempt)
///     }
///     async fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
///         self.0.release(attempt)
///     }
/// }
/// # let _ = Remote(MemoryIdempotencyStore::default());
/// ```
pub trait AsyncIdempotencyStore: Send + Sync {
    /// Atomically claims `attempt.key`, as [`IdempotencyStore::claim`].
    ///
    /// # Errors
    ///
    /// As [`IdempotencyStore::claim`].
    fn claim(&self, attempt: &Attempt) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records that the delivery of `attempt.key` was handled, as
    /// [`IdempotencyStore::complete`].
    ///
    /// # Errors
    ///
    /// As [`IdempotencyStore::complete`].
    fn complete(&self, attempt: &Attempt) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives up `attempt`'s own claim, as [`IdempotencyStore::release`].
    ///
    /// # Errors
    ///
    /// As [`IdempotencyStore::release`].
    fn release(&self, attempt: &Attempt) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<S: AsyncIdempotencyStore + ?Sized> AsyncIdempotencyStore for Arc<S> {
    fn claim(&self, attempt: &Attempt) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        (**self).claim(attempt)
    }

    fn complete(&self, attempt: &Attempt) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).complete(attempt)
    }

    fn release(&self, attempt: &Attempt) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release(attempt)
    }
}

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// [`AsyncIdempotencyStore`] with boxed futures, so that a verifier can hold any of them.
pub(crate) trait DynAsyncStore: Send + Sync {
    fn claim<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, Claim>;
    fn complete<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, ()>;
    fn release<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, ()>;
}

impl<S: AsyncIdempotencyStore> DynAsyncStore for S {
    fn claim<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, Claim> {
        Box::pin(AsyncIdempotencyStore::claim(self, attempt))
    }

    fn complete<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, ()> {
        Box::pin(AsyncIdempotencyStore::complete(self, attempt))
    }

    fn release<'a>(&'a self, attempt: &'a Attempt) -> StoreFuture<'a, ()> {
        Box::pin(AsyncIdempotencyStore::release(self, attempt))
    }
}

/// The store a verifier uses: synchronous or async.
#[derive(Clone)]
pub(crate) enum Store {
    Sync(Arc<dyn IdempotencyStore>),
    Async(Arc<dyn DynAsyncStore>),
}

/// Why a synchronous `process` cannot use an async store.
const ASYNC_STORE_IN_SYNC_PROCESS: &str =
    "the idempotency store is async: call process_async, not process";

impl Store {
    pub(crate) fn of_sync(store: impl IdempotencyStore + 'static) -> Store {
        Store::Sync(Arc::new(store))
    }

    pub(crate) fn of_async(store: impl AsyncIdempotencyStore + 'static) -> Store {
        Store::Async(Arc::new(store))
    }

    pub(crate) fn is_async(&self) -> bool {
        matches!(self, Store::Async(_))
    }

    /// The synchronous store, or why there is none.
    pub(crate) fn blocking(&self) -> Result<&dyn IdempotencyStore, StoreError> {
        match self {
            Store::Sync(store) => Ok(&**store),
            Store::Async(_) => Err(ASYNC_STORE_IN_SYNC_PROCESS.into()),
        }
    }

    pub(crate) async fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> {
        match self {
            Store::Sync(store) => store.claim(attempt),
            Store::Async(store) => store.claim(attempt).await,
        }
    }

    pub(crate) async fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> {
        match self {
            Store::Sync(store) => store.complete(attempt),
            Store::Async(store) => store.complete(attempt).await,
        }
    }

    pub(crate) async fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
        match self {
            Store::Sync(store) => store.release(attempt),
            Store::Async(store) => store.release(attempt).await,
        }
    }
}

/// A claim in progress, as a store lists it for the host (see
/// [`MemoryIdempotencyStore::claims_in_progress`]).
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cregis_payout_callback::{Attempt, CallbackStatus, DeliveryKey, Fingerprint, IdempotencyStore, MemoryIdempotencyStore};
///
/// let store = MemoryIdempotencyStore::default();
/// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionSuccessful };
/// let started = SystemTime::now();
/// store.claim(&Attempt::new(key, Fingerprint::from_bytes([0; 16]), started, Duration::from_secs(300)))?;
///
/// let claims = store.claims_in_progress();
/// assert_eq!(claims[0].key, key);
/// assert_eq!(claims[0].age(started + Duration::from_secs(10)), Duration::from_secs(10));
/// assert!(!claims[0].is_expired(started + Duration::from_secs(300)));
/// assert!(claims[0].is_expired(started + Duration::from_secs(301)));
/// # Ok::<(), cregis_payout_callback::StoreError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimInProgress {
    /// The fact being handled.
    pub key: DeliveryKey,
    /// When the attempt holding it began.
    pub started: SystemTime,
    /// When its lease ends.
    pub lease_until: SystemTime,
}

impl ClaimInProgress {
    /// A claim as a store read it back: held on `key` since `started`, until `lease_until`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::{CallbackStatus, ClaimInProgress, DeliveryKey};
    ///
    /// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionFailed };
    /// let started = UNIX_EPOCH + Duration::from_millis(1687850657960);
    /// let claim = ClaimInProgress::new(key, started, started + Duration::from_secs(300));
    /// assert!(claim.is_expired(started + Duration::from_secs(301)));
    /// ```
    pub fn new(key: DeliveryKey, started: SystemTime, lease_until: SystemTime) -> ClaimInProgress {
        ClaimInProgress {
            key,
            started,
            lease_until,
        }
    }

    /// How long the claim has been held at `now` (zero if `now` is earlier).
    ///
    /// # Example
    ///
    /// See [`ClaimInProgress`].
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.started).unwrap_or_default()
    }

    /// Whether its lease has ended at `now`, so that the next delivery of its key takes it
    /// over.
    ///
    /// # Example
    ///
    /// See [`ClaimInProgress`].
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now > self.lease_until
    }
}

/// An in-process [`IdempotencyStore`]: thread-safe, bounded, forgotten on restart.
///
/// It keeps up to `capacity` deliveries; when full, it forgets the oldest handled one. A
/// claim while every entry is in progress with a live lease fails (and the delivery is
/// answered 500), so memory stays bounded whatever arrives.
///
/// It protects one process. A service with several instances, or one that must not handle a
/// payout again after a restart, needs a shared, durable store (a database table).
///
/// Keep an `Arc` of it to see and settle stuck claims:
/// [`claims_in_progress`](Self::claims_in_progress) and [`release_claim`](Self::release_claim).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use cregis_payout_callback::{Attempt, CallbackStatus, Claim, DeliveryKey, Fingerprint, IdempotencyStore, MemoryIdempotencyStore, Verifier};
///
/// let store = Arc::new(MemoryIdempotencyStore::new(10_000));
/// let verifier = Verifier::new("fake-api-key-for-docs")?.idempotency(Arc::clone(&store));
///
/// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionSuccessful };
/// let attempt = Attempt::new(key, Fingerprint::from_bytes([0; 16]), SystemTime::now(), Duration::from_secs(300));
/// assert_eq!(store.claim(&attempt)?, Claim::Claimed);
/// assert_eq!(store.claim(&Attempt::new(key, attempt.fingerprint, SystemTime::now(), attempt.lease))?, Claim::InProgress);
/// store.complete(&attempt)?;
/// assert_eq!(store.claim(&attempt)?, Claim::AlreadyDone);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct MemoryIdempotencyStore {
    capacity: usize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<DeliveryKey, Entry>,
    /// Handled keys, oldest first: the order in which they are forgotten.
    done_order: VecDeque<DeliveryKey>,
    /// Keys claimed and not settled: few at a time, so an expired one is found quickly.
    in_progress: HashSet<DeliveryKey>,
}

struct Entry {
    fingerprint: Fingerprint,
    /// `None` once handled.
    holder: Option<Holder>,
}

/// The attempt holding a claim in progress.
#[derive(Clone, Copy)]
struct Holder {
    id: u64,
    started: SystemTime,
    lease_until: SystemTime,
}

/// How many deliveries a [`MemoryIdempotencyStore`] remembers by default.
pub const DEFAULT_MEMORY_STORE_CAPACITY: usize = 100_000;

impl MemoryIdempotencyStore {
    /// A store remembering up to `capacity` deliveries (at least one).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::MemoryIdempotencyStore;
    ///
    /// let store = MemoryIdempotencyStore::new(50_000);
    /// assert_eq!(store.capacity(), 50_000);
    /// ```
    pub fn new(capacity: usize) -> MemoryIdempotencyStore {
        MemoryIdempotencyStore {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    /// How many deliveries it remembers at most.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::MemoryIdempotencyStore;
    ///
    /// assert_eq!(MemoryIdempotencyStore::default().capacity(), 100_000);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every claim in progress (its lease live or expired), oldest first: the deliveries whose
    /// handler is running, or panicked, or was cancelled.
    ///
    /// # Example
    ///
    /// See [`ClaimInProgress`].
    pub fn claims_in_progress(&self) -> Vec<ClaimInProgress> {
        let state = self.state();
        let mut claims: Vec<ClaimInProgress> = state
            .in_progress
            .iter()
            .filter_map(|key| {
                let holder = state.entries.get(key)?.holder?;
                Some(ClaimInProgress::new(
                    *key,
                    holder.started,
                    holder.lease_until,
                ))
            })
            .collect();
        claims.sort_by_key(|claim| claim.started);
        claims
    }

    /// Frees the claim in progress on `key`, whoever holds it, so that the next delivery is
    /// handled; returns whether there was one. For a host that checked that the effect did
    /// not happen (a handler that panicked before writing, say) and does not want to wait for
    /// the lease to end. A key already handled is left alone.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use cregis_payout_callback::{Attempt, CallbackStatus, Claim, DeliveryKey, Fingerprint, IdempotencyStore, MemoryIdempotencyStore};
    ///
    /// let store = MemoryIdempotencyStore::default();
    /// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionSuccessful };
    /// let attempt = Attempt::new(key, Fingerprint::from_bytes([0; 16]), SystemTime::now(), Duration::from_secs(300));
    /// store.claim(&attempt)?;
    /// assert!(store.release_claim(&key));
    /// assert!(!store.release_claim(&key));
    /// assert_eq!(store.claim(&attempt)?, Claim::Claimed);
    /// # Ok::<(), cregis_payout_callback::StoreError>(())
    /// ```
    pub fn release_claim(&self, key: &DeliveryKey) -> bool {
        let mut state = self.state();
        let in_progress = state
            .entries
            .get(key)
            .is_some_and(|entry| entry.holder.is_some());
        if in_progress {
            state.entries.remove(key);
            state.in_progress.remove(key);
        }
        in_progress
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // The state stays consistent at every step, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryState {
    /// Makes room for one more entry: frees the slot of a claim whose lease ended before
    /// `now` (its delivery would be taken over anyway), else forgets the oldest handled key
    /// (a re-push of it would then be handled again).
    fn make_room(&mut self, now: SystemTime) -> Result<(), StoreError> {
        let expired = self.in_progress.iter().copied().find(|key| {
            self.entries
                .get(key)
                .and_then(|entry| entry.holder)
                .is_some_and(|holder| now > holder.lease_until)
        });
        if let Some(key) = expired {
            self.entries.remove(&key);
            self.in_progress.remove(&key);
            return Ok(());
        }
        match self.done_order.pop_front() {
            Some(oldest) => {
                self.entries.remove(&oldest);
                Ok(())
            }
            None => Err("memory idempotency store is full of deliveries in progress".into()),
        }
    }
}

impl Default for MemoryIdempotencyStore {
    /// A store remembering [`DEFAULT_MEMORY_STORE_CAPACITY`] deliveries.
    fn default() -> Self {
        MemoryIdempotencyStore::new(DEFAULT_MEMORY_STORE_CAPACITY)
    }
}

impl fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .field("capacity", &self.capacity)
            .field("len", &self.state().entries.len())
            .finish_non_exhaustive()
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> {
        let mut state = self.state();
        if let Some(entry) = state.entries.get(&attempt.key) {
            if entry.fingerprint != attempt.fingerprint {
                return Ok(Claim::Conflict);
            }
            match entry.holder {
                None => return Ok(Claim::AlreadyDone),
                Some(holder) if attempt.started <= holder.lease_until => {
                    return Ok(Claim::InProgress);
                }
                // The lease has ended: taken over below.
                Some(_) => {}
            }
        } else if state.entries.len() >= self.capacity {
            state.make_room(attempt.started)?;
        }
        state.in_progress.insert(attempt.key);
        state.entries.insert(
            attempt.key,
            Entry {
                fingerprint: attempt.fingerprint,
                holder: Some(Holder {
                    id: attempt.id,
                    started: attempt.started,
                    lease_until: attempt.lease_until(),
                }),
            },
        );
        Ok(Claim::Claimed)
    }

    fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let newly_done = if let Some(entry) = state.entries.get_mut(&attempt.key) {
            state.in_progress.remove(&attempt.key);
            entry.holder.take().is_some()
        } else {
            // Completing a key that is not claimed (the host released it meanwhile, say)
            // still records it: the effect happened. Room is made as for a claim; if every
            // entry is a live claim, the store holds one more than its capacity until a claim
            // is settled.
            if state.entries.len() >= self.capacity {
                let _ = state.make_room(attempt.started);
            }
            state.entries.insert(
                attempt.key,
                Entry {
                    fingerprint: attempt.fingerprint,
                    holder: None,
                },
            );
            true
        };
        if newly_done {
            state.done_order.push_back(attempt.key);
        }
        Ok(())
    }

    fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let mut state = self.state();
        let holds_it = state
            .entries
            .get(&attempt.key)
            .and_then(|entry| entry.holder)
            .is_some_and(|holder| holder.id == attempt.id);
        if holds_it {
            state.entries.remove(&attempt.key);
            state.in_progress.remove(&attempt.key);
        }
        Ok(())
    }
}
