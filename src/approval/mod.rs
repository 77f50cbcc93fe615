//! Answering Cregis's payout external verification: approve (`ok`) or deny (`deny`), failing
//! closed.
//!
//! With external verification turned on, Cregis asks the host to approve each payout before it
//! goes ahead ([`ApprovalRequest`]). The host's [`ApprovalHandler`] returns a [`Decision`];
//! [`Verifier::decide`](crate::Verifier::decide) answers `ok` only when that handler approved
//! an authentic, well-formed request, and `deny` on every other path: a bad or missing
//! signature, a malformed body, a request for another project, a handler error, a failing
//! store. The framework routes (`axum::approval_route`, `actix_web::approval_route`) add the
//! rest: a panic and a handler past its timeout ([`DEFAULT_APPROVAL_TIMEOUT`], or
//! [`VerifierBuilder::approval_timeout`](crate::verifier::VerifierBuilder::approval_timeout))
//! answer `deny` too.
//!
//! With an idempotency store, a decision is remembered: the same request asked again (same
//! `pid`/`cid`, same content, whatever its `nonce` and `timestamp`) gets the same answer
//! without asking the handler twice, and other content under the same `cid` is denied.
//!
//! # Example
//!
//! ```
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};
//! use cregis_payout_callback::approval::Decision;
//! use cregis_payout_callback::testing::ApprovalBuilder;
//!
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! let verifier = Verifier::new(key.clone()).for_kind::<ApprovalRequest>();
//! // The host's own check: is this the payout it asked for? (A real one also compares
//! // `to_address` and approves one `cid` per order: see `axum::approval_route`.)
//! let check = |request: &ApprovalRequest| {
//!     let expected = request.third_party_id == "order-42" && request.amount == "250.5";
//!     async move {
//!         Ok::<_, std::io::Error>(if expected { Decision::Approve } else { Decision::deny("not ours") })
//!     }
//! };
//!
//! let asked = ApprovalBuilder::new().third_party_id("order-42").amount("250.5").body(&key)?;
//! let reply = verifier.decide(asked.as_bytes(), &check).await;
//! assert_eq!((reply.status_code(), reply.body()), (200, "ok"));
//!
//! let forged = ApprovalBuilder::new().third_party_id("order-42").amount("250.5").body_with_sign("0123456789abcdef0123456789abcdef");
//! let reply = verifier.decide(forged.as_bytes(), &check).await;
//! assert_eq!((reply.status_code(), reply.body()), (401, "deny"));
//! # Ok(())
//! # }
//! # block_on(doc());
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::BoxError;

#[cfg(feature = "http")]
pub(crate) mod bounded;
mod decide;
mod reply;
mod request;

pub use request::ApprovalRequest;

/// How long the framework routes let an [`ApprovalHandler`] decide before they answer `deny`:
/// 3 seconds.
///
/// Cregis does not document how long it waits for the answer, and treats every answer but
/// `ok` as a refusal. Webhook clients commonly give up after 5 to 10 seconds; 3 seconds
/// leaves room for the network and for Cregis's own timeout, so that the host's `deny` (and
/// not a timeout of unknown meaning) is what Cregis sees. A handler that looks up the payout
/// in the host's own database takes milliseconds; set
/// [`approval_timeout`](crate::verifier::VerifierBuilder::approval_timeout) for one that
/// needs longer.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long past the approval timeout a decision may take to be recorded (or its claim
/// released) before the whole decision is denied: 500 ms. A verifier with a store refuses a
/// claim lease shorter than the approval timeout plus this
/// ([`VerifierBuilder::try_build`](crate::verifier::VerifierBuilder::try_build)).
pub const APPROVAL_RECORD_GRACE: Duration = Duration::from_millis(500);

/// What an [`ApprovalHandler`] decided about a payout.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::approval::Decision;
///
/// assert!(Decision::Approve.is_approved());
/// let denied = Decision::deny("amount differs from order-42's");
/// assert_eq!(denied.reason(), Some("amount differs from order-42's"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Let the payout go ahead: the answer is `ok`.
    Approve,
    /// Stop the payout: the answer is `deny`.
    Deny {
        /// Why, for the host's logs (the reply's [`denial`](crate::Reply::denial) and the
        /// `tracing` event); Cregis only ever sees `deny`.
        reason: String,
    },
}

impl Decision {
    /// A denial, with its reason for the host's logs.
    ///
    /// # Example
    ///
    /// See [`Decision`].
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny {
            reason: reason.into(),
        }
    }

    /// Whether the payout may go ahead.
    ///
    /// # Example
    ///
    /// See [`Decision`].
    pub fn is_approved(&self) -> bool {
        matches!(self, Decision::Approve)
    }

    /// Why the payout was denied, if it was.
    ///
    /// # Example
    ///
    /// See [`Decision`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Approve => None,
            Decision::Deny { reason } => Some(reason),
        }
    }
}

/// Decides whether a payout may go ahead: the host's check of an [`ApprovalRequest`]
/// against its own record of the payout it asked for (amount, recipient, `third_party_id`).
///
/// [`Verifier::decide`](crate::Verifier::decide) calls it only for an authentic, well-formed
/// request, and answers `ok` only if it returns `Ok(Decision::Approve)`. An `Err` (the host
/// could not check: its database is down) answers `deny` with status 500, and the decision is
/// not remembered, so the same request asked again asks the handler again.
///
/// What implements it: a type of yours, an `Arc` of one, or a closure
/// `|request: &ApprovalRequest| async move { .. }` returning `Result<Decision, E>` whose
/// future is `Send`.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::ApprovalRequest;
/// use cregis_payout_callback::approval::{ApprovalHandler, Decision};
///
/// /// Approves only payouts to addresses on the host's allow-list.
/// struct AllowList(Vec<String>);
///
/// impl ApprovalHandler for AllowList {
///     type Error = std::convert::Infallible;
///
///     async fn decide(&self, request: &ApprovalRequest) -> Result<Decision, Self::Error> {
///         Ok(if self.0.contains(&request.to_address) {
///             Decision::Approve
///         } else {
///             Decision::deny(format!("{} is not on the allow-list", request.to_address))
///         })
///     }
/// }
/// # let _ = AllowList(Vec::new());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an approval handler",
    label = "not an `ApprovalHandler`",
    note = "an approval handler is a type implementing `ApprovalHandler`, an `Arc` of one, or a \
            closure `|request: &ApprovalRequest| async move {{ .. }}` returning \
            `Result<Decision, E>` whose future is `Send`"
)]
pub trait ApprovalHandler: Send + Sync {
    /// Why a decision could not be made; kept whole in the reply's
    /// [`Error::HandlerFailed`](crate::Error::HandlerFailed).
    type Error: Display + Into<BoxError>;

    /// Decides about `request`.
    fn decide(
        &self,
        request: &ApprovalRequest,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send;
}

/// A closure that decides: `Fn(&ApprovalRequest) -> impl Future<Output = Result<Decision, E>>`.
/// Named so that [`ApprovalHandler`] can be implemented for every such closure, whatever the
/// lifetime of the request it borrows.
pub trait ApprovalFn<'a>: Fn(&'a ApprovalRequest) -> <Self as ApprovalFn<'a>>::Future {
    /// The closure's future.
    type Future: Future<Output = Result<Decision, Self::Error>> + Send + 'a;
    /// The closure's error.
    type Error;
}

impl<'a, F, Fut, E> ApprovalFn<'a> for F
where
    F: Fn(&'a ApprovalRequest) -> Fut,
    Fut: Future<Output = Result<Decision, E>> + Send + 'a,
{
    type Future = Fut;
    type Error = E;
}

impl<F, E> ApprovalHandler for F
where
    F: for<'a> ApprovalFn<'a, Error = E> + Send + Sync,
    E: Display + Into<BoxError>,
{
    type Error = E;

    fn decide(
        &self,
        request: &ApprovalRequest,
    ) -> impl Future<Output = Result<Decision, E>> + Send {
        self(request)
    }
}

impl<H: ApprovalHandler + ?Sized> ApprovalHandler for Arc<H> {
    type Error = H::Error;

    fn decide(
        &self,
        request: &ApprovalRequest,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        (**self).decide(request)
    }
}
