//! Exactly-once processing: claim a delivery before the handler runs, settle it after.
//!
//! A [`Verifier`](crate::Verifier) built with
//! [`idempotency`](crate::verifier::VerifierBuilder::idempotency) claims each delivery's
//! [`DeliveryKey`] in a store before its handler runs, so that each fact is handled once
//! however often it is delivered. [`IdempotencyStore`] and [`AsyncIdempotencyStore`] say what
//! a store does; [`MemoryIdempotencyStore`] is one for a single process.
//!
//! Which store goes with which call is checked by the compiler: a synchronous
//! [`process`](crate::Verifier::process) needs an [`IdempotencyStore`], and
//! [`process_async`](crate::Verifier::process_async) an [`AsyncIdempotencyStore`].
//! [`MemoryIdempotencyStore`] is both; a blocking store (a synchronous database driver) goes
//! to `process_async` through [`SpawnBlocking`] (features `axum` or `actix-web`), so that it
//! never blocks the executor.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cregis_payout_callback::{ApiKey, Verifier, idempotency::MemoryIdempotencyStore};
//!
//! let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
//!     .idempotency(MemoryIdempotencyStore::default())
//!     .build();
//! assert!(verifier.store().claims_in_progress().is_empty());
//! # Ok::<(), cregis_payout_callback::error::KeyError>(())
//! ```
//!
#![doc = include_str!("../docs/exactly-once.md")]

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};

use crate::Callback;
use crate::error::BoxError;
use crate::wire::{KNOWN, Params};
use crate::{CallbackKind, CallbackStatus};

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod slot;
#[cfg(feature = "http")]
mod spawn_blocking;

pub use memory::{ClaimInProgress, DEFAULT_MEMORY_STORE_CAPACITY, MemoryIdempotencyStore};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PgIdempotencyStore;
pub use slot::{AsyncStoreSlot, NoStore, Store, SyncStoreSlot};
#[cfg(feature = "http")]
pub use spawn_blocking::SpawnBlocking;

/// What identifies one fact Cregis reports: this kind's payout (`pid`, `cid`) reached this
/// status, or, for an approval, was approved or denied.
///
/// Deliveries with the same key carry the same fact, whatever their `nonce` and `timestamp`
/// (a re-push from the Cregis console may carry fresh ones), so handling one is enough. Each
/// [`CallbackKind`] has its own keys: a wallet payout and a sub-address payout with the same
/// `cid` never collide.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackKind, CallbackStatus};
/// use cregis_payout_callback::idempotency::{DeliveryKey, Fact};
///
/// let key = DeliveryKey::new(
///     CallbackKind::Payout,
///     1,
///     1391751691788288,
///     Fact::Status(CallbackStatus::TransactionSuccessful),
/// );
/// assert_eq!(key.to_string(), "payout/1/1391751691788288/6");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeliveryKey {
    /// Which kind of callback reported the fact.
    pub kind: CallbackKind,
    /// Project id.
    pub pid: i64,
    /// Cregis's id of the payout.
    pub cid: i64,
    /// What happened to the payout.
    pub fact: Fact,
}

impl DeliveryKey {
    /// The key of `fact` about payout `cid` of project `pid`, reported by a callback of `kind`.
    ///
    /// # Example
    ///
    /// See [`DeliveryKey`].
    pub const fn new(kind: CallbackKind, pid: i64, cid: i64, fact: Fact) -> DeliveryKey {
        DeliveryKey {
            kind,
            pid,
            cid,
            fact,
        }
    }

    /// If this key reports a final status, the keys of the payout's other final statuses
    /// (which exclude it); else none.
    pub(crate) fn other_finals(self) -> impl Iterator<Item = DeliveryKey> {
        let ours = self.fact.status().filter(|status| status.is_final());
        CallbackStatus::ALL
            .iter()
            .copied()
            .filter(move |status| ours.is_some_and(|ours| status.is_final() && *status != ours))
            .map(move |status| DeliveryKey {
                fact: Fact::Status(status),
                ..self
            })
    }
}

impl DeliveryKey {
    /// A key read back from the columns a store keeps it in: the kind's name, `pid`, `cid`
    /// and the fact's code.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn from_columns(
        kind: &str,
        pid: i64,
        cid: i64,
        code: i64,
    ) -> Result<DeliveryKey, BoxError> {
        let kind: CallbackKind = kind.parse()?;
        let fact = i32::try_from(code)
            .ok()
            .and_then(|code| Fact::from_code(kind, code))
            .ok_or_else(|| format!("{code} is not a fact of a {kind} callback"))?;
        Ok(DeliveryKey::new(kind, pid, cid, fact))
    }
}

impl fmt::Display for DeliveryKey {
    /// `kind/pid/cid/fact`: a compact form for a database key or a log line (`fact` is the
    /// status code, or `ok` / `deny` for an approval).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.kind, self.pid, self.cid, self.fact)
    }
}

/// The fact a [`DeliveryKey`] names: the status a payout reached, or an approval's decision.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackKind, CallbackStatus, idempotency::Fact};
///
/// let fact = Fact::Status(CallbackStatus::TransactionFailed);
/// assert_eq!(fact.code(), 7);
/// assert_eq!(Fact::from_code(CallbackKind::Payout, 7), Some(fact));
/// assert_eq!(Fact::from_code(CallbackKind::Approval, 1), Some(Fact::Approved));
/// assert_eq!(Fact::Denied.to_string(), "deny");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fact {
    /// A payout or sub-address payout reached this status.
    Status(CallbackStatus),
    /// The host approved the payout (answered `ok`).
    Approved,
    /// The host denied the payout (answered `deny`).
    Denied,
}

impl Fact {
    /// A small integer to store: the status code, or 1 for approved and 0 for denied (the
    /// key's kind tells which).
    ///
    /// # Example
    ///
    /// See [`Fact`].
    pub const fn code(self) -> i32 {
        match self {
            Fact::Status(status) => status.code(),
            Fact::Approved => 1,
            Fact::Denied => 0,
        }
    }

    /// The fact stored as `code` for a key of `kind`, or `None` if `code` is not one.
    ///
    /// # Example
    ///
    /// See [`Fact`].
    pub fn from_code(kind: CallbackKind, code: i32) -> Option<Fact> {
        match (kind, code) {
            (CallbackKind::Approval, 1) => Some(Fact::Approved),
            (CallbackKind::Approval, 0) => Some(Fact::Denied),
            (CallbackKind::Approval, _) => None,
            (_, code) => CallbackStatus::try_from(code).ok().map(Fact::Status),
        }
    }

    /// The status, for a fact that is one.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, idempotency::Fact};
    ///
    /// assert_eq!(Fact::Status(CallbackStatus::TransactionFailed).status(), Some(CallbackStatus::TransactionFailed));
    /// assert_eq!(Fact::Approved.status(), None);
    /// ```
    pub const fn status(self) -> Option<CallbackStatus> {
        match self {
            Fact::Status(status) => Some(status),
            Fact::Approved | Fact::Denied => None,
        }
    }
}

impl fmt::Display for Fact {
    /// The status code, or `ok` / `deny`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fact::Status(status) => write!(f, "{}", status.code()),
            Fact::Approved => f.write_str("ok"),
            Fact::Denied => f.write_str("deny"),
        }
    }
}

/// A digest of a delivery's business content: every field its kind documents except
/// `nonce`, `timestamp` and `sign`, as signed (numbers as sent, strings decoded, `null` and
/// `""` left out, a `block_time` of `0` read as none, as for a rejection, and the amount by
/// the number it denotes: [`same_amount`](crate::same_amount)).
///
/// Two deliveries of the same fact (the same [`DeliveryKey`]) carry the same fingerprint, even
/// when re-pushed with a fresh `nonce` and `timestamp`. A different fingerprint under a known
/// key means Cregis reported the same fact with other content (another amount, address or
/// `txid`): [`Error::ConflictingDelivery`](crate::Error::ConflictingDelivery), never a silent
/// duplicate. It is 16 bytes, to store next to the key.
///
/// Fields the kind does not document (a `network_fee` Cregis adds one day) are signed, and
/// kept in the model's `extra`, but not fingerprinted: the reconciler delivers a fact from
/// Cregis's query, which returns only the documented fields, and the callback that arrives
/// after it must still be a duplicate, not a conflict.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::idempotency::Fingerprint;
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
    pub(crate) fn of<C: Callback>(params: &Params<'_>) -> Fingerprint {
        use crate::wire::known as k;
        let mut md5 = Md5::new();
        let mut places = C::DOCUMENTED_PLACES & !(1 << k::NONCE | 1 << k::TIMESTAMP | 1 << k::SIGN);
        while places != 0 {
            let place = places.trailing_zeros() as usize;
            places &= places - 1;
            let text = params.signed_text(place);
            if text.is_empty() || (place == k::BLOCK_TIME && text == "0") {
                continue;
            }
            let text = if place == k::AMOUNT {
                crate::callback::canonical_amount(text)
            } else {
                Cow::Borrowed(text)
            };
            for part in [KNOWN[place], &text] {
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
/// [`VerifierBuilder::claim_lease`](crate::verifier::VerifierBuilder::claim_lease) says
/// otherwise: 5 minutes.
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
/// use cregis_payout_callback::{CallbackKind, CallbackStatus};
/// use cregis_payout_callback::idempotency::{Attempt, DeliveryKey, Fact, Fingerprint};
///
/// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
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
    /// The delivery is new, and is now claimed by the caller, who must settle it with
    /// [`complete`](IdempotencyStore::complete) or [`release`](IdempotencyStore::release).
    Claimed,
    /// An earlier attempt with the same content held the key, but its lease has ended: the
    /// claim is now the caller's, to settle as after [`Claimed`](Claim::Claimed). The earlier
    /// attempt's handler panicked, was cancelled or died with its process, so whether its
    /// effect happened is unknown: the handler runs again, and must be idempotent.
    TakenOver,
    /// A delivery with this key and the same fingerprint was already handled: acknowledge it
    /// without handling it again.
    AlreadyDone,
    /// Another attempt with this key and the same fingerprint holds a live claim right now:
    /// do not handle it.
    InProgress,
    /// A delivery with this key but another fingerprint was handled, or is being handled:
    /// the same fact with other content. Do not handle it, and do not acknowledge it.
    Conflict,
    /// The key reports a final status, and the store holds another final status of the same
    /// payout (Cregis's final statuses exclude each other): do not handle it, and do not
    /// acknowledge it ([`Error::ConflictingFinalStatus`](crate::Error::ConflictingFinalStatus)).
    OtherFinal {
        /// The final status recorded first.
        recorded: CallbackStatus,
    },
}

/// Remembers which deliveries were handled, so that each is handled once.
///
/// [`VerifierBuilder::idempotency`](crate::verifier::VerifierBuilder::idempotency) wires a
/// store into [`process`](crate::Verifier::process); for a store whose operations are async
/// (a database driver), implement [`AsyncIdempotencyStore`] instead, for
/// [`process_async`](crate::Verifier::process_async). Verifier clones share
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
/// | in progress, lease expired (`started` > lease end) | same fingerprint: taken over by `attempt`, [`TakenOver`](Claim::TakenOver); other: [`Conflict`](Claim::Conflict) | records it done | frees it if `attempt` holds it, else nothing |
/// | done | same fingerprint: [`AlreadyDone`](Claim::AlreadyDone); other: [`Conflict`](Claim::Conflict) | nothing | nothing |
///
/// `complete` records done whoever holds the claim: it is called only after the handler
/// succeeded, so the effect happened. `release` frees only the caller's own claim, so an
/// attempt that outlived its lease cannot free the claim of the attempt that took it over.
/// `claim` must be atomic: of two concurrent claims of one key, at most one gets
/// [`Claimed`](Claim::Claimed) or [`TakenOver`](Claim::TakenOver).
///
/// A key's state is its own, with one exception: Cregis's final statuses
/// ([`CallbackStatus::is_final`]) exclude each other, so a claim of a final status whose
/// payout (`kind`, `pid`, `cid`) holds another final status, in any state, is answered
/// [`OtherFinal`](Claim::OtherFinal) and records nothing, atomically too. Both stores of the
/// crate do; a store that does not leaves the handler to see both.
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
/// use cregis_payout_callback::error::BoxError;
/// use cregis_payout_callback::idempotency::{Attempt, Claim, DeliveryKey, Fingerprint, IdempotencyStore};
///
/// /// Each key's fingerprint, and `Some(attempt id, lease end)` while in progress.
/// #[derive(Default)]
/// struct Claims(Mutex<HashMap<DeliveryKey, (Fingerprint, Option<(u64, std::time::SystemTime)>)>>);
///
/// impl IdempotencyStore for Claims {
///     fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
///         let mut claims = self.0.lock().unwrap();
///         let claim = match claims.get(&attempt.key) {
///             None => Claim::Claimed,
///             Some((fingerprint, _)) if *fingerprint != attempt.fingerprint => Claim::Conflict,
///             Some((_, None)) => Claim::AlreadyDone,
///             Some((_, Some((_, until)))) if attempt.started > *until => Claim::TakenOver,
///             Some(_) => Claim::InProgress,
///         };
///         if matches!(claim, Claim::Claimed | Claim::TakenOver) {
///             claims.insert(attempt.key, (attempt.fingerprint, Some((attempt.id, attempt.lease_until()))));
///         }
///         Ok(claim)
///     }
///     fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
///         let mut claims = self.0.lock().unwrap();
///         claims.entry(attempt.key).or_insert((attempt.fingerprint, None)).1 = None;
///         Ok(())
///     }
///     fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
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
    fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError>;

    /// Records that the delivery of `attempt.key` was handled.
    ///
    /// # Errors
    ///
    /// The store could not record it. The handler already succeeded, so the delivery is still
    /// acknowledged; the error is kept in the [`Reply`](crate::Reply) for logging.
    fn complete(&self, attempt: &Attempt) -> Result<(), BoxError>;

    /// Gives up `attempt`'s own claim, so that a later delivery can be handled.
    ///
    /// # Errors
    ///
    /// The store could not release it; the error is added to the reply's cause.
    fn release(&self, attempt: &Attempt) -> Result<(), BoxError>;
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        (**self).claim(attempt)
    }

    fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        (**self).complete(attempt)
    }

    fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        (**self).release(attempt)
    }
}

/// [`IdempotencyStore`] for stores whose operations are async, such as a table reached through
/// an async database driver: the same contract, awaited without blocking the executor.
///
/// Wire it in with [`VerifierBuilder::idempotency`](crate::verifier::VerifierBuilder::idempotency);
/// it serves [`process_async`](crate::Verifier::process_async). A synchronous
/// [`process`](crate::Verifier::process) cannot await it, so a verifier with an async-only
/// store has no `process` at all: the mistake does not compile. Its futures must be `Send`,
/// so that `process_async`'s future stays `Send`.
///
/// Its operations must not block: they run on the executor's worker thread. A store built on
/// a blocking driver (`rusqlite`, `postgres`) blocks that thread for every claim, and with it
/// every other request the thread serves; wrap it in [`SpawnBlocking`] (features `axum` or
/// `actix-web`), which runs each operation on the runtime's blocking pool instead.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::error::BoxError;
/// use cregis_payout_callback::idempotency::{AsyncIdempotencyStore, Attempt, Claim, IdempotencyStore, MemoryIdempotencyStore};
///
/// /// Stands for a store behind an async driver (here, the memory store).
/// struct Remote(MemoryIdempotencyStore);
///
/// // The memory store implements both store traits: with both in scope, name the one to call.
/// impl AsyncIdempotencyStore for Remote {
///     async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
///         // e.g. INSERT .. ON CONFLICT DO UPDATE .. WHERE (lease expired) RETURNING ..
///         IdempotencyStore::claim(&self.0, attempt)
///     }
///     async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
///         IdempotencyStore::complete(&self.0, attempt)
///     }
///     async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
///         IdempotencyStore::release(&self.0, attempt)
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
    fn claim(&self, attempt: &Attempt) -> impl Future<Output = Result<Claim, BoxError>> + Send;

    /// Records that the delivery of `attempt.key` was handled, as
    /// [`IdempotencyStore::complete`].
    ///
    /// # Errors
    ///
    /// As [`IdempotencyStore::complete`].
    fn complete(&self, attempt: &Attempt) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Gives up `attempt`'s own claim, as [`IdempotencyStore::release`].
    ///
    /// # Errors
    ///
    /// As [`IdempotencyStore::release`].
    fn release(&self, attempt: &Attempt) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<S: AsyncIdempotencyStore + ?Sized> AsyncIdempotencyStore for Arc<S> {
    fn claim(&self, attempt: &Attempt) -> impl Future<Output = Result<Claim, BoxError>> + Send {
        (**self).claim(attempt)
    }

    fn complete(&self, attempt: &Attempt) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).complete(attempt)
    }

    fn release(&self, attempt: &Attempt) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).release(attempt)
    }
}
