//! What a verifier holds in its store slot: nothing, or a store; and which of `process` and
//! `process_async` each can serve.

use std::fmt;

use super::{AsyncIdempotencyStore, Attempt, Claim, IdempotencyStore};
use crate::error::BoxError;

/// The store slot of a verifier built without
/// [`idempotency`](crate::verifier::VerifierBuilder::idempotency): every delivery is handled,
/// duplicates included. The default type parameter of [`Verifier`](crate::Verifier).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, idempotency::NoStore};
///
/// let verifier: Verifier<NoStore> = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoStore;

/// The store slot of a verifier built with
/// [`idempotency`](crate::verifier::VerifierBuilder::idempotency): the host's store `S`.
/// Reach it with [`Verifier::store`](crate::Verifier::store).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, idempotency::{MemoryIdempotencyStore, Store}};
///
/// let verifier: Verifier<Store<MemoryIdempotencyStore>> =
///     Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///         .idempotency(MemoryIdempotencyStore::default())
///         .build();
/// assert_eq!(verifier.store().capacity(), 100_000);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub struct Store<S>(pub(crate) S);

impl<S> fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", std::any::type_name::<S>())
    }
}

mod sealed {
    pub trait Sync {}
    pub trait Async {}

    /// The store type of the [`NoStore`](super::NoStore) slot: it has no value, so it is
    /// never called, and a host cannot name it to pass as a store.
    #[derive(Debug)]
    pub enum Nothing {}
}

/// A store slot that [`Verifier::process`](crate::Verifier::process) can use: [`NoStore`], or
/// the [`Store`] of an [`IdempotencyStore`]. Sealed: nothing else implements it.
///
/// A verifier whose store is only an [`AsyncIdempotencyStore`] has no `process`; calling it
/// does not compile:
///
/// ```compile_fail,E0277
/// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
/// use cregis_payout_callback::error::BoxError;
/// use cregis_payout_callback::idempotency::{AsyncIdempotencyStore, Attempt, Claim};
///
/// struct Remote; // a table behind an async driver
///
/// impl AsyncIdempotencyStore for Remote {
///     async fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> { Ok(Claim::Claimed) }
///     async fn complete(&self, _: &Attempt) -> Result<(), BoxError> { Ok(()) }
///     async fn release(&self, _: &Attempt) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs").unwrap())
///     .idempotency(Remote)
///     .build();
/// // error: `Store<Remote>` cannot serve the synchronous `process`
/// let reply = verifier.process(b"{}", &|_: &PayoutCallback| Ok::<(), String>(()));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot serve the synchronous `process`",
    label = "the verifier's store is not an `IdempotencyStore`",
    note = "an async store (`AsyncIdempotencyStore`) is awaited by `process_async`: call that instead"
)]
pub trait SyncStoreSlot: sealed::Sync + Send + Sync + 'static {
    #[doc(hidden)]
    fn store(&self) -> Option<&dyn IdempotencyStore>;
}

/// A store slot that [`Verifier::process_async`](crate::Verifier::process_async) can use:
/// [`NoStore`], or the [`Store`] of an [`AsyncIdempotencyStore`]. Sealed: nothing else
/// implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot serve `process_async`",
    label = "the verifier's store is not an `AsyncIdempotencyStore`",
    note = "a blocking store goes to `process_async` through `SpawnBlocking`, which runs it off the executor; or call the synchronous `process`"
)]
pub trait AsyncStoreSlot: sealed::Async + Send + Sync + 'static {
    #[doc(hidden)]
    type Store: AsyncIdempotencyStore;
    #[doc(hidden)]
    fn store(&self) -> Option<&Self::Store>;
}

impl sealed::Sync for NoStore {}
impl SyncStoreSlot for NoStore {
    fn store(&self) -> Option<&dyn IdempotencyStore> {
        None
    }
}

impl<S: IdempotencyStore + 'static> sealed::Sync for Store<S> {}
impl<S: IdempotencyStore + 'static> SyncStoreSlot for Store<S> {
    fn store(&self) -> Option<&dyn IdempotencyStore> {
        Some(&self.0)
    }
}

impl sealed::Async for NoStore {}
impl AsyncStoreSlot for NoStore {
    type Store = sealed::Nothing;
    fn store(&self) -> Option<&sealed::Nothing> {
        None
    }
}

impl<S: AsyncIdempotencyStore + 'static> sealed::Async for Store<S> {}
impl<S: AsyncIdempotencyStore + 'static> AsyncStoreSlot for Store<S> {
    type Store = S;
    fn store(&self) -> Option<&S> {
        Some(&self.0)
    }
}

impl AsyncIdempotencyStore for sealed::Nothing {
    async fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> {
        match *self {}
    }

    async fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
        match *self {}
    }

    async fn release(&self, _: &Attempt) -> Result<(), BoxError> {
        match *self {}
    }
}
