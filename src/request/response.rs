//! Reading the Cregis API's responses: the `{code, msg, data}` envelope, the create response's
//! `cid`, and the query response's payout state.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::RawResponse;
use crate::callback::integer::parse_canonical_i64;
use crate::error::Cause;
use crate::{CallbackKind, CallbackStatus};

/// The `code` of a successful response.
const SUCCESS: &str = "00000";

/// Why a request to Cregis did not give its answer.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::request::{Created, RequestError, RawResponse};
///
/// let refused = RawResponse { status: 200, body: r#"{"code":"10001","msg":"sign error","data":null}"#.into() };
/// let error = Created::from_response(&refused).unwrap_err();
/// assert!(matches!(&error, RequestError::Cregis { code, .. } if code == "10001"));
/// assert_eq!(error.to_string(), "cregis refused the request: 10001 sign error");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request was not sent: the transport said so, by returning its error wrapped in
    /// [`NotSent`](super::NotSent) (a name that did not resolve, a connection refused, a TLS
    /// handshake that failed). Safe to send again.
    #[error("the request could not be sent: {cause}")]
    Transport {
        /// The transport's error.
        cause: Cause,
    },
    /// The transport failed after the request may have left (a timeout, a connection reset
    /// while waiting for the answer, an answer that could not be read), or without saying
    /// it had not ([`NotSent`](super::NotSent)): Cregis may have received it and acted on it.
    ///
    /// For a query this only means asking again. For a **create** it is the dangerous case:
    /// the payout may exist at Cregis, and its `cid`, the only key the query APIs take, was
    /// in the answer that was lost. Cregis's documentation does not say whether
    /// a repeated `third_party_id` is refused, so sending the create again may pay twice.
    /// Do not retry it automatically: keep the payout as "unknown", let its callback (which
    /// carries your `third_party_id`) settle it, and have a person check the Cregis console
    /// for that `third_party_id` before creating it again.
    #[error("the request may have reached cregis, its answer was lost: {cause}")]
    MaybeSent {
        /// The transport's error.
        cause: Cause,
    },
    /// The answer's HTTP status was not 200; Cregis's error `code` and `msg` when the answer
    /// carried its envelope.
    #[error("cregis answered http {status}{}", describe_envelope(code.as_deref(), msg.as_deref()))]
    Http {
        /// The HTTP status.
        status: u16,
        /// Cregis's error code, if the answer carried one.
        code: Option<String>,
        /// Cregis's explanation, if the answer carried one.
        msg: Option<String>,
    },
    /// The request cannot be made: [`Client::query`](super::Client::query) of a kind that
    /// has no query (approval requests: Cregis asks the host, never the reverse).
    #[error("{kind} requests have no query: only payouts and withdrawals are asked about")]
    NoQuery {
        /// The kind asked about.
        kind: CallbackKind,
    },
    /// Cregis answered with an error `code` (anything but `"00000"`).
    #[error("cregis refused the request: {code} {msg}")]
    Cregis {
        /// Cregis's error code.
        code: String,
        /// Cregis's explanation.
        msg: String,
    },
    /// The answer is not a response as documented.
    #[error("the response is not as documented: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
}

/// `: <code> <msg>` of an error envelope, cut short; nothing without one.
fn describe_envelope(code: Option<&str>, msg: Option<&str>) -> String {
    match (code, msg) {
        (Some(code), Some(msg)) if !msg.is_empty() => {
            format!(": {} {}", excerpt(code), excerpt(msg))
        }
        (Some(code), _) => format!(": {}", excerpt(code)),
        _ => String::new(),
    }
}

impl RequestError {
    /// Whether Cregis may have received the request and acted on it
    /// ([`MaybeSent`](RequestError::MaybeSent)): for a create, do not send it again before
    /// a person has checked.
    ///
    /// # Example
    ///
    /// See [`NotSent`](super::NotSent).
    pub fn may_have_reached_cregis(&self) -> bool {
        matches!(self, RequestError::MaybeSent { .. })
    }

    fn malformed(reason: impl Into<String>) -> RequestError {
        RequestError::Malformed {
            reason: reason.into(),
        }
    }
}

/// The most characters of a value from a response that an error quotes.
const EXCERPT: usize = 32;

/// `text` cut to a short excerpt, for an error message: a response is outside input.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// A response's object, each value as its raw JSON text: numbers stay exact.
type Raw<'a> = BTreeMap<String, &'a RawValue>;

/// A JSON object of `text`, its values unparsed.
fn object<'a>(text: &'a str, what: &str) -> Result<Raw<'a>, RequestError> {
    // A map of raw values: serde_json reads no number, so none goes through a float.
    serde_json::from_str(text).map_err(|e| {
        // serde_json's own message may quote the value: only its category and place.
        let why = match e.classify() {
            serde_json::error::Category::Data => "not a json object",
            serde_json::error::Category::Eof => "cut short",
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => "not json",
        };
        RequestError::malformed(format!(
            "{what} is {why} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// The `code` and `msg` of an envelope, when it has them as documented.
fn envelope_error(envelope: &Raw<'_>) -> Option<(String, String)> {
    let code: String = serde_json::from_str(envelope.get("code")?.get()).ok()?;
    let msg = envelope
        .get("msg")
        .and_then(|msg| serde_json::from_str::<String>(msg.get()).ok())
        .unwrap_or_default();
    Some((code, msg))
}

/// The `data` of a successful response, or why there is none.
fn data(response: &RawResponse) -> Result<Raw<'_>, RequestError> {
    if response.status != 200 {
        // Cregis's error envelope, when it sent one with the status, is kept.
        let envelope = object(&response.body, "the answer").ok();
        let (code, msg) = envelope.as_ref().and_then(envelope_error).unzip();
        return Err(RequestError::Http {
            status: response.status,
            code,
            msg,
        });
    }
    let envelope = object(&response.body, "the answer")?;
    let code = match envelope.get("code") {
        Some(code) => serde_json::from_str::<String>(code.get()).map_err(|_| {
            RequestError::malformed(format!("code is {}, not a string", excerpt(code.get())))
        })?,
        None => return Err(RequestError::malformed("no code")),
    };
    if code != SUCCESS {
        let (code, msg) = envelope_error(&envelope).unwrap_or((code, String::new()));
        return Err(RequestError::Cregis { code, msg });
    }
    match envelope.get("data") {
        Some(data) => object(data.get(), "data"),
        None => Err(RequestError::malformed("no data")),
    }
}

/// What a raw JSON value is: a string (decoded), a number (its exact text), `null`, or
/// something else.
enum Scalar {
    Text(String),
    Number(String),
    Null,
    Other,
}

fn scalar(value: &RawValue) -> Scalar {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw).map_or(Scalar::Other, Scalar::Text),
        // serde_json checked it is a JSON number; its text is kept as sent.
        Some(b'-' | b'0'..=b'9') => Scalar::Number(raw.to_owned()),
        Some(b'n') => Scalar::Null,
        _ => Scalar::Other,
    }
}

/// An integer field, sent as a JSON integer or as a string of one (some Java back ends do),
/// read exactly.
fn integer(data: &Raw<'_>, name: &str) -> Result<i64, RequestError> {
    let read = match data.get(name).map(|value| scalar(value)) {
        Some(Scalar::Number(n) | Scalar::Text(n)) => parse_canonical_i64(n.as_bytes()),
        _ => None,
    };
    read.ok_or_else(|| RequestError::malformed(format!("{name} is not an integer")))
}

/// A text field; a number's digits exactly as sent (never through a float). `None` when
/// absent, `null` or `""`.
fn text(data: &Raw<'_>, name: &str) -> Result<Option<String>, RequestError> {
    match data.get(name).map(|value| scalar(value)) {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Text(s)) if s.is_empty() => Ok(None),
        Some(Scalar::Text(s) | Scalar::Number(s)) => Ok(Some(s)),
        Some(Scalar::Other) => Err(RequestError::malformed(format!(
            "{name} is not text or a number"
        ))),
    }
}

fn required(data: &Raw<'_>, name: &str) -> Result<String, RequestError> {
    text(data, name)?.ok_or_else(|| RequestError::malformed(format!("no {name}")))
}

/// The answer to a create request: Cregis's id of the new payout.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::request::{Created, RawResponse};
///
/// let answer = RawResponse {
///     status: 200,
///     body: r#"{"code":"00000","msg":"ok","data":{"cid":9007199254740993}}"#.into(),
/// };
/// assert_eq!(Created::from_response(&answer)?.cid, 9007199254740993); // above 2^53, exact
/// # Ok::<(), cregis_payout_callback::request::RequestError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Created {
    /// Cregis's id of the payout: keep it with your payout, the queries take nothing else.
    pub cid: i64,
}

impl Created {
    /// Reads a create response.
    ///
    /// # Example
    ///
    /// See [`Created`].
    ///
    /// # Errors
    ///
    /// [`RequestError::Http`], [`RequestError::Cregis`] or [`RequestError::Malformed`].
    pub fn from_response(response: &RawResponse) -> Result<Created, RequestError> {
        let data = data(response)?;
        Ok(Created {
            cid: integer(&data, "cid")?,
        })
    }
}

/// What Cregis says of a payout, from a query response: its whole lifecycle status (0 to 7;
/// final are the four a callback reports, 2, 4, 6 and 7, and 3, approval cancelled, for which
/// no callback comes) and the fields its callback would carry.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackKind, CallbackStatus};
/// use cregis_payout_callback::request::{PayoutState, RawResponse};
///
/// let answer = RawResponse {
///     status: 200,
///     body: r#"{"code":"00000","msg":"ok","data":{"pid":1382528827416576,"chain_id":"195",
///         "token_id":"195","currency":"TRX","from_address":"TJRabPrwbZy45sbavfcjinPJC18kjpRTv8",
///         "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","status":5,
///         "third_party_id":"order-42","remark":"","memo":"","txid":"","block_height":"",
///         "block_time":0}}"#.into(),
/// };
/// let state = PayoutState::from_response(CallbackKind::Payout, 1391751691788288, &answer)?;
/// assert_eq!(state.status, CallbackStatus::PendingSignature);
/// assert!(!state.status.is_final());
/// assert_eq!((state.txid, state.block_time), (None, None));
/// # Ok::<(), cregis_payout_callback::request::RequestError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PayoutState {
    /// A wallet payout or a sub-address payout.
    pub kind: CallbackKind,
    /// The project.
    pub pid: i64,
    /// Cregis's id of the payout (the query's, as the response does not repeat it).
    pub cid: i64,
    /// The chain.
    pub chain_id: String,
    /// The token.
    pub token_id: String,
    /// The currency (`TRX`, `USDT-TRC20`, ...).
    pub currency: String,
    /// The address the payout leaves from, when Cregis says.
    pub from_address: Option<String>,
    /// The address paid to (`address` of a wallet payout, `to_address` of a sub-address one).
    pub to_address: String,
    /// The amount, as decimal text.
    pub amount: String,
    /// Where the payout is in its life.
    pub status: CallbackStatus,
    /// Your own id of the payout.
    pub third_party_id: String,
    /// The remark, if any.
    pub remark: Option<String>,
    /// The memo, if any.
    pub memo: Option<String>,
    /// The transaction hash, once broadcast.
    pub txid: Option<String>,
    /// The block height, once mined.
    pub block_height: Option<String>,
    /// The block time in ms since the epoch, once mined (`0` reads as none).
    pub block_time: Option<i64>,
}

impl PayoutState {
    /// Reads the response to a query for the payout `cid` of `kind` ([`QueryPayout`] for
    /// [`CallbackKind::Payout`], [`QueryWithdrawal`] for [`CallbackKind::Withdrawal`]).
    ///
    /// [`QueryPayout`]: super::QueryPayout
    /// [`QueryWithdrawal`]: super::QueryWithdrawal
    ///
    /// # Example
    ///
    /// See [`PayoutState`].
    ///
    /// # Errors
    ///
    /// [`RequestError::Http`], [`RequestError::Cregis`], or [`RequestError::Malformed`] when a
    /// documented field is missing or mistyped or the status is not one of the eight.
    pub fn from_response(
        kind: CallbackKind,
        cid: i64,
        response: &RawResponse,
    ) -> Result<PayoutState, RequestError> {
        let data = data(response)?;
        let to = if kind == CallbackKind::Withdrawal {
            "to_address"
        } else {
            "address"
        };
        let code = integer(&data, "status")?;
        let status = CallbackStatus::try_from(code)
            .ok()
            .ok_or_else(|| RequestError::malformed(format!("status {code} is not documented")))?;
        let block_time = match text(&data, "block_time")? {
            None => None,
            Some(_) => Some(integer(&data, "block_time")?).filter(|&t| t != 0),
        };
        Ok(PayoutState {
            kind,
            pid: integer(&data, "pid")?,
            cid,
            chain_id: required(&data, "chain_id")?,
            token_id: required(&data, "token_id")?,
            currency: required(&data, "currency")?,
            from_address: text(&data, "from_address")?,
            to_address: required(&data, to)?,
            amount: required(&data, "amount")?,
            status,
            third_party_id: required(&data, "third_party_id")?,
            remark: text(&data, "remark")?,
            memo: text(&data, "memo")?,
            txid: text(&data, "txid")?,
            block_height: text(&data, "block_height")?,
            block_time,
        })
    }
}
