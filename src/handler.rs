//! What the host implements to act on a verified callback.
//!
//! A handler is a type implementing `CallbackHandler` (or `AsyncCallbackHandler`), an `Arc` of
//! one, or a closure: `handler_fn(|callback| ..)` and `async_handler_fn(|callback| ..)` need no
//! type annotations, and an annotated closure or async closure
//! (`async |callback: &PayoutCallback| ..`) works as it is. Its error can be any error type or a
//! message; the reply's `error()` keeps it whole, as the `Error`'s `source()`.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use crate::PayoutCallback;
use crate::error::BoxError;

/// Acts on a verified payout callback: the host's business logic.
///
/// `C` is the kind of callback: [`PayoutCallback`] by default, or
/// [`WithdrawalCallback`](crate::WithdrawalCallback) for a verifier made with
/// [`for_kind`](crate::Verifier::for_kind) (`impl CallbackHandler<WithdrawalCallback> for ..`,
/// or a closure taking `&WithdrawalCallback`).
///
/// [`Verifier::process`](crate::Verifier::process) calls it only for an authentic, well-formed
/// callback, and answers `success` only if it returns `Ok`. Return `Err` when the effect did not
/// happen (a database write failed, say): Cregis is then told the delivery failed, and an
/// operator can re-push it later. The same payout may arrive more than once, so make the effect
/// idempotent (for example, key it on `cid` and `status`).
///
/// The error is kept whole in the reply's [`Error::HandlerFailed`](crate::Error::HandlerFailed)
/// (its [`source`](std::error::Error::source)), so it can be any error type or a message
/// (`&str`, `String`): anything that converts into a [`BoxError`].
///
/// What implements it:
/// - a type of yours, as in the example;
/// - a closure `Fn(&PayoutCallback) -> Result<(), E>` (give the parameter's type, and the
///   error's when it returns no `Err`), or any closure through [`handler_fn`], which needs
///   neither;
/// - an `Arc` of a handler, so that you can keep a handle on it.
///
/// # Example
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cregis_payout_callback::{ApiKey, CallbackHandler, PayoutCallback, Verifier, handler_fn, testing::CallbackBuilder};
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
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let verifier = Verifier::new(key.clone());
/// let body = CallbackBuilder::new().body(&key)?;
/// let body = body.as_bytes();
///
/// let ledger = Arc::new(Ledger { settled: Mutex::new(Vec::new()) });
/// assert!(verifier.process(body, &*ledger).is_ack()); // the handler itself
/// assert!(verifier.process(body, &ledger).is_ack()); // an `Arc` of it
/// // A closure, annotated...
/// assert!(verifier.process(body, &|callback: &PayoutCallback| {
///     println!("{}", callback.third_party_id);
///     Ok::<(), std::io::Error>(())
/// }).is_ack());
/// // ...or not, through `handler_fn`.
/// assert!(verifier.process(body, &handler_fn(|callback| {
///     println!("{}", callback.third_party_id);
///     Ok(())
/// })).is_ack());
/// assert_eq!(ledger.settled.lock().unwrap().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a callback handler",
    label = "not a `CallbackHandler`",
    note = "a handler is a type implementing `CallbackHandler`, an `Arc` of one, or a closure \
            `|callback: &PayoutCallback| -> Result<(), E>`; wrap a closure in `handler_fn(..)` \
            to leave out its types",
    note = "an async handler goes to `process_async`, which takes an `AsyncCallbackHandler`"
)]
pub trait CallbackHandler<C = PayoutCallback> {
    /// The handler's failure: any error type or message. Its `Display` text is kept in the
    /// [`Reply`](crate::Reply) for logging, never sent back to Cregis.
    type Error: Display + Into<BoxError>;

    /// Acts on one verified callback.
    ///
    /// # Errors
    ///
    /// Whatever kept the host from acting on the callback; the delivery is then answered 500.
    fn handle(&self, callback: &C) -> Result<(), Self::Error>;
}

impl<F, E, C> CallbackHandler<C> for F
where
    F: Fn(&C) -> Result<(), E>,
    E: Display + Into<BoxError>,
{
    type Error = E;

    fn handle(&self, callback: &C) -> Result<(), E> {
        self(callback)
    }
}

impl<C, H: CallbackHandler<C> + ?Sized> CallbackHandler<C> for Arc<H> {
    type Error = H::Error;

    fn handle(&self, callback: &C) -> Result<(), Self::Error> {
        (**self).handle(callback)
    }
}

/// A closure as a [`CallbackHandler`], with nothing to annotate: its parameter is a
/// `&PayoutCallback`, and its error a [`BoxError`], so `?` works on any error and `Ok(())`
/// needs no type.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, handler_fn, testing::CallbackBuilder};
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let verifier = Verifier::new(key.clone());
/// let body = CallbackBuilder::new().body(&key)?;
/// let reply = verifier.process(body.as_bytes(), &handler_fn(|callback| {
///     // Your order ids are 128-bit hex; `?` works with any error type.
///     let order = u128::from_str_radix(&callback.third_party_id, 16)?;
///     println!("order {order:032x}: {} {} paid", callback.amount, callback.currency);
///     Ok(())
/// }));
/// assert!(reply.is_ack());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn handler_fn<F>(f: F) -> HandlerFn<F>
where
    F: Fn(&PayoutCallback) -> Result<(), BoxError>,
{
    HandlerFn(f)
}

/// A closure as an [`AsyncCallbackHandler`], with nothing to annotate: its parameter is a
/// `&PayoutCallback`, and its future's error a [`BoxError`]. The future cannot borrow the
/// callback: clone what it needs first.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, async_handler_fn};
///
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let handler = async_handler_fn(|callback| {
///     let id = callback.third_party_id.clone();
///     async move {
///         println!("{id} settled"); // e.g. an UPDATE through an async driver
///         Ok(())
///     }
/// });
/// let reply = verifier.process_async(b"{}", &handler); // inside an async fn: `.await`
/// # drop(reply);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub fn async_handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(&PayoutCallback) -> Fut + Sync,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    HandlerFn(f)
}

/// A closure made a handler by [`handler_fn`] or [`async_handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

impl<F> CallbackHandler for HandlerFn<F>
where
    F: Fn(&PayoutCallback) -> Result<(), BoxError>,
{
    type Error = BoxError;

    fn handle(&self, callback: &PayoutCallback) -> Result<(), BoxError> {
        (self.0)(callback)
    }
}

impl<F, Fut> AsyncCallbackHandler for HandlerFn<F>
where
    F: Fn(&PayoutCallback) -> Fut + Sync,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    type Error = BoxError;

    fn handle(
        &self,
        callback: &PayoutCallback,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (self.0)(callback)
    }
}

/// Acts on a verified payout callback, asynchronously: the host's business logic in an async
/// service (a database update, a message to a queue).
///
/// [`Verifier::process_async`](crate::Verifier::process_async) calls it with the same rules as
/// [`CallbackHandler`]. Its future must be `Send`, so that it runs inside axum, actix-web or
/// any multi-threaded runtime; handlers are shared between requests, hence `Sync`. `C` is the
/// kind of callback, as for [`CallbackHandler`].
///
/// What implements it:
/// - a type of yours, as in the example;
/// - a closure returning a future: `|callback: &PayoutCallback| { let id = ..; async move { .. } }`,
///   or an async closure `async |callback: &PayoutCallback| { .. }`, whose future may borrow
///   the callback (both need the parameter's type; [`async_handler_fn`] needs none);
/// - an `Arc` of a handler.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier, async_handler_fn};
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
/// // The same as a closure returning a future...
/// let closure = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move {
///         println!("{id} settled");
///         Ok::<(), std::io::Error>(())
///     }
/// };
/// // ...as an async closure, which may borrow the callback...
/// let async_closure = async |callback: &PayoutCallback| {
///     println!("{} settled", callback.third_party_id);
///     Ok::<(), std::io::Error>(())
/// };
/// // ...or with no annotations at all.
/// let plain = async_handler_fn(|callback| {
///     let id = callback.third_party_id.clone();
///     async move { Ok(println!("{id} settled")) }
/// });
///
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let ledger = Arc::new(Ledger);
/// let _ = verifier.process_async(b"{}", &*ledger);
/// let _ = verifier.process_async(b"{}", &ledger);
/// let _ = verifier.process_async(b"{}", &closure);
/// let _ = verifier.process_async(b"{}", &async_closure);
/// let _ = verifier.process_async(b"{}", &plain);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an async callback handler",
    label = "not an `AsyncCallbackHandler`",
    note = "an async handler is a type implementing `AsyncCallbackHandler`, an `Arc` of one, a \
            closure `|callback: &PayoutCallback| async move {{ .. }}` or \
            `async |callback: &PayoutCallback| {{ .. }}` whose future is `Send`; wrap a closure \
            in `async_handler_fn(..)` to leave out its types",
    note = "the handler must be `Sync` and its error any error type or message"
)]
pub trait AsyncCallbackHandler<C = PayoutCallback>: Sync {
    /// The handler's failure: any error type or message. Its `Display` text is kept in the
    /// [`Reply`](crate::Reply) for logging, never sent back to Cregis.
    type Error: Display + Into<BoxError>;

    /// Acts on one verified callback.
    ///
    /// # Errors
    ///
    /// Whatever kept the host from acting on the callback; the delivery is then answered 500.
    fn handle(&self, callback: &C) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A function from a borrowed callback to a `Send` future that may borrow it: what closures
/// and async closures must be to be [`AsyncCallbackHandler`]s.
pub trait AsyncHandlerFn<'a, C: 'a = PayoutCallback>:
    Fn(&'a C) -> <Self as AsyncHandlerFn<'a, C>>::Future
{
    /// The future the function returns.
    type Future: Future<Output = Result<(), Self::Error>> + Send + 'a;
    /// The future's error.
    type Error;
}

impl<'a, C: 'a, F, Fut, E> AsyncHandlerFn<'a, C> for F
where
    F: Fn(&'a C) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'a,
{
    type Future = Fut;
    type Error = E;
}

impl<F, E, C> AsyncCallbackHandler<C> for F
where
    F: for<'a> AsyncHandlerFn<'a, C, Error = E> + Sync,
    E: Display + Into<BoxError>,
{
    type Error = E;

    fn handle(&self, callback: &C) -> impl Future<Output = Result<(), E>> + Send {
        self(callback)
    }
}

/// A shared handler: the host keeps a handle on it (to read its state, say) while the
/// verifier or a framework route calls it.
impl<C, H: AsyncCallbackHandler<C> + Send + ?Sized> AsyncCallbackHandler<C> for Arc<H> {
    type Error = H::Error;

    fn handle(&self, callback: &C) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).handle(callback)
    }
}
