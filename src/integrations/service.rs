//! The framework-neutral core (feature `http`): an [`http::Request`] with any
//! [`http_body::Body`] in, an [`http::Response`] out. With the `tower` feature, a
//! [`CregisService`] is a `tower::Service`: hyper (through `hyper-util`), `lambda_http::run`,
//! axum's `route_service`, and any framework that takes one.
//!
//! For every request it refuses a body over the verifier's limit with 413 (before reading it
//! when its `Content-Length` says so, or once more has streamed in), runs the delivery in a
//! task of its own on the current tokio runtime or one you name (a client hanging up cannot
//! cancel the handler half-way), and answers 500 for a panicking handler (503 for a task
//! cancelled by a shutting down runtime). The axum routes are this service; the actix-web routes read the body in
//! actix's types and hand it to this service for the rest.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
//! use cregis_payout_callback::service::CregisService;
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

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::http::header::{self, HeaderValue};
use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::task::JoinError;

use super::{
    announced_len, announced_too_large, cut_short, delivered, joined, refuse, streamed_too_large,
};
use crate::approval::ApprovalHandler;
use crate::approval::bounded::{decided as approved, refused as refuse_approval};
use crate::error::BoxError;
use crate::idempotency::AsyncStoreSlot;
use crate::{
    ApprovalRequest, AsyncCallbackHandler, Callback, CallbackKind, Error, Notification, Reply,
    Verifier,
};

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

/// The delivery a service runs for each body, in a task of its own.
type Run = dyn Fn(Bytes) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync;
/// The reply when that task ended without one: a panic, or a cancellation.
type Failed = dyn Fn(&[u8], JoinError) -> Reply + Send + Sync;

/// A Cregis endpoint on plain `http` types: [`handle`](Self::handle) takes an
/// [`http::Request`] with any body and answers an [`http::Response`]; with the `tower`
/// feature it is a `tower::Service` too. One type whatever the kind, store or handler
/// (easy to keep in a struct); clones share the endpoint.
///
/// # Example
///
/// See [the module](self).
#[derive(Clone)]
pub struct CregisService {
    kind: CallbackKind,
    limit: usize,
    refused: fn(Error) -> Reply,
    run: Arc<Run>,
    failed: Arc<Failed>,
    runtime: Option<tokio::runtime::Handle>,
}

/// The kind and the body limit alone: the verifier's key is never shown, and a handler need
/// not be `Debug`.
impl fmt::Debug for CregisService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CregisService")
            .field("kind", &self.kind)
            .field("max_body_bytes", &self.limit)
            .finish_non_exhaustive()
    }
}

impl CregisService {
    /// An endpoint reading bodies within `verifier`'s limit (`refused` answers one it cannot
    /// read) and running `run` on each.
    fn new<St, C, R, F>(verifier: Verifier<St, C>, refused: fn(Error) -> Reply, run: R) -> Self
    where
        St: Send + Sync + 'static,
        C: Callback,
        R: Fn(Verifier<St, C>, Bytes) -> F + Send + Sync + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        let limit = verifier.max_body_bytes();
        let failed = {
            let verifier = verifier.clone();
            move |body: &[u8], task| joined(&verifier, body, Err(task))
        };
        CregisService {
            kind: C::KIND,
            limit,
            refused,
            run: Arc::new(move |body| Box::pin(run(verifier.clone(), body))),
            failed: Arc::new(failed),
            runtime: None,
        }
    }

    /// Runs each delivery on `runtime` instead of the tokio runtime the request is served on:
    /// a runtime of its own for the handlers, or tokio under a server that runs elsewhere.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier, service::CregisService};
    ///
    /// let deliveries = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .thread_name("cregis-deliveries")
    ///     .enable_all()
    ///     .build()?;
    /// let settle = |callback: &PayoutCallback| {
    ///     let id = callback.third_party_id.clone();
    ///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
    /// };
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let service = CregisService::callbacks(Verifier::new(key), settle).on_runtime(deliveries.handle().clone());
    /// # drop(service);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn on_runtime(self, runtime: tokio::runtime::Handle) -> Self {
        CregisService {
            runtime: Some(runtime),
            ..self
        }
    }

    /// Payout notifications (wallet or sub-address, as the verifier's kind says) handled by
    /// `handler` through [`Verifier::process_async`], bounded by the claim's lease when the
    /// verifier has a store: what [`axum::callback_route`](crate::axum::callback_route) does.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn callbacks<St, C, H>(verifier: Verifier<St, C>, handler: H) -> Self
    where
        St: AsyncStoreSlot,
        C: Notification,
        H: AsyncCallbackHandler<C> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self::new(verifier, refuse, move |verifier, body| {
            let handler = Arc::clone(&handler);
            async move { delivered(&verifier, &body, &*handler).await }
        })
    }

    /// Approval requests decided by `handler` through [`Verifier::decide`], within
    /// [`Verifier::approval_timeout`]: `ok` only when it approved, `deny` on every other path.
    ///
    /// # Example
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// use std::collections::HashMap;
    /// use std::sync::Mutex;
    /// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier, approval::Decision};
    /// use cregis_payout_callback::{service::CregisService, testing::ApprovalBuilder};
    /// use http_body_util::BodyExt;
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// // The payout you created: third_party_id -> (amount, to_address, the `cid` approved).
    /// let created = Mutex::new(HashMap::from([(
    ///     "1e0fb3a0a9454ad8928d26b592e8b3c7".to_owned(),
    ///     ("1.1".to_owned(), "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS".to_owned(), None),
    /// )]));
    /// let check = move |request: &ApprovalRequest| {
    ///     // This amount, to this address, and one payout (`cid`) per order.
    ///     let asked = created.lock().is_ok_and(|mut created| {
    ///         created.get_mut(&request.third_party_id).is_some_and(|(amount, to, approved)| {
    ///             *amount == request.amount && *to == request.to_address
    ///                 && *approved.get_or_insert(request.cid) == request.cid
    ///         })
    ///     });
    ///     async move { Ok::<_, std::io::Error>(if asked { Decision::Approve } else { Decision::deny("not ours") }) }
    /// };
    /// let service = CregisService::approvals(Verifier::new(key.clone()).for_kind::<ApprovalRequest>(), check);
    /// let ask = |request: ApprovalBuilder| -> Result<_, cregis_payout_callback::Error> {
    ///     Ok(http::Request::post("/cregis/payout-approval").body(request.body(&key)?).unwrap())
    /// };
    /// let answer = service.handle(ask(ApprovalBuilder::new())?).await.into_body().collect().await?;
    /// assert_eq!(&answer.to_bytes()[..], b"ok");
    /// // A second payout under the same order is denied.
    /// let again = service.handle(ask(ApprovalBuilder::new().cid(1391751691788299))?).await;
    /// assert_eq!(&again.into_body().collect().await?.to_bytes()[..], b"deny");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn approvals<St, H>(verifier: Verifier<St, ApprovalRequest>, handler: H) -> Self
    where
        St: AsyncStoreSlot,
        H: ApprovalHandler + 'static,
    {
        let handler = Arc::new(handler);
        Self::new(verifier, refuse_approval, move |verifier, body| {
            let handler = Arc::clone(&handler);
            async move { approved(&verifier, &body, &*handler).await }
        })
    }

    #[cfg(feature = "inbox")]
    #[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
    /// Payout notifications recorded in `inbox` ([`Verifier::accept`]), acknowledged once
    /// committed; a [`Worker`](crate::inbox::Worker) runs the handler.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::{ApiKey, Verifier, service::CregisService, inbox::SqliteInbox};
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
    pub fn inbox<C, I>(verifier: Verifier<crate::idempotency::NoStore, C>, inbox: I) -> Self
    where
        C: Notification,
        I: crate::inbox::Inbox,
    {
        Self::new(verifier, refuse, move |verifier, body| {
            let inbox = inbox.clone();
            async move { verifier.accept(&body, &inbox).await }
        })
    }

    /// Answers one request: the body read up to the limit, the delivery run in a task of its
    /// own on the current tokio runtime, or the one [`on_runtime`](Self::on_runtime) names
    /// (which a dropped request cannot cancel), a panic answered 500. Any path and method:
    /// route them in front of it.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        match read_body(request, self.limit).await {
            Ok(body) => self.deliver(body).await,
            Err(error) => self.refuse(error),
        }
        .into()
    }

    /// The body limit, for an adapter that reads the body in its framework's types.
    #[cfg(feature = "actix-web")]
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.limit
    }

    /// The answer to a body that could not be read.
    pub(crate) fn refuse(&self, error: Error) -> Reply {
        (self.refused)(error)
    }

    /// The delivery of `body`, run in a task of its own on the service's runtime or the
    /// current one (which dropping this future cannot cancel), a panic answered 500.
    pub(crate) async fn deliver(&self, body: Bytes) -> Reply {
        let delivery = (self.run)(body.clone());
        let task = match &self.runtime {
            Some(runtime) => runtime.spawn(delivery),
            None => tokio::spawn(delivery),
        };
        match task.await {
            Ok(reply) => reply,
            Err(task) => (self.failed)(&body, task),
        }
    }
}

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl<B> tower_service::Service<Request<B>> for CregisService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}
