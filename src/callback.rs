//! The typed payout callback.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::params::{Kind, Params, Scalar, Slot};
use crate::{CallbackStatus, Error};

/// A payout callback, as Cregis sends it once the payout reaches a final state.
///
/// Get one from a raw body with [`Verifier::verify_and_parse`](crate::Verifier::verify_and_parse)
/// (or [`verify_and_parse`](crate::verify_and_parse)), which checks the signature first. It also
/// implements `Deserialize` for data that was already verified (a queue, a database); that path
/// checks no signature, and, through `serde_json::Value`, keeps unknown numbers only as
/// `serde_json` writes them (`1.10` becomes `1.1`).
///
/// Reading rules:
/// - optional fields (`remark`, `txid`, `block_height`, `block_time`, `memo`) read absent, `null`
///   and `""` alike as `None`; required fields refuse all three, since the signature cannot tell
///   them apart;
/// - integer fields take a JSON integer or its canonical decimal string (`"1382528827416576"`, as
///   some Java back ends send): no sign, no leading zeros, no fraction, within range;
/// - every field this crate does not know lands in [`extra`](Self::extra), so nothing Cregis sends
///   is lost.
///
/// Serializing a callback from the verified path gives back one flat JSON object, unknown fields
/// at top level, that still passes [`verify_sign`](crate::verify_sign). (An unknown number whose exact text `serde_json` cannot
/// keep, such as `1.10` or `1e400`, is kept in `extra` as a string of that text, which signs
/// the same.)
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{CallbackStatus, PayoutCallback};
///
/// let callback: PayoutCallback = serde_json::from_str(r#"{
///     "pid": 1382528827416576, "cid": "1391751691788288", "chain_id": "195", "token_id": "195",
///     "currency": "TRX", "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "amount": "1.1",
///     "third_party_id": "order-42", "remark": "", "status": 6, "txid": "6dd05b09",
///     "block_height": "34527604", "block_time": 1686814482000, "nonce": "ubqso3",
///     "timestamp": 1687850657960, "sign": "f5be13fdd8c6f63951ca4427359457cb", "fee": "0.5"
/// }"#)?;
/// assert_eq!(callback.cid, 1391751691788288);
/// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
/// assert_eq!(callback.remark, None);
/// assert_eq!(callback.extra["fee"], "0.5");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PayoutCallback {
    /// Project id.
    pub pid: i64,
    /// Cregis's id of this payout. Can exceed 2^53: never store it in a float.
    pub cid: i64,
    /// Chain id, e.g. `"195"` for Tron.
    pub chain_id: String,
    /// Token id.
    pub token_id: String,
    /// Currency identifier, e.g. `"TRX"`.
    pub currency: String,
    /// Destination address.
    pub address: String,
    /// Amount as decimal text, exactly as sent. Parse it with a decimal type, never a float.
    pub amount: String,
    /// The host's own id for the payout, as given when it was created.
    pub third_party_id: String,
    /// Remark given when the payout was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// The payout's status.
    pub status: CallbackStatus,
    /// Transaction hash; `None` when no transaction was broadcast (rejections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
    /// Block height, as text; `None` when no transaction was broadcast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_height: Option<String>,
    /// Block time in milliseconds since the Unix epoch; `None` when no transaction was broadcast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_time: Option<i64>,
    /// Memo (Ton and Xrp only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Six random characters chosen by Cregis for this delivery.
    pub nonce: String,
    /// When Cregis sent the callback, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The signature, as received.
    pub sign: String,
    /// Every field this crate does not know, with its value (part of the signature too).
    ///
    /// Keep documented field names out of it: serializing would write such a key twice.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PayoutCallback {
    /// Whether the payout can no longer change (see [`CallbackStatus::is_final`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::CallbackBuilder};
    ///
    /// let callback = CallbackBuilder::new().status(CallbackStatus::TransactionSuccessful).callback()?;
    /// assert!(callback.is_final());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// Whether the transaction succeeded (see [`CallbackStatus::is_success`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::CallbackBuilder};
    ///
    /// let callback = CallbackBuilder::new().status(CallbackStatus::TransactionFailed).callback()?;
    /// assert!(!callback.is_success());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The amount as an exact decimal number, never through a float.
    ///
    /// The text must be plain decimal notation: an optional `-`, digits, and optionally a `.`
    /// and more digits (`1.1`, `0.000001`, `-2.50`; the scale is kept). No `+`, exponent,
    /// separator or space.
    ///
    /// # Example
    ///
    /// ```
    /// use rust_decimal::Decimal;
    /// use cregis_payout_callback::{Error, testing::CallbackBuilder};
    ///
    /// let callback = CallbackBuilder::new().amount("12.000001").callback()?;
    /// assert_eq!(callback.amount_decimal()?, Decimal::new(12_000_001, 6));
    /// let odd = CallbackBuilder::new().amount("1e5").callback()?;
    /// assert_eq!(
    ///     odd.amount_decimal(),
    ///     Err(Error::InvalidField { field: "amount", problem: "must be a plain decimal number" })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] for `amount` when the text is not a plain decimal number, or has
    /// more digits than a `Decimal` holds exactly (about 28).
    #[cfg(feature = "rust_decimal")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
    pub fn amount_decimal(&self) -> Result<rust_decimal::Decimal, Error> {
        let text = &self.amount;
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        let plain = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !(plain(whole) && plain(fraction)) {
            return Err(Error::InvalidField {
                field: "amount",
                problem: "must be a plain decimal number",
            });
        }
        rust_decimal::Decimal::from_str_exact(text).map_err(|_| Error::InvalidField {
            field: "amount",
            problem: "has more digits than a decimal holds exactly",
        })
    }

    /// When Cregis sent the callback (`timestamp`), or `None` if it is out of `SystemTime`'s range.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// let callback = CallbackBuilder::new().timestamp(1687850657960).callback()?;
    /// assert_eq!(callback.sent_at(), Some(UNIX_EPOCH + Duration::from_millis(1687850657960)));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn sent_at(&self) -> Option<SystemTime> {
        system_time(self.timestamp)
    }

    /// When the transaction's block was made (`block_time`), if there was one.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// let callback = CallbackBuilder::new().block_time(1686814482000).callback()?;
    /// assert_eq!(callback.block_at(), Some(UNIX_EPOCH + Duration::from_millis(1686814482000)));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn block_at(&self) -> Option<SystemTime> {
        self.block_time.and_then(system_time)
    }

    /// Builds the typed callback from verified parameters.
    pub(crate) fn from_params(params: &Params<'_>) -> Result<Self, Error> {
        use crate::params::known as k;
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

/// Parses an integer written the one way it serializes back: an optional `-`, then digits
/// without leading zeros (and no `-0`). Anything else would change the signed text on a
/// round trip.
fn parse_canonical_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    match digits {
        [b'0'] => return (!negative).then_some(0),
        [] | [b'0', ..] => return None,
        _ => {}
    }
    // Up to 16 digits: eight at a time (ids have 16, timestamps 13).
    if (8..=16).contains(&digits.len()) {
        let value = i64::try_from(eight_to_sixteen(digits)?).ok()?;
        return Some(if negative { -value } else { value });
    }
    // Up to 18 digits cannot overflow: no checks per digit.
    if digits.len() <= 18 {
        let mut value: i64 = 0;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(digit - b'0');
        }
        return Some(if negative { -value } else { value });
    }
    // Accumulate negatively: i64::MIN has no positive counterpart.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// The value of 8 to 16 decimal digits, read as two 8-digit words (the first one padded with
/// leading zeros); `None` if any is not a digit.
fn eight_to_sixteen(digits: &[u8]) -> Option<u64> {
    let (first, last) = (digits.first_chunk::<8>()?, digits.last_chunk::<8>()?);
    // The first word keeps the digits before the last eight, after as many leading zeros.
    let pad = 8 * 16usize.checked_sub(digits.len())?;
    let high = if pad == 64 {
        ZEROS
    } else {
        (u64::from_le_bytes(*first) << pad) | (ZEROS & !(u64::MAX << pad))
    };
    Some(parse_eight(high)? * 100_000_000 + parse_eight(u64::from_le_bytes(*last))?)
}

/// Eight ASCII zeros.
const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);

/// The value of eight ASCII decimal digits read little-endian (the first digit in the low
/// byte); `None` if any byte is not a digit.
fn parse_eight(word: u64) -> Option<u64> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = ONES * 0x80;
    const MASK: u64 = 0x0000_00ff_0000_00ff;
    const MUL1: u64 = 0x000f_4240_0000_0064;
    const MUL2: u64 = 0x0000_2710_0000_0001;
    // Every byte below 0x80, and within `0`..=`9`: the additions carry into no other byte.
    if word & HIGHS != 0 {
        return None;
    }
    let digits = (word + ONES * u64::from(0x80 - b'0')) & !(word + ONES * u64::from(0x7f - b'9'));
    if digits & HIGHS != HIGHS {
        return None;
    }
    // Pairs, then fours, then all eight (as the standard library's float parser does).
    let word = word - ZEROS;
    let word = (word * 10) + (word >> 8);
    Some(
        ((word & MASK)
            .wrapping_mul(MUL1)
            .wrapping_add(((word >> 16) & MASK).wrapping_mul(MUL2)))
            >> 32,
    )
}

/// An unknown field's value, for [`PayoutCallback::extra`].
///
/// A number whose text `serde_json` would not write back the same (`1.10`, `-0`, `1e400`, an
/// integer beyond 64 bits) is kept as a string of that exact text instead: it signs the same,
/// so nothing is lost and the serialized callback still verifies.
fn json_value(value: Scalar<'_>) -> Value {
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

fn system_time(millis: i64) -> Option<SystemTime> {
    let offset = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

impl<'de> Deserialize<'de> for PayoutCallback {
    /// Reads a callback with the same rules as the verified path, without checking `sign`.
    /// A repeated key is refused, as it is on the raw body.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = deserializer.deserialize_map(EntriesVisitor)?;
        Params::from_values(entries.iter().map(|(k, v)| (k, v)))
            .and_then(|params| PayoutCallback::from_params(&params))
            .map_err(de::Error::custom)
    }
}

/// Collects an object's entries in order, repeats included (so that they can be refused).
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flat JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(24).min(64));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_canonical_i64;

    proptest! {
        /// Exactly the text `i64`'s `Display` writes parses, to that value.
        #[test]
        fn canonical_integers_agree_with_display(
            text in prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                "-?[0-9]{0,20}",
                "-?[0-9/:a]{1,20}",
                "[0-9]{0,15}[^0-9][0-9]{0,4}",
            ],
        ) {
            let expected = text.parse::<i64>().ok().filter(|n| n.to_string() == text);
            prop_assert_eq!(parse_canonical_i64(text.as_bytes()), expected);
        }
    }

    #[test]
    fn canonical_integers_parse_at_every_length() {
        for text in [
            "0",
            "7",
            "-7",
            "999999999999999999",
            "-999999999999999999",
            "12345678",
            "123456789",
            "1000000000000001",
            "9999999999999999",
            "-1686814482000",
            "1382528827416576",
            "1000000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(
                parse_canonical_i64(text.as_bytes()),
                text.parse().ok(),
                "{text}"
            );
        }
        for text in [
            "",
            "-",
            "-0",
            "01",
            "+1",
            "1.0",
            "1e3",
            "12a",
            "99999999999999999a",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "1234567a",
            "12345678a",
            "1a345678123",
            "123456781234567/",
            "12345678:2345678",
        ] {
            assert_eq!(parse_canonical_i64(text.as_bytes()), None, "{text}");
        }
    }
}
