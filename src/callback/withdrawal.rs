//! The sub-address payout callback.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::fields::{Fields, places, required};
use super::kind::{Callback, CallbackKind, Notification, sealed};
use super::{CallbackStatus, system_time};
use crate::Error;
use crate::idempotency::{DeliveryKey, Fact};

/// A sub-address payout callback ("Sub-address payout Notify"), as Cregis sends it once a
/// payout made with `POST /api/v1/sub_address_withdrawal` reaches a final state.
///
/// It is a [`PayoutCallback`](crate::PayoutCallback) with `from_address` (the sub-address the
/// payout leaves from) and `to_address` (the recipient) instead of `address`. The reading
/// rules are the same: optional fields (`remark`, `txid`, `block_height`, `block_time`, `memo`)
/// read absent, `null` and `""` alike as `None`; integers also come as their decimal strings;
/// every field not documented for this callback lands in [`extra`](Self::extra). Get one from a
/// raw body with a verifier for this kind:
/// `Verifier::new(key).for_kind::<WithdrawalCallback>()`.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, CallbackStatus, Verifier, WithdrawalCallback};
/// use cregis_payout_callback::testing::WithdrawalBuilder;
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let body = WithdrawalBuilder::new().to_address("TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS").body(&key)?;
/// let verifier = Verifier::new(key).for_kind::<WithdrawalCallback>();
/// let callback = verifier.verify_and_parse(body.as_bytes())?;
/// assert_eq!(callback.to_address, "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS");
/// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WithdrawalCallback {
    /// Project id.
    pub pid: i64,
    /// Cregis's id of this withdrawal. Can exceed 2^53: never store it in a float.
    pub cid: i64,
    /// Chain id, e.g. `"195"` for Tron.
    pub chain_id: String,
    /// Token id.
    pub token_id: String,
    /// Currency identifier, e.g. `"TRX"`.
    pub currency: String,
    /// The sub-address the payout leaves from.
    pub from_address: String,
    /// The recipient's address.
    pub to_address: String,
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
    /// Every field not documented for this callback, with its value (part of the signature
    /// too).
    ///
    /// Keep documented field names out of it: serializing would write such a key twice.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WithdrawalCallback {
    /// The documented fields, one bit per place in `KNOWN`.
    const DOCUMENTED: u32 = {
        use crate::wire::known as k;
        places(&[
            k::AMOUNT,
            k::BLOCK_HEIGHT,
            k::BLOCK_TIME,
            k::CHAIN_ID,
            k::CID,
            k::CURRENCY,
            k::FROM_ADDRESS,
            k::MEMO,
            k::NONCE,
            k::PID,
            k::REMARK,
            k::SIGN,
            k::STATUS,
            k::THIRD_PARTY_ID,
            k::TIMESTAMP,
            k::TO_ADDRESS,
            k::TOKEN_ID,
            k::TXID,
        ])
    };

    /// Whether the payout can no longer change (see [`CallbackStatus::is_final`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::WithdrawalBuilder};
    ///
    /// let callback = WithdrawalBuilder::new().status(CallbackStatus::ApprovalRejected).callback()?;
    /// assert!(callback.is_final());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// Who made this delivery: Cregis, or the [reconciler](crate::reconcile) (see
    /// [`Origin`](crate::Origin)).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Origin, testing::WithdrawalBuilder};
    ///
    /// assert_eq!(WithdrawalBuilder::new().callback()?.origin(), Origin::Cregis);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn origin(&self) -> crate::Origin {
        crate::Origin::of(&self.extra)
    }

    /// Whether the transaction succeeded (see [`CallbackStatus::is_success`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::WithdrawalBuilder};
    ///
    /// let callback = WithdrawalBuilder::new().status(CallbackStatus::TransactionFailed).callback()?;
    /// assert!(!callback.is_success());
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The amount as an exact decimal number, never through a float (the rules of
    /// [`PayoutCallback::amount_decimal`](crate::PayoutCallback::amount_decimal)).
    ///
    /// # Example
    ///
    /// ```
    /// use rust_decimal::Decimal;
    /// use cregis_payout_callback::testing::WithdrawalBuilder;
    ///
    /// let callback = WithdrawalBuilder::new().amount("0.000001").callback()?;
    /// assert_eq!(callback.amount_decimal()?, Decimal::new(1, 6));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] for `amount` when the text is not a plain decimal number, or has
    /// more digits than a `Decimal` holds exactly (about 28).
    #[cfg(feature = "rust_decimal")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rust_decimal")))]
    pub fn amount_decimal(&self) -> Result<rust_decimal::Decimal, Error> {
        super::decimal(&self.amount)
    }

    /// When Cregis sent the callback (`timestamp`), or `None` if it is out of `SystemTime`'s range.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::testing::WithdrawalBuilder;
    ///
    /// let callback = WithdrawalBuilder::new().timestamp(1687850657960).callback()?;
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
    /// use cregis_payout_callback::{CallbackStatus, testing::WithdrawalBuilder};
    ///
    /// let rejected = WithdrawalBuilder::new()
    ///     .status(CallbackStatus::ApprovalRejected)
    ///     .remove("txid").remove("block_height").remove("block_time")
    ///     .callback()?;
    /// assert_eq!(rejected.block_at(), None);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn block_at(&self) -> Option<SystemTime> {
        self.block_time.and_then(system_time)
    }

    /// The key that identifies the fact this callback reports, in the withdrawals' own key
    /// space (see [`DeliveryKey`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::WithdrawalBuilder;
    ///
    /// let callback = WithdrawalBuilder::new().pid(1).cid(2).callback()?;
    /// assert_eq!(callback.delivery_key().to_string(), "withdrawal/1/2/6");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn delivery_key(&self) -> DeliveryKey {
        DeliveryKey::new(
            CallbackKind::Withdrawal,
            self.pid,
            self.cid,
            Fact::Status(self.status),
        )
    }
}

impl sealed::Sealed for WithdrawalCallback {
    const DOCUMENTED_PLACES: u32 = WithdrawalCallback::DOCUMENTED;

    fn from_fields(fields: &Fields<'_, '_>) -> Result<Self, Error> {
        use crate::wire::known as k;
        // In key order, as for every kind: the first bad field in key order is reported.
        let amount = fields.text(k::AMOUNT)?;
        let block_height = fields.text(k::BLOCK_HEIGHT)?;
        let block_time = fields.integer(k::BLOCK_TIME)?;
        let chain_id = fields.text(k::CHAIN_ID)?;
        let cid = fields.integer(k::CID)?;
        let currency = fields.text(k::CURRENCY)?;
        let from_address = fields.text(k::FROM_ADDRESS)?;
        let memo = fields.text(k::MEMO)?;
        let nonce = fields.text(k::NONCE)?;
        let pid = fields.integer(k::PID)?;
        let remark = fields.text(k::REMARK)?;
        let sign = fields.text(k::SIGN)?;
        let status = fields.integer(k::STATUS)?;
        let third_party_id = fields.text(k::THIRD_PARTY_ID)?;
        let timestamp = fields.integer(k::TIMESTAMP)?;
        let to_address = fields.text(k::TO_ADDRESS)?;
        let token_id = fields.text(k::TOKEN_ID)?;
        let txid = fields.text(k::TXID)?;
        Ok(WithdrawalCallback {
            pid: required("pid", pid)?,
            cid: required("cid", cid)?,
            chain_id: required("chain_id", chain_id)?,
            token_id: required("token_id", token_id)?,
            currency: required("currency", currency)?,
            from_address: required("from_address", from_address)?,
            to_address: required("to_address", to_address)?,
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

    fn reply_key(&self) -> DeliveryKey {
        self.delivery_key()
    }
}

impl Callback for WithdrawalCallback {
    const KIND: CallbackKind = CallbackKind::Withdrawal;

    fn pid(&self) -> i64 {
        self.pid
    }

    fn cid(&self) -> i64 {
        self.cid
    }
}

impl Notification for WithdrawalCallback {
    fn delivery_key(&self) -> DeliveryKey {
        WithdrawalCallback::delivery_key(self)
    }

    fn status(&self) -> CallbackStatus {
        self.status
    }

    fn origin(&self) -> crate::Origin {
        WithdrawalCallback::origin(self)
    }
}

impl<'de> Deserialize<'de> for WithdrawalCallback {
    /// Reads a callback with the same rules as the verified path, without checking `sign`.
    /// A repeated key is refused, as it is on the raw body.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::deserialize(deserializer)
    }
}
