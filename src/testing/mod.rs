//! Signed callbacks shaped like the ones Cregis sends, for testing a handler, an endpoint or a
//! whole service (and for simulators).
//!
//! [`CallbackBuilder::new`] starts from a realistic callback in Cregis's wire order (the
//! documented field order); every field can be set, removed, or given any raw JSON (integers
//! as strings, `null`, `""`, `1.10`), and unknown fields added. It signs the body as Cregis
//! does, over the text exactly as written, and can also give the [`PayoutCallback`] value
//! directly, to unit-test a handler without a body at all.
//!
//! [`ManualClock`] is a clock a test sets and advances by hand, for the freshness checks and
//! idempotency leases.
//!
//! Always available: it needs no dependency, and signing needs the key anyway.
//!
//! # Example
//!
//! A host's handler test, with a body a verifier accepts:
//!
//! ```
//! use cregis_payout_callback::{ApiKey, CallbackStatus, PayoutCallback, Verifier, testing::CallbackBuilder};
//!
//! let key = ApiKey::new("fake-api-key-for-tests")?;
//! let verifier = Verifier::new(key.clone());
//! let body = CallbackBuilder::new()
//!     .third_party_id("order-42")
//!     .status(CallbackStatus::TransactionFailed)
//!     .body(&key)?;
//! let reply = verifier.process(body.as_bytes(), &|callback: &PayoutCallback| {
//!     assert_eq!((callback.third_party_id.as_str(), callback.status), ("order-42", CallbackStatus::TransactionFailed));
//!     Ok::<(), String>(())
//! });
//! assert_eq!(reply.body(), "success");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::hash_map::RandomState;
use std::fmt::{self, Write as _};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::signature::sign_body;
use crate::wire::Params;
use crate::{ApiKey, CallbackStatus, Error, PayoutCallback};

mod clock;

pub use clock::ManualClock;

/// Builds a payout callback body, field by field, in the order Cregis sends them.
///
/// It starts ([`new`](Self::new)) from a realistic callback: a successful TRX payout on Tron
/// with the documented example's ids, a fresh random `nonce` and the current `timestamp`, in
/// the documented order `pid`, `cid`, `chain_id`, `token_id`, `currency`, `address`, `amount`,
/// `third_party_id`, `remark`, `status`, `txid`, `block_height`, `block_time`, `nonce`,
/// `timestamp`. Setting a field keeps its place; a documented field added back (`memo`, after
/// `block_time`) goes to its documented place, any other field after all of them; `sign`
/// always comes last.
///
/// For a body that does not change between runs, set [`nonce`](Self::nonce) and
/// [`timestamp`](Self::timestamp).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, testing::CallbackBuilder};
///
/// let builder = CallbackBuilder::new()
///     .cid(1391751691788288)
///     .memo("104857")                     // Ton and Xrp payouts carry one
///     .raw("block_height", "34527604")    // any raw JSON: here a number, not a string
///     .string("network_fee", "0.35")      // a field Cregis may add one day
///     .nonce("ubqso3")
///     .timestamp(1687850657960);
/// let body = builder.body(&ApiKey::new("fake-api-key-for-docs")?)?;
/// assert!(body.starts_with(r#"{"pid":1382528827416576,"cid":1391751691788288,"chain_id":"195","#));
/// assert!(body.contains(r#""block_height":34527604,"#));
/// assert!(body.contains(r#""block_time":1686814482000,"memo":"104857","nonce":"ubqso3","#));
/// assert!(body.contains(r#""timestamp":1687850657960,"network_fee":"0.35","sign":""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackBuilder {
    /// `(key, raw JSON value)`, in body order; never `sign`.
    fields: Vec<(String, String)>,
}

impl Default for CallbackBuilder {
    /// [`CallbackBuilder::new`].
    fn default() -> Self {
        CallbackBuilder::new()
    }
}

impl CallbackBuilder {
    /// A realistic successful payout callback (status 6), with a fresh `nonce` and the current
    /// `timestamp`.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::CallbackBuilder};
    ///
    /// let callback = CallbackBuilder::new().callback()?;
    /// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    /// assert_eq!(callback.amount, "1.1");
    /// assert_eq!(callback.nonce.len(), 6);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn new() -> CallbackBuilder {
        CallbackBuilder::empty()
            .pid(1382528827416576)
            .cid(1391751691788288)
            .chain_id("195")
            .token_id("195")
            .currency("TRX")
            .address("TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS")
            .amount("1.1")
            .third_party_id("1e0fb3a0a9454ad8928d26b592e8b3c7")
            .remark("payout")
            .status(CallbackStatus::TransactionSuccessful)
            .txid("6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd")
            .block_height("34527604")
            .block_time(1686814482000)
            .nonce(&fresh_nonce())
            .timestamp(now_millis())
    }

    /// A body with no field at all, to build any shape from [`raw`](Self::raw) and
    /// [`string`](Self::string).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// let body = CallbackBuilder::empty().raw("pid", "1").unsigned_body();
    /// assert_eq!(body, r#"{"pid":1}"#);
    /// ```
    pub fn empty() -> CallbackBuilder {
        CallbackBuilder { fields: Vec::new() }
    }

    /// The fields of a raw JSON body, each value's text exactly as written, in body order; a
    /// `sign` in it is dropped. To re-sign a captured body, or change one field of it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, testing::CallbackBuilder};
    ///
    /// let captured = br#"{"pid":1382528827416576,"x_ratio":1.10,"amount":"1.1","sign":"0000"}"#;
    /// let builder = CallbackBuilder::from_body(captured)?;
    /// assert_eq!(builder.unsigned_body(), r#"{"pid":1382528827416576,"x_ratio":1.10,"amount":"1.1"}"#);
    /// assert_eq!(
    ///     CallbackBuilder::from_body(br#"{"a":1,"a":2}"#),
    ///     Err(Error::DuplicateKey { key: "a".into() })
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// What a verifier says of a body it cannot sign: [`Error::InvalidJson`],
    /// [`Error::NotAnObject`], [`Error::DuplicateKey`], [`Error::NestedValue`].
    pub fn from_body(body: &[u8]) -> Result<CallbackBuilder, Error> {
        // The checks (and errors) of verification: syntax, an object, flat, each key once.
        Params::from_body(body)?;
        let RawFields(fields) = serde_json::from_slice(body).map_err(|e| Error::InvalidJson {
            reason: e.to_string(),
        })?;
        let fields = fields
            .into_iter()
            .filter(|(key, _)| key != "sign")
            .map(|(key, value)| (key, value.get().to_owned()))
            .collect();
        Ok(CallbackBuilder { fields })
    }

    /// Sets `key` to the raw JSON text `json`, exactly as written (`"1391751691788288"` for an
    /// integer sent as a string, `null`, `""`, `1.10`...): in place if the body has `key`, else
    /// after the other fields. The text is not checked: an invalid one makes an invalid body.
    ///
    /// `sign` is not a field here: [`body`](Self::body) and [`body_with_sign`](Self::body_with_sign)
    /// write it last, in place of any set by hand, and [`unsigned_body`](Self::unsigned_body)
    /// leaves it out.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// let builder = CallbackBuilder::new().raw("cid", r#""1391751691788288""#).raw("remark", "null");
    /// let callback = builder.callback()?;
    /// assert_eq!((callback.cid, callback.remark), (1391751691788288, None));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        if let Some(field) = self.fields.iter_mut().find(|(k, _)| k == key) {
            json.clone_into(&mut field.1);
            return self;
        }
        // A documented field goes to its documented place; any other after all the rest.
        let rank = wire_rank(key);
        let at = self
            .fields
            .iter()
            .position(|(k, _)| wire_rank(k) > rank)
            .unwrap_or(self.fields.len());
        self.fields.insert(at, (key.to_owned(), json.to_owned()));
        self
    }

    /// Sets `key` to the JSON string `value` (escaped as needed), as [`raw`](Self::raw) does.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// let body = CallbackBuilder::empty().string("remark", "say \"hi\"").unsigned_body();
    /// assert_eq!(body, r#"{"remark":"say \"hi\""}"#);
    /// ```
    #[must_use]
    pub fn string(self, key: &str, value: &str) -> Self {
        let json = serde_json::to_string(value).unwrap_or_default();
        self.raw(key, &json)
    }

    /// Leaves `key` out of the body.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::CallbackBuilder;
    ///
    /// // A rejected payout: no transaction was broadcast.
    /// let callback = CallbackBuilder::new().status_code(4).remove("txid").remove("block_height").remove("block_time").callback()?;
    /// assert_eq!(callback.txid, None);
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    #[must_use]
    pub fn remove(mut self, key: &str) -> Self {
        self.fields.retain(|(k, _)| k != key);
        self
    }

    /// Sets `pid`, the project id.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn pid(self, pid: i64) -> Self {
        self.raw("pid", &pid.to_string())
    }

    /// Sets `cid`, Cregis's id of the payout.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn cid(self, cid: i64) -> Self {
        self.raw("cid", &cid.to_string())
    }

    /// Sets `chain_id`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn chain_id(self, chain_id: &str) -> Self {
        self.string("chain_id", chain_id)
    }

    /// Sets `token_id`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn token_id(self, token_id: &str) -> Self {
        self.string("token_id", token_id)
    }

    /// Sets `currency`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn currency(self, currency: &str) -> Self {
        self.string("currency", currency)
    }

    /// Sets `address`, the destination address.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn address(self, address: &str) -> Self {
        self.string("address", address)
    }

    /// Sets `amount`, a decimal as text.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn amount(self, amount: &str) -> Self {
        self.string("amount", amount)
    }

    /// Sets `third_party_id`, the host's own id of the payout.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn third_party_id(self, third_party_id: &str) -> Self {
        self.string("third_party_id", third_party_id)
    }

    /// Sets `remark`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn remark(self, remark: &str) -> Self {
        self.string("remark", remark)
    }

    /// Sets `status`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn status(self, status: CallbackStatus) -> Self {
        self.status_code(i64::from(status.code()))
    }

    /// Sets `status` to any code, undocumented ones included.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{Error, testing::CallbackBuilder};
    ///
    /// assert_eq!(CallbackBuilder::new().status_code(9).callback(), Err(Error::UnknownStatus { code: 9 }));
    /// ```
    #[must_use]
    pub fn status_code(self, code: i64) -> Self {
        self.raw("status", &code.to_string())
    }

    /// Sets `txid`, the transaction hash.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn txid(self, txid: &str) -> Self {
        self.string("txid", txid)
    }

    /// Sets `block_height`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn block_height(self, block_height: &str) -> Self {
        self.string("block_height", block_height)
    }

    /// Sets `block_time`, in milliseconds since the epoch.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn block_time(self, block_time: i64) -> Self {
        self.raw("block_time", &block_time.to_string())
    }

    /// Sets `memo` (Ton and Xrp payouts carry one; others none).
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn memo(self, memo: &str) -> Self {
        self.string("memo", memo)
    }

    /// Sets `nonce`.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn nonce(self, nonce: &str) -> Self {
        self.string("nonce", nonce)
    }

    /// Sets `timestamp`, in milliseconds since the epoch.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    #[must_use]
    pub fn timestamp(self, timestamp: i64) -> Self {
        self.raw("timestamp", &timestamp.to_string())
    }

    /// The body without `sign`.
    ///
    /// # Example
    ///
    /// See [`empty`](Self::empty).
    #[must_use]
    pub fn unsigned_body(&self) -> String {
        self.body_with(None)
    }

    /// The signature of the body with `api_key`, as Cregis computes it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, testing::CallbackBuilder};
    ///
    /// // The published vector.
    /// let vector = CallbackBuilder::empty()
    ///     .raw("pid", "1382528827416576").string("currency", "195@195")
    ///     .string("address", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS").string("amount", "1.1")
    ///     .string("remark", "payout").string("third_party_id", "c9231e604da54469a735af3f449c880f")
    ///     .string("callback_url", "http://192.168.2.29:9099/callback").string("nonce", "hwlkk6")
    ///     .raw("timestamp", "1688004243314");
    /// let key = ApiKey::new("f502a9ac9ca54327986f29c03b271491")?;
    /// assert_eq!(vector.sign(&key)?, "d6eef2de79e39f434a38efb910213ba6");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`sign_body`]: a body that is not a flat JSON object with each key once (a field
    /// set to invalid raw JSON, say).
    pub fn sign(&self, api_key: &ApiKey) -> Result<String, Error> {
        sign_body(self.unsigned_body().as_bytes(), api_key)
    }

    /// The body, signed with `api_key`: what Cregis would POST.
    ///
    /// # Example
    ///
    /// See [`CallbackBuilder`].
    ///
    /// # Errors
    ///
    /// As [`sign`](Self::sign).
    pub fn body(&self, api_key: &ApiKey) -> Result<String, Error> {
        Ok(self.body_with_sign(&self.sign(api_key)?))
    }

    /// The body with `sign` set to `sign`: to send a forged or stale signature, or a body
    /// changed after it was signed.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Error, Verifier, testing::CallbackBuilder};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let builder = CallbackBuilder::new();
    /// let sign = builder.sign(&key)?;
    /// let tampered = builder.amount("999").body_with_sign(&sign);
    /// let verifier = Verifier::new(key);
    /// assert_eq!(verifier.verify(tampered.as_bytes()), Err(Error::SignatureMismatch));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn body_with_sign(&self, sign: &str) -> String {
        self.body_with(Some(sign))
    }

    /// The callback this body carries, read exactly as a verifier reads it but without a
    /// signature: a [`PayoutCallback`] to hand straight to a handler in a unit test. Its
    /// `sign` is 32 zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackHandler, PayoutCallback, testing::CallbackBuilder};
    ///
    /// fn fee_for(callback: &PayoutCallback) -> Result<u32, String> {
    ///     Ok(if callback.is_success() { 1 } else { 0 })
    /// }
    /// assert_eq!(fee_for(&CallbackBuilder::new().callback()?), Ok(1));
    /// assert_eq!(fee_for(&CallbackBuilder::new().status_code(7).callback()?), Ok(0));
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// What [`Verifier::verify_and_parse`](crate::Verifier::verify_and_parse) would return for
    /// this body once authentic: a malformed body, a missing or mistyped documented field, an
    /// unknown status.
    pub fn callback(&self) -> Result<PayoutCallback, Error> {
        let body = self.body_with_sign(UNSIGNED);
        PayoutCallback::from_params(&Params::from_body(body.as_bytes())?)
    }

    fn body_with(&self, sign: Option<&str>) -> String {
        let mut body = String::from("{");
        let sign = sign.map(|sign| ("sign".to_owned(), serde_json::Value::from(sign).to_string()));
        // `sign` has one place, last; one set by hand is replaced (or, unsigned, left out).
        let fields = self.fields.iter().filter(|(key, _)| key != "sign");
        for (key, json) in fields.chain(&sign) {
            if body.len() > 1 {
                body.push(',');
            }
            let key = serde_json::to_string(key).unwrap_or_default();
            let _ = write!(body, "{key}:{json}");
        }
        body.push('}');
        body
    }
}

/// A JSON object's members in body order, each value's raw text.
struct RawFields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = RawFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(member) = map.next_entry()? {
                    fields.push(member);
                }
                Ok(RawFields(fields))
            }
        }

        deserializer.deserialize_map(Members)
    }
}

/// The `sign` of a callback built without a key.
const UNSIGNED: &str = "00000000000000000000000000000000";

/// The fields Cregis documents, in the order it sends them (`memo`, a later field, where the
/// protocol notes place it).
const WIRE_ORDER: [&str; 16] = [
    "pid",
    "cid",
    "chain_id",
    "token_id",
    "currency",
    "address",
    "amount",
    "third_party_id",
    "remark",
    "status",
    "txid",
    "block_height",
    "block_time",
    "memo",
    "nonce",
    "timestamp",
];

/// Where `key` goes in a body: its documented place, or after all of them.
fn wire_rank(key: &str) -> usize {
    WIRE_ORDER
        .iter()
        .position(|k| *k == key)
        .unwrap_or(WIRE_ORDER.len())
}

/// Six random lowercase letters and digits, like Cregis's nonces.
fn fresh_nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bits = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    (0..6)
        .map(|_| {
            let digit = u32::try_from(bits % 36).unwrap_or(0);
            bits /= 36;
            char::from_digit(digit, 36).unwrap_or('0')
        })
        .collect()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
