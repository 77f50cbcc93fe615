//! Signed callbacks shaped like the ones Cregis sends, for testing a handler, an endpoint or a
//! whole service (and for simulators).
//!
//! One builder per kind of callback: [`CallbackBuilder`] (the wallet payout callback),
//! [`WithdrawalBuilder`] (the sub-address payout callback) and [`ApprovalBuilder`] (the payout
//! external verification request). Each `new` starts from a realistic body of its kind in
//! Cregis's wire order (the documented field order); every field can be set, removed, or given
//! any raw JSON (integers as strings, `null`, `""`, `1.10`), and unknown fields added. They sign
//! the body as Cregis does, over the text exactly as written, and can also give the typed value
//! directly ([`CallbackBuilder::callback`], [`WithdrawalBuilder::callback`],
//! [`ApprovalBuilder::request`]), to unit-test a handler without a body at all.
//!
//! [`ManualClock`] is a clock a test sets and advances by hand, for the freshness checks and
//! idempotency leases.
//!
//! Always available: it needs no dependency, and signing needs the key anyway.
//!
//! # Example: testing your handler
//!
//! `testing::CallbackBuilder` makes callbacks shaped like Cregis's (the documented field order,
//! realistic values), every field settable (`memo`, unknown fields, integers as strings, `null`,
//! `""`), signed with your test key, or straight as a `PayoutCallback`:
//!
//! ```rust
//! use cregis_payout_callback::{ApiKey, CallbackStatus, Verifier, handler_fn, testing::CallbackBuilder};
//!
//! let key = ApiKey::new("fake-key-for-tests")?;
//! let verifier = Verifier::new(key.clone());
//! let body = CallbackBuilder::new().third_party_id("order-42").status(CallbackStatus::TransactionFailed).body(&key)?;
//! let reply = verifier.process(body.as_bytes(), &handler_fn(|callback| {
//!     assert_eq!((callback.third_party_id.as_str(), callback.is_success()), ("order-42", false));
//!     Ok(())
//! }));
//! assert_eq!((reply.status_code(), reply.body()), (200, "success"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `CallbackBuilder::new().amount("2.5").callback()?` gives the `PayoutCallback` itself, to call
//! a handler with directly; `.nonce(..)` and `.timestamp(..)` make a body the same on every run;
//! `.body_with_sign(..)` sends a stale or forged signature. `testing::ManualClock`, given to
//! `Verifier::builder(key).clock(..)`, sets the time for freshness checks and claim leases.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::signature::sign_body;
use crate::wire::Params;
use crate::{
    ApiKey, ApprovalRequest, Callback, CallbackStatus, Error, PayoutCallback, WithdrawalCallback,
};

mod clock;

pub use clock::ManualClock;

/// What every builder is: `(key, raw JSON value)` pairs in body order (never `sign`), placed
/// by its kind's documented order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Draft {
    fields: Vec<(String, String)>,
    /// The kind's documented fields, in wire order.
    order: &'static [&'static str],
}

impl Draft {
    fn empty(order: &'static [&'static str]) -> Draft {
        Draft {
            fields: Vec::new(),
            order,
        }
    }

    fn from_body(body: &[u8], order: &'static [&'static str]) -> Result<Draft, Error> {
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
        Ok(Draft { fields, order })
    }

    /// Where `key` goes in a body: its documented place, or after all of them.
    fn rank(&self, key: &str) -> usize {
        self.order
            .iter()
            .position(|k| *k == key)
            .unwrap_or(self.order.len())
    }

    fn raw(&mut self, key: &str, json: &str) {
        if let Some(field) = self.fields.iter_mut().find(|(k, _)| k == key) {
            json.clone_into(&mut field.1);
            return;
        }
        // A documented field goes to its documented place; any other after all the rest.
        let rank = self.rank(key);
        let at = self
            .fields
            .iter()
            .position(|(k, _)| self.rank(k) > rank)
            .unwrap_or(self.fields.len());
        self.fields.insert(at, (key.to_owned(), json.to_owned()));
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

    fn sign(&self, api_key: &ApiKey) -> Result<String, Error> {
        sign_body(self.body_with(None).as_bytes(), api_key)
    }

    /// The typed value of this body, read as a verifier reads it, signed with 32 zeros.
    fn parse<C: Callback>(&self) -> Result<C, Error> {
        let body = self.body_with(Some(UNSIGNED));
        crate::verifier::parse(&Params::from_body(body.as_bytes())?)
    }
}

/// The methods every builder has: raw fields, the fields every kind documents, and the body.
macro_rules! builder_methods {
    ($builder:ident, $order:ident) => {
        impl Default for $builder {
            #[doc = concat!("[`", stringify!($builder), "::new`].")]
            fn default() -> Self {
                $builder::new()
            }
        }

        impl $builder {
            /// A body with no field at all, to build any shape from [`raw`](Self::raw) and
            /// [`string`](Self::string).
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::testing::", stringify!($builder), ";")]
            ///
            #[doc = concat!("let body = ", stringify!($builder), r#"::empty().raw("pid", "1").unsigned_body();"#)]
            /// assert_eq!(body, r#"{"pid":1}"#);
            /// ```
            pub fn empty() -> $builder {
                $builder {
                    draft: Draft::empty($order),
                }
            }

            /// The fields of a raw JSON body, each value's text exactly as written, in body
            /// order; a `sign` in it is dropped. To re-sign a captured body, or change one
            /// field of it.
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::{Error, testing::", stringify!($builder), "};")]
            ///
            /// let captured = br#"{"pid":1382528827416576,"x_ratio":1.10,"amount":"1.1","sign":"0000"}"#;
            #[doc = concat!("let builder = ", stringify!($builder), "::from_body(captured)?;")]
            /// assert_eq!(builder.unsigned_body(), r#"{"pid":1382528827416576,"x_ratio":1.10,"amount":"1.1"}"#);
            /// assert_eq!(
            #[doc = concat!("    ", stringify!($builder), "::from_body(br#\"{\"a\":1,\"a\":2}\"#),")]
            ///     Err(Error::DuplicateKey { key: "a".into() })
            /// );
            /// # Ok::<(), Error>(())
            /// ```
            ///
            /// # Errors
            ///
            /// What a verifier says of a body it cannot sign: [`Error::InvalidJson`],
            /// [`Error::NotAnObject`], [`Error::DuplicateKey`], [`Error::NestedValue`].
            pub fn from_body(body: &[u8]) -> Result<$builder, Error> {
                Ok($builder {
                    draft: Draft::from_body(body, $order)?,
                })
            }

            /// Sets `key` to the raw JSON text `json`, exactly as written
            /// (`"1391751691788288"` for an integer sent as a string, `null`, `""`, `1.10`...):
            /// in place if the body has `key`, else in its documented place, or after the other
            /// fields for a key this kind does not document. The text is not checked: an
            /// invalid one makes an invalid body.
            ///
            /// `sign` is not a field here: [`body`](Self::body) and
            /// [`body_with_sign`](Self::body_with_sign) write it last, in place of any set by
            /// hand, and [`unsigned_body`](Self::unsigned_body) leaves it out.
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::testing::", stringify!($builder), ";")]
            ///
            #[doc = concat!("let body = ", stringify!($builder), r#"::empty().raw("cid", r#""1391751691788288""\#).raw("remark", "null").unsigned_body();"#)]
            /// assert_eq!(body, r#"{"cid":"1391751691788288","remark":null}"#);
            /// ```
            #[must_use]
            pub fn raw(mut self, key: &str, json: &str) -> Self {
                self.draft.raw(key, json);
                self
            }

            /// Sets `key` to the JSON string `value` (escaped as needed), as
            /// [`raw`](Self::raw) does.
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::testing::", stringify!($builder), ";")]
            ///
            #[doc = concat!("let body = ", stringify!($builder), r#"::empty().string("remark", "say \"hi\"").unsigned_body();"#)]
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
            #[doc = concat!("use cregis_payout_callback::testing::", stringify!($builder), ";")]
            ///
            #[doc = concat!("let body = ", stringify!($builder), "::new().remove(\"remark\").unsigned_body();")]
            /// assert!(!body.contains("remark"));
            /// ```
            #[must_use]
            pub fn remove(mut self, key: &str) -> Self {
                self.draft.fields.retain(|(k, _)| k != key);
                self
            }

            /// The body without `sign`.
            ///
            /// # Example
            ///
            /// See [`empty`](Self::empty).
            #[must_use]
            pub fn unsigned_body(&self) -> String {
                self.draft.body_with(None)
            }

            /// The signature of the body with `api_key`, as Cregis computes it.
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::{ApiKey, signature::sign_body, testing::", stringify!($builder), "};")]
            ///
            /// let key = ApiKey::new("fake-api-key-for-docs")?;
            #[doc = concat!("let builder = ", stringify!($builder), "::new();")]
            /// assert_eq!(builder.sign(&key)?, sign_body(builder.unsigned_body().as_bytes(), &key)?);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            ///
            /// # Errors
            ///
            /// As [`sign_body`]: a body that is not a flat JSON object with each key once (a
            /// field set to invalid raw JSON, say).
            pub fn sign(&self, api_key: &ApiKey) -> Result<String, Error> {
                self.draft.sign(api_key)
            }

            /// The body, signed with `api_key`: what Cregis would POST.
            ///
            /// # Example
            ///
            #[doc = concat!("See [`", stringify!($builder), "`].")]
            ///
            /// # Errors
            ///
            /// As [`sign`](Self::sign).
            pub fn body(&self, api_key: &ApiKey) -> Result<String, Error> {
                Ok(self.body_with_sign(&self.sign(api_key)?))
            }

            /// The body with `sign` set to `sign`: to send a forged or stale signature, or a
            /// body changed after it was signed.
            ///
            /// # Example
            ///
            /// ```
            #[doc = concat!("use cregis_payout_callback::{ApiKey, Error, Verifier, testing::", stringify!($builder), "};")]
            ///
            /// let key = ApiKey::new("fake-api-key-for-docs")?;
            #[doc = concat!("let builder = ", stringify!($builder), "::new();")]
            /// let sign = builder.sign(&key)?;
            /// let tampered = builder.amount("999").body_with_sign(&sign);
            /// assert_eq!(Verifier::new(key).verify(tampered.as_bytes()), Err(Error::SignatureMismatch));
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn body_with_sign(&self, sign: &str) -> String {
                self.draft.body_with(Some(sign))
            }
        }

        setters! {
            $builder;
            /// Sets `pid`, the project id.
            pid("pid", integer);
            /// Sets `cid`, Cregis's id of the payout.
            cid("cid", integer);
            /// Sets `chain_id`.
            chain_id("chain_id", string);
            /// Sets `token_id`.
            token_id("token_id", string);
            /// Sets `amount`, a decimal as text.
            amount("amount", string);
            /// Sets `third_party_id`, the host's own id of the payout.
            third_party_id("third_party_id", string);
            /// Sets `remark`.
            remark("remark", string);
            /// Sets `memo` (Ton and Xrp payouts carry one; others none).
            memo("memo", string);
            /// Sets `nonce`.
            nonce("nonce", string);
            /// Sets `timestamp`, in milliseconds since the epoch.
            timestamp("timestamp", integer);
        }
    };
}

/// Setters of documented fields: `integer` ones take an `i64`, `string` ones a `&str`.
macro_rules! setters {
    ($builder:ident; $($(#[$doc:meta])* $method:ident($field:literal, $how:ident);)*) => {
        impl $builder {
            $(setters!(@one $builder, $(#[$doc])* $method, $field, $how);)*
        }
    };
    (@one $builder:ident, $(#[$doc:meta])* $method:ident, $field:literal, string) => {
        $(#[$doc])*
        ///
        /// # Example
        ///
        #[doc = concat!("See [`", stringify!($builder), "`].")]
        #[must_use]
        pub fn $method(self, value: &str) -> Self {
            self.string($field, value)
        }
    };
    (@one $builder:ident, $(#[$doc:meta])* $method:ident, $field:literal, integer) => {
        $(#[$doc])*
        ///
        /// # Example
        ///
        #[doc = concat!("See [`", stringify!($builder), "`].")]
        #[must_use]
        pub fn $method(self, value: i64) -> Self {
            self.raw($field, &value.to_string())
        }
    };
}

/// The fields of the payout notifications (`status` and the transaction's).
macro_rules! notification_setters {
    ($builder:ident) => {
        setters! {
            $builder;
            /// Sets `currency`.
            currency("currency", string);
            /// Sets `status` to any code, undocumented ones included (an unknown one is
            /// refused as [`Error::UnknownStatus`]).
            status_code("status", integer);
            /// Sets `txid`, the transaction hash.
            txid("txid", string);
            /// Sets `block_height`.
            block_height("block_height", string);
            /// Sets `block_time`, in milliseconds since the epoch.
            block_time("block_time", integer);
        }

        impl $builder {
            /// Sets `status`.
            ///
            /// # Example
            ///
            #[doc = concat!("See [`", stringify!($builder), "`].")]
            #[must_use]
            pub fn status(self, status: CallbackStatus) -> Self {
                self.status_code(i64::from(status.code()))
            }
        }
    };
}

/// Builds a wallet payout callback body, field by field, in the order Cregis sends them.
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
    draft: Draft,
}

builder_methods!(CallbackBuilder, PAYOUT_ORDER);
notification_setters!(CallbackBuilder);
setters! {
    CallbackBuilder;
    /// Sets `address`, the destination address.
    address("address", string);
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
            .nonce(&crate::request::fresh_nonce())
            .timestamp(now_millis())
    }

    /// The callback this body carries, read exactly as a verifier reads it but without a
    /// signature: a [`PayoutCallback`] to hand straight to a handler in a unit test. Its
    /// `sign` is 32 zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{PayoutCallback, testing::CallbackBuilder};
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
    /// unknown status, another kind of callback.
    pub fn callback(&self) -> Result<PayoutCallback, Error> {
        self.draft.parse()
    }
}

/// Builds a sub-address payout callback body, field by field, in the order Cregis documents
/// them, as [`CallbackBuilder`] does for the wallet payout callback.
///
/// It starts ([`new`](Self::new)) from a successful TRX withdrawal on Tron from a sub-address,
/// with a fresh random `nonce` and the current `timestamp`, in the documented order `pid`,
/// `cid`, `chain_id`, `token_id`, `currency`, `from_address`, `to_address`, `amount`,
/// `third_party_id`, `remark`, `status`, `txid`, `block_height`, `block_time`, (`memo`),
/// `nonce`, `timestamp`; `sign` last.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Verifier, WithdrawalCallback, testing::WithdrawalBuilder};
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let body = WithdrawalBuilder::new().memo("104857").nonce("ubqso3").body(&key)?;
/// assert!(body.contains(r#""currency":"TRX","from_address":"TJRabPrwbZy45sbavfcjinPJC18kjpRTv8","to_address":""#));
/// assert!(body.contains(r#""block_time":1686814482000,"memo":"104857","nonce":"ubqso3","#));
/// let verifier = Verifier::new(key).for_kind::<WithdrawalCallback>();
/// assert_eq!(verifier.verify_and_parse(body.as_bytes())?.memo.as_deref(), Some("104857"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalBuilder {
    draft: Draft,
}

builder_methods!(WithdrawalBuilder, WITHDRAWAL_ORDER);
notification_setters!(WithdrawalBuilder);
setters! {
    WithdrawalBuilder;
    /// Sets `from_address`, the sub-address the payout leaves from.
    from_address("from_address", string);
    /// Sets `to_address`, the recipient.
    to_address("to_address", string);
}

impl WithdrawalBuilder {
    /// A realistic successful sub-address payout callback (status 6), with a fresh `nonce`
    /// and the current `timestamp`.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{CallbackStatus, testing::WithdrawalBuilder};
    ///
    /// let callback = WithdrawalBuilder::new().callback()?;
    /// assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    /// assert_eq!(callback.from_address, "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn new() -> WithdrawalBuilder {
        WithdrawalBuilder::empty()
            .pid(1382528827416576)
            .cid(1391751691788288)
            .chain_id("195")
            .token_id("195")
            .currency("TRX")
            .from_address("TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
            .to_address("TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS")
            .amount("1.1")
            .third_party_id("1e0fb3a0a9454ad8928d26b592e8b3c7")
            .remark("withdrawal")
            .status(CallbackStatus::TransactionSuccessful)
            .txid("6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd")
            .block_height("34527604")
            .block_time(1686814482000)
            .nonce(&crate::request::fresh_nonce())
            .timestamp(now_millis())
    }

    /// The callback this body carries, read exactly as a verifier reads it but without a
    /// signature (its `sign` is 32 zeros), to hand straight to a handler in a unit test.
    ///
    /// # Example
    ///
    /// See [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// What [`Verifier::verify_and_parse`](crate::Verifier::verify_and_parse) would return for
    /// this body once authentic.
    pub fn callback(&self) -> Result<WithdrawalCallback, Error> {
        self.draft.parse()
    }
}

/// Builds a payout external verification request body, field by field, in the order of
/// Cregis's models, as [`CallbackBuilder`] does for the wallet payout callback.
///
/// It starts ([`new`](Self::new)) from a request to approve a TRX payout on Tron, with a
/// fresh random `nonce` and the current `timestamp`, in the order `pid`, `cid`, `chain_id`,
/// `token_id`, `from_address`, `to_address`, `amount`, `third_party_id`, `remark`, (`memo`),
/// `nonce`, `timestamp`; `sign` last. It has no `status` and no `currency`.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier, testing::ApprovalBuilder};
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// let body = ApprovalBuilder::new().amount("250.5").body(&key)?;
/// assert!(body.contains(r#""amount":"250.5","third_party_id":"#));
/// let verifier = Verifier::new(key).for_kind::<ApprovalRequest>();
/// assert_eq!(verifier.verify_and_parse(body.as_bytes())?.amount, "250.5");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalBuilder {
    draft: Draft,
}

builder_methods!(ApprovalBuilder, APPROVAL_ORDER);
setters! {
    ApprovalBuilder;
    /// Sets `from_address`, the address the payout leaves from.
    from_address("from_address", string);
    /// Sets `to_address`, the recipient.
    to_address("to_address", string);
}

impl ApprovalBuilder {
    /// A realistic approval request, with a fresh `nonce` and the current `timestamp`.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::testing::ApprovalBuilder;
    ///
    /// let request = ApprovalBuilder::new().request()?;
    /// assert_eq!(request.to_address, "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS");
    /// assert_eq!(request.amount, "1.1");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    pub fn new() -> ApprovalBuilder {
        ApprovalBuilder::empty()
            .pid(1382528827416576)
            .cid(1391751691788288)
            .chain_id("195")
            .token_id("195")
            .from_address("TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
            .to_address("TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS")
            .amount("1.1")
            .third_party_id("1e0fb3a0a9454ad8928d26b592e8b3c7")
            .remark("payout")
            .nonce(&crate::request::fresh_nonce())
            .timestamp(now_millis())
    }

    /// The request this body carries, read exactly as a verifier reads it but without a
    /// signature (its `sign` is 32 zeros), to hand straight to an approval handler in a unit
    /// test.
    ///
    /// # Example
    ///
    /// See [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// What [`Verifier::verify_and_parse`](crate::Verifier::verify_and_parse) would return for
    /// this body once authentic.
    pub fn request(&self) -> Result<ApprovalRequest, Error> {
        self.draft.parse()
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

/// The wallet payout callback's fields, in the order Cregis sends them (`memo`, a later field,
/// where the protocol notes place it).
const PAYOUT_ORDER: &[&str] = &[
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

/// The sub-address payout callback's fields, in the order Cregis documents them.
const WITHDRAWAL_ORDER: &[&str] = &[
    "pid",
    "cid",
    "chain_id",
    "token_id",
    "currency",
    "from_address",
    "to_address",
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

/// The approval request's fields, in the order of Cregis's SDK models.
const APPROVAL_ORDER: &[&str] = &[
    "pid",
    "cid",
    "chain_id",
    "token_id",
    "from_address",
    "to_address",
    "amount",
    "third_party_id",
    "remark",
    "memo",
    "nonce",
    "timestamp",
];

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
