//! The one error type of the crate.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Everything that can go wrong while signing, verifying or parsing a callback.
///
/// Errors fall into classes that a host answers differently (see [`Error::http_status`]):
///
/// | class | variants | answer |
/// |---|---|---|
/// | not authentic, or not fresh | [`MissingSign`](Error::MissingSign), [`MalformedSign`](Error::MalformedSign), [`SignatureMismatch`](Error::SignatureMismatch), [`TimestampTooOld`](Error::TimestampTooOld), [`TimestampInFuture`](Error::TimestampInFuture) | 401 |
/// | malformed body | [`InvalidJson`](Error::InvalidJson), [`NotAnObject`](Error::NotAnObject), [`DuplicateKey`](Error::DuplicateKey), [`NestedValue`](Error::NestedValue) | 400 |
/// | authentic but not as documented or expected | [`InvalidField`](Error::InvalidField), [`UnknownStatus`](Error::UnknownStatus), [`PidMismatch`](Error::PidMismatch) | 400 |
/// | body over the size limit | [`BodyTooLarge`](Error::BodyTooLarge) | 413 |
/// | the same delivery is being handled right now, or the same fact came with other content | [`DeliveryInProgress`](Error::DeliveryInProgress), [`ConflictingDelivery`](Error::ConflictingDelivery) | 409 |
/// | the host's own fault | [`EmptyApiKey`](Error::EmptyApiKey), [`ApiKeyWhitespace`](Error::ApiKeyWhitespace), [`HandlerFailed`](Error::HandlerFailed), [`Store`](Error::Store) | 500 |
///
/// No message ever contains the API key or the signature the crate expected: they are safe to
/// log and to send back to Cregis.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Error, Verifier};
///
/// let verifier = Verifier::new("fake-api-key-for-docs")?;
/// let err = verifier.verify(br#"{"pid":1,"nonce":"abcdef"}"#).unwrap_err();
/// assert_eq!(err, Error::MissingSign);
/// assert!(err.is_authentication());
/// assert_eq!(err.http_status(), 401);
/// assert_eq!(err.to_string(), "sign is missing");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API key is empty or only whitespace: anyone could forge a signature with it.
    #[error("api key is empty")]
    EmptyApiKey,

    /// The body is longer than the configured limit
    /// ([`Verifier::max_body_bytes`](crate::Verifier::max_body_bytes)).
    #[error("body is {len} bytes, over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The body's length in bytes.
        len: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The body is not one well-formed JSON text: not UTF-8, empty, a syntax error, or
    /// something after the value.
    #[error("body is not valid json: {reason}")]
    InvalidJson {
        /// What the parser found wrong, and where.
        reason: String,
    },

    /// The body is valid JSON but not an object.
    #[error("body is not a json object")]
    NotAnObject,

    /// The same key appears twice in the object. Both copies are rejected: picking one would
    /// let what is verified differ from what is used.
    #[error("key {key:?} appears more than once")]
    DuplicateKey {
        /// The repeated key, decoded.
        key: String,
    },

    /// A field holds an object or an array. Cregis signs flat objects only, and the signature
    /// of a nested value is not defined.
    #[error("field {key:?} holds an object or array, which cannot be signed")]
    NestedValue {
        /// The field's key.
        key: String,
    },

    /// There is no `sign` field, or it is `null` or `""`.
    #[error("sign is missing")]
    MissingSign,

    /// The `sign` field is not a string of 32 hexadecimal characters (a number, an array...).
    #[error("sign is not a string of 32 hex characters")]
    MalformedSign,

    /// The signature does not match the body and the API key: the callback is not authentic.
    #[error("signature does not match")]
    SignatureMismatch,

    /// The callback is authentic but a documented field is missing or of the wrong type.
    #[error("field {field:?} {problem}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it, in words (`"is missing"`, `"must be an integer"`...).
        problem: &'static str,
    },

    /// The callback is authentic but its status code is not one of the eight documented ones.
    #[error("status {code} is not a documented payout status")]
    UnknownStatus {
        /// The code that was sent (any integer, even one outside `i32`).
        code: i64,
    },

    /// The callback is authentic but for another project than
    /// [`Verifier::expected_pid`](crate::Verifier::expected_pid).
    #[error("callback is for project {found}, not the expected project {expected}")]
    PidMismatch {
        /// The project id the verifier expects.
        expected: i64,
        /// The project id the callback carries.
        found: i64,
    },

    /// The callback's `timestamp` is older than [`Verifier::max_age`](crate::Verifier::max_age)
    /// allows: a replay, or a delivery re-pushed long after it was made.
    #[error("timestamp is older than the maximum age of {max_age:?}")]
    TimestampTooOld {
        /// The maximum age in force.
        max_age: std::time::Duration,
    },

    /// The callback's `timestamp` is further in the future than
    /// [`Verifier::future_skew`](crate::Verifier::future_skew) allows.
    #[error("timestamp is more than {skew:?} in the future")]
    TimestampInFuture {
        /// The allowed clock skew in force.
        skew: std::time::Duration,
    },

    /// Another worker is handling a delivery of the same payout and status right now, under a
    /// live lease (see [`IdempotencyStore`](crate::IdempotencyStore)). The delivery is not
    /// acknowledged: Cregis does not retry on its own, but the other worker's outcome stands,
    /// and an operator's later re-push is answered from it.
    #[error("the same delivery is being processed")]
    DeliveryInProgress,

    /// A delivery of a fact already handled, or being handled, carries other content than the
    /// first one: the same (`pid`, `cid`, `status`) with another amount, address, `txid`...
    /// (see [`Fingerprint`](crate::Fingerprint)). It is authentic, but neither handled nor
    /// acknowledged: someone should look at both deliveries.
    #[error("delivery {key} was already received with different content")]
    ConflictingDelivery {
        /// The fact both deliveries report.
        key: crate::DeliveryKey,
    },

    /// The [`IdempotencyStore`](crate::IdempotencyStore) failed; [`source`](std::error::Error::source)
    /// is the store's own error.
    #[error("idempotency store failed: {}{cause}", .operation.context())]
    Store {
        /// What the store was asked to do.
        operation: StoreOperation,
        /// The store's error.
        #[source]
        cause: Cause,
    },

    /// The host's [`CallbackHandler`](crate::CallbackHandler) returned an error (or panicked,
    /// under a framework adapter); [`source`](std::error::Error::source) is the handler's own
    /// error.
    #[error("handler failed: {cause}{}", ReleaseNote(.release_failure.as_ref()))]
    HandlerFailed {
        /// The handler's error.
        #[source]
        cause: Cause,
        /// The idempotency store's error, if releasing the delivery's claim failed too (the
        /// claim then holds off re-deliveries until its lease ends).
        release_failure: Option<Cause>,
    },

    /// The API key has whitespace at its start or end, most often the newline at the end of
    /// the file it was read from: trim it. Signatures are made with the exact key, so such a
    /// key would fail every callback as [`SignatureMismatch`](Error::SignatureMismatch).
    #[error("api key has leading or trailing whitespace (a newline from a file?)")]
    ApiKeyWhitespace,
}

/// What an [`IdempotencyStore`](crate::IdempotencyStore) was asked to do when it failed.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Cause, Error, StoreOperation};
///
/// let error = Error::Store { operation: StoreOperation::Complete, cause: Cause::new("disk full") };
/// assert_eq!(error.to_string(), "idempotency store failed: handled, but not recorded as done: disk full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Claiming the delivery, before the handler: the delivery is answered 500 and not handled.
    Claim,
    /// Recording a handled delivery as done: the delivery is still acknowledged.
    Complete,
}

impl StoreOperation {
    fn context(self) -> &'static str {
        match self {
            StoreOperation::Claim => "",
            StoreOperation::Complete => "handled, but not recorded as done: ",
        }
    }
}

/// `; releasing its claim failed too: ...` when there is a release failure.
struct ReleaseNote<'a>(Option<&'a Cause>);

impl fmt::Display for ReleaseNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) => write!(f, "; releasing its claim failed too: {cause}"),
            None => Ok(()),
        }
    }
}

/// The error a handler or an idempotency store returned, kept whole inside an [`Error`]:
/// shared (cheap to clone), and reachable as the [`Error`]'s
/// [`source`](std::error::Error::source), so that a host can get its own error type back.
///
/// Two causes are equal when their messages are.
///
/// # Example
///
/// ```
/// use std::error::Error as _;
/// use cregis_payout_callback::{Cause, Error};
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "database timed out");
/// let error = Error::HandlerFailed { cause: Cause::new(io), release_failure: None };
/// assert_eq!(error.to_string(), "handler failed: database timed out");
/// let source = error.source().unwrap();
/// assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::TimedOut);
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Keeps `error`: any error type, or a message (`&str`, `String`).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Cause;
    ///
    /// assert_eq!(Cause::new("database is down").to_string(), "database is down");
    /// ```
    pub fn new(error: impl Into<BoxError>) -> Cause {
        Cause(Arc::from(error.into()))
    }

    /// The error, if it is of type `E`.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Cause;
    ///
    /// let cause = Cause::new(std::fmt::Error);
    /// assert!(cause.downcast_ref::<std::fmt::Error>().is_some());
    /// assert!(cause.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// Any error, boxed: what [`handler_fn`](crate::handler_fn) closures and
/// [`IdempotencyStore`](crate::IdempotencyStore)s return, and what a [`Cause`] is made from.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Error {
    /// A handler that panicked, as the framework adapters report it.
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn handler_panicked() -> Error {
        Error::HandlerFailed {
            cause: Cause::new("the handler panicked"),
            release_failure: None,
        }
    }

    /// A body the framework could not read to its end (the client broke off, say).
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn unreadable_body(cause: &dyn std::fmt::Display) -> Error {
        Error::InvalidJson {
            reason: format!("the body could not be read: {cause}"),
        }
    }

    /// The variant's name, for logs and metrics (`"SignatureMismatch"`).
    #[cfg(feature = "tracing")]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::EmptyApiKey => "EmptyApiKey",
            Error::ApiKeyWhitespace => "ApiKeyWhitespace",
            Error::BodyTooLarge { .. } => "BodyTooLarge",
            Error::InvalidJson { .. } => "InvalidJson",
            Error::NotAnObject => "NotAnObject",
            Error::DuplicateKey { .. } => "DuplicateKey",
            Error::NestedValue { .. } => "NestedValue",
            Error::MissingSign => "MissingSign",
            Error::MalformedSign => "MalformedSign",
            Error::SignatureMismatch => "SignatureMismatch",
            Error::InvalidField { .. } => "InvalidField",
            Error::UnknownStatus { .. } => "UnknownStatus",
            Error::PidMismatch { .. } => "PidMismatch",
            Error::TimestampTooOld { .. } => "TimestampTooOld",
            Error::TimestampInFuture { .. } => "TimestampInFuture",
            Error::DeliveryInProgress => "DeliveryInProgress",
            Error::ConflictingDelivery { .. } => "ConflictingDelivery",
            Error::Store { .. } => "Store",
            Error::HandlerFailed { .. } => "HandlerFailed",
        }
    }

    /// Whether the callback failed authentication: its `sign` is missing, malformed or wrong,
    /// or (when freshness is checked) its `timestamp` is too old or too far ahead.
    ///
    /// A host should answer these with 401 and may want to alert on them: they are forgeries,
    /// replays, or a misconfigured API key.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Error;
    ///
    /// assert!(Error::SignatureMismatch.is_authentication());
    /// assert!(!Error::NotAnObject.is_authentication());
    /// ```
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            Error::MissingSign
                | Error::MalformedSign
                | Error::SignatureMismatch
                | Error::TimestampTooOld { .. }
                | Error::TimestampInFuture { .. }
        )
    }

    /// Whether the callback is authentic but does not match the documented contract or the
    /// verifier's expectations ([`InvalidField`](Error::InvalidField),
    /// [`UnknownStatus`](Error::UnknownStatus), [`PidMismatch`](Error::PidMismatch)).
    ///
    /// These mean Cregis sent something this crate does not expect (a protocol change, say):
    /// worth an alert, not a security incident.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Error;
    ///
    /// assert!(Error::UnknownStatus { code: 9 }.is_contract());
    /// assert!(!Error::SignatureMismatch.is_contract());
    /// ```
    pub fn is_contract(&self) -> bool {
        matches!(
            self,
            Error::InvalidField { .. } | Error::UnknownStatus { .. } | Error::PidMismatch { .. }
        )
    }

    /// The HTTP status a callback endpoint should answer with for this error.
    ///
    /// 401 for authentication failures, 413 for [`BodyTooLarge`](Error::BodyTooLarge), 409 for
    /// [`DeliveryInProgress`](Error::DeliveryInProgress) and
    /// [`ConflictingDelivery`](Error::ConflictingDelivery), 500 for the host's own faults
    /// ([`EmptyApiKey`](Error::EmptyApiKey), [`ApiKeyWhitespace`](Error::ApiKeyWhitespace),
    /// [`HandlerFailed`](Error::HandlerFailed), [`Store`](Error::Store)), 400 for everything
    /// else.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Error;
    ///
    /// assert_eq!(Error::MalformedSign.http_status(), 401);
    /// assert_eq!(Error::NotAnObject.http_status(), 400);
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            _ if self.is_authentication() => 401,
            Error::BodyTooLarge { .. } => 413,
            Error::DeliveryInProgress | Error::ConflictingDelivery { .. } => 409,
            Error::EmptyApiKey
            | Error::ApiKeyWhitespace
            | Error::HandlerFailed { .. }
            | Error::Store { .. } => 500,
            _ => 400,
        }
    }
}
