//! The errors of the crate: [`Error`] for what can go wrong with one delivery, [`KeyError`]
//! for a key that cannot be used, and the types they carry.
//!
//! # Example
//!
//! ```
//! use cregis_payout_callback::{ApiKey, Error, Verifier, error::KeyError};
//!
//! assert_eq!(ApiKey::new(" ").unwrap_err(), KeyError::Empty);
//! let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
//! let error = verifier.verify(b"[1]").unwrap_err();
//! assert_eq!((error.kind(), error.http_status()), ("NotAnObject", 400));
//! # Ok::<(), KeyError>(())
//! ```
//!
#![doc = include_str!("docs/bad-input.md")]

use std::fmt;
use std::sync::Arc;

pub use crate::callback::{Disagreement, UnknownKind};

/// Everything that can go wrong while signing, verifying or parsing a callback.
///
/// Errors fall into classes that a host answers differently (see [`Error::http_status`]):
///
/// | class | variants | answer |
/// |---|---|---|
/// | not authentic, or not fresh | [`MissingSign`](Error::MissingSign), [`MalformedSign`](Error::MalformedSign), [`SignatureMismatch`](Error::SignatureMismatch), [`TimestampTooOld`](Error::TimestampTooOld), [`TimestampInFuture`](Error::TimestampInFuture) | 401 |
/// | malformed body | [`InvalidJson`](Error::InvalidJson), [`NotAnObject`](Error::NotAnObject), [`DuplicateKey`](Error::DuplicateKey), [`NestedValue`](Error::NestedValue) | 400 |
/// | authentic but not as documented or expected | [`InvalidField`](Error::InvalidField), [`UnknownStatus`](Error::UnknownStatus), [`PidMismatch`](Error::PidMismatch), [`WrongKind`](Error::WrongKind) | 400 |
/// | body over the size limit | [`BodyTooLarge`](Error::BodyTooLarge) | 413 |
/// | the body could not be read to its end (the client hung up) | [`BodyUnreadable`](Error::BodyUnreadable) | 400 |
/// | the same delivery is being handled right now, or the same fact came with other content | [`DeliveryInProgress`](Error::DeliveryInProgress), [`ConflictingDelivery`](Error::ConflictingDelivery) | 409 |
/// | the payout already reached another final status | [`ConflictingFinalStatus`](Error::ConflictingFinalStatus) | 409 |
/// | the host's own fault | [`HandlerFailed`](Error::HandlerFailed), [`Store`](Error::Store) | 500 |
/// | the handler's task was cancelled (the runtime is shutting down) | [`HandlerCancelled`](Error::HandlerCancelled) | 503 |
///
/// [`kind`](Error::kind) names the variant, a stable label for metrics.
///
/// No message ever contains the API key or the signature the crate expected: they are safe to
/// log. What goes back to Cregis is the [`Reply`](crate::Reply)'s body, which is the message
/// for a refusal and `internal error` for the host's own faults (whose messages carry the
/// host's error text).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Error, Verifier};
///
/// let verifier = Verifier::new(ApiKey::new("fake-api-key-for-docs")?);
/// let err = verifier.verify(br#"{"pid":1,"nonce":"abcdef"}"#).unwrap_err();
/// assert_eq!(err, Error::MissingSign);
/// assert!(err.is_authentication());
/// assert_eq!((err.http_status(), err.kind()), (401, "MissingSign"));
/// assert_eq!(err.to_string(), "sign is missing");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The body is longer than the configured limit
    /// ([`VerifierBuilder::max_body_bytes`](crate::verifier::VerifierBuilder::max_body_bytes)).
    BodyTooLarge {
        /// The body's length in bytes.
        len: usize,
        /// The limit in force.
        limit: usize,
    },

    /// The body is not one well-formed JSON text: not UTF-8, empty, a syntax error, or
    /// something after the value.
    InvalidJson {
        /// What the parser found wrong, and where.
        reason: String,
    },

    /// The body is valid JSON but not an object.
    NotAnObject,

    /// The body could not be read to its end: the client disconnected, or the connection
    /// broke, mid-body. Reported by the framework adapters; nothing was verified, and the
    /// delivery is not acknowledged. Not a protocol error: count it apart from
    /// [`InvalidJson`](Error::InvalidJson).
    BodyUnreadable {
        /// What the framework said.
        reason: String,
    },

    /// The same key appears twice in the object. Both copies are rejected: picking one would
    /// let what is verified differ from what is used.
    DuplicateKey {
        /// The repeated key, decoded, cut short if it is long.
        key: KeyExcerpt,
    },

    /// A field holds an object or an array. Cregis signs flat objects only, and the signature
    /// of a nested value is not defined.
    NestedValue {
        /// The field's key, cut short if it is long.
        key: KeyExcerpt,
    },

    /// There is no `sign` field, or it is `null` or `""`.
    MissingSign,

    /// The `sign` field is not a string of 32 hexadecimal characters (a number, an array...).
    MalformedSign,

    /// The signature does not match the body and the API key: the callback is not authentic.
    SignatureMismatch,

    /// The callback is authentic but a documented field is missing or of the wrong type.
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it, in words (`"is missing"`, `"must be an integer"`...).
        problem: &'static str,
    },

    /// The callback is authentic but its status code is not one of the eight documented ones.
    UnknownStatus {
        /// The code that was sent (any integer, even one outside `i32`).
        code: i64,
    },

    /// The callback is authentic but for another project than
    /// [`VerifierBuilder::expected_pid`](crate::verifier::VerifierBuilder::expected_pid).
    PidMismatch {
        /// The project id the verifier expects.
        expected: i64,
        /// The project id the callback carries.
        found: i64,
    },

    /// The callback is authentic but of another kind than the verifier's (a sub-address payout
    /// callback sent to the wallet payout route, say): the body reads as `found`, not as
    /// `expected`. Usually a `callback_url` pointing at the wrong route.
    WrongKind {
        /// The kind the verifier reads ([`Callback::KIND`](crate::Callback::KIND) of its type).
        expected: crate::CallbackKind,
        /// The kind the body reads as.
        found: crate::CallbackKind,
    },

    /// The callback's `timestamp` is older than
    /// [`VerifierBuilder::max_age`](crate::verifier::VerifierBuilder::max_age) allows: a replay, or a delivery re-pushed long after it was made.
    TimestampTooOld {
        /// The maximum age in force.
        max_age: std::time::Duration,
    },

    /// The callback's `timestamp` is further in the future than
    /// [`VerifierBuilder::future_skew`](crate::verifier::VerifierBuilder::future_skew) allows.
    TimestampInFuture {
        /// The allowed clock skew in force.
        skew: std::time::Duration,
    },

    /// Another worker is handling a delivery of the same payout and status right now, under a
    /// live lease (see [`IdempotencyStore`](crate::idempotency::IdempotencyStore)). The delivery is not
    /// acknowledged: Cregis does not retry on its own, but the other worker's outcome stands,
    /// and an operator's later re-push is answered from it.
    DeliveryInProgress,

    /// A delivery of a fact already handled, or being handled, carries other content than the
    /// first one: the same (`pid`, `cid`, `status`) with another amount, address, `txid`...
    /// (see [`Fingerprint`](crate::idempotency::Fingerprint)). It is authentic, but neither handled nor
    /// acknowledged: someone should look at both deliveries.
    ConflictingDelivery {
        /// The fact both deliveries report.
        key: crate::idempotency::DeliveryKey,
    },

    /// The payout already reached another final status: Cregis documents its final statuses
    /// (2, 3, 4, 6 and 7) as excluding each other, so a second one (a 7 for a payout recorded
    /// as 6, from a callback, a re-push or the reconciler) is neither handled nor
    /// acknowledged, and the [reconciler](crate::reconcile) flags it.
    ///
    /// To resolve it, a person looks the payout up in Cregis's console. If the recorded status
    /// is the right one, nothing is to be done (Cregis stops re-sending after its retries). If
    /// the new one is, correct the host's own records of the payout, then remove the recorded
    /// delivery ([`Inbox::discard`](crate::inbox::Inbox::discard), or the claim in the
    /// [store](crate::idempotency)) and have the new status delivered again (a re-push from
    /// Cregis's console, or the reconciler's next ask).
    ConflictingFinalStatus {
        /// The delivery refused: its payout and the status it reports.
        key: crate::idempotency::DeliveryKey,
        /// The final status recorded first.
        recorded: crate::CallbackStatus,
    },

    /// The [`IdempotencyStore`](crate::idempotency::IdempotencyStore) failed; [`source`](std::error::Error::source)
    /// is the store's own error.
    Store {
        /// What the store was asked to do.
        operation: StoreOperation,
        /// The store's error.
        cause: Cause,
    },

    /// The host's [`CallbackHandler`](crate::CallbackHandler) returned an error (or panicked,
    /// under a framework adapter: the cause then says so, with the panic's message);
    /// [`source`](std::error::Error::source) is the handler's own error.
    HandlerFailed {
        /// The handler's error.
        cause: Cause,
        /// The idempotency store's error, if releasing the delivery's claim failed too (the
        /// claim then holds off re-deliveries until its lease ends).
        release_failure: Option<Cause>,
    },

    /// The task a framework adapter ran the delivery in was cancelled before it finished,
    /// most often because the runtime is shutting down. Whether the handler's effect happened
    /// is unknown; an idempotency claim stays in progress until its lease ends. Answered 503:
    /// the host is going away, not failing.
    HandlerCancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BodyTooLarge { len, limit } => {
                write!(f, "body is {len} bytes, over the limit of {limit} bytes")
            }
            Error::InvalidJson { reason } => write!(f, "body is not valid json: {reason}"),
            Error::NotAnObject => f.write_str("body is not a json object"),
            Error::BodyUnreadable { reason } => write!(f, "the body could not be read: {reason}"),
            Error::DuplicateKey { key } => write!(f, "key {key} appears more than once"),
            Error::NestedValue { key } => write!(
                f,
                "field {key} holds an object or array, which cannot be signed"
            ),
            Error::MissingSign => f.write_str("sign is missing"),
            Error::MalformedSign => f.write_str("sign is not a string of 32 hex characters"),
            Error::SignatureMismatch => f.write_str("signature does not match"),
            Error::InvalidField { field, problem } => write!(f, "field {field:?} {problem}"),
            Error::UnknownStatus { code } => {
                write!(f, "status {code} is not a documented payout status")
            }
            Error::PidMismatch { expected, found } => write!(
                f,
                "callback is for project {found}, not the expected project {expected}"
            ),
            Error::WrongKind { expected, found } => write!(
                f,
                "body is a {found} callback, not a {expected} callback: check the callback_url"
            ),
            Error::TimestampTooOld { max_age } => {
                write!(f, "timestamp is older than the maximum age of {max_age:?}")
            }
            Error::TimestampInFuture { skew } => {
                write!(f, "timestamp is more than {skew:?} in the future")
            }
            Error::DeliveryInProgress => f.write_str("the same delivery is being processed"),
            Error::ConflictingDelivery { key } => write!(
                f,
                "delivery {key} was already received with different content"
            ),
            Error::ConflictingFinalStatus { key, recorded } => write!(
                f,
                "{} {} of project {} already reached final status {}; delivery {key} says {}",
                key.kind,
                key.cid,
                key.pid,
                recorded.code(),
                key.fact.code()
            ),
            Error::Store { operation, cause } => write!(f, "{}{cause}", operation.context()),
            Error::HandlerFailed {
                cause,
                release_failure,
            } => write!(
                f,
                "handler failed: {cause}{}",
                ReleaseNote(release_failure.as_ref())
            ),
            Error::HandlerCancelled => f.write_str(
                "the handler's task was cancelled before it finished (is the runtime shutting down?)",
            ),
        }
    }
}

impl std::error::Error for Error {
    /// The handler's or the store's own error, for [`HandlerFailed`](Error::HandlerFailed) and
    /// [`Store`](Error::Store): `downcast_ref` it to get your error type back.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store { cause, .. } | Error::HandlerFailed { cause, .. } => {
                Some(cause.get_ref())
            }
            _ => None,
        }
    }
}

/// Why an API key cannot be used (see [`ApiKey::new`](crate::ApiKey::new)).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, error::KeyError};
///
/// let error = ApiKey::new("fake-api-key\n").unwrap_err();
/// assert_eq!(error, KeyError::Whitespace);
/// assert_eq!(error.to_string(), "api key has leading or trailing whitespace (a newline from a file?)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty or only whitespace: anyone could forge a signature with it.
    #[error("api key is empty")]
    Empty,
    /// The key has whitespace at its start or end, most often the newline at the end of the
    /// file it was read from: trim it. Signatures are made with the exact key, so such a key
    /// would fail every callback as [`SignatureMismatch`](Error::SignatureMismatch).
    #[error("api key has leading or trailing whitespace (a newline from a file?)")]
    Whitespace,
}

/// A key from a received body, as an error names it: whole when short, else its first
/// [`KeyExcerpt::MAX_PREFIX`] bytes and its length. Keys come before any authentication, so
/// a 64 KiB key must not reach a log line or a reply body whole.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::error::KeyExcerpt;
///
/// assert_eq!(KeyExcerpt::new("memo").to_string(), r#""memo""#);
/// let long = KeyExcerpt::new(&"k".repeat(60_000));
/// assert_eq!((long.prefix(), long.len(), long.is_cut()), ("kkkkkkkkkkkkkkkkkkkk", 60_000, true));
/// assert_eq!(long.to_string(), r#""kkkkkkkkkkkkkkkkkkkk"... (60000 bytes)"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyExcerpt {
    prefix: String,
    len: usize,
}

impl KeyExcerpt {
    /// The most bytes of a key an excerpt keeps: 20.
    pub const MAX_PREFIX: usize = 20;

    /// The excerpt of `key`: all of it up to [`MAX_PREFIX`](Self::MAX_PREFIX) bytes, else as
    /// many whole characters as fit.
    ///
    /// # Example
    ///
    /// See [`KeyExcerpt`].
    pub fn new(key: &str) -> KeyExcerpt {
        let mut end = key.len().min(Self::MAX_PREFIX);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        KeyExcerpt {
            prefix: key[..end].to_owned(),
            len: key.len(),
        }
    }

    /// The key's first bytes (all of it, if it is short).
    ///
    /// # Example
    ///
    /// See [`KeyExcerpt`].
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The whole key's length in bytes.
    ///
    /// # Example
    ///
    /// See [`KeyExcerpt`].
    #[allow(clippy::len_without_is_empty)] // an empty key is still a key
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the key was longer than its [`prefix`](Self::prefix).
    ///
    /// # Example
    ///
    /// See [`KeyExcerpt`].
    pub fn is_cut(&self) -> bool {
        self.prefix.len() < self.len
    }
}

impl From<&str> for KeyExcerpt {
    /// [`KeyExcerpt::new`].
    fn from(key: &str) -> KeyExcerpt {
        KeyExcerpt::new(key)
    }
}

impl fmt::Display for KeyExcerpt {
    /// The key quoted and escaped; a cut key is followed by `... (N bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.prefix)?;
        if self.is_cut() {
            write!(f, "... ({} bytes)", self.len)?;
        }
        Ok(())
    }
}

/// What an [`IdempotencyStore`](crate::idempotency::IdempotencyStore) was asked to do when it
/// failed.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::Error;
/// use cregis_payout_callback::error::{Cause, StoreOperation};
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
    /// Recording an authentic delivery in the [`inbox`](crate::inbox) (feature `inbox`): the
    /// delivery is answered 500 and not acknowledged, so that a re-push can bring it again.
    Accept,
}

impl StoreOperation {
    fn context(self) -> &'static str {
        match self {
            StoreOperation::Claim => "idempotency store failed: ",
            StoreOperation::Complete => {
                "idempotency store failed: handled, but not recorded as done: "
            }
            StoreOperation::Accept => "inbox failed to record the delivery: ",
        }
    }
}

/// Why a framework route stopped a handler: it was still running when its claim's lease
/// ended ([`VerifierBuilder::claim_lease`](crate::verifier::VerifierBuilder::claim_lease)),
/// after which a re-push could take the claim over and run it a second time at once. The
/// cause of the reply's [`Error::HandlerFailed`] (500): the claim is released, so a re-push
/// runs the handler again.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use cregis_payout_callback::error::{Cause, PastLease};
///
/// let cause = Cause::new(PastLease { lease: Duration::from_secs(60) });
/// assert_eq!(cause.downcast_ref::<PastLease>().map(|p| p.lease), Some(Duration::from_secs(60)));
/// assert!(cause.to_string().starts_with("the handler was stopped"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error(
    "the handler was stopped: it was still running when its claim's lease of {lease:?} ended, \
     after which a re-push could run it a second time"
)]
pub struct PastLease {
    /// The claim lease the handler ran past.
    pub lease: std::time::Duration,
}

/// Why a framework route stopped an approval: the handler had not decided within
/// [`VerifierBuilder::approval_timeout`](crate::verifier::VerifierBuilder::approval_timeout),
/// or the whole decision, the idempotency store's part included, had not ended half a second
/// after that. The cause of the reply's [`Error::HandlerFailed`] (500, body `deny`): the
/// payout is denied. A handler's timeout is not remembered (the same request asked again asks
/// the handler again); a store that hung may leave its claim held until its lease ends, and
/// the request asked again meanwhile is denied too.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use cregis_payout_callback::error::{Cause, PastTimeout};
///
/// let cause = Cause::new(PastTimeout { timeout: Duration::from_secs(3) });
/// assert_eq!(cause.to_string(), "the approval was not decided within 3s: denied");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the approval was not decided within {timeout:?}: denied")]
pub struct PastTimeout {
    /// The timeout the handler ran past.
    pub timeout: std::time::Duration,
}

/// `the handler panicked: {message}`, for a panic's payload (its message, when it is text).
#[cfg(any(feature = "http", feature = "inbox"))]
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => format!("the handler panicked: {message}"),
        None => "the handler panicked".to_owned(),
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
/// use cregis_payout_callback::{Error, error::Cause};
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
    /// use cregis_payout_callback::error::Cause;
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
    /// use cregis_payout_callback::error::Cause;
    ///
    /// let cause = Cause::new(std::fmt::Error);
    /// assert!(cause.downcast_ref::<std::fmt::Error>().is_some());
    /// assert!(cause.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl Cause {
    /// The error itself, to inspect it further (its own `source()` chain, say).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::error::Cause;
    ///
    /// let cause = Cause::new("database is down");
    /// assert!(cause.get_ref().source().is_none());
    /// ```
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
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
/// [`IdempotencyStore`](crate::idempotency::IdempotencyStore)s return, and what a [`Cause`] is
/// made from.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Error {
    /// A handler that panicked, as the framework adapters report it: the panic's message, if
    /// it was a string, is kept in the cause.
    #[cfg(feature = "http")]
    pub(crate) fn handler_panicked(panic: &(dyn std::any::Any + Send)) -> Error {
        Error::HandlerFailed {
            cause: Cause::new(panic_text(panic)),
            release_failure: None,
        }
    }

    /// The variant's name: a stable label for logs and metrics (`"SignatureMismatch"`), the
    /// same from release to release.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Error;
    ///
    /// assert_eq!(Error::SignatureMismatch.kind(), "SignatureMismatch");
    /// assert_eq!(Error::BodyTooLarge { len: 70_000, limit: 65_536 }.kind(), "BodyTooLarge");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BodyTooLarge { .. } => "BodyTooLarge",
            Error::BodyUnreadable { .. } => "BodyUnreadable",
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
            Error::WrongKind { .. } => "WrongKind",
            Error::TimestampTooOld { .. } => "TimestampTooOld",
            Error::TimestampInFuture { .. } => "TimestampInFuture",
            Error::DeliveryInProgress => "DeliveryInProgress",
            Error::ConflictingDelivery { .. } => "ConflictingDelivery",
            Error::ConflictingFinalStatus { .. } => "ConflictingFinalStatus",
            Error::Store { .. } => "Store",
            Error::HandlerFailed { .. } => "HandlerFailed",
            Error::HandlerCancelled => "HandlerCancelled",
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
    /// [`UnknownStatus`](Error::UnknownStatus), [`PidMismatch`](Error::PidMismatch),
    /// [`WrongKind`](Error::WrongKind)).
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
            Error::InvalidField { .. }
                | Error::UnknownStatus { .. }
                | Error::PidMismatch { .. }
                | Error::WrongKind { .. }
        )
    }

    /// The HTTP status a callback endpoint should answer with for this error.
    ///
    /// 401 for authentication failures, 413 for [`BodyTooLarge`](Error::BodyTooLarge), 409 for
    /// [`DeliveryInProgress`](Error::DeliveryInProgress) and
    /// [`ConflictingDelivery`](Error::ConflictingDelivery), 500 for the host's own faults
    /// ([`HandlerFailed`](Error::HandlerFailed), [`Store`](Error::Store)), 503 for
    /// [`HandlerCancelled`](Error::HandlerCancelled), 400 for everything else.
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
            Error::DeliveryInProgress
            | Error::ConflictingDelivery { .. }
            | Error::ConflictingFinalStatus { .. } => 409,
            Error::HandlerFailed { .. } | Error::Store { .. } => 500,
            Error::HandlerCancelled => 503,
            _ => 400,
        }
    }
}
