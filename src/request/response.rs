//! Reading the Cregis API's responses: the `{code, msg, data}` envelope, the create response's
//! `cid`, and the query response's payout state.

use serde_json::{Map, Value};

use super::Response;
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
/// use cregis_payout_callback::request::{Created, RequestError, Response};
///
/// let refused = Response { status: 200, body: r#"{"code":"10001","msg":"sign error","data":null}"#.into() };
/// let error = Created::from_response(&refused).unwrap_err();
/// assert!(matches!(&error, RequestError::Cregis { code, .. } if code == "10001"));
/// assert_eq!(error.to_string(), "cregis refused the request: 10001 sign error");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The host's transport could not send the request or read the answer.
    #[error("the request could not be sent: {cause}")]
    Transport {
        /// The transport's error.
        cause: Cause,
    },
    /// The answer's HTTP status was not 200.
    #[error("cregis answered http {status}")]
    Http {
        /// The HTTP status.
        status: u16,
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

impl RequestError {
    fn malformed(reason: impl Into<String>) -> RequestError {
        RequestError::Malformed {
            reason: reason.into(),
        }
    }
}

/// The `data` of a successful response, or why there is none.
fn data(response: &Response) -> Result<Map<String, Value>, RequestError> {
    if response.status != 200 {
        return Err(RequestError::Http {
            status: response.status,
        });
    }
    let envelope: Value = serde_json::from_str(&response.body)
        .map_err(|e| RequestError::malformed(format!("not json: {e}")))?;
    let Value::Object(mut envelope) = envelope else {
        return Err(RequestError::malformed("not a json object"));
    };
    let code = match envelope.remove("code") {
        Some(Value::String(code)) => code,
        Some(other) => return Err(RequestError::malformed(format!("code is {other}"))),
        None => return Err(RequestError::malformed("no code")),
    };
    if code != SUCCESS {
        let msg = match envelope.remove("msg") {
            Some(Value::String(msg)) => msg,
            _ => String::new(),
        };
        return Err(RequestError::Cregis { code, msg });
    }
    match envelope.remove("data") {
        Some(Value::Object(data)) => Ok(data),
        _ => Err(RequestError::malformed("data is not an object")),
    }
}

/// An integer field, sent as a JSON integer or as a string of one (some Java back ends do),
/// read exactly.
fn integer(data: &Map<String, Value>, name: &str) -> Result<i64, RequestError> {
    let read = match data.get(name) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => parse_canonical_i64(s.as_bytes()),
        _ => None,
    };
    read.ok_or_else(|| RequestError::malformed(format!("{name} is not an integer")))
}

/// A text field; a number's digits as sent. `None` when absent, `null` or `""`.
fn text(data: &Map<String, Value>, name: &str) -> Result<Option<String>, RequestError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(RequestError::malformed(format!("{name} is not text"))),
    }
}

fn required(data: &Map<String, Value>, name: &str) -> Result<String, RequestError> {
    text(data, name)?.ok_or_else(|| RequestError::malformed(format!("no {name}")))
}

/// The answer to a create request: Cregis's id of the new payout.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::request::{Created, Response};
///
/// let answer = Response {
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
    pub fn from_response(response: &Response) -> Result<Created, RequestError> {
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
/// use cregis_payout_callback::request::{PayoutState, Response};
///
/// let answer = Response {
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
        response: &Response,
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
        let block_time = match data.get("block_time") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
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
