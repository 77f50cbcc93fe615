//! [axum](https://docs.rs/axum) integration: a ready route, a [`Reply`] that is a response,
//! and an extractor. Needs the `axum` feature.
//!
//! [`callback_route`] is the whole endpoint in one line of router code, and the safe default:
//!
//! ```
//! use axum::Router;
//! use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier};
//! use cregis_payout_callback::{axum::callback_route, idempotency::MemoryIdempotencyStore};
//!
//! struct Payouts; // your database handle
//!
//! impl AsyncCallbackHandler for Payouts {
//!     type Error = std::io::Error;
//!     async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
//!         println!("{} is now {}", callback.third_party_id, callback.status); // UPDATE payouts ...
//!         Ok(())
//!     }
//! }
//!
//! let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
//!     .idempotency(MemoryIdempotencyStore::default())
//!     .build();
//! let app: Router = Router::new().route("/cregis/payout-callback", callback_route(verifier, Payouts));
//! # Ok::<(), cregis_payout_callback::error::KeyError>(())
//! ```
//!
//! It refuses an oversized body before reading it, runs verification and the handler in a
//! task of its own (so that a client hanging up cannot cancel the handler half-way and leave
//! its idempotency claim in progress), and answers with the [`Reply`].

use ::axum::body::{Body, Bytes};
use ::axum::extract::{FromRef, FromRequest, Request};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{MethodRouter, post_service};

use super::refuse;
use super::service::{CregisService, read_body};
use crate::approval::ApprovalHandler;
use crate::approval::bounded::refused as refuse_approval;
use crate::idempotency::AsyncStoreSlot;
use crate::idempotency::NoStore;
use crate::{
    ApprovalRequest, AsyncCallbackHandler, CallbackKind, Notification, PayoutCallback, Reply,
    Verifier,
};

/// The whole callback endpoint: a `POST` route for an axum [`Router`](::axum::Router) with any
/// state.
///
/// For each request it:
/// 1. refuses a body longer than [`Verifier::max_body_bytes`] with 413, before reading it when
///    its `Content-Length` says so, or as soon as more than the limit has streamed in; a body
///    that breaks off is [`Error::BodyUnreadable`](crate::Error::BodyUnreadable);
/// 2. runs [`Verifier::process_async`] with `handler` in a task of its own (`tokio::spawn`):
///    if the client disconnects, the request is dropped but the task still finishes and
///    settles its idempotency claim, so a re-push is then acknowledged as a duplicate instead
///    of answered 409;
///    with a store, the handler is stopped if it is still running when its claim's lease
///    ends ([`VerifierBuilder::claim_lease`](crate::verifier::VerifierBuilder::claim_lease)):
///    500, [`PastLease`](crate::error::PastLease) in the cause, the claim released, so that a
///    re-push never runs it twice at once;
/// 3. answers with the [`Reply`]. A handler that panics is answered 500
///    ([`Error::HandlerFailed`](crate::Error::HandlerFailed), the panic's message in its
///    cause); a task cancelled before it finished (the runtime shutting down) is answered 503
///    ([`Error::HandlerCancelled`](crate::Error::HandlerCancelled)).
///
/// The response carries the reply's [`Error`](crate::Error), if any, in its extensions, so
/// that a logging layer can read it (`response.extensions().get::<Error>()`).
///
/// Pass an `Arc` of the handler to keep a handle on it; the verifier's clones share its
/// settings and its idempotency store.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
/// use cregis_payout_callback::{axum::callback_route, idempotency::MemoryIdempotencyStore};
///
/// let ledger = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
/// };
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///     .idempotency(MemoryIdempotencyStore::default())
///     .build();
/// // Any router state works.
/// let app: Router<Arc<str>> = Router::new().route("/cregis/payout-callback", callback_route(verifier, ledger));
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub fn callback_route<S, St, C, H>(verifier: Verifier<St, C>, handler: H) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    St: AsyncStoreSlot,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    post_service(CregisService::callbacks(verifier, handler))
}

/// The payout external verification endpoint: a `POST` route that answers `ok` only when
/// `handler` approved an authentic, well-formed [`ApprovalRequest`], and `deny` on every other
/// path (see [`Verifier::decide`]).
///
/// It reads the body as [`callback_route`] does (413 and `deny` for an oversized body), runs
/// [`Verifier::decide`] in a task of its own (a client hanging up cannot cut a decision or its
/// record short), and stops a handler that has not decided within
/// [`Verifier::approval_timeout`] (3 s by default): 500 `deny`,
/// [`PastTimeout`](crate::error::PastTimeout) in the cause. A handler that panics is answered
/// 500 `deny`; a task cancelled by a shutdown, 503 `deny`.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use axum::Router;
/// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};
/// use cregis_payout_callback::{approval::Decision, axum::approval_route};
/// use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
///
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///     .idempotency(MemoryIdempotencyStore::default()) // one decision per request
///     .build()
///     .for_kind::<ApprovalRequest>();
/// // Your own record of each payout you created: third_party_id -> (amount, to_address, and
/// // the one payout of Cregis's, its `cid`, approved for it). In a database, one statement:
/// // UPDATE payouts SET approved_cid = $cid WHERE third_party_id = $id AND amount = $amount
/// //   AND to_address = $to AND (approved_cid IS NULL OR approved_cid = $cid)  -- one row?
/// let created = Mutex::new(HashMap::from([(
///     "order-42".to_owned(),
///     ("250.5".to_owned(), "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS".to_owned(), None),
/// )]));
/// let check = move |request: &ApprovalRequest| {
///     // Approve only a payout you asked for, of this amount, to this address, and only one
///     // payout per order: another `cid` under the same third_party_id is denied.
///     let asked = created.lock().is_ok_and(|mut created| {
///         created.get_mut(&request.third_party_id).is_some_and(|(amount, to, approved)| {
///             *amount == request.amount && *to == request.to_address
///                 && *approved.get_or_insert(request.cid) == request.cid
///         })
///     });
///     async move {
///         Ok::<_, std::io::Error>(if asked { Decision::Approve } else { Decision::deny("not a payout we created") })
///     }
/// };
/// let app: Router = Router::new().route("/cregis/payout-approval", approval_route(verifier, check));
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub fn approval_route<S, St, H>(
    verifier: Verifier<St, ApprovalRequest>,
    handler: H,
) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    St: AsyncStoreSlot,
    H: ApprovalHandler + 'static,
{
    post_service(CregisService::approvals(verifier, handler))
}

/// The endpoint of the durable inbox (feature `inbox`): a `POST` route that verifies each
/// delivery and records it in `inbox`, answering `success` once the entry is committed
/// ([`Verifier::accept`]); a [`Worker`](crate::inbox::Worker) beside the server runs the
/// handler. The body rules are [`callback_route`]'s: refused over the limit before it is read,
/// `BodyUnreadable` if the client hangs up mid-body, the write in a task of its own.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use axum::Router;
/// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
/// use cregis_payout_callback::axum::inbox_route;
/// use cregis_payout_callback::inbox::{SqliteInbox, Worker};
///
/// let dir = tempfile::tempdir()?;
/// let inbox = SqliteInbox::open(dir.path().join("inbox.db")).await?;
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let app: Router = Router::new().route("/cregis/payout-callback", inbox_route(verifier, inbox.clone()));
/// let settle = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) } // UPDATE payouts ...
/// };
/// let worker = Worker::new(inbox, settle);
/// // tokio::spawn(worker.run(shutdown)); axum::serve(listener, app).with_graceful_shutdown(..)
/// # drop((app, worker));
/// # Ok(())
/// # }
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub fn inbox_route<S, C, I>(verifier: Verifier<NoStore, C>, inbox: I) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    C: Notification,
    I: crate::inbox::Inbox,
{
    post_service(CregisService::inbox(verifier, inbox))
}

/// The reply as an axum response: its status, `Content-Type` and body, with its
/// [`Error`](crate::Error) (if any) in the response's extensions.
///
/// # Example
///
/// ```
/// use axum::response::IntoResponse;
/// use cregis_payout_callback::{Error, Reply};
///
/// let response = Reply::from(Error::SignatureMismatch).into_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.extensions().get::<Error>(), Some(&Error::SignatureMismatch));
/// ```
impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        ::http::Response::<http_body_util::Full<Bytes>>::from(self).into_response()
    }
}

/// An extractor for an authentic, parsed callback, for hosts that write the route handler's
/// body themselves; the rejection is the [`Reply`] to send.
///
/// It takes the [`Verifier`] (with no store) from the router state (`Verifier: FromRef<S>`), refuses an
/// oversized body like [`callback_route`] does, and runs
/// [`verify_and_parse`](Verifier::verify_and_parse). Its limits, which [`callback_route`]
/// does not have:
/// - it does **not** use the verifier's idempotency store: every delivery reaches your code,
///   duplicates included;
/// - your code runs inside the request's future, which axum drops when the client
///   disconnects: spawn anything that must finish (`tokio::spawn`), and make it idempotent;
/// - answer `success` ([`Reply::ack`]) only once the effect is durable.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::post};
/// use cregis_payout_callback::{ApiKey, Error, Reply, Verifier, axum::VerifiedCallback, error::Cause};
///
/// async fn receive(VerifiedCallback(callback): VerifiedCallback) -> Reply {
///     let task = tokio::spawn(async move {
///         // Idempotent: the same payout may come again.
///         println!("{} is now {}", callback.third_party_id, callback.status);
///     });
///     match task.await {
///         Ok(()) => Reply::ack(),
///         Err(panic) => Reply::from(Error::HandlerFailed { cause: Cause::new(panic), release_failure: None }),
///     }
/// }
///
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let app: Router = Router::new().route("/cregis/payout-callback", post(receive)).with_state(verifier);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCallback<C = PayoutCallback>(pub C);

impl<S, C> FromRequest<S> for VerifiedCallback<C>
where
    S: Send + Sync,
    C: crate::Callback,
    Verifier<NoStore, C>: FromRef<S>,
{
    type Rejection = Reply;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, Reply> {
        let verifier = Verifier::<NoStore, C>::from_ref(state);
        // An approval request is refused with `deny`, like every other path but an approval.
        let refused = if C::KIND == CallbackKind::Approval {
            refuse_approval
        } else {
            refuse
        };
        let body = read_body(request, verifier.max_body_bytes())
            .await
            .map_err(refused)?;
        let callback = verifier.verify_and_parse(&body).map_err(refused)?;
        Ok(VerifiedCallback(callback))
    }
}
