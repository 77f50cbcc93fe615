//! Times ahead, for the settings that say how long to wait (features that run on tokio).

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead a span too long to add lands: about 30 years, as tokio's own far future.
const FAR_AHEAD: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `span` after `start`, saturating about 30 years ahead: a setting of `Duration::MAX` means
/// "not in this process's life", never an overflow.
pub(crate) fn later_from(start: Instant, span: Duration) -> Instant {
    start
        .checked_add(span)
        .or_else(|| start.checked_add(FAR_AHEAD))
        .unwrap_or(start)
}

/// `span` from now, saturating (see [`later_from`]).
pub(crate) fn later(span: Duration) -> Instant {
    later_from(Instant::now(), span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_span_lands_far_ahead_without_overflow() {
        let now = Instant::now();
        assert_eq!(
            later_from(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(later_from(now, Duration::MAX), now + FAR_AHEAD);
    }
}
