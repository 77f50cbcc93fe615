//! Exactly-once processing: claim a delivery before the handler runs, settle it after.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

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
    /// # let callback: cregis_payout_callback::PayoutCallback = serde_json::from_str(r#"{"pid":1,"cid":2,
    /// #   "chain_id":"195","token_id":"195","currency":"TRX","address":"TXsm","amount":"1.1",
    /// #   "third_party_id":"order-42","status":6,"nonce":"ubqso3","timestamp":1687850657960,"sign":"00"}"#)?;
    /// // `callback` reports that payout 2 of project 1 succeeded.
    /// assert_eq!(callback.delivery_key().to_string(), "1/2/6");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn delivery_key(&self) -> DeliveryKey {
        DeliveryKey {
            pid: self.pid,
            cid: self.cid,
            status: self.status,
        }
    }
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// The delivery is new and now claimed by the caller, who must settle it with
    /// [`complete`](IdempotencyStore::complete) or [`release`](IdempotencyStore::release).
    Claimed,
    /// A delivery with this key was already handled: acknowledge it without handling it again.
    AlreadyDone,
    /// Another worker holds the claim right now: do not handle it, ask the sender to retry.
    InProgress,
}

/// A store's failure, of whatever type the store uses.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Remembers which deliveries were handled, so that each is handled once.
///
/// [`Verifier::idempotency`](crate::Verifier::idempotency) wires a store into
/// [`process`](crate::Verifier::process): it claims the delivery's [`DeliveryKey`] before the
/// handler runs, then completes the claim if the handler succeeded or releases it if the
/// handler failed, so that a later re-push can be handled. If the handler panics or its future
/// is dropped, the claim stays in progress: the effect may or may not have happened, so
/// re-deliveries are refused (409) until someone releases it. If the store fails, the delivery
/// is answered 500 and the handler is not called.
///
/// `claim` must be atomic: of two concurrent claims of one key, at most one gets
/// [`Claim::Claimed`]. [`MemoryIdempotencyStore`] is the in-process implementation; services
/// with several instances need a store they share (a database).
///
/// # Example
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::Mutex;
/// use cregis_payout_callback::{Claim, DeliveryKey, IdempotencyStore, StoreError};
///
/// /// Claims and completions in one set: enough to show the contract.
/// #[derive(Default)]
/// struct Claims {
///     claimed: Mutex<HashSet<DeliveryKey>>,
///     done: Mutex<HashSet<DeliveryKey>>,
/// }
///
/// impl IdempotencyStore for Claims {
///     fn claim(&self, key: &DeliveryKey) -> Result<Claim, StoreError> {
///         if self.done.lock().unwrap().contains(key) {
///             return Ok(Claim::AlreadyDone);
///         }
///         Ok(if self.claimed.lock().unwrap().insert(*key) { Claim::Claimed } else { Claim::InProgress })
///     }
///     fn complete(&self, key: &DeliveryKey) -> Result<(), StoreError> {
///         self.done.lock().unwrap().insert(*key);
///         self.claimed.lock().unwrap().remove(key);
///         Ok(())
///     }
///     fn release(&self, key: &DeliveryKey) -> Result<(), StoreError> {
///         self.claimed.lock().unwrap().remove(key);
///         Ok(())
///     }
/// }
/// # let _ = Claims::default();
/// ```
pub trait IdempotencyStore: Send + Sync {
    /// Atomically claims `key` unless it is done or claimed already.
    ///
    /// # Errors
    ///
    /// The store could not answer; the delivery is then refused (500) and not handled.
    fn claim(&self, key: &DeliveryKey) -> Result<Claim, StoreError>;

    /// Records that the delivery claimed under `key` was handled.
    ///
    /// # Errors
    ///
    /// The store could not record it. The handler already succeeded, so the delivery is still
    /// acknowledged; the error is kept in the [`Reply`](crate::Reply) for logging.
    fn complete(&self, key: &DeliveryKey) -> Result<(), StoreError>;

    /// Gives up the claim on `key`, so that a later delivery can be handled.
    ///
    /// # Errors
    ///
    /// The store could not release it; the error is added to the reply's cause.
    fn release(&self, key: &DeliveryKey) -> Result<(), StoreError>;
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn claim(&self, key: &DeliveryKey) -> Result<Claim, StoreError> {
        (**self).claim(key)
    }

    fn complete(&self, key: &DeliveryKey) -> Result<(), StoreError> {
        (**self).complete(key)
    }

    fn release(&self, key: &DeliveryKey) -> Result<(), StoreError> {
        (**self).release(key)
    }
}

/// An in-process [`IdempotencyStore`]: thread-safe, bounded, forgotten on restart.
///
/// It keeps up to `capacity` deliveries; when full, it forgets the oldest handled one. A
/// claim while every entry is still in progress fails (and the delivery is answered 500), so
/// memory stays bounded whatever arrives.
///
/// It protects one process. A service with several instances, or one that must not handle a
/// payout again after a restart, needs a shared, durable store (a database table).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackStatus, Claim, DeliveryKey, IdempotencyStore, MemoryIdempotencyStore};
///
/// let store = MemoryIdempotencyStore::new(10_000);
/// let key = DeliveryKey { pid: 1, cid: 2, status: CallbackStatus::TransactionSuccessful };
/// assert_eq!(store.claim(&key)?, Claim::Claimed);
/// assert_eq!(store.claim(&key)?, Claim::InProgress);
/// store.complete(&key)?;
/// assert_eq!(store.claim(&key)?, Claim::AlreadyDone);
/// # Ok::<(), cregis_payout_callback::StoreError>(())
/// ```
pub struct MemoryIdempotencyStore {
    capacity: usize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    /// `true` once handled, `false` while claimed.
    done: HashMap<DeliveryKey, bool>,
    /// Handled keys, oldest first: the order in which they are forgotten.
    done_order: VecDeque<DeliveryKey>,
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

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // The state stays consistent at every step, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
            .field("len", &self.state().done.len())
            .finish_non_exhaustive()
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn claim(&self, key: &DeliveryKey) -> Result<Claim, StoreError> {
        let mut state = self.state();
        match state.done.get(key) {
            Some(true) => return Ok(Claim::AlreadyDone),
            Some(false) => return Ok(Claim::InProgress),
            None => {}
        }
        if state.done.len() >= self.capacity {
            let oldest = state
                .done_order
                .pop_front()
                .ok_or("memory idempotency store is full of deliveries in progress")?;
            state.done.remove(&oldest);
        }
        state.done.insert(*key, false);
        Ok(Claim::Claimed)
    }

    fn complete(&self, key: &DeliveryKey) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.done.insert(*key, true) != Some(true) {
            state.done_order.push_back(*key);
        }
        // Completing a key that was never claimed adds an entry: stay within capacity.
        while state.done.len() > self.capacity {
            match state.done_order.pop_front() {
                Some(oldest) => state.done.remove(&oldest),
                None => break,
            };
        }
        Ok(())
    }

    fn release(&self, key: &DeliveryKey) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.done.get(key) == Some(&false) {
            state.done.remove(key);
        }
        Ok(())
    }
}
