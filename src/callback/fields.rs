//! Reading the documented fields from verified parameters: strings, and integers sent as JSON
//! integers or as their decimal strings.

use serde_json::{Map, Value};

use super::integer::parse_canonical_i64;
use super::{CallbackStatus, PayoutCallback};
use crate::Error;
use crate::wire::{Kind, Params, Scalar, Slot};

impl PayoutCallback {
    /// Builds the typed callback from verified parameters.
    pub(crate) fn from_params(params: &Params<'_>) -> Result<Self, Error> {
        use crate::wire::known as k;
        let text = |field, place: usize| text(field, params, params.known[place]);
        let integer = |field, place| integer_at(field, params, place);
        // Each present field is read in key order, so that the first bad one in key order is
        // reported, then the required ones are checked.
        let address = text("address", k::ADDRESS)?;
        let amount = text("amount", k::AMOUNT)?;
        let block_height = text("block_height", k::BLOCK_HEIGHT)?;
        let block_time = integer("block_time", k::BLOCK_TIME)?;
        let chain_id = text("chain_id", k::CHAIN_ID)?;
        let cid = integer("cid", k::CID)?;
        let currency = text("currency", k::CURRENCY)?;
        let memo = text("memo", k::MEMO)?;
        let nonce = text("nonce", k::NONCE)?;
        let pid = integer("pid", k::PID)?;
        let remark = text("remark", k::REMARK)?;
        let sign = text("sign", k::SIGN)?;
        let status = integer("status", k::STATUS)?;
        let third_party_id = text("third_party_id", k::THIRD_PARTY_ID)?;
        let timestamp = integer("timestamp", k::TIMESTAMP)?;
        let token_id = text("token_id", k::TOKEN_ID)?;
        let txid = text("txid", k::TXID)?;
        let mut extra = Map::new();
        for (key, value) in params.others() {
            extra.insert(key.to_owned(), json_value(value));
        }
        Ok(PayoutCallback {
            pid: required("pid", pid)?,
            cid: required("cid", cid)?,
            chain_id: required("chain_id", chain_id)?,
            token_id: required("token_id", token_id)?,
            currency: required("currency", currency)?,
            address: required("address", address)?,
            amount: required("amount", amount)?,
            third_party_id: required("third_party_id", third_party_id)?,
            remark,
            status: CallbackStatus::try_from(required("status", status)?)?,
            txid,
            block_height,
            block_time,
            memo,
            nonce: required("nonce", nonce)?,
            timestamp: required("timestamp", timestamp)?,
            sign: required("sign", sign)?,
            extra,
        })
    }
}

/// The integer field `field` of verified parameters, for checks made before the full parse.
pub(crate) fn required_integer(params: &Params<'_>, field: &'static str) -> Result<i64, Error> {
    required(field, integer(field, params.get(field))?)
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, Error> {
    // Not `ok_or`: it would build (and drop) the error on every call.
    match value {
        Some(value) => Ok(value),
        None => Err(Error::InvalidField {
            field,
            problem: "is missing, null or empty",
        }),
    }
}

/// The string field `field`, in `slot`: `None` for absent, `null` and `""`.
fn text(field: &'static str, params: &Params<'_>, slot: Slot) -> Result<Option<String>, Error> {
    match slot.kind {
        Kind::Absent | Kind::Null => Ok(None),
        Kind::Str if slot.len == 0 => Ok(None),
        Kind::Str => Ok(Some(params.text(slot.start, slot.len).to_owned())),
        Kind::True | Kind::False | Kind::Number | Kind::Compound => Err(Error::InvalidField {
            field,
            problem: "must be a string",
        }),
    }
}

/// An integer field, from a JSON integer or its decimal string: `None` for absent, `null`
/// and `""`.
fn integer(field: &'static str, value: Option<Scalar<'_>>) -> Result<Option<i64>, Error> {
    let parsed = match value {
        None | Some(Scalar::Null | Scalar::Str("")) => return Ok(None),
        Some(Scalar::Str(digits) | Scalar::Number(digits)) => {
            parse_canonical_i64(digits.as_bytes())
        }
        Some(Scalar::Bool(_) | Scalar::Compound) => None,
    };
    integer_or_error(field, parsed)
}

/// [`integer`] for the documented field at `place`, read from its slot's bytes.
fn integer_at(
    field: &'static str,
    params: &Params<'_>,
    place: usize,
) -> Result<Option<i64>, Error> {
    let slot = params.known[place];
    let parsed = match slot.kind {
        Kind::Absent | Kind::Null => return Ok(None),
        Kind::Str if slot.len == 0 => return Ok(None),
        Kind::Str | Kind::Number => parse_canonical_i64(params.bytes(slot.start, slot.len)),
        Kind::True | Kind::False | Kind::Compound => None,
    };
    integer_or_error(field, parsed)
}

fn integer_or_error(field: &'static str, parsed: Option<i64>) -> Result<Option<i64>, Error> {
    match parsed {
        Some(value) => Ok(Some(value)),
        None => Err(Error::InvalidField {
            field,
            problem: "must be an integer (int64)",
        }),
    }
}

/// An unknown field's value, for [`PayoutCallback::extra`].
///
/// A number whose text `serde_json` would not write back the same (`1.10`, `-0`, `1e400`, an
/// integer beyond 64 bits) is kept as a string of that exact text instead: it signs the same,
/// so nothing is lost and the serialized callback still verifies.
pub(crate) fn json_value(value: Scalar<'_>) -> Value {
    match value {
        // Only `sign`, a documented field, can hold a compound: it never reaches `extra`.
        Scalar::Null | Scalar::Compound => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Str(s) => Value::String(s.to_owned()),
        Scalar::Number(text) => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(number) if number.to_string() == text => Value::Number(number),
            _ => Value::String(text.to_owned()),
        },
    }
}
