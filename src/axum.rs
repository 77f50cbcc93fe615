//! [axum](https://docs.rs/axum) integration: a ready route, a [`Reply`] that is a response,
//! and an extractor. Needs the `axum` feature.
//!
//! [`callback_route`] is the whole endpoint in one line of router code, and the safe default:
//!
//! ```
//! use axum::Router;
//! use cregis_payout_callback::{AsyncCallbackHandler, MemoryIdempotencyStore, PayoutCallback, Verifier};
//! use cregis_payout_callback::axum::callback_route;
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
//! let verifier = Verifier::new("fake-api-key-for-docs")?.idempotency(MemoryIdempotencyStore::default());
//! let app: Router = Router::new().route("/cregis/payout-callback", callback_route(verifier, Payouts));
//! # Ok::<(), cregis_payout_callback::Error>(())
//! ```
//!
//! It refuses an oversized body before reading it, runs verification and the handler in a
//! task of its own (so that a client hanging up cannot cancel the handler half-way and leave
//! its idempotency claim in progress), and answers with the [`Reply`].

use std::sync::Arc;

use ::axum::body::{Body, Bytes};
use ::axum::extract::{FromRef, FromRequest, Request};
use ::axum::http::{HeaderMap, StatusCode, header};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{MethodRouter, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{AsyncCallbackHandler, Error, PayoutCallback, Reply, Verifier};

/// The whole callback endpoint: a `POST` route for an axum [`Router`](::axum::Router) with any
/// state.
///
/// For each request it:
/// 1. refuses a body longer than [`Verifier::body_limit`] with 413, before reading it when its
///    `Content-Length` says so, or as soon as more than the limit has streamed in;
/// 2. runs [`Verifier::process_async`] with `handler` in a task of its own (`tokio::spawn`):
///    if the client disconnects, the request is dropped but the task still finishes and
///    settles its idempotency claim, so a re-push is then acknowledged as a duplicate instead
///    of answered 409;
/// 3. answers with the [`Reply`]. A handler that panics is answered 500
///    ([`Error::HandlerFailed`]).
///
/// The response carries the reply's [`Error`], if any, in its extensions, so that a logging
/// layer can read it (`response.extensions().get::<Error>()`).
///
/// Pass an `Arc` of the handler to keep a handle on it; the verifier's clones share its
/// settings and its idempotency store.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use cregis_payout_callback::{MemoryIdempotencyStore, PayoutCallback, Verifier};
/// use cregis_payout_callback::axum::callback_route;
///
/// let ledger = |callback: &PayoutCallback| {
///     let id = callback.third_party_id.clone();
///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
/// };
/// let verifier = Verifier::new("fake-api-key-for-docs")?.idempotency(MemoryIdempotencyStore::default());
/// // Any router state works.
/// let app: Router<Arc<str>> = Router::new().route("/cregis/payout-callback", callback_route(verifier, ledger));
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
pub fn callback_route<S, H>(verifier: Verifier, handler: H) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    H: AsyncCallbackHandler + Send + 'static,
{
    let handler = Arc::new(handler);
    post(move |request: Request| receive(verifier, handler, request))
}

async fn receive<H>(verifier: Verifier, handler: Arc<H>, request: Request) -> Reply
where
    H: AsyncCallbackHandler + Send + 'static,
{
    let body = match read_body(request, verifier.body_limit()).await {
        Ok(body) => body,
        Err(error) => return Verifier::refuse_unread(error),
    };
    // A task of its own: dropping this request's future (a client disconnect) does not cancel
    // the handler, which settles its claim whatever happens to the connection.
    let task = {
        let (verifier, body) = (verifier.clone(), body.clone());
        tokio::spawn(async move { verifier.process_async(&body, &*handler).await })
    };
    match task.await {
        Ok(reply) => reply,
        Err(_) => verifier.handler_panicked(&body),
    }
}

/// The body of `request`, refused (413) once it is known to be over `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, Error> {
    if let Some(len) = announced_len(request.headers()) {
        if len > limit {
            return Err(Error::BodyTooLarge { len, limit });
        }
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error::BodyTooLarge {
            len: limit.saturating_add(1),
            limit,
        }),
        Err(e) => Err(Error::unreadable_body(&*e)),
    }
}

fn announced_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The reply as an axum response: its status, `Content-Type` and body, with its
/// [`Error`] (if any) in the response's extensions.
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
        let error = self.error().cloned();
        let (status, content_type, body) = self.into_parts();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
        if let Some(error) = error {
            response.extensions_mut().insert(error);
        }
        response
    }
}

/// An extractor for an authentic, parsed callback, for hosts that write the route handler's
/// body themselves; the rejection is the [`Reply`] to send.
///
/// It takes the [`Verifier`] from the router state (`Verifier: FromRef<S>`), refuses an
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
/// use cregis_payout_callback::{Cause, Error, Reply, Verifier};
/// use cregis_payout_callback::axum::VerifiedCallback;
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
/// let verifier = Verifier::new("fake-api-key-for-docs")?;
/// let app: Router = Router::new().route("/cregis/payout-callback", post(receive)).with_state(verifier);
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCallback(pub PayoutCallback);

impl<S> FromRequest<S> for VerifiedCallback
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = Reply;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, Reply> {
        let verifier = Verifier::from_ref(state);
        let body = read_body(request, verifier.body_limit())
            .await
            .map_err(Verifier::refuse_unread)?;
        Ok(VerifiedCallback(verifier.verify_and_parse(&body)?))
    }
}
