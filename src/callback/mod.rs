//! The typed callbacks: one model per kind, read by one field reader.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::idempotency::{DeliveryKey, Fact};
use crate::wire::Params;

mod amount;
pub(crate) mod fields;
pub(crate) mod integer;
pub(crate) mod kind;
mod origin;
mod record;
mod status;
mod withdrawal;

pub use crate::approval::ApprovalRequest;
pub(crate) use amount::canonical_amount;
pub use amount::same_amount;
pub(crate) use fields::required_integer;
use fields::{Fields, places, required};
#[cfg(feature = "http")]
pub(crate) use kind::sealed::Sealed;
pub use kind::{Callback, CallbackKind, Notification, UnknownKind};
pub use origin::Origin;
pub use record::{Disagreement, PayoutRecord, Verdict};
pub use status::CallbackStatus;
pub use withdrawal::WithdrawalCallback;

/// A payout callback, as Cregis sends it once the payout reaches a final state.
///
/// Get one from a raw body with [`Verifier::verify_and_parse`](crate::Verifier::verify_and_parse),
/// which checks the signature first. It also
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
/// at top level, that still passes [`verify_sign`](crate::signature::verify_sign). (An unknown number whose exact text `serde_json` cannot
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

    /// Who made this delivery: Cregis, or the [reconciler](crate::reconcile) (see [`Origin`]).
    ///
    /// # Example
    ///
    /// See [`Origin`].
    pub fn origin(&self) -> Origin {
        Origin::of(&self.extra)
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
    /// [`Error::InvalidField`](crate::Error::InvalidField) for `amount` when the text is not a plain decimal number, or has
    /// more digits than a `Decimal` holds exactly (about 28).
    #[cfg(feature = "rust_decimal")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
    pub fn amount_decimal(&self) -> Result<rust_decimal::Decimal, crate::Error> {
        decimal(&self.amount)
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

    /// The key that identifies the fact this callback reports (see
    /// [`DeliveryKey`](crate::idempotency::DeliveryKey)).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// // Payout 2 of project 1 succeeded (status 6).
    /// let callback = CallbackBuilder::new().pid(1).cid(2).callback()?;
    /// assert_eq!(callback.delivery_key().to_string(), "payout/1/2/6");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn delivery_key(&self) -> DeliveryKey {
        DeliveryKey::new(
            CallbackKind::Payout,
            self.pid,
            self.cid,
            Fact::Status(self.status),
        )
    }

    /// The documented fields of a payout callback, one bit per place in `KNOWN`.
    const DOCUMENTED: u32 = {
        use crate::wire::known as k;
        places(&[
            k::ADDRESS,
            k::AMOUNT,
            k::BLOCK_HEIGHT,
            k::BLOCK_TIME,
            k::CHAIN_ID,
            k::CID,
            k::CURRENCY,
            k::MEMO,
            k::NONCE,
            k::PID,
            k::REMARK,
            k::SIGN,
            k::STATUS,
            k::THIRD_PARTY_ID,
            k::TIMESTAMP,
            k::TOKEN_ID,
            k::TXID,
        ])
    };

    /// Builds the typed callback from the fields of verified parameters.
    #[inline]
    fn from_fields(fields: &Fields<'_, '_>) -> Result<Self, Error> {
        use crate::wire::known as k;
        // Each present field is read in key order, so that the first bad one in key order is
        // reported, then the required ones are checked.
        let address = fields.text(k::ADDRESS)?;
        let amount = fields.text(k::AMOUNT)?;
        let block_height = fields.text(k::BLOCK_HEIGHT)?;
        let block_time = fields.integer(k::BLOCK_TIME)?;
        let chain_id = fields.text(k::CHAIN_ID)?;
        let cid = fields.integer(k::CID)?;
        let currency = fields.text(k::CURRENCY)?;
        let memo = fields.text(k::MEMO)?;
        let nonce = fields.text(k::NONCE)?;
        let pid = fields.integer(k::PID)?;
        let remark = fields.text(k::REMARK)?;
        let sign = fields.text(k::SIGN)?;
        let status = fields.integer(k::STATUS)?;
        let third_party_id = fields.text(k::THIRD_PARTY_ID)?;
        let timestamp = fields.integer(k::TIMESTAMP)?;
        let token_id = fields.text(k::TOKEN_ID)?;
        let txid = fields.text(k::TXID)?;
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
            extra: fields.extra(Self::DOCUMENTED),
        })
    }
}

/// A callback of kind `C` from verified parameters.
#[inline]
pub(crate) fn from_params<C: Callback>(params: &Params<'_>) -> Result<C, Error> {
    C::from_fields(&Fields::new(params))
}

/// Reads a callback of kind `C` with the same rules as the verified path, without checking
/// `sign`. A repeated key is refused, as it is on the raw body.
pub(crate) fn deserialize<'de, C: Callback, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<C, D::Error> {
    let entries = deserializer.deserialize_map(EntriesVisitor)?;
    Params::from_values(entries.iter().map(|(k, v)| (k, v)))
        .and_then(|params| from_params(&params))
        .map_err(de::Error::custom)
}

/// When a body is not of the kind expected (`found`): the first other kind it reads as, if any.
pub(crate) fn other_kind(params: &Params<'_>, expected: CallbackKind) -> Option<CallbackKind> {
    let reads = |kind| match kind {
        CallbackKind::Payout => from_params::<PayoutCallback>(params).is_ok(),
        CallbackKind::Withdrawal => from_params::<WithdrawalCallback>(params).is_ok(),
        CallbackKind::Approval => from_params::<ApprovalRequest>(params).is_ok(),
    };
    CallbackKind::ALL
        .into_iter()
        .find(|&kind| kind != expected && reads(kind))
}

/// `amount` as an exact decimal number (see [`PayoutCallback::amount_decimal`]).
#[cfg(feature = "rust_decimal")]
fn decimal(text: &str) -> Result<rust_decimal::Decimal, crate::Error> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let plain = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !(plain(whole) && plain(fraction)) {
        return Err(crate::Error::InvalidField {
            field: "amount",
            problem: "must be a plain decimal number",
        });
    }
    rust_decimal::Decimal::from_str_exact(text).map_err(|_| crate::Error::InvalidField {
        field: "amount",
        problem: "has more digits than a decimal holds exactly",
    })
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
        deserialize(deserializer)
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
