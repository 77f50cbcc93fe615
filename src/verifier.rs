//! Verification of raw request bodies with one API key.

use std::fmt;
use std::sync::Arc;

use crate::params::Params;
use crate::sign::{check_api_key, verify_params};
use crate::{CallbackHandler, Error, PayoutCallback, Reply};

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
/// use cregis_payout_callback::{PayoutCallback, Verifier};
///
/// let verifier = Verifier::new("fake-api-key-for-docs")?;
/// # let body = cregis_payout_callback::sign(
/// #     serde_json::json!({"pid":1382528827416576u64,"cid":1391751691788288u64,"chain_id":"195",
/// #       "token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
/// #       "amount":"1.1","third_party_id":"order-42","remark":"","status":6,"nonce":"ubqso3",
/// #       "timestamp":1687850657960u64}).as_object().unwrap(), "fake-api-key-for-docs")
/// #     .map(|sign| format!(r#"{{"pid":1382528827416576,"cid":1391751691788288,"chain_id":"195","token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","third_party_id":"order-42","remark":"","status":6,"nonce":"ubqso3","timestamp":1687850657960,"sign":"{sign}"}}"#))?;
/// // `body` is the raw request body of a payout callback.
/// let reply = verifier.process(body.as_bytes(), &|callback: &PayoutCallback| {
///     println!("payout {} is now: {}", callback.third_party_id, callback.status);
///     Ok::<(), std::io::Error>(())
/// });
/// assert_eq!((reply.status_code(), reply.body()), (200, "success"));
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    api_key: Arc<str>,
    max_body_bytes: usize,
}

impl Verifier {
    /// A verifier for callbacks signed with `api_key`, with default settings.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// assert_eq!(format!("{verifier:?}"), r#"Verifier { api_key: "[redacted]", max_body_bytes: 65536 }"#);
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
            api_key: api_key.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
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
        self.max_body_bytes = n;
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
        self.max_body_bytes
    }

    /// Checks that `body` is an authentic Cregis callback, without reading its fields into a
    /// [`PayoutCallback`].
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
    /// [`Error::MissingSign`], [`Error::MalformedSign`] and [`Error::SignatureMismatch`].
    pub fn verify(&self, body: &[u8]) -> Result<(), Error> {
        authentic_params(body, &self.api_key, self.max_body_bytes).map(drop)
    }

    /// Checks that `body` is an authentic Cregis callback and reads it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, Verifier};
    ///
    /// let verifier = Verifier::new("fake-api-key-for-docs")?;
    /// # let body = cregis_payout_callback::sign(
    /// #     serde_json::json!({"pid":1382528827416576u64,"cid":1391751691788288u64,"chain_id":"195",
    /// #       "token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
    /// #       "amount":"1.1","third_party_id":"order-42","status":6,"nonce":"ubqso3",
    /// #       "timestamp":1687850657960u64}).as_object().unwrap(), "fake-api-key-for-docs")
    /// #     .map(|sign| format!(r#"{{"pid":1382528827416576,"cid":1391751691788288,"chain_id":"195","token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","third_party_id":"order-42","status":6,"nonce":"ubqso3","timestamp":1687850657960,"sign":"{sign}"}}"#))?;
    /// // `body` is the raw request body of a payout callback.
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
        let params = authentic_params(body, &self.api_key, self.max_body_bytes)?;
        PayoutCallback::from_params(&params)
    }

    /// Verifies and parses `body`, hands the callback to `handler`, and says what to answer.
    ///
    /// The [`Reply`] is 200 `success` only when the callback is authentic, well-formed and
    /// handled; otherwise it carries the status code and a short reason (see [`Reply`]). The
    /// handler is never called for a callback that failed verification.
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
        match self.verify_and_parse(body) {
            Ok(callback) => match handler.handle(&callback) {
                Ok(()) => Reply::ack(),
                Err(e) => Reply::from(Error::HandlerFailed {
                    message: e.to_string(),
                }),
            },
            Err(e) => Reply::from(e),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("api_key", &"[redacted]")
            .field("max_body_bytes", &self.max_body_bytes)
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
    let params = authentic_params(body, api_key, DEFAULT_MAX_BODY_BYTES)?;
    PayoutCallback::from_params(&params)
}

/// The parameters of `body`, once its size, syntax and signature are checked.
fn authentic_params<'b>(body: &'b [u8], api_key: &str, limit: usize) -> Result<Params<'b>, Error> {
    if body.len() > limit {
        return Err(Error::BodyTooLarge {
            len: body.len(),
            limit,
        });
    }
    let params = Params::from_body(body)?;
    verify_params(&params, api_key)?;
    Ok(params)
}
