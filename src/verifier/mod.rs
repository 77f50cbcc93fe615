//! The verifier: one raw body in, a verified callback or a [`Reply`] out.
//!
//! [`Verifier`] is the entry point (re-exported at the crate root); this module holds its
//! builder, its clock and its defaults.
//!
//! # Example
//!
//! ```
//! use cregis_payout_callback::{ApiKey, Verifier, verifier::{DEFAULT_MAX_BODY_BYTES, SystemClock}};
//!
//! let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?).clock(SystemClock).build();
//! assert_eq!(verifier.max_body_bytes(), DEFAULT_MAX_BODY_BYTES);
//! # Ok::<(), cregis_payout_callback::error::KeyError>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::callback::{from_params, other_kind, required_integer};
use crate::idempotency::{AsyncStoreSlot, NoStore, Store, SyncStoreSlot};
use crate::signature::verify_params;
use crate::wire::Params;
use crate::{
    ApiKey, AsyncCallbackHandler, Callback, CallbackHandler, Error, Notification, PayoutCallback,
    Reply, trace,
};

mod builder;
mod clock;
pub(crate) mod delivery;
mod freshness;

pub use builder::{DEFAULT_FUTURE_SKEW, InvalidSetting, VerifierBuilder};
pub use clock::{Clock, SystemClock};

/// The callback of kind `C` in verified parameters; a body that is another kind is
/// [`Error::WrongKind`] (looked for only once `C` has failed, so it costs nothing otherwise).
#[inline]
pub(crate) fn parse<C: Callback>(params: &Params<'_>) -> Result<C, Error> {
    from_params::<C>(params).map_err(|error| match other_kind(params, C::KIND) {
        Some(found) => Error::WrongKind {
            expected: C::KIND,
            found,
        },
        None => error,
    })
}

/// The body size limit a [`Verifier`] starts with: 64 KiB. A real payout callback is under 1 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Verifies and parses raw callback bodies signed with one API key (or, during a rotation,
/// a few).
///
/// Build it once at startup ([`Verifier::new`], or [`Verifier::builder`] for settings) and
/// share it: it is `Send + Sync`, and `Clone` is cheap (clones share the settings and the
/// idempotency store). Its `Debug` output never shows a key.
///
/// Verification works on the body bytes exactly as received, in one pass: numbers are signed
/// from the text they were sent with, strings from their decoded value, unknown fields are
/// signed too, and a repeated key is refused.
///
/// `S` is the idempotency store slot ([`NoStore`] by default, see
/// [`VerifierBuilder::idempotency`]). `C` is the kind of callback it reads
/// ([`PayoutCallback`] by default, another with [`for_kind`](Verifier::for_kind)): a body of
/// another kind is refused with [`Error::WrongKind`], and a handler for another kind does not
/// compile.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier, testing::CallbackBuilder};
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let verifier = Verifier::new(key.clone());
/// // The raw request body of a payout callback (here, a test body).
/// let body = CallbackBuilder::new().body(&key)?;
/// let reply = verifier.process(body.as_bytes(), &|callback: &PayoutCallback| {
///     println!("payout {} is now: {}", callback.third_party_id, callback.status);
///     Ok::<(), std::io::Error>(())
/// });
/// assert_eq!((reply.status_code(), reply.body()), (200, "success"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Verifier<S = NoStore, C = PayoutCallback> {
    pub(crate) settings: Arc<Settings>,
    pub(crate) store: Arc<S>,
    kind: PhantomData<fn() -> C>,
}

/// What a [`VerifierBuilder`] sets.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The current key first, then the keys still accepted during a rotation.
    api_keys: Vec<ApiKey>,
    max_body_bytes: usize,
    expected_pid: Option<i64>,
    max_age: Option<Duration>,
    future_skew: Option<Duration>,
    pub(crate) claim_lease: Duration,
    pub(crate) approval_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Which key a verified callback was signed with (see [`VerifierBuilder::also_accept`]).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, testing::CallbackBuilder, verifier::MatchedKey};
///
/// let (new, old) = (ApiKey::new("fake-new-key")?, ApiKey::new("fake-old-key")?);
/// let verifier = Verifier::builder(new.clone()).also_accept(old.clone()).build();
/// let body = CallbackBuilder::new().body(&old)?;
/// assert_eq!(verifier.verify(body.as_bytes())?, MatchedKey::Previous { index: 0 });
/// assert_eq!(MatchedKey::Previous { index: 0 }.to_string(), "previous key 0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatchedKey {
    /// The key the verifier was made with.
    Current,
    /// A key accepted with [`also_accept`](VerifierBuilder::also_accept): `index` 0 for the
    /// first one added, 1 for the next...
    Previous {
        /// Its place among the previous keys, in the order they were added.
        index: usize,
    },
}

impl MatchedKey {
    fn from_index(index: usize) -> MatchedKey {
        match index.checked_sub(1) {
            None => MatchedKey::Current,
            Some(index) => MatchedKey::Previous { index },
        }
    }
}

impl fmt::Display for MatchedKey {
    /// `current key`, or `previous key N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedKey::Current => f.write_str("current key"),
            MatchedKey::Previous { index } => write!(f, "previous key {index}"),
        }
    }
}

impl Verifier {
    /// A verifier for callbacks signed with `api_key`, with every default: no idempotency
    /// store, a 64 KiB body limit, any project, no freshness check.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier};
    ///
    /// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
    /// assert!(!format!("{verifier:?}").contains("fake"));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn new(api_key: ApiKey) -> Verifier {
        Verifier::builder(api_key).build()
    }

    /// A [`VerifierBuilder`] for a verifier of callbacks signed with `api_key`.
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder`].
    pub fn builder(api_key: ApiKey) -> VerifierBuilder {
        VerifierBuilder::new(api_key)
    }
}

impl<T, C> Verifier<Store<T>, C> {
    /// The idempotency store, as given to [`VerifierBuilder::idempotency`]: to list and
    /// release stuck claims, say.
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder::idempotency`].
    pub fn store(&self) -> &T {
        &self.store.0
    }

    /// How long a claim in progress holds off other deliveries of the same fact (see
    /// [`VerifierBuilder::claim_lease`]).
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder::claim_lease`].
    pub fn claim_lease(&self) -> Duration {
        self.settings.claim_lease
    }
}

/// What the framework adapters need to bound a handler by its claim's lease.
#[cfg(feature = "http")]
impl<S: crate::idempotency::AsyncStoreSlot, C> Verifier<S, C> {
    /// Whether deliveries are claimed in a store (and so under a lease).
    pub(crate) fn has_store(&self) -> bool {
        self.store.store().is_some()
    }

    /// The claim lease, whatever the store slot.
    pub(crate) fn claim_lease_setting(&self) -> Duration {
        self.settings.claim_lease
    }
}

impl<S, C> Verifier<S, C> {
    /// How long the framework routes let an approval handler decide before answering `deny`
    /// (see [`VerifierBuilder::approval_timeout`]).
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder::approval_timeout`].
    pub fn approval_timeout(&self) -> Duration {
        self.settings.approval_timeout
    }

    /// The largest body accepted, in bytes (see [`VerifierBuilder::max_body_bytes`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier};
    ///
    /// assert_eq!(Verifier::new(ApiKey::new("fake-api-key-for-docs")?).max_body_bytes(), 64 * 1024);
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// The project whose callbacks alone are accepted, if one is set (see
    /// [`VerifierBuilder::expected_pid`]).
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder::expected_pid`].
    pub fn expected_pid(&self) -> Option<i64> {
        self.settings.expected_pid
    }

    /// The oldest `timestamp` accepted, as an age, if one is set (see
    /// [`VerifierBuilder::max_age`]).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{ApiKey, Verifier};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// assert_eq!(Verifier::new(key.clone()).max_age(), None);
    /// let verifier = Verifier::builder(key).max_age(Duration::from_secs(300)).build();
    /// assert_eq!(verifier.max_age(), Some(Duration::from_secs(300)));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn max_age(&self) -> Option<Duration> {
        self.settings.max_age
    }

    /// How far ahead of the clock a `timestamp` may be, if that is checked: the
    /// [`VerifierBuilder::future_skew`] set, else [`DEFAULT_FUTURE_SKEW`] once a
    /// [`max_age`](VerifierBuilder::max_age) is set, else `None`.
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder::future_skew`].
    pub fn future_skew(&self) -> Option<Duration> {
        let settings = &*self.settings;
        settings
            .future_skew
            .or(settings.max_age.map(|_| DEFAULT_FUTURE_SKEW))
    }

    /// Checks that `body` is an authentic Cregis callback, without reading its fields into a
    /// [`PayoutCallback`], and says which key signed it. The `pid` and freshness checks, when
    /// set, are made too.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier, verifier::MatchedKey};
    ///
    /// let verifier = Verifier::new(ApiKey::new("f502a9ac9ca54327986f29c03b271491")?);
    /// let body = br#"{"pid":1382528827416576,"currency":"195@195",
    ///   "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
    ///   "third_party_id":"c9231e604da54469a735af3f449c880f",
    ///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
    ///   "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;
    /// assert_eq!(verifier.verify(body)?, MatchedKey::Current);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
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
    pub fn verify(&self, body: &[u8]) -> Result<MatchedKey, Error> {
        let matched = self.checked_params(body, &mut Params::empty())?;
        Ok(MatchedKey::from_index(matched))
    }

    /// Checks that `body` is an authentic Cregis callback and reads it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, CallbackStatus, Verifier, testing::CallbackBuilder};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let verifier = Verifier::new(key.clone());
    /// // The raw request body of a payout callback (here, a test body).
    /// let body = CallbackBuilder::new().body(&key)?;
    /// let callback = verifier.verify_and_parse(body.as_bytes())?;
    /// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    /// assert_eq!(callback.amount, "1.1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Everything [`verify`](Self::verify) returns, then, for an authentic callback that is not
    /// as documented, [`Error::InvalidField`] and [`Error::UnknownStatus`], and
    /// [`Error::WrongKind`] for a body that is another kind of callback than `C`.
    pub fn verify_and_parse(&self, body: &[u8]) -> Result<C, Error>
    where
        C: Callback,
    {
        let mut params = Params::empty();
        self.checked_params(body, &mut params)?;
        parse(&params)
    }

    /// The same verifier, for callbacks of kind `K`: the same keys, settings and idempotency
    /// store (each kind has its own [`DeliveryKey`](crate::idempotency::DeliveryKey)s, so one
    /// store serves every kind).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Error, CallbackKind, Verifier, WithdrawalCallback};
    /// use cregis_payout_callback::testing::{CallbackBuilder, WithdrawalBuilder};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let payouts = Verifier::new(key.clone());
    /// let withdrawals = payouts.clone().for_kind::<WithdrawalCallback>();
    /// let body = WithdrawalBuilder::new().body(&key)?;
    /// assert_eq!(withdrawals.verify_and_parse(body.as_bytes())?.cid, 1391751691788288);
    /// assert_eq!(
    ///     payouts.verify_and_parse(body.as_bytes()),
    ///     Err(Error::WrongKind { expected: CallbackKind::Payout, found: CallbackKind::Withdrawal })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_kind<K: Callback>(self) -> Verifier<S, K> {
        Verifier {
            settings: self.settings,
            store: self.store,
            kind: PhantomData,
        }
    }

    /// [`authentic_params`](Self::authentic_params), then [`checks`](Self::checks).
    fn checked_params<'b>(&self, body: &'b [u8], params: &mut Params<'b>) -> Result<usize, Error> {
        let matched = self.authentic_params(body, params)?;
        self.checks(params, None)?;
        Ok(matched)
    }

    /// Reads the parameters of `body` into `params` (filled in place: they are large to move),
    /// and checks its size, syntax and signature; returns the index of the key that matched.
    fn authentic_params<'b>(
        &self,
        body: &'b [u8],
        params: &mut Params<'b>,
    ) -> Result<usize, Error> {
        let settings = &*self.settings;
        if body.len() > settings.max_body_bytes {
            return Err(Error::BodyTooLarge {
                len: body.len(),
                limit: settings.max_body_bytes,
            });
        }
        params.read_body(body)?;
        verify_params(params, &settings.api_keys)
    }

    /// The project and freshness checks that are set, on authentic `params`. `now` is the time
    /// of the delivery if it was read already; else the clock is read if a freshness check
    /// needs it.
    fn checks(&self, params: &Params<'_>, now: Option<SystemTime>) -> Result<(), Error> {
        let settings = &*self.settings;
        if let Some(expected) = settings.expected_pid {
            let found = required_integer(params, "pid")?;
            if found != expected {
                return Err(Error::PidMismatch { expected, found });
            }
        }
        // Freshness is checked when either limit is set; `max_age` implies the default skew.
        if let Some(skew) = self.future_skew() {
            let timestamp = required_integer(params, "timestamp")?;
            let now = now.unwrap_or_else(|| settings.clock.now());
            freshness::check_freshness(timestamp, now, settings.max_age, skew)?;
        }
        Ok(())
    }
}

impl<S, C> Verifier<S, C> {
    /// Verifies and parses `body`, hands the callback to `handler`, and says what to answer.
    ///
    /// The [`Reply`] is 200 `success` only when the callback is authentic, well-formed and
    /// handled (or, with an idempotency store, was handled before); otherwise it carries the
    /// status code and a short reason (see [`Reply`]). The handler is never called for a
    /// callback that failed verification.
    ///
    /// A verifier whose store is async has no `process` (see
    /// [`SyncStoreSlot`]): use
    /// [`process_async`](Self::process_async).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
    ///
    /// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
    /// let handler = |callback: &PayoutCallback| -> Result<(), String> {
    ///     unreachable!("a forged callback never reaches the handler")
    /// };
    /// let reply = verifier.process(br#"{"pid":1,"sign":"00000000000000000000000000000000"}"#, &handler);
    /// assert_eq!(reply.status_code(), 401);
    /// assert_eq!(reply.body(), "signature does not match");
    /// assert!(!reply.is_ack());
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn process<H: CallbackHandler<C>>(&self, body: &[u8], handler: &H) -> Reply
    where
        S: SyncStoreSlot,
        C: Notification,
    {
        let reply = self.deliver(body, handler);
        trace::delivery(&reply);
        reply
    }
}

impl<S, C> Verifier<S, C> {
    /// Verifies and parses `body`, awaits `handler` on the callback, and says what to answer:
    /// [`process`](Self::process) for async handlers and async stores, with the same replies.
    ///
    /// The returned future is `Send`, as axum and actix-web handlers need, and does nothing
    /// until polled. If it is dropped while the handler runs, an idempotency claim stays in
    /// progress (see [`VerifierBuilder::idempotency`]); web frameworks drop a handler's future
    /// when the client disconnects, so run it in a task of its own (`tokio::spawn`), as the
    /// crate's framework routes do, to let it finish.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
    ///
    /// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
    /// #     let mut future = std::pin::pin!(future);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop {
    /// #         if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) { return output; }
    /// #     }
    /// # }
    /// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
    /// let handler = |callback: &PayoutCallback| {
    ///     let id = callback.third_party_id.clone();
    ///     async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
    /// };
    /// // Inside an async web handler: `verifier.process_async(&body, &handler).await`.
    /// let reply = block_on(verifier.process_async(b"not json", &handler));
    /// assert_eq!(reply.status_code(), 400);
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    // Not an `async fn`: the signature promises a `Send` future, which callers can rely on.
    #[allow(clippy::manual_async_fn)]
    pub fn process_async<H: AsyncCallbackHandler<C>>(
        &self,
        body: &[u8],
        handler: &H,
    ) -> impl Future<Output = Reply> + Send
    where
        S: AsyncStoreSlot,
        C: Notification,
    {
        async move {
            let reply = self.deliver_async(body, handler).await;
            trace::delivery(&reply);
            reply
        }
    }
}

impl<S, C> Clone for Verifier<S, C> {
    fn clone(&self) -> Self {
        Verifier {
            settings: Arc::clone(&self.settings),
            store: Arc::clone(&self.store),
            kind: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C: Callback> fmt::Debug for Verifier<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &*self.settings;
        f.debug_struct("Verifier")
            .field("kind", &C::KIND)
            .field("api_keys", &settings.api_keys)
            .field("max_body_bytes", &settings.max_body_bytes)
            .field("expected_pid", &settings.expected_pid)
            .field("max_age", &settings.max_age)
            .field("future_skew", &settings.future_skew)
            .field("store", &self.store)
            .field("claim_lease", &settings.claim_lease)
            .field("approval_timeout", &settings.approval_timeout)
            .field("clock", &settings.clock)
            .finish()
    }
}
