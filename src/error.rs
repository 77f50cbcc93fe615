//! The one error type of the crate.

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
/// | the host's own fault | [`EmptyApiKey`](Error::EmptyApiKey), [`HandlerFailed`](Error::HandlerFailed), [`Store`](Error::Store) | 500 |
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

    /// Another worker is handling a delivery of the same payout and status right now (see
    /// [`IdempotencyStore`](crate::IdempotencyStore)); the sender should try again later.
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

    /// The [`IdempotencyStore`](crate::IdempotencyStore) failed.
    #[error("idempotency store failed: {message}")]
    Store {
        /// The store error's `Display` text.
        message: String,
    },

    /// The host's [`CallbackHandler`](crate::CallbackHandler) returned an error.
    #[error("handler failed: {message}")]
    HandlerFailed {
        /// The handler error's `Display` text.
        message: String,
    },
}

impl Error {
    /// A handler that panicked, as the framework adapters report it.
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn handler_panicked() -> Error {
        Error::HandlerFailed {
            message: "the handler panicked".to_owned(),
        }
    }

    /// A body the framework could not read to its end (the client broke off, say).
    #[cfg(any(feature = "axum", feature = "actix-web"))]
    pub(crate) fn unreadable_body(cause: &dyn std::fmt::Display) -> Error {
        Error::InvalidJson {
            reason: format!("the body could not be read: {cause}"),
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
    /// ([`EmptyApiKey`](Error::EmptyApiKey), [`HandlerFailed`](Error::HandlerFailed),
    /// [`Store`](Error::Store)), 400 for everything else.
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
            Error::EmptyApiKey | Error::HandlerFailed { .. } | Error::Store { .. } => 500,
            _ => 400,
        }
    }
}
