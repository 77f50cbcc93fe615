//! A clock for tests: set and advanced by hand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::verifier::Clock;

/// A [`Clock`] that stands still until the test moves it: for exact freshness boundaries and
/// idempotency leases without sleeping. Clones share one time, so a test keeps a clone and
/// gives the other to [`VerifierBuilder::clock`](crate::verifier::VerifierBuilder::clock).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use cregis_payout_callback::{testing::ManualClock, verifier::Clock};
///
/// let start = UNIX_EPOCH + Duration::from_millis(1687850657960);
/// let clock = ManualClock::new(start);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), start + Duration::from_secs(5));
/// clock.set(start);
/// assert_eq!(shared.now(), start);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock showing `now` until it is moved.
    ///
    /// # Example
    ///
    /// See [`ManualClock`].
    pub fn new(now: SystemTime) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(now)))
    }

    /// Sets the time to `now` (earlier or later).
    ///
    /// # Example
    ///
    /// See [`ManualClock`].
    pub fn set(&self, now: SystemTime) {
        *self.time() = now;
    }

    /// Moves the time forward by `by`.
    ///
    /// # Example
    ///
    /// See [`ManualClock`].
    pub fn advance(&self, by: Duration) {
        let mut time = self.time();
        *time += by;
    }

    fn time(&self) -> std::sync::MutexGuard<'_, SystemTime> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.time()
    }
}
