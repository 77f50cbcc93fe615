//! What the host implements to act on a verified callback.

use std::fmt::Display;

use crate::PayoutCallback;

/// Acts on a verified payout callback: the host's business logic.
///
/// [`Verifier::process`](crate::Verifier::process) calls it only for an authentic, well-formed
/// callback, and answers `success` only if it returns `Ok`. Return `Err` when the effect did not
/// happen (a database write failed, say): Cregis is then told the delivery failed, and an
/// operator can re-push it later. The same payout may arrive more than once, so make the effect
/// idempotent (for example, key it on `cid` and `status`).
///
/// Closures `Fn(&PayoutCallback) -> Result<(), E>` implement it, with `E: Display`.
///
/// # Example
///
/// ```
/// use std::sync::Mutex;
/// use cregis_payout_callback::{CallbackHandler, PayoutCallback};
///
/// struct Ledger {
///     settled: Mutex<Vec<String>>,
/// }
///
/// impl CallbackHandler for Ledger {
///     type Error = std::io::Error;
///
///     fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
///         if callback.is_final() {
///             self.settled.lock().unwrap().push(callback.third_party_id.clone());
///         }
///         Ok(())
///     }
/// }
/// # let _ = Ledger { settled: Mutex::new(Vec::new()) };
/// ```
pub trait CallbackHandler {
    /// The handler's failure; its `Display` text is kept in the [`Reply`](crate::Reply) for
    /// logging, never sent back to Cregis.
    type Error: Display;

    /// Acts on one verified callback.
    ///
    /// # Errors
    ///
    /// Whatever kept the host from acting on the callback; the delivery is then answered 500.
    fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error>;
}

impl<F, E> CallbackHandler for F
where
    F: Fn(&PayoutCallback) -> Result<(), E>,
    E: Display,
{
    type Error = E;

    fn handle(&self, callback: &PayoutCallback) -> Result<(), E> {
        self(callback)
    }
}

/// Acts on a verified payout callback, asynchronously: the host's business logic in an async
/// service (a database update, a message to a queue).
///
/// [`Verifier::process_async`](crate::Verifier::process_async) calls it with the same rules as
/// [`CallbackHandler`]. Its future must be `Send`, so that it runs inside axum, actix-web or
/// any multi-threaded runtime; handlers are shared between requests, hence `Sync`.
///
/// Closures returning a future implement it. The future cannot borrow the callback: clone what
/// it needs first, as in the example.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{AsyncCallbackHandler, PayoutCallback};
///
/// struct Ledger;
///
/// impl AsyncCallbackHandler for Ledger {
///     type Error = std::io::Error;
///
///     async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
///         // e.g. UPDATE payouts SET status = $1 WHERE third_party_id = $2
///         println!("{} is now {}", callback.third_party_id, callback.status);
///         Ok(())
///     }
/// }
///
/// // The same as a closure.
/// let handler = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move {
///         println!("{id} settled");
///         Ok::<(), std::io::Error>(())
///     }
/// };
/// # fn is_handler<H: AsyncCallbackHandler>(_: &H) {}
/// # is_handler(&Ledger);
/// # is_handler(&handler);
/// ```
pub trait AsyncCallbackHandler: Sync {
    /// The handler's failure; its `Display` text is kept in the [`Reply`](crate::Reply) for
    /// logging, never sent back to Cregis.
    type Error: Display;

    /// Acts on one verified callback.
    ///
    /// # Errors
    ///
    /// Whatever kept the host from acting on the callback; the delivery is then answered 500.
    fn handle(
        &self,
        callback: &PayoutCallback,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<F, Fut, E> AsyncCallbackHandler for F
where
    F: Fn(&PayoutCallback) -> Fut + Sync,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Display,
{
    type Error = E;

    fn handle(&self, callback: &PayoutCallback) -> impl Future<Output = Result<(), E>> + Send {
        self(callback)
    }
}

/// A shared handler: the host keeps a handle on it (to read its state, say) while the
/// verifier or a framework route calls it.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use cregis_payout_callback::{AsyncCallbackHandler, PayoutCallback};
///
/// struct Ledger;
///
/// impl AsyncCallbackHandler for Ledger {
///     type Error = std::io::Error;
///     async fn handle(&self, _: &PayoutCallback) -> Result<(), Self::Error> {
///         Ok(())
///     }
/// }
///
/// fn is_handler<H: AsyncCallbackHandler>(_: &H) {}
/// let ledger = Arc::new(Ledger);
/// is_handler(&Arc::clone(&ledger));
/// ```
impl<H: AsyncCallbackHandler + Send + ?Sized> AsyncCallbackHandler for std::sync::Arc<H> {
    type Error = H::Error;

    fn handle(
        &self,
        callback: &PayoutCallback,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).handle(callback)
    }
}
