//! The payout external verification request.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::callback::fields::{Fields, places, required};
use crate::callback::kind::{Callback, CallbackKind, sealed};
use crate::idempotency::{DeliveryKey, Fact};

/// A payout external verification request: with it turned on, Cregis asks the host to approve
/// each payout before it goes ahead.
///
/// It is the most security-sensitive callback Cregis sends: the host answers `ok` to let the
/// money leave, `deny` to stop it. Answer it with
/// [`Verifier::decide`](crate::Verifier::decide) and an
/// [`ApprovalHandler`](crate::approval::ApprovalHandler), which answers `deny` on every path but
/// an approval the handler gave for an authentic, well-formed request. It has no `status` (a
/// body with one is a payout callback, refused as [`Error::WrongKind`]) and no `currency`; the
/// other reading rules are those of every callback: `remark` and `memo` read absent, `null`
/// and `""` alike as `None`, integers also come as their decimal strings, and every field not
/// documented for it lands in [`extra`](Self::extra).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};
/// use cregis_payout_callback::testing::ApprovalBuilder;
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let body = ApprovalBuilder::new().amount("250.5").body(&key)?;
/// let verifier = Verifier::new(key).for_kind::<ApprovalRequest>();
/// let request = verifier.verify_and_parse(body.as_bytes())?;
/// assert_eq!(request.amount, "250.5");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// Project id.
    pub pid: i64,
    /// Cregis's id of the payout waiting for approval. Can exceed 2^53: never store it in a
    /// float.
    pub cid: i64,
    /// Chain id, e.g. `"195"` for Tron.
    pub chain_id: String,
    /// Token id.
    pub token_id: String,
    /// The address the payout leaves from.
    pub from_address: String,
    /// The recipient's address: check it against the payout the host asked for.
    pub to_address: String,
    /// Amount as decimal text, exactly as sent: check it against the payout the host asked for.
    pub amount: String,
    /// The host's own id for the payout, as given when it was created.
    pub third_party_id: String,
    /// Remark given when the payout was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Memo (Ton and Xrp only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Six random characters chosen by Cregis for this request.
    pub nonce: String,
    /// When Cregis sent the request, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The signature, as received.
    pub sign: String,
    /// Every field not documented for this request, with its value (part of the signature
    /// too).
    ///
    /// Keep documented field names out of it: serializing would write such a key twice.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ApprovalRequest {
    /// The documented fields, one bit per place in `KNOWN`.
    const DOCUMENTED: u32 = {
        use crate::wire::known as k;
        places(&[
            k::AMOUNT,
            k::CHAIN_ID,
            k::CID,
            k::FROM_ADDRESS,
            k::MEMO,
            k::NONCE,
            k::PID,
            k::REMARK,
            k::SIGN,
            k::THIRD_PARTY_ID,
            k::TIMESTAMP,
            k::TO_ADDRESS,
            k::TOKEN_ID,
        ])
    };

    /// The key under which the decision `approved` (or not) about this request is recorded,
    /// in the approvals' own key space (see [`DeliveryKey`]).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::ApprovalBuilder;
    ///
    /// let request = ApprovalBuilder::new().pid(1).cid(2).request()?;
    /// assert_eq!(request.decision_key(true).to_string(), "approval/1/2/ok");
    /// assert_eq!(request.decision_key(false).to_string(), "approval/1/2/deny");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn decision_key(&self, approved: bool) -> DeliveryKey {
        let fact = if approved {
            Fact::Approved
        } else {
            Fact::Denied
        };
        DeliveryKey::new(CallbackKind::Approval, self.pid, self.cid, fact)
    }
}

impl sealed::Sealed for ApprovalRequest {
    const DOCUMENTED_PLACES: u32 = ApprovalRequest::DOCUMENTED;

    fn from_fields(fields: &Fields<'_, '_>) -> Result<Self, Error> {
        use crate::wire::known as k;
        // A `status` makes it a payout callback: refused here, and named as such by the
        // verifier (`WrongKind`), so that a withdrawal sent to the approval route is never
        // read as a request to approve.
        if fields.present(k::STATUS) {
            return Err(Error::InvalidField {
                field: "status",
                problem: "is not a field of an approval request",
            });
        }
        // In key order, as for every kind: the first bad field in key order is reported.
        let amount = fields.text(k::AMOUNT)?;
        let chain_id = fields.text(k::CHAIN_ID)?;
        let cid = fields.integer(k::CID)?;
        let from_address = fields.text(k::FROM_ADDRESS)?;
        let memo = fields.text(k::MEMO)?;
        let nonce = fields.text(k::NONCE)?;
        let pid = fields.integer(k::PID)?;
        let remark = fields.text(k::REMARK)?;
        let sign = fields.text(k::SIGN)?;
        let third_party_id = fields.text(k::THIRD_PARTY_ID)?;
        let timestamp = fields.integer(k::TIMESTAMP)?;
        let to_address = fields.text(k::TO_ADDRESS)?;
        let token_id = fields.text(k::TOKEN_ID)?;
        Ok(ApprovalRequest {
            pid: required("pid", pid)?,
            cid: required("cid", cid)?,
            chain_id: required("chain_id", chain_id)?,
            token_id: required("token_id", token_id)?,
            from_address: required("from_address", from_address)?,
            to_address: required("to_address", to_address)?,
            amount: required("amount", amount)?,
            third_party_id: required("third_party_id", third_party_id)?,
            remark,
            memo,
            nonce: required("nonce", nonce)?,
            timestamp: required("timestamp", timestamp)?,
            sign: required("sign", sign)?,
            extra: fields.extra(Self::DOCUMENTED),
        })
    }

    fn reply_key(&self) -> DeliveryKey {
        self.decision_key(false)
    }
}

impl Callback for ApprovalRequest {
    const KIND: CallbackKind = CallbackKind::Approval;

    fn pid(&self) -> i64 {
        self.pid
    }

    fn cid(&self) -> i64 {
        self.cid
    }
}

impl<'de> Deserialize<'de> for ApprovalRequest {
    /// Reads a request with the same rules as the verified path, without checking `sign`.
    /// A repeated key is refused, as it is on the raw body.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::callback::deserialize(deserializer)
    }
}
