//! When a failed entry runs again, and when it is dead.

use std::time::Duration;

use super::{AfterFailure, EntryId};

/// The default [`RetryPolicy::max_attempts`]: 50 runs, about 7.5 hours of retries with the
/// default delays (1 s doubling to 10 min).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 50;

/// The default [`RetryPolicy::max_age`]: a day, long enough for an outage overnight; past it,
/// an entry is dead after its next failure and waits in the dead list for an operator.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// When a failed entry runs again: after `initial`, doubling with each failure up to
/// `max_delay`, each delay shortened by a jitter of up to half (so that entries failing
/// together do not all come back together); dead after `max_attempts` runs or once older than
/// `max_age`, whichever comes first.
///
/// The jitter is a hash of the entry's id and attempt, not a random draw: the schedule of an
/// entry is the same on every run, and exact in a test.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use cregis_payout_callback::inbox::backend::AfterFailure;
/// use cregis_payout_callback::inbox::{EntryId, RetryPolicy};
///
/// let policy = RetryPolicy::default();
/// assert_eq!((policy.initial, policy.max_delay), (Duration::from_secs(1), Duration::from_secs(600)));
/// // The third failure of an entry waits between 2 and 4 s.
/// let AfterFailure::RetryAfter(delay) = policy.next(EntryId(1), 3, Duration::ZERO) else { panic!() };
/// assert!(Duration::from_secs(2) <= delay && delay <= Duration::from_secs(4));
/// assert_eq!(policy.next(EntryId(1), policy.max_attempts, Duration::ZERO), AfterFailure::Dead);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure. Defaults to 1 s.
    pub initial: Duration,
    /// The longest delay. Defaults to 10 min.
    pub max_delay: Duration,
    /// How many runs an entry gets before it is dead. Defaults to [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// How old an entry may be and still be retried. Defaults to [`DEFAULT_MAX_AGE`].
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(10 * 60),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl RetryPolicy {
    /// What follows the failure of run `attempt` (from 1) of entry `id`, accepted `age` ago.
    ///
    /// # Example
    ///
    /// See [`RetryPolicy`].
    pub fn next(&self, id: EntryId, attempt: u32, age: Duration) -> AfterFailure {
        if attempt >= self.max_attempts || age >= self.max_age {
            return AfterFailure::Dead;
        }
        AfterFailure::RetryAfter(self.delay(id, attempt))
    }

    /// The delay after the failure of run `attempt` (from 1) of entry `id`: the backoff
    /// `min(initial × 2^(attempt-1), max_delay)`, less a jitter of up to half of it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::inbox::{EntryId, RetryPolicy};
    ///
    /// let policy = RetryPolicy::default();
    /// assert_eq!(policy.delay(EntryId(9), 4), policy.delay(EntryId(9), 4)); // the same every time
    /// assert!(policy.delay(EntryId(9), 40) <= Duration::from_secs(600));
    /// ```
    pub fn delay(&self, id: EntryId, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let backoff = self
            .initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        // A fraction in [0, 1) from the entry and the attempt (splitmix64).
        let mut z = u64::from_ne_bytes(id.0.to_ne_bytes())
            ^ (u64::from(attempt) << 32)
            ^ 0x9e37_79b9_7f4a_7c15;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)]
        let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
        backoff.mul_f64(1.0 - fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_initial_up_to_the_maximum_less_at_most_half() {
        let policy = RetryPolicy::default();
        for id in 0..200 {
            for attempt in 1..60 {
                let delay = policy.delay(EntryId(id), attempt);
                let backoff = Duration::from_secs((1u64 << (attempt - 1).min(20)).min(600));
                assert!(
                    delay <= backoff && delay >= backoff / 2,
                    "{id} {attempt}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn the_jitter_spreads_entries_that_fail_together() {
        let policy = RetryPolicy::default();
        let mut delays: Vec<Duration> = (0..100).map(|id| policy.delay(EntryId(id), 5)).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 90, "{} distinct delays", delays.len());
    }

    #[test]
    fn an_entry_dies_at_its_last_attempt_or_its_age() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let young = Duration::from_secs(59);
        assert!(matches!(
            policy.next(EntryId(1), 2, young),
            AfterFailure::RetryAfter(_)
        ));
        assert_eq!(policy.next(EntryId(1), 3, young), AfterFailure::Dead);
        assert_eq!(
            policy.next(EntryId(1), 1, Duration::from_secs(60)),
            AfterFailure::Dead
        );
    }
}
