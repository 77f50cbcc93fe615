//! A blocking store for `process_async`, run on the runtime's blocking pool.

use std::sync::Arc;

use super::{AsyncIdempotencyStore, Attempt, Claim, IdempotencyStore};
use crate::error::BoxError;

/// Serves a blocking [`IdempotencyStore`] (one on a synchronous database driver, say) to
/// [`process_async`](crate::Verifier::process_async) without blocking the executor: each
/// operation runs on tokio's blocking thread pool (`tokio::task::spawn_blocking`), which is
/// also the pool actix-web runs on. Needs the `axum` or `actix-web` feature.
///
/// Without it, a blocking store called from an async task holds the worker thread for the
/// whole database round trip, and every request scheduled on that thread waits. Each
/// operation costs a hand-off to the pool and back (a few microseconds); a store that never
/// blocks, like [`MemoryIdempotencyStore`](super::MemoryIdempotencyStore), needs no wrapper.
///
/// If the blocking task cannot run (the runtime is shutting down), the operation fails with
/// that error, which the verifier reports like any store failure.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier};
/// use cregis_payout_callback::error::BoxError;
/// use cregis_payout_callback::idempotency::{Attempt, Claim, IdempotencyStore, SpawnBlocking};
///
/// struct SqliteClaims; // a table behind a blocking driver
///
/// impl IdempotencyStore for SqliteClaims {
///     fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> { Ok(Claim::Claimed) }
///     fn complete(&self, _: &Attempt) -> Result<(), BoxError> { Ok(()) }
///     fn release(&self, _: &Attempt) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///     .idempotency(SpawnBlocking::new(SqliteClaims))
///     .build();
/// // verifier.process_async(&body, &handler).await, from any tokio task
/// # drop(verifier);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[derive(Debug)]
pub struct SpawnBlocking<S>(Arc<S>);

/// A clone shares the store.
impl<S> Clone for SpawnBlocking<S> {
    fn clone(&self) -> Self {
        SpawnBlocking(Arc::clone(&self.0))
    }
}

impl<S> SpawnBlocking<S> {
    /// Wraps `store`.
    ///
    /// # Example
    ///
    /// See [`SpawnBlocking`].
    pub fn new(store: S) -> SpawnBlocking<S> {
        SpawnBlocking(Arc::new(store))
    }

    /// The store inside.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::idempotency::{MemoryIdempotencyStore, SpawnBlocking};
    ///
    /// let store = SpawnBlocking::new(MemoryIdempotencyStore::new(10));
    /// assert_eq!(store.get_ref().capacity(), 10);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.0
    }
}

impl<S: IdempotencyStore + 'static> SpawnBlocking<S> {
    async fn run<T: Send + 'static>(
        &self,
        attempt: &Attempt,
        operation: fn(&S, &Attempt) -> Result<T, BoxError>,
    ) -> Result<T, BoxError> {
        let (store, attempt) = (Arc::clone(&self.0), *attempt);
        tokio::task::spawn_blocking(move || operation(&store, &attempt)).await?
    }
}

impl<S: IdempotencyStore + 'static> AsyncIdempotencyStore for SpawnBlocking<S> {
    async fn claim(&self, attempt: &Attempt) -> Result<Claim, BoxError> {
        self.run(attempt, S::claim).await
    }

    async fn complete(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.run(attempt, S::complete).await
    }

    async fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.run(attempt, S::release).await
    }
}
