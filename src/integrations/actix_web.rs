//! [actix-web](https://docs.rs/actix-web) integration: a ready route and a [`Reply`] that is a
//! [`Responder`]. Needs the `actix-web` feature.
//!
//! [`callback_route`] is the whole endpoint in one line of app code, and the safe default:
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::App;
//! use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier};
//! use cregis_payout_callback::{actix_web::callback_route, idempotency::MemoryIdempotencyStore};
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
//! let payouts = Arc::new(Payouts);
//! // In `HttpServer::new(move || ...)`: one verifier and one handler, shared by every worker.
//! let app = App::new().route("/cregis/payout-callback", callback_route(verifier.clone(), Arc::clone(&payouts)));
//! # Ok::<(), cregis_payout_callback::error::KeyError>(())
//! ```

use ::actix_web::http::{StatusCode, header};
use ::actix_web::{HttpRequest, HttpResponse, Responder, Route, web};

use super::service::CregisService;
use super::{announced_len, announced_too_large, cut_short, streamed_too_large};
use crate::approval::ApprovalHandler;
use crate::idempotency::AsyncStoreSlot;
use crate::{ApprovalRequest, AsyncCallbackHandler, Error, Notification, Reply, Verifier};

/// The whole callback endpoint: a `POST` [`Route`] for an actix-web `App`.
///
/// For each request it:
/// 1. refuses a body longer than [`Verifier::max_body_bytes`] with 413, before reading it when
///    its `Content-Length` says so, or as soon as more than the limit has streamed in; a body
///    that breaks off is [`Error::BodyUnreadable`];
/// 2. runs [`Verifier::process_async`] with `handler` in a task of its own
///    (the neutral core's [`CregisService`], on the worker's tokio runtime): if the
///    client disconnects, the request is dropped but the task still finishes and settles its
///    idempotency claim, so a re-push is then acknowledged as a duplicate instead of answered
///    409;
///    with a store, the handler is stopped if it is still running when its claim's lease
///    ends ([`VerifierBuilder::claim_lease`](crate::verifier::VerifierBuilder::claim_lease)):
///    500, [`PastLease`](crate::error::PastLease) in the cause, the claim released, so that a
///    re-push never runs it twice at once;
/// 3. answers with the [`Reply`]. A handler that panics is answered 500
///    ([`Error::HandlerFailed`], the panic's message in its cause); a task cancelled before it
///    finished (the worker shutting down) is answered 503 ([`Error::HandlerCancelled`]).
///
/// The response carries the reply's [`Error`], if any, in its extensions, for a logging
/// middleware to read.
///
/// actix-web builds the app once per worker thread: build the verifier and the handler once,
/// outside `HttpServer::new`, and pass clones (an `Arc` of the handler), so that every worker
/// shares one idempotency store and one handler.
///
/// # Example
///
/// ```
/// use actix_web::{App, HttpServer};
/// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
/// use cregis_payout_callback::{actix_web::callback_route, idempotency::MemoryIdempotencyStore};
///
/// let ledger = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
/// };
/// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
///     .idempotency(MemoryIdempotencyStore::default())
///     .build();
/// let server = HttpServer::new(move || {
///     App::new().route("/cregis/payout-callback", callback_route(verifier.clone(), ledger))
/// });
/// # drop(server);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub fn callback_route<St, C, H>(verifier: Verifier<St, C>, handler: H) -> Route
where
    St: AsyncStoreSlot,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    post_route(CregisService::callbacks(verifier, handler))
}

/// A `POST` route that reads the body within `service`'s limit, in actix's types, and hands
/// it to the neutral core, which runs the delivery in a task of its own (on the worker's tokio
/// runtime: a client hanging up cannot cancel it) and answers a panic 500.
fn post_route(service: CregisService) -> Route {
    web::post().to(move |request: HttpRequest, payload: web::Payload| {
        let service = service.clone();
        async move {
            match read_body(&request, payload, service.max_body_bytes()).await {
                Ok(body) => service.deliver(body).await,
                Err(error) => service.refuse(error),
            }
        }
    })
}

/// The body of `request`, refused (413) once it is known to be over `limit` bytes, and
/// `BodyUnreadable` if it broke off.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, Error> {
    let announced = announced_len(
        request
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(header::HeaderValue::as_bytes),
    );
    if let Some(error) = announced_too_large(announced, limit) {
        return Err(error);
    }
    match payload.to_bytes_limited(limit).await {
        // actix-web ends the payload where a client hung up, without an error.
        Ok(Ok(body)) => cut_short(announced, body.len()).map_or(Ok(body), Err),
        Ok(Err(e)) => Err(Error::BodyUnreadable {
            reason: e.to_string(),
        }),
        Err(_) => Err(streamed_too_large(limit)),
    }
}
/// The payout external verification endpoint for an actix-web `App`: `ok` only when
/// `handler` approved an authentic, well-formed [`ApprovalRequest`], `deny` on every other
/// path, with the same body limit, task of its own, timeout
/// ([`Verifier::approval_timeout`]) and panic rules as
/// [`axum::approval_route`](crate::axum::approval_route).
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use actix_web::App;
/// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};
/// use cregis_payout_callback::{actix_web::approval_route, approval::Decision};
///
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?).for_kind::<ApprovalRequest>();
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
/// let app = App::new().route("/cregis/payout-approval", approval_route(verifier, check));
/// # drop(app);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
pub fn approval_route<St, H>(verifier: Verifier<St, ApprovalRequest>, handler: H) -> Route
where
    St: AsyncStoreSlot,
    H: ApprovalHandler + 'static,
{
    post_route(CregisService::approvals(verifier, handler))
}

/// The endpoint of the durable inbox (feature `inbox`): a `POST` [`Route`] that verifies each
/// delivery and records it in `inbox`, answering `success` once the entry is committed
/// ([`Verifier::accept`]); a [`Worker`](crate::inbox::Worker) beside the server runs the
/// handler. The body rules are [`callback_route`]'s.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use actix_web::{App, HttpServer};
/// use cregis_payout_callback::{ApiKey, Verifier};
/// use cregis_payout_callback::{actix_web::inbox_route, inbox::SqliteInbox};
///
/// let dir = tempfile::tempdir()?;
/// let inbox = SqliteInbox::open(dir.path().join("inbox.db")).await?;
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let server = HttpServer::new(move || {
///     App::new().route("/cregis/payout-callback", inbox_route(verifier.clone(), inbox.clone()))
/// });
/// # drop(server);
/// # Ok(())
/// # }
/// # #[cfg(feature = "sqlite")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub fn inbox_route<C, I>(verifier: Verifier<crate::idempotency::NoStore, C>, inbox: I) -> Route
where
    C: Notification,
    I: crate::inbox::Inbox,
{
    post_route(CregisService::inbox(verifier, inbox))
}

/// The reply as an actix-web response: its status, `Content-Type` and body, with its
/// [`Error`] (if any) in the response's extensions.
///
/// # Example
///
/// ```
/// use actix_web::{Responder, test::TestRequest};
/// use cregis_payout_callback::{Error, Reply};
///
/// let response = Reply::from(Error::SignatureMismatch).respond_to(&TestRequest::default().to_http_request());
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.extensions().get::<Error>(), Some(&Error::SignatureMismatch));
/// ```
impl Responder for Reply {
    type Body = String;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse<String> {
        let error = self.error().cloned();
        let (status, content_type, body) = self.into_parts();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::with_body(status, body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        if let Some(error) = error {
            response.extensions_mut().insert(error);
        }
        response
    }
}
