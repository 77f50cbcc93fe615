//! Where a verifier reads the time: the system clock, or one a test sets.

use std::fmt;
use std::time::SystemTime;

/// The time source of a [`Verifier`](crate::Verifier): the freshness checks and the
/// idempotency claims read it, once per delivery and only when they are set.
///
/// Set once on the builder ([`VerifierBuilder::clock`](super::VerifierBuilder::clock)); the
/// default is [`SystemClock`]. Tests use
/// [`testing::ManualClock`](crate::testing::ManualClock), which they set and advance by hand.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use cregis_payout_callback::verifier::Clock;
///
/// /// Always the same instant.
/// #[derive(Debug)]
/// struct Frozen(SystemTime);
///
/// impl Clock for Frozen {
///     fn now(&self) -> SystemTime {
///         self.0
///     }
/// }
///
/// let clock = Frozen(UNIX_EPOCH + Duration::from_millis(1687850657960));
/// assert_eq!(clock.now(), clock.now());
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock, [`SystemTime::now`]: the default [`Clock`].
///
/// # Example
///
/// ```
/// use cregis_payout_callback::verifier::{Clock, SystemClock};
///
/// assert!(SystemClock.now() > std::time::UNIX_EPOCH);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
