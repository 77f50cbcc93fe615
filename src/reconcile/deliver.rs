//! Where a reconciled payout's final state goes: the same path as its callback.

use std::future::Future;

use crate::{CallbackKind, Reply};

/// Hands a reconciled payout's callback body (signed with the project's key, in the
/// callback's documented shape) to the path callbacks take, and says what it answered.
/// [`ToInbox`] records it in the inbox; a closure
/// `|kind: CallbackKind, body: Vec<u8>| async move { .. }` can call
/// [`Verifier::process_async`](crate::Verifier::process_async) with your handler.
///
/// # Example
///
/// See [the module](super).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not deliver reconciled payouts",
    note = "use `reconcile::ToInbox`, or a closure \
            `|kind: CallbackKind, body: Vec<u8>| async move {{ .. }}` returning a `Reply` \
            whose future is `Send`"
)]
pub trait Deliver: Send + Sync {
    /// Delivers `body`, a callback of `kind`.
    fn deliver(&self, kind: CallbackKind, body: Vec<u8>) -> impl Future<Output = Reply> + Send;
}

/// Every closure `Fn(CallbackKind, Vec<u8>) -> impl Future<Output = Reply>` whose future is
/// `Send` delivers.
impl<F, Fut> Deliver for F
where
    F: Fn(CallbackKind, Vec<u8>) -> Fut + Send + Sync,
    Fut: Future<Output = Reply> + Send,
{
    fn deliver(&self, kind: CallbackKind, body: Vec<u8>) -> impl Future<Output = Reply> + Send {
        self(kind, body)
    }
}

/// Delivers into the durable inbox, as `inbox_route` does a callback
/// ([`Verifier::accept`](crate::Verifier::accept)): a wallet payout or a sub-address payout,
/// each under its own delivery key, so a callback that arrives later is a duplicate.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use cregis_payout_callback::{ApiKey, Verifier};
/// use cregis_payout_callback::{inbox::SqliteInbox, reconcile::ToInbox};
///
/// let dir = tempfile::tempdir()?;
/// let inbox = SqliteInbox::open(dir.path().join("inbox.db")).await?;
/// let deliver = ToInbox::new(Verifier::new(ApiKey::new("fake-api-key-for-docs")?), inbox);
/// // Reconciler::new(client, deliver)
/// # drop(deliver);
/// # Ok(())
/// # }
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[cfg(feature = "inbox")]
#[derive(Debug, Clone)]
pub struct ToInbox<I> {
    verifier: crate::Verifier,
    inbox: I,
}

#[cfg(feature = "inbox")]
impl<I: crate::inbox::Inbox> ToInbox<I> {
    /// Verifies each body with `verifier` (the project's key, as the callback route's) and
    /// records it in `inbox`.
    ///
    /// # Example
    ///
    /// See [`ToInbox`].
    pub fn new(verifier: crate::Verifier, inbox: I) -> ToInbox<I> {
        ToInbox { verifier, inbox }
    }
}

#[cfg(feature = "inbox")]
impl<I: crate::inbox::Inbox> Deliver for ToInbox<I> {
    async fn deliver(&self, kind: CallbackKind, body: Vec<u8>) -> Reply {
        if kind == CallbackKind::Withdrawal {
            let verifier = self
                .verifier
                .clone()
                .for_kind::<crate::WithdrawalCallback>();
            verifier.accept(&body, &self.inbox).await
        } else {
            self.verifier.accept(&body, &self.inbox).await
        }
    }
}
