//! What to answer Cregis.

use std::borrow::Cow;

use crate::Error;
use crate::idempotency::DeliveryKey;
use crate::verifier::MatchedKey;

/// The HTTP answer to one callback delivery: a status code and a plain-text body.
///
/// | outcome | status | body |
/// |---|---|---|
/// | authentic, well-formed, handled | 200 | `success` |
/// | not authentic (`sign` missing, malformed or wrong) | 401 | the reason |
/// | malformed body, or authentic but not as documented | 400 | the reason |
/// | body over the size limit | 413 | the reason |
/// | the same delivery is being handled right now, or the same fact came with other content | 409 | the reason |
/// | the body could not be read to its end | 400 | the reason |
/// | the handler or the idempotency store failed | 500 | `internal error` |
/// | the handler's task was cancelled (shutdown) | 503 | `internal error` |
///
/// A non-ack body is never `success` and never contains the API key or the expected signature;
/// Cregis shows it in the callback record, which helps whoever re-pushes the callback. The
/// handler's own error text stays out of the body: read it, like every other cause, from
/// [`error`](Self::error) to log it.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Error, Reply};
///
/// let reply = Reply::from(Error::MissingSign);
/// assert_eq!(Reply::SUCCESS_ACK, "success");
/// assert_eq!((reply.status_code(), reply.body()), (401, "sign is missing"));
/// assert_eq!(reply.error(), Some(&Error::MissingSign));
/// assert!(Reply::ack().is_ack());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reply must be sent back: Cregis counts a delivery as done only on `success`"]
pub struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Cow<'static, str>,
    pub(crate) error: Option<Error>,
    pub(crate) duplicate: bool,
    pub(crate) delivery: Option<DeliveryKey>,
    pub(crate) signed_with: Option<MatchedKey>,
    pub(crate) took_over: bool,
    /// For an approval the handler denied: its reason, for the host's logs.
    // Boxed: one pointer keeps `Reply`, the error of every verification step, small.
    #[allow(clippy::box_collection)]
    pub(crate) denial: Option<Box<String>>,
}

impl Reply {
    /// The only reply body Cregis counts as a successful delivery: `success`.
    pub const SUCCESS_ACK: &'static str = "success";

    /// The reply body that approves a payout external verification request: `ok`.
    pub const APPROVE: &'static str = "ok";

    /// The reply body that denies a payout external verification request: `deny`. Every
    /// refused or failed approval answers it, with the status code of its error.
    pub const DENY: &'static str = "deny";

    /// The `Content-Type` of every reply body: `text/plain; charset=utf-8`.
    pub const CONTENT_TYPE: &'static str = "text/plain; charset=utf-8";

    /// The acknowledgement: 200 with body [`SUCCESS_ACK`](Self::SUCCESS_ACK).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// assert_eq!((Reply::ack().status_code(), Reply::ack().body()), (200, "success"));
    /// ```
    pub fn ack() -> Reply {
        Reply {
            status: 200,
            body: Cow::Borrowed(Reply::SUCCESS_ACK),
            error: None,
            duplicate: false,
            delivery: None,
            signed_with: None,
            took_over: false,
            denial: None,
        }
    }

    /// The HTTP status code to answer with.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Reply};
    ///
    /// assert_eq!(Reply::from(Error::NotAnObject).status_code(), 400);
    /// ```
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The body to answer with: `success`, or a short reason.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Reply};
    ///
    /// assert_eq!(Reply::from(Error::SignatureMismatch).body(), "signature does not match");
    /// ```
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The `Content-Type` to answer with: always [`CONTENT_TYPE`](Self::CONTENT_TYPE), plain
    /// UTF-8 text.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// assert_eq!(Reply::ack().content_type(), "text/plain; charset=utf-8");
    /// ```
    pub fn content_type(&self) -> &'static str {
        Reply::CONTENT_TYPE
    }

    /// The status code, `Content-Type` and body, for frameworks that build a response from
    /// parts.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// let (status, content_type, body) = Reply::ack().into_parts();
    /// assert_eq!((status, content_type, body.as_str()), (200, "text/plain; charset=utf-8", "success"));
    /// ```
    pub fn into_parts(self) -> (u16, &'static str, String) {
        (self.status, Reply::CONTENT_TYPE, self.body.into_owned())
    }

    /// Whether this reply acknowledges the delivery (status 200, body `success`).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Reply};
    ///
    /// assert!(!Reply::from(Error::SignatureMismatch).is_ack());
    /// ```
    pub fn is_ack(&self) -> bool {
        self.status == 200 && self.body == Reply::SUCCESS_ACK
    }

    /// Whether this reply approves a payout external verification request (status 200, body
    /// `ok`): only an approval its handler gave for an authentic, well-formed request.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Reply};
    ///
    /// assert!(!Reply::from(Error::SignatureMismatch).is_approved());
    /// assert!(!Reply::ack().is_approved());
    /// ```
    pub fn is_approved(&self) -> bool {
        self.status == 200 && self.body == Reply::APPROVE
    }

    /// For an approval request its handler denied: the reason the handler gave (Cregis sees
    /// only `deny`). `None` for every other reply, a refused request included (see
    /// [`error`](Self::error) for those).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// assert_eq!(Reply::ack().denial(), None);
    /// ```
    pub fn denial(&self) -> Option<&str> {
        self.denial.as_deref().map(String::as_str)
    }

    /// Whether this acknowledges a delivery already handled before, without calling the handler
    /// (see [`VerifierBuilder::idempotency`](crate::verifier::VerifierBuilder::idempotency)).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// assert!(!Reply::ack().is_duplicate());
    /// ```
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Why the delivery was not acknowledged, for the host's logs and alerts.
    ///
    /// An acknowledged reply carries an error only when the handler succeeded but the
    /// idempotency store failed to record it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, Reply, error::Cause};
    ///
    /// let reply = Reply::from(Error::HandlerFailed { cause: Cause::new("database is down"), release_failure: None });
    /// assert_eq!(reply.body(), "internal error");
    /// assert_eq!(reply.error().unwrap().to_string(), "handler failed: database is down");
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The fact this reply is about, once the callback was verified and read: set on every
    /// reply from [`Verifier::process`](crate::Verifier::process) after parsing (handled,
    /// duplicate, in progress, conflicting, failed), `None` before (a forgery, a malformed
    /// body). For logging without parsing the body again.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier, testing::CallbackBuilder};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let verifier = Verifier::new(key.clone());
    /// let body = CallbackBuilder::new().cid(1391751691788288).body(&key)?;
    /// let reply = verifier.process(body.as_bytes(), &|_: &PayoutCallback| Err::<(), _>("database is down"));
    /// assert_eq!(reply.delivery().unwrap().to_string(), "payout/1382528827416576/1391751691788288/6");
    /// assert_eq!(verifier.process(b"{}", &|_: &PayoutCallback| Ok::<(), String>(())).delivery(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delivery(&self) -> Option<DeliveryKey> {
        self.delivery
    }

    /// Which key the callback was signed with, once its signature verified: set on every
    /// reply after that point, `None` before (a forgery, a malformed body). During a key
    /// rotation, count the replies signed with the previous key: when none come any more,
    /// drop it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier, testing::CallbackBuilder, verifier::MatchedKey};
    ///
    /// let (new, old) = (ApiKey::new("fake-new-key")?, ApiKey::new("fake-old-key")?);
    /// let verifier = Verifier::builder(new).also_accept(old.clone()).build();
    /// let body = CallbackBuilder::new().body(&old)?;
    /// let reply = verifier.process(body.as_bytes(), &|_: &PayoutCallback| Ok::<(), String>(()));
    /// assert_eq!(reply.signed_with(), Some(MatchedKey::Previous { index: 0 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn signed_with(&self) -> Option<MatchedKey> {
        self.signed_with
    }

    /// Whether this delivery took over the claim of an earlier attempt whose lease had ended
    /// ([`Claim::TakenOver`](crate::idempotency::Claim::TakenOver)): that attempt's handler
    /// panicked, was cancelled or died, and whether its effect happened is unknown. The
    /// handler ran again; worth a log line.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Reply;
    ///
    /// assert!(!Reply::ack().took_over());
    /// ```
    pub fn took_over(&self) -> bool {
        self.took_over
    }
}

impl Reply {
    /// The acknowledgement of a delivery already handled, which the handler did not see again.
    pub(crate) fn duplicate() -> Reply {
        Reply {
            duplicate: true,
            ..Reply::ack()
        }
    }

    /// The acknowledgement, with an error the host should still log.
    pub(crate) fn ack_with(error: Error) -> Reply {
        Reply {
            error: Some(error),
            ..Reply::ack()
        }
    }

    /// This reply, about the fact `key`.
    pub(crate) fn about(self, key: DeliveryKey) -> Reply {
        Reply {
            delivery: Some(key),
            ..self
        }
    }

    /// This reply, for a callback signed with `key`.
    pub(crate) fn with_signer(self, key: MatchedKey) -> Reply {
        Reply {
            signed_with: Some(key),
            ..self
        }
    }

    /// This reply, noting whether its claim took over an expired one.
    pub(crate) fn with_takeover(self, took_over: bool) -> Reply {
        Reply { took_over, ..self }
    }

    /// This reply, marking a decision made before (the handler was not asked).
    pub(crate) fn into_duplicate(self) -> Reply {
        Reply {
            duplicate: true,
            ..self
        }
    }

    /// This reply, with `error` for the host's logs (its status and body unchanged).
    pub(crate) fn with_error(self, error: Error) -> Reply {
        Reply {
            error: Some(error),
            ..self
        }
    }
}

impl From<Error> for Reply {
    /// The reply for a delivery that failed with `error`: its
    /// [`http_status`](Error::http_status), and its message as the body, except for the host's
    /// own faults (500), whose details stay private.
    fn from(error: Error) -> Reply {
        let status = error.http_status();
        let body = if status >= 500 {
            Cow::Borrowed("internal error")
        } else {
            Cow::Owned(error.to_string())
        };
        Reply {
            status,
            body,
            error: Some(error),
            duplicate: false,
            delivery: None,
            signed_with: None,
            took_over: false,
            denial: None,
        }
    }
}
