//! The opt-in freshness checks on a callback's `timestamp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;

/// Checks `timestamp` (ms since the epoch) against `now`, to the nanosecond. All arithmetic is
/// in `i128` nanoseconds, where no `i64` timestamp, `SystemTime` or `Duration` can overflow.
pub(super) fn check_freshness(
    timestamp: i64,
    now: SystemTime,
    max_age: Option<Duration>,
    skew: Duration,
) -> Result<(), Error> {
    let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => nanos(since),
        Err(before) => -nanos(before.duration()),
    };
    let sent = i128::from(timestamp) * 1_000_000;
    if let Some(max_age) = max_age {
        if now - sent > nanos(max_age) {
            return Err(Error::TimestampTooOld { max_age });
        }
    }
    if sent - now > nanos(skew) {
        return Err(Error::TimestampInFuture { skew });
    }
    Ok(())
}
