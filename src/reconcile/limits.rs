//! The reconciler's rate limit, and the pause after Cregis errors.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Queries spaced evenly, at most `rate` a second (no burst), shared by every task; after a
/// failure every query waits for the backoff.
#[derive(Debug, Default)]
pub(super) struct Limiter(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// The earliest time the next query may start.
    next: Option<Instant>,
    /// Failures in a row.
    failures: u32,
}

impl Limiter {
    /// Waits for this query's turn.
    pub(super) async fn wait(&self, rate: u32) {
        let interval = Duration::from_secs(1) / rate.max(1);
        let at = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = state.next.map_or(now, |next| next.max(now));
            state.next = Some(at + interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// A query failed: every later query waits `first`, doubled with each failure in a row,
    /// at most `max`.
    pub(super) fn failed(&self, first: Duration, max: Duration) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let pause = super::doubled(first, state.failures, max);
        state.failures = state.failures.saturating_add(1);
        let resume = Instant::now() + pause;
        state.next = Some(state.next.map_or(resume, |next| next.max(resume)));
    }

    /// A query succeeded: the backoff starts over.
    pub(super) fn succeeded(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failures = 0;
    }
}
