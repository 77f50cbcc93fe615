//! Verification of raw request bodies with one API key.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::callback::required_integer;
use crate::idempotency::Store;
use crate::params::Params;
use crate::sign::{check_api_key, verify_params};
use crate::trace;
use crate::{
    AsyncCallbackHandler, AsyncIdempotencyStore, Attempt, CallbackHandler, Cause, Claim,
    DEFAULT_CLAIM_LEASE, Error, Fingerprint, IdempotencyStore, PayoutCallback, Reply, StoreError,
    StoreOperation,
};

/// The body size limit a [`Verifier`] starts with: 64 KiB. A real payout callback is under 1 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Verifies and parses raw callback bodies signed with one API key.
///
/// Build it once at startup and share it: it is `Send + Sync`, and `Clone` is cheap (the key
/// is reference-counted). Its `Debug` output shows the key as `[redacted]`.
///
/// Verification works on the body bytes exactly as received, in one pass: numbers are signed
/// from the text they were sent with, strings from their decoded value, unknown fields are
/// signed too, and a repeated key is refused.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{PayoutCallback, Verifier, testing::CallbackBuilder};
///
/// let verifier = Verifier::new("fake-api-key-for-docs")?;
/// // The raw request body of a payout callback (here, a test body).
/// let body = CallbackBuilder::new().body("fake-api-key-for-docs")?;
/// let reply = verifier.process(body.as_bytes(), &|callback: &PayoutCallback| {
///     println!("payout {} is now: {}", callback.third_party_id, callback.status);
///     Ok::<(), std::io::Error>(())
/// });
/// assert_eq!((reply.status_code(), reply.body()), (200, "success"));
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    settings: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    /// The current key first, then the keys still accepted during a rotation.
    api_keys: Vec<Arc<str>>,
    max_body_bytes: usize,
    expected_pid: Option<i64>,
    max_age: Option<Duration>,
    future_skew: Option<Duration>,
    store: Option<Store>,
    claim_lease: Duration,
}

/// The future skew allowed once [`Verifier::max_age`] is set, unless set otherwise: 1 minute.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

impl Verifier {
    /// A verifier for callbacks signed with `api_key`, with default settings.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// assert!(format!("{verifier:?}").contains(r#"api_keys: ["[redacted]"]"#));
    /// assert_eq!(Verifier::new("  ").unwrap_err(), Error::EmptyApiKey);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::EmptyApiKey`] if the key is empty or only whitespace.
    pub fn new(api_key: impl Into<String>) -> Result<Verifier, Error> {
        let api_key = api_key.into();
        check_api_key(&api_key)?;
        Ok(Verifier {
            settings: Arc::new(Settings {
                api_keys: vec![api_key.into()],
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                expected_pid: None,
                max_age: None,
                future_skew: None,
                store: None,
                claim_lease: DEFAULT_CLAIM_LEASE,
            }),
        })
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Also accepts signatures made with `previous_key`, for the time a key change takes.
    ///
    /// During a rotation, callbacks signed with either key verify; call it again to accept
    /// more keys. Each key is tried on every callback, in constant time.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Verifier;
    ///
    /// let verifier = Verifier::new("fake-new-key")?.also_accept("fake-old-key")?;
    /// assert!(format!("{verifier:?}").contains(r#"api_keys: ["[redacted]", "[redacted]"]"#));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::EmptyApiKey`] if `previous_key` is empty or only whitespace.
    pub fn also_accept(mut self, previous_key: impl Into<String>) -> Result<Verifier, Error> {
        let previous_key = previous_key.into();
        check_api_key(&previous_key)?;
        self.settings_mut().api_keys.push(previous_key.into());
        Ok(self)
    }

    /// Sets the largest body accepted, in bytes; a longer one is refused with
    /// [`Error::BodyTooLarge`] before any parsing. Defaults to 64 KiB
    /// ([`DEFAULT_MAX_BODY_BYTES`]).
    ///
    /// Give the same number to your web framework's body limit (see
    /// [`body_limit`](Self::body_limit)) so that an oversized body is not even read.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?.max_body_bytes(16);
    /// assert_eq!(
    ///     verifier.verify(br#"{"pid":1382528827416576}"#),
    ///     Err(Error::BodyTooLarge { len: 24, limit: 16 })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.settings_mut().max_body_bytes = n;
        self
    }

    /// The largest body accepted, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Verifier;
    ///
    /// assert_eq!(Verifier::new("fake-api-key-for-docs")?.body_limit(), 64 * 1024);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn body_limit(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// Refuses authentic callbacks whose `pid` is not `pid`, with [`Error::PidMismatch`].
    /// Defaults to accepting any project.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Verifier;
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?.expected_pid(1382528827416576);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn expected_pid(mut self, pid: i64) -> Self {
        self.settings_mut().expected_pid = Some(pid);
        self
    }

    /// Refuses callbacks whose `timestamp` is older than `max_age`, with
    /// [`Error::TimestampTooOld`] (a callback exactly `max_age` old is accepted). It also turns
    /// on the future check, with [`DEFAULT_FUTURE_SKEW`] unless
    /// [`future_skew`](Self::future_skew) says otherwise.
    ///
    /// Off by default, and think before turning it on: Cregis does not retry on its own, and an
    /// operator may re-push a failed callback from the console hours or days later, possibly
    /// with its original timestamp; this check would refuse it. Replays are better stopped by an
    /// [`IdempotencyStore`], which acknowledges a repeated delivery without handling it again.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::{Error, Verifier};
    ///
    /// let verifier = Verifier::new("f502a9ac9ca54327986f29c03b271491")?.max_age(Duration::from_secs(300));
    /// // The published vector, signed at 1688004243314 ms.
    /// let body = br#"{"pid":1382528827416576,"currency":"195@195",
    ///   "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
    ///   "third_party_id":"c9231e604da54469a735af3f449c880f",
    ///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
    ///   "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;
    /// let sent = UNIX_EPOCH + Duration::from_millis(1688004243314);
    /// verifier.verify_at(body, sent + Duration::from_secs(300))?;
    /// assert_eq!(
    ///     verifier.verify_at(body, sent + Duration::from_millis(300_001)),
    ///     Err(Error::TimestampTooOld { max_age: Duration::from_secs(300) })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.settings_mut().max_age = Some(max_age);
        self
    }

    /// Refuses callbacks whose `timestamp` is more than `skew` ahead of this host's clock, with
    /// [`Error::TimestampInFuture`]. Off by default; [`DEFAULT_FUTURE_SKEW`] once
    /// [`max_age`](Self::max_age) is set.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::Verifier;
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?
    ///     .max_age(Duration::from_secs(600))
    ///     .future_skew(Duration::from_secs(5));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn future_skew(mut self, skew: Duration) -> Self {
        self.settings_mut().future_skew = Some(skew);
        self
    }

    /// Makes [`process`](Self::process) and [`process_async`](Self::process_async) handle each
    /// fact once, whatever the number of deliveries: the recommended setup.
    ///
    /// Before the handler runs, the delivery's [`DeliveryKey`](crate::DeliveryKey) (`pid`,
    /// `cid`, `status`) is claimed in `store` for an [`Attempt`] carrying the delivery's
    /// [`Fingerprint`] and a lease ([`claim_lease`](Self::claim_lease)):
    /// - new: the handler runs; its success completes the claim, its failure releases it (so
    ///   that a re-push can be handled later); if it panics, or its future is dropped, the
    ///   outcome is unknown and the claim holds off re-deliveries until its lease ends;
    /// - already handled, same content: answered `success` without calling the handler
    ///   ([`Reply::is_duplicate`]);
    /// - being handled under a live lease, same content: answered 409
    ///   ([`Error::DeliveryInProgress`]), and not handled;
    /// - known key, other content: answered 409 ([`Error::ConflictingDelivery`]), and not
    ///   handled: Cregis reported the same fact twice with different fields;
    /// - the store fails: answered 500, and the handler is not called.
    ///
    /// [`IdempotencyStore`] says exactly what each store operation does. Clones of this
    /// verifier share the store; pass an `Arc` of it to keep a handle (to list and release
    /// stuck claims, say). For a store with async operations, see
    /// [`idempotency_async`](Self::idempotency_async).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cregis_payout_callback::{MemoryIdempotencyStore, Verifier};
    ///
    /// let store = Arc::new(MemoryIdempotencyStore::default());
    /// let verifier = Verifier::new("fake-api-key-for-docs")?.idempotency(Arc::clone(&store));
    /// assert!(store.claims_in_progress().is_empty());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn idempotency(mut self, store: impl IdempotencyStore + 'static) -> Self {
        self.settings_mut().store = Some(Store::of_sync(store));
        self
    }

    /// [`idempotency`](Self::idempotency) with a store whose operations are async (a table
    /// reached through an async database driver): awaited by
    /// [`process_async`](Self::process_async), without blocking the executor. A synchronous
    /// [`process`](Self::process) cannot await it: it answers 500 ([`Error::Store`]) without
    /// calling the handler.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{AsyncIdempotencyStore, Attempt, Claim, IdempotencyStore, MemoryIdempotencyStore, StoreError, Verifier};
    ///
    /// struct Remote(MemoryIdempotencyStore); // stands for a database table
    ///
    /// impl AsyncIdempotencyStore for Remote {
    ///     async fn claim(&self, attempt: &Attempt) -> Result<Claim, StoreError> { self.0.claim(attempt) }
    ///     async fn complete(&self, attempt: &Attempt) -> Result<(), StoreError> { self.0.complete(attempt) }
    ///     async fn release(&self, attempt: &Attempt) -> Result<(), StoreError> { self.0.release(attempt) }
    /// }
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?
    ///     .idempotency_async(Remote(MemoryIdempotencyStore::default()));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn idempotency_async(mut self, store: impl AsyncIdempotencyStore + 'static) -> Self {
        self.settings_mut().store = Some(Store::of_async(store));
        self
    }

    /// Sets how long a claim in progress holds off other deliveries of the same fact; once it
    /// has ended, the next delivery takes the claim over. Defaults to 5 minutes
    /// ([`DEFAULT_CLAIM_LEASE`]).
    ///
    /// Make it longer than your handler can ever take: a delivery that takes over a claim
    /// whose handler is in fact still running would run the handler a second time.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{MemoryIdempotencyStore, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?
    ///     .idempotency(MemoryIdempotencyStore::default())
    ///     .claim_lease(Duration::from_secs(60));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.settings_mut().claim_lease = lease;
        self
    }

    /// Checks that `body` is an authentic Cregis callback, without reading its fields into a
    /// [`PayoutCallback`]. The `pid` and freshness checks, when set, are made too.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Verifier};
    ///
    /// let verifier = Verifier::new("f502a9ac9ca54327986f29c03b271491")?;
    /// let body = br#"{"pid":1382528827416576,"currency":"195@195",
    ///   "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
    ///   "third_party_id":"c9231e604da54469a735af3f449c880f",
    ///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
    ///   "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;
    /// verifier.verify(body)?;
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BodyTooLarge`], [`Error::InvalidJson`], [`Error::NotAnObject`],
    /// [`Error::DuplicateKey`], [`Error::NestedValue`], then the authentication errors
    /// [`Error::MissingSign`], [`Error::MalformedSign`] and [`Error::SignatureMismatch`], then
    /// the checks that are set: [`Error::PidMismatch`], [`Error::TimestampTooOld`],
    /// [`Error::TimestampInFuture`] (with [`Error::InvalidField`] if `pid` or `timestamp` is
    /// unreadable).
    pub fn verify(&self, body: &[u8]) -> Result<(), Error> {
        self.verify_at(body, SystemTime::now())
    }

    /// [`verify`](Self::verify), with `now` as the current time for the freshness checks.
    ///
    /// # Example
    ///
    /// See [`max_age`](Self::max_age).
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub fn verify_at(&self, body: &[u8], now: SystemTime) -> Result<(), Error> {
        self.checked_params(body, now, &mut Params::empty())
    }

    /// Checks that `body` is an authentic Cregis callback and reads it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, Verifier, testing::CallbackBuilder};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// // The raw request body of a payout callback (here, a test body).
    /// let body = CallbackBuilder::new().body("fake-api-key-for-docs")?;
    /// let callback = verifier.verify_and_parse(body.as_bytes())?;
    /// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    /// assert_eq!(callback.amount, "1.1");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Everything [`verify`](Self::verify) returns, then, for an authentic callback that is not
    /// as documented, [`Error::InvalidField`] and [`Error::UnknownStatus`].
    pub fn verify_and_parse(&self, body: &[u8]) -> Result<PayoutCallback, Error> {
        self.verify_and_parse_at(body, SystemTime::now())
    }

    /// [`verify_and_parse`](Self::verify_and_parse), with `now` as the current time for the
    /// freshness checks.
    ///
    /// # Example
    ///
    /// See [`max_age`](Self::max_age).
    ///
    /// # Errors
    ///
    /// As [`verify_and_parse`](Self::verify_and_parse).
    pub fn verify_and_parse_at(
        &self,
        body: &[u8],
        now: SystemTime,
    ) -> Result<PayoutCallback, Error> {
        let mut params = Params::empty();
        self.checked_params(body, now, &mut params)?;
        PayoutCallback::from_params(&params)
    }

    /// Verifies and parses `body`, hands the callback to `handler`, and says what to answer.
    ///
    /// The [`Reply`] is 200 `success` only when the callback is authentic, well-formed and
    /// handled (or, with an [`IdempotencyStore`], was handled before); otherwise it carries the
    /// status code and a short reason (see [`Reply`]). The handler is never called for a
    /// callback that failed verification.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{PayoutCallback, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// let handler = |callback: &PayoutCallback| -> Result<(), String> {
    ///     unreachable!("a forged callback never reaches the handler")
    /// };
    /// let reply = verifier.process(br#"{"pid":1,"sign":"00000000000000000000000000000000"}"#, &handler);
    /// assert_eq!(reply.status_code(), 401);
    /// assert_eq!(reply.body(), "signature does not match");
    /// assert!(!reply.is_ack());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn process<H: CallbackHandler>(&self, body: &[u8], handler: &H) -> Reply {
        self.process_at(body, handler, SystemTime::now())
    }

    /// [`process`](Self::process), with `now` as the current time for the freshness checks.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use cregis_payout_callback::{PayoutCallback, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// let reply = verifier.process_at(b"{}", &|_: &PayoutCallback| Ok::<(), String>(()), SystemTime::now());
    /// assert_eq!(reply.status_code(), 401);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn process_at<H: CallbackHandler>(
        &self,
        body: &[u8],
        handler: &H,
        now: SystemTime,
    ) -> Reply {
        let reply = self.deliver(body, handler, now);
        trace::delivery(&reply);
        reply
    }

    /// Verifies and parses `body`, awaits `handler` on the callback, and says what to answer:
    /// [`process`](Self::process) for async handlers, with the same replies.
    ///
    /// The returned future is `Send`, as axum and actix-web handlers need, and does nothing
    /// until polled. If it is dropped while the handler runs, an idempotency claim stays in
    /// progress (see [`idempotency`](Self::idempotency)); web frameworks drop a handler's future
    /// when the client disconnects, so run it in a task of its own (`tokio::spawn`), as the
    /// crate's axum example does, to let it finish.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{PayoutCallback, Verifier};
    ///
    /// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
    /// #     let mut future = std::pin::pin!(future);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop {
    /// #         if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) { return output; }
    /// #     }
    /// # }
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// let handler = |callback: &PayoutCallback| {
    ///     let id = callback.third_party_id.clone();
    ///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
    /// };
    /// // Inside an async web handler: `verifier.process_async(&body, &handler).await`.
    /// let reply = block_on(verifier.process_async(b"not json", &handler));
    /// assert_eq!(reply.status_code(), 400);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    // Not an `async fn`: the signature promises a `Send` future, which callers can rely on.
    #[allow(clippy::manual_async_fn)]
    pub fn process_async<H: AsyncCallbackHandler>(
        &self,
        body: &[u8],
        handler: &H,
    ) -> impl Future<Output = Reply> + Send {
        // The clock is read when the future first runs, not when it is made.
        async move {
            self.process_async_at(body, handler, SystemTime::now())
                .await
        }
    }

    /// [`process_async`](Self::process_async), with `now` as the current time for the
    /// freshness checks.
    ///
    /// # Example
    ///
    /// See [`process_async`](Self::process_async) and [`max_age`](Self::max_age).
    // Not an `async fn`: the signature promises a `Send` future, which callers can rely on.
    #[allow(clippy::manual_async_fn)]
    pub fn process_async_at<H: AsyncCallbackHandler>(
        &self,
        body: &[u8],
        handler: &H,
        now: SystemTime,
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let reply = self.deliver_async(body, handler, now).await;
            trace::delivery(&reply);
            reply
        }
    }

    /// [`process_at`](Self::process_at), before the reply is reported.
    fn deliver<H: CallbackHandler>(&self, body: &[u8], handler: &H, now: SystemTime) -> Reply {
        let delivery = match self.begin(body, now) {
            Ok(delivery) => delivery,
            Err(error) => return error.into(),
        };
        let claim = delivery.claim.as_ref();
        if let Some((store, attempt)) = claim {
            let found = store.blocking().and_then(|store| store.claim(attempt));
            if let Err(reply) = claimed(attempt, found) {
                return reply;
            }
        }
        let outcome = handler.handle(&delivery.callback).map_err(Cause::new);
        let settled = claim.map(|(store, attempt)| {
            let store = store.blocking()?;
            match outcome {
                Ok(()) => store.complete(attempt),
                Err(_) => store.release(attempt),
            }
        });
        settle(&delivery.callback, outcome, settled)
    }

    /// [`process_async_at`](Self::process_async_at), before the reply is reported.
    async fn deliver_async<H: AsyncCallbackHandler>(
        &self,
        body: &[u8],
        handler: &H,
        now: SystemTime,
    ) -> Reply {
        let delivery = match self.begin(body, now) {
            Ok(delivery) => delivery,
            Err(error) => return error.into(),
        };
        let claim = delivery.claim.as_ref();
        if let Some((store, attempt)) = claim {
            if let Err(reply) = claimed(attempt, store.claim(attempt).await) {
                return reply;
            }
        }
        let outcome = handler.handle(&delivery.callback).await.map_err(Cause::new);
        let settled = match claim {
            None => None,
            Some((store, attempt)) => Some(match outcome {
                Ok(()) => store.complete(attempt).await,
                Err(_) => store.release(attempt).await,
            }),
        };
        settle(&delivery.callback, outcome, settled)
    }

    /// The reply to a delivery a framework adapter refused before verifying it (an oversized
    /// or broken-off body), reported like any other.
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn refuse_unread(error: Error) -> Reply {
        let reply = Reply::from(error);
        trace::delivery(&reply);
        reply
    }

    /// The reply to a delivery whose handler panicked under a framework adapter: 500, about
    /// the delivery (read again from `body`), reported like any other.
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn handler_panicked(&self, body: &[u8]) -> Reply {
        let mut reply = Reply::from(Error::handler_panicked());
        if let Ok(callback) = self.verify_and_parse(body) {
            reply = reply.about(callback.delivery_key());
        }
        trace::delivery(&reply);
        reply
    }

    /// Everything before the claim: verification, parsing, and the attempt to claim the
    /// delivery under when there is a store.
    fn begin(&self, body: &[u8], now: SystemTime) -> Result<Delivery, Error> {
        let settings = &*self.settings;
        let mut params = Params::empty();
        self.checked_params(body, now, &mut params)?;
        let callback = PayoutCallback::from_params(&params)?;
        let claim = settings.store.as_ref().map(|store| {
            let attempt = Attempt::new(
                callback.delivery_key(),
                Fingerprint::of(&params),
                now,
                settings.claim_lease,
            );
            (store.clone(), attempt)
        });
        Ok(Delivery { callback, claim })
    }

    /// Reads the parameters of `body` into `params` (filled in place: they are large to move),
    /// and checks its size, syntax and signature, and the project and freshness checks that
    /// are set.
    fn checked_params<'b>(
        &self,
        body: &'b [u8],
        now: SystemTime,
        params: &mut Params<'b>,
    ) -> Result<(), Error> {
        let settings = &*self.settings;
        authentic_params(body, &settings.api_keys, settings.max_body_bytes, params)?;
        if let Some(expected) = settings.expected_pid {
            let found = required_integer(params, "pid")?;
            if found != expected {
                return Err(Error::PidMismatch { expected, found });
            }
        }
        // Freshness is checked when either limit is set; `max_age` implies the default skew.
        let skew = settings
            .future_skew
            .or(settings.max_age.map(|_| DEFAULT_FUTURE_SKEW));
        if let Some(skew) = skew {
            let timestamp = required_integer(params, "timestamp")?;
            check_freshness(timestamp, now, settings.max_age, skew)?;
        }
        Ok(())
    }
}

/// Checks `timestamp` (ms since the epoch) against `now`, to the nanosecond. All arithmetic is
/// in `i128` nanoseconds, where no `i64` timestamp, `SystemTime` or `Duration` can overflow.
fn check_freshness(
    timestamp: i64,
    now: SystemTime,
    max_age: Option<Duration>,
    skew: Duration,
) -> Result<(), Error> {
    let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => nanos(since),
        Err(before) => -nanos(before.duration()),
    };
    let sent = i128::from(timestamp) * 1_000_000;
    if let Some(max_age) = max_age {
        if now - sent > nanos(max_age) {
            return Err(Error::TimestampTooOld { max_age });
        }
    }
    if sent - now > nanos(skew) {
        return Err(Error::TimestampInFuture { skew });
    }
    Ok(())
}

/// A verified callback on its way to the handler, with the store and attempt to claim it
/// under, if the verifier has a store.
///
/// Dropped before it is settled (the handler panicked, or an async handler's future was
/// dropped), the claim stays in progress until its lease ends: whether the effect happened is
/// unknown, and a re-delivery answered 409 is safer than a payout handled twice.
struct Delivery {
    callback: PayoutCallback,
    claim: Option<(Store, Attempt)>,
}

/// What the store found when `attempt` claimed its key: `Ok` to go on to the handler, or the
/// reply to send without calling it.
fn claimed(attempt: &Attempt, found: Result<Claim, StoreError>) -> Result<(), Reply> {
    let refusal = match found {
        Ok(Claim::Claimed) => return Ok(()),
        Ok(Claim::AlreadyDone) => Reply::duplicate(),
        Ok(Claim::InProgress) => Error::DeliveryInProgress.into(),
        Ok(Claim::Conflict) => Error::ConflictingDelivery { key: attempt.key }.into(),
        Err(e) => Error::Store {
            operation: StoreOperation::Claim,
            cause: Cause::new(e),
        }
        .into(),
    };
    Err(refusal.about(attempt.key))
}

/// The reply for the handler's `outcome` on `callback`, once its claim (if any) was completed
/// or released with the result `settled`.
fn settle(
    callback: &PayoutCallback,
    outcome: Result<(), Cause>,
    settled: Option<Result<(), StoreError>>,
) -> Reply {
    let reply = match (outcome, settled) {
        (Ok(()), None | Some(Ok(()))) => Reply::ack(),
        // The effect happened: acknowledge it, and let the host log the failure.
        (Ok(()), Some(Err(e))) => Reply::ack_with(Error::Store {
            operation: StoreOperation::Complete,
            cause: Cause::new(e),
        }),
        (Err(cause), settled) => Error::HandlerFailed {
            cause,
            release_failure: settled.and_then(Result::err).map(Cause::new),
        }
        .into(),
    };
    reply.about(callback.delivery_key())
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &*self.settings;
        f.debug_struct("Verifier")
            .field("api_keys", &vec!["[redacted]"; settings.api_keys.len()])
            .field("max_body_bytes", &settings.max_body_bytes)
            .field("expected_pid", &settings.expected_pid)
            .field("max_age", &settings.max_age)
            .field("future_skew", &settings.future_skew)
            .field(
                "idempotency",
                &settings.store.as_ref().map(|store| {
                    if store.is_async() {
                        "async store"
                    } else {
                        "store"
                    }
                }),
            )
            .field("claim_lease", &settings.claim_lease)
            .finish()
    }
}

/// Verifies a raw body with `api_key` and the default settings, and reads it.
///
/// The one-call form of [`Verifier::verify_and_parse`]. A service that takes many callbacks
/// should build one [`Verifier`] at startup instead.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{verify_and_parse, Error};
///
/// let body = br#"{"pid":1382528827416576,"currency":"195@195","sign":"d6eef2de79e39f434a38efb910213ba6"}"#;
/// assert_eq!(verify_and_parse(body, "fake-api-key-for-docs"), Err(Error::SignatureMismatch));
/// assert_eq!(verify_and_parse(body, ""), Err(Error::EmptyApiKey));
/// # Ok::<(), Error>(())
/// ```
///
/// # Errors
///
/// [`Error::EmptyApiKey`], then everything [`Verifier::verify_and_parse`] returns.
pub fn verify_and_parse(body: &[u8], api_key: &str) -> Result<PayoutCallback, Error> {
    check_api_key(api_key)?;
    let mut params = Params::empty();
    authentic_params(body, &[api_key], DEFAULT_MAX_BODY_BYTES, &mut params)?;
    PayoutCallback::from_params(&params)
}

/// Reads the parameters of `body` into `params`, and checks its size, syntax and signature.
fn authentic_params<'b, K: AsRef<str>>(
    body: &'b [u8],
    api_keys: &[K],
    limit: usize,
    params: &mut Params<'b>,
) -> Result<(), Error> {
    if body.len() > limit {
        return Err(Error::BodyTooLarge {
            len: body.len(),
            limit,
        });
    }
    params.read_body(body)?;
    verify_params(params, api_keys)
}
