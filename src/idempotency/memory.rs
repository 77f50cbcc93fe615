//! The in-process store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{AsyncIdempotencyStore, Attempt, Claim, DeliveryKey, Fingerprint, IdempotencyStore};
use crate::error::BoxError;

/// A claim in progress, as a store lists it for the host (see
/// [`MemoryIdempotencyStore::claims_in_progress`]).
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cregis_payout_callback::{CallbackKind, CallbackStatus, idempotency::{Attempt, DeliveryKey, Fact, Fingerprint, IdempotencyStore, MemoryIdempotencyStore}};
///
/// let store = MemoryIdempotencyStore::default();
/// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
/// let started = SystemTime::now();
/// store.claim(&Attempt::new(key, Fingerprint::from_bytes([0; 16]), started, Duration::from_secs(300)))?;
///
/// let claims = store.claims_in_progress();
/// assert_eq!(claims[0].key, key);
/// assert_eq!(claims[0].age(started + Duration::from_secs(10)), Duration::from_secs(10));
/// assert!(!claims[0].is_expired(started + Duration::from_secs(300)));
/// assert!(claims[0].is_expired(started + Duration::from_secs(301)));
/// # Ok::<(), cregis_payout_callback::error::BoxError>(())
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
    /// use cregis_payout_callback::{CallbackKind, CallbackStatus, idempotency::{ClaimInProgress, DeliveryKey, Fact}};
    ///
    /// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionFailed));
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
/// use cregis_payout_callback::{ApiKey, CallbackKind, CallbackStatus, Verifier, idempotency::{Attempt, Claim, DeliveryKey, Fact, Fingerprint, IdempotencyStore, MemoryIdempotencyStore}};
///
/// let store = Arc::new(MemoryIdempotencyStore::new(10_000));
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///     .idempotency(Arc::clone(&store))
///     .build();
///
/// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
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
    /// use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
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
    /// use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
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
    /// use cregis_payout_callback::{CallbackKind, CallbackStatus, idempotency::{Attempt, Claim, DeliveryKey, Fact, Fingerprint, IdempotencyStore, MemoryIdempotencyStore}};
    ///
    /// let store = MemoryIdempotencyStore::default();
    /// let key = DeliveryKey::new(CallbackKind::Payout, 1, 2, Fact::Status(CallbackStatus::TransactionSuccessful));
    /// let attempt = Attempt::new(key, Fingerprint::from_bytes([0; 16]), SystemTime::now(), Duration::from_secs(300));
    /// store.claim(&attempt)?;
    /// assert!(store.release_claim(&key));
    /// assert!(!store.release_claim(&key));
    /// assert_eq!(store.claim(&attempt)?, Claim::Claimed);
    /// # Ok::<(), cregis_payout_callback::error::BoxError>(())
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
    /// The final status `key`'s payout holds, if `key` reports another one.
    fn other_final(&self, key: &DeliveryKey) -> Option<crate::CallbackStatus> {
        key.other_finals()
            .find(|other| self.entries.contains_key(other))
            .and_then(|other| other.fact.status())
    }

    /// Makes room for one more entry: frees the slot of a claim whose lease ended before
    /// `now` (its delivery would be taken over anyway), else forgets the oldest handled key
    /// (a re-push of it would then be handled again).
    fn make_room(&mut self, now: SystemTime) -> Result<(), BoxError> {
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
    fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        let mut state = self.state();
        if let Some(recorded) = state.other_final(&attempt.key) {
            return Ok(Claim::OtherFinal { recorded });
        }
        let claim = if let Some(entry) = state.entries.get(&attempt.key) {
            if entry.fingerprint != attempt.fingerprint {
                return Ok(Claim::Conflict);
            }
            match entry.holder {
                None => return Ok(Claim::AlreadyDone),
                Some(holder) if attempt.started <= holder.lease_until => {
                    return Ok(Claim::InProgress);
                }
                // The lease has ended: taken over below.
                Some(_) => Claim::TakenOver,
            }
        } else {
            if state.entries.len() >= self.capacity {
                state.make_room(attempt.started)?;
            }
            Claim::Claimed
        };
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
        Ok(claim)
    }

    fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
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

    fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
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

/// The same store for [`process_async`](crate::Verifier::process_async): its operations hold
/// an in-memory lock for a moment and never wait on anything else, so they run on the
/// executor as they are.
impl AsyncIdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        IdempotencyStore::claim(self, attempt)
    }

    async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        IdempotencyStore::complete(self, attempt)
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        IdempotencyStore::release(self, attempt)
    }
}
