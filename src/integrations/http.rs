//! The framework-neutral core (feature `http`): an [`http::Request`] with any
//! [`http_body::Body`] in, an [`http::Response`] out. With the `tower` feature, a
//! [`CregisService`] is a `tower::Service`: hyper (through `hyper-util`), `lambda_http::run`,
//! axum's `route_service`, and any framework that takes one.
//!
//! For every request it refuses a body over the verifier's limit with 413 (before reading it
//! when its `Content-Length` says so, or once more has streamed in), runs the delivery in a
//! task of its own on the current tokio runtime (a client hanging up cannot cancel the handler
//! half-way), and answers 500 for a panicking handler (503 for a task cancelled by a shutting
//! down runtime). The axum routes are this core; the actix-web routes follow the same rules in
//! actix's types.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
//! use cregis_payout_callback::http::CregisService;
//! use cregis_payout_callback::testing::CallbackBuilder;
//!
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! let settle = |callback: &PayoutCallback| {
//!     let id = callback.third_party_id.clone();
//!     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
//! };
//! let service = CregisService::callbacks(Verifier::new(key.clone()), settle);
//! let request = http::Request::post("/cregis/payout-callback")
//!     .body(CallbackBuilder::new().body(&key)?)?;
//! let response = service.handle(request).await;
//! assert_eq!(response.status(), 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use ::http::header::{self, HeaderValue};
use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::{
    announced_len, announced_too_large, approved, cut_short, delivered, joined, refuse,
    refuse_approval, streamed_too_large,
};
use crate::approval::ApprovalHandler;
use crate::error::BoxError;
use crate::idempotency::AsyncStoreSlot;
use crate::{ApprovalRequest, AsyncCallbackHandler, Error, Notification, Reply, Verifier};

/// The body of `request`, refused (413) once it is known to be over `limit` bytes, and
/// [`Error::BodyUnreadable`] if it breaks off.
pub(crate) async fn read_body<B>(request: Request<B>, limit: usize) -> Result<Bytes, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(HeaderValue::as_bytes);
    let announced = announced_len(content_length);
    if let Some(error) = announced_too_large(announced, limit) {
        return Err(error);
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => {
            let body = collected.to_bytes();
            cut_short(announced, body.len()).map_or(Ok(body), Err)
        }
        Err(e) if e.is::<LengthLimitError>() => Err(streamed_too_large(limit)),
        Err(e) => Err(Error::BodyUnreadable {
            reason: e.to_string(),
        }),
    }
}

/// The reply as an HTTP response: its status, `Content-Type` and body, with its [`Error`] (if
/// any) in the response's extensions for a logging layer
/// (`response.extensions().get::<Error>()`).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Error, Reply};
///
/// let response = http::Response::from(Reply::from(Error::SignatureMismatch));
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
/// assert_eq!(response.extensions().get::<Error>(), Some(&Error::SignatureMismatch));
/// ```
impl From<Reply> for Response<Full<Bytes>> {
    fn from(reply: Reply) -> Self {
        let error = reply.error().cloned();
        let (status, content_type, body) = reply.into_parts();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(error) = error {
            response.extensions_mut().insert(error);
        }
        response
    }
}

mod sealed {
    use super::{Bytes, Error, Future, Reply};

    /// What an endpoint does with a request's body.
    pub trait Sealed: Send + Sync + 'static {
        /// The body limit.
        fn max_body_bytes(&self) -> usize;
        /// The reply to a body refused before it reached the verifier.
        fn refused(&self, error: Error) -> Reply;
        /// The delivery, run in a task of its own.
        fn run(
            self: std::sync::Arc<Self>,
            body: Bytes,
        ) -> impl Future<Output = Reply> + Send + 'static;
        /// The reply when that task ended without one (a panic, a cancellation).
        fn failed(&self, body: &[u8], task: tokio::task::JoinError) -> Reply;
    }
}

/// What a [`CregisService`] does with each delivery: [`Callbacks`], [`Approvals`] or
/// [`IntoInbox`]. Sealed: make one with [`CregisService`]'s constructors.
pub trait Endpoint: sealed::Sealed {}

/// Payout notifications handled by a handler ([`CregisService::callbacks`]).
pub struct Callbacks<St, C, H> {
    verifier: Verifier<St, C>,
    handler: H,
}

/// Approval requests decided by a handler ([`CregisService::approvals`]).
pub struct Approvals<St, H> {
    verifier: Verifier<St, ApprovalRequest>,
    handler: H,
}

/// Payout notifications recorded in the durable inbox ([`CregisService::inbox`]).
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub struct IntoInbox<C, I> {
    verifier: Verifier<crate::idempotency::NoStore, C>,
    inbox: I,
}

/// `Debug` for the endpoints: their name alone (the verifier's key is never shown, and a
/// handler need not be `Debug`).
macro_rules! debug_by_name {
    ($($endpoint:ident<$($param:ident),*>),*) => {$(
        impl<$($param),*> std::fmt::Debug for $endpoint<$($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($endpoint)).finish_non_exhaustive()
            }
        }
    )*};
}

debug_by_name!(Callbacks<St, C, H>, Approvals<St, H>);
#[cfg(feature = "inbox")]
debug_by_name!(IntoInbox<C, I>);

/// The three endpoints differ in how a refused body is answered and in what runs in the task.
macro_rules! endpoint {
    (
        impl<$($param:ident),*> $endpoint:ty where { $($bounds:tt)* }
        refused: $refused:path,
        run($this:ident, $body:ident) $run:block
    ) => {
        impl<$($param),*> sealed::Sealed for $endpoint where $($bounds)* {
            fn max_body_bytes(&self) -> usize {
                self.verifier.max_body_bytes()
            }

            fn refused(&self, error: Error) -> Reply {
                $refused(error)
            }

            async fn run(self: Arc<Self>, $body: Bytes) -> Reply {
                let $this = self;
                $run
            }

            fn failed(&self, body: &[u8], task: tokio::task::JoinError) -> Reply {
                joined(&self.verifier, body, Err(task))
            }
        }

        impl<$($param),*> Endpoint for $endpoint where $($bounds)* {}
    };
}

endpoint! {
    impl<St, C, H> Callbacks<St, C, H>
    where { St: AsyncStoreSlot, C: Notification, H: AsyncCallbackHandler<C> + Send + 'static }
    refused: refuse,
    run(this, body) { delivered(&this.verifier, &body, &this.handler).await }
}

endpoint! {
    impl<St, H> Approvals<St, H>
    where { St: AsyncStoreSlot, H: ApprovalHandler + 'static }
    refused: refuse_approval,
    run(this, body) { approved(&this.verifier, &body, &this.handler).await }
}

#[cfg(feature = "inbox")]
endpoint! {
    impl<C, I> IntoInbox<C, I>
    where { C: Notification, I: crate::inbox::Inbox }
    refused: refuse,
    run(this, body) { this.verifier.accept(&body, &this.inbox).await }
}

/// A Cregis endpoint on plain `http` types: [`handle`](Self::handle) takes an
/// [`http::Request`] with any body and answers an [`http::Response`]; with the `tower`
/// feature it is a `tower::Service` too. Clones share the endpoint.
///
/// # Example
///
/// See [the module](self).
#[derive(Debug)]
pub struct CregisService<E> {
    endpoint: Arc<E>,
}

impl<E> Clone for CregisService<E> {
    fn clone(&self) -> Self {
        CregisService {
            endpoint: Arc::clone(&self.endpoint),
        }
    }
}

impl<St, C, H> CregisService<Callbacks<St, C, H>>
where
    St: AsyncStoreSlot,
    C: Notification,
    H: AsyncCallbackHandler<C> + Send + 'static,
{
    /// Payout notifications (wallet or sub-address, as the verifier's kind says) handled by
    /// `handler` through [`Verifier::process_async`], bounded by the claim's lease when the
    /// verifier has a store: what [`axum::callback_route`](crate::axum::callback_route) does.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn callbacks(verifier: Verifier<St, C>, handler: H) -> Self {
        CregisService {
            endpoint: Arc::new(Callbacks { verifier, handler }),
        }
    }
}

impl<St, H> CregisService<Approvals<St, H>>
where
    St: AsyncStoreSlot,
    H: ApprovalHandler + 'static,
{
    /// Approval requests decided by `handler` through [`Verifier::decide`], within
    /// [`Verifier::approval_timeout`]: `ok` only when it approved, `deny` on every other path.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier, approval::Decision};
    /// use cregis_payout_callback::{http::CregisService, testing::ApprovalBuilder};
    /// use http_body_util::BodyExt;
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let check = |request: &ApprovalRequest| {
    ///     let ours = request.third_party_id.starts_with("1e0fb3a0") && request.amount == "1.1";
    ///     async move { Ok::<_, std::io::Error>(if ours { Decision::Approve } else { Decision::deny("unknown") }) }
    /// };
    /// let service = CregisService::approvals(Verifier::new(key.clone()).for_kind::<ApprovalRequest>(), check);
    /// let request = http::Request::post("/cregis/payout-approval").body(ApprovalBuilder::new().body(&key)?)?;
    /// let body = service.handle(request).await.into_body().collect().await?.to_bytes();
    /// assert_eq!(&body[..], b"ok");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn approvals(verifier: Verifier<St, ApprovalRequest>, handler: H) -> Self {
        CregisService {
            endpoint: Arc::new(Approvals { verifier, handler }),
        }
    }
}

#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
impl<C, I> CregisService<IntoInbox<C, I>>
where
    C: Notification,
    I: crate::inbox::Inbox,
{
    /// Payout notifications recorded in `inbox` ([`Verifier::accept`]), acknowledged once
    /// committed; a [`Worker`](crate::inbox::Worker) runs the handler.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::{ApiKey, Verifier, http::CregisService, inbox::SqliteInbox};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let inbox = SqliteInbox::open(dir.path().join("inbox.db")).await?;
    /// let service = CregisService::inbox(Verifier::new(ApiKey::new("fake-api-key-for-docs")?), inbox);
    /// # drop(service);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn inbox(verifier: Verifier<crate::idempotency::NoStore, C>, inbox: I) -> Self {
        CregisService {
            endpoint: Arc::new(IntoInbox { verifier, inbox }),
        }
    }
}

impl<E: Endpoint> CregisService<E> {
    /// Answers one request: the body read up to the limit, the delivery run in a task of its
    /// own on the current tokio runtime (which a dropped request cannot cancel), a panic
    /// answered 500. Any path and method: route them in front of it.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let endpoint = &self.endpoint;
        let body = match read_body(request, endpoint.max_body_bytes()).await {
            Ok(body) => body,
            Err(error) => return endpoint.refused(error).into(),
        };
        let task = tokio::spawn(Arc::clone(endpoint).run(body.clone()));
        let reply = match task.await {
            Ok(reply) => reply,
            Err(failed) => endpoint.failed(&body, failed),
        };
        reply.into()
    }
}

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl<E, B> tower_service::Service<Request<B>> for CregisService<E>
where
    E: Endpoint,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}
