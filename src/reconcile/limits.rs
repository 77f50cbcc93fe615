//! The reconciler's rate limit, and the pause after Cregis errors.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Queries spaced evenly, at most `rate` a second (no burst), shared by every task; after a
/// failure no query starts until the backoff is over (each is deferred, not kept waiting),
/// then one at a time until one succeeds.
///
/// One query waits for its turn at a time (`turn`, a fair queue), so a runtime too busy to
/// wake its timers on time releases one late query, not every query reserved behind it: in
/// any second at most `rate + 1` start (`rate + 2` from 1,000 a second, where an interval is
/// no longer than a timer tick).
/// tokio's timer resolution: a sleep ends up to this much after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
pub(super) struct Limiter {
    turn: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The earliest time the next query may start.
    next: Option<Instant>,
    /// Failures in a row.
    failures: u32,
}

impl Limiter {
    /// Waits for this query's turn; `Err(pause)` at once, without waiting, while Cregis is
    /// failing and the backoff still has `pause` to run: the query is not sent (the pass
    /// defers it). Once the pause is over, one query at a time probes until one succeeds.
    pub(super) async fn wait(&self, rate: u32) -> Result<(), Duration> {
        let interval = Duration::from_secs(1) / rate.max(1);
        let _turn = self.turn.lock().await;
        // Read again after each sleep: a failure meanwhile may have pushed the start back.
        while let Some(next) = self.not_before() {
            if let Some(pause) = self.backing_off() {
                return Err(pause);
            }
            tokio::time::sleep_until(next).await;
        }
        let mut state = self.state();
        let now = Instant::now();
        // The next slot follows this one's when this query woke within a timer tick of it (the
        // timer's rounding does not slow a high rate), and follows now when it woke later (no
        // catching up in a burst).
        let late = now.checked_sub(TIMER_TICK.min(interval)).unwrap_or(now);
        let start = state.next.map_or(now, |next| next.max(late));
        state.next = Some(start + interval);
        Ok(())
    }

    /// What is left of the pause after failures, while queries keep failing and the next
    /// may not start yet.
    pub(super) fn backing_off(&self) -> Option<Duration> {
        let state = self.state();
        let now = Instant::now();
        match state.next {
            Some(next) if state.failures > 0 && next > now => Some(next - now),
            _ => None,
        }
    }

    /// When the next query may start, if that is still ahead.
    fn not_before(&self) -> Option<Instant> {
        self.state().next.filter(|&next| next > Instant::now())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A query failed: every later query waits `first`, doubled with each failure in a row,
    /// at most `max`.
    pub(super) fn failed(&self, first: Duration, max: Duration) {
        let mut state = self.state();
        let pause = super::doubled(first, state.failures, max);
        state.failures = state.failures.saturating_add(1);
        let resume = crate::deadline::later(pause);
        state.next = Some(state.next.map_or(resume, |next| next.max(resume)));
    }

    /// A query succeeded: the backoff starts over.
    pub(super) fn succeeded(&self) {
        self.state().failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A runtime blocked for five intervals wakes every timer late; the queries waiting then
    /// start one after another at the rate, not in a burst.
    #[test]
    fn a_late_wake_releases_no_burst() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (interval, windowed) = (Duration::from_millis(10), Duration::from_millis(100));
        let starts = runtime.block_on(async {
            let limiter = Arc::new(Limiter::default());
            let starts = Arc::new(Mutex::new(Vec::new()));
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (limiter, starts) = (Arc::clone(&limiter), Arc::clone(&starts));
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            limiter.wait(100).await.unwrap();
                            let mut starts = starts.lock().unwrap();
                            starts.push(Instant::now());
                            if starts.len() == 10 {
                                // Blocks the only thread: every sleeping query wakes late.
                                std::thread::sleep(interval * 5);
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            Arc::try_unwrap(starts).unwrap().into_inner().unwrap()
        });
        assert_eq!(starts.len(), 40);
        for (i, start) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .take_while(|s| **s - *start < windowed)
                .count();
            assert!(
                within <= 11,
                "{within} starts within {windowed:?} of start {i}"
            );
        }
        assert!(
            starts[39] - starts[0] >= interval * 38,
            "faster than the rate"
        );
    }
}
