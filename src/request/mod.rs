//! Signed requests to the Cregis API, and their responses: create a payout, ask what became
//! of one. The crate still opens no socket: it builds each request's path and JSON body, and
//! your own HTTP client sends it ([`Transport`]).
//!
//! Requests are signed exactly as callbacks are ([`signature`]), over every
//! parameter, with the project's `pid`, a fresh 6-character `nonce` and the current
//! `timestamp` filled in by [`Signer`].
//!
//! # Example
//!
//! ```
//! use cregis_payout_callback::ApiKey;
//! use cregis_payout_callback::request::{CreatePayout, QueryPayout, Signer};
//!
//! let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1382528827416576);
//! let create = requests.sign(
//!     &CreatePayout::new("195@195", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "1.1", "order-42")
//!         .callback_url("https://api.example.com/cregis/payout-callback"),
//! );
//! assert_eq!(create.path(), "/api/v1/payout");
//! assert!(create.body().starts_with(r#"{"pid":1382528827416576,"currency":"195@195","#));
//! // POST create.body() to your project's base URL + create.path(); keep the cid it returns.
//! let query = requests.sign(&QueryPayout { cid: 1391751691788288 });
//! assert_eq!(query.path(), "/api/v1/payout/query");
//! # Ok::<(), cregis_payout_callback::error::KeyError>(())
//! ```

mod client;
mod response;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde_json::{Map, Value};

use crate::signature::{self, ApiKey};
use crate::verifier::{Clock, SystemClock};

pub use client::{Client, NotSent, RawResponse, Transport};
pub use response::{Created, PayoutState, RequestError};

mod sealed {
    /// Only this crate's requests are [`Request`](super::Request)s.
    pub trait Sealed {}
}

/// A request to the Cregis API, before `pid`, `nonce`, `timestamp` and `sign` are added.
///
/// Implemented by [`CreatePayout`], [`CreateWithdrawal`], [`QueryPayout`] and
/// [`QueryWithdrawal`]; sign one with [`Signer::sign`]. Sealed: their parameters are flat
/// strings and integers without `pid`, `nonce`, `timestamp` or `sign`, so that signing cannot
/// fail and the body always says what was signed.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::request::{QueryWithdrawal, Request};
///
/// let query = QueryWithdrawal { cid: 1391751691788288 };
/// assert_eq!(query.path(), "/api/v1/sub_address_withdrawal/info");
/// assert_eq!(query.params(), vec![("cid", 1391751691788288_i64.into())]);
/// ```
pub trait Request: sealed::Sealed {
    /// The endpoint's path, under the project's base URL.
    fn path(&self) -> &'static str;

    /// The request's own parameters, in the documented order, without `pid`, `nonce`,
    /// `timestamp` and `sign`. An optional parameter not set is left out.
    fn params(&self) -> Vec<(&'static str, Value)>;
}

/// Create a wallet payout: `POST /api/v1/payout`. The response carries the payout's `cid`
/// ([`Created`]): keep it, it is the only key the query APIs take.
///
/// # Example
///
/// See [the module](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreatePayout {
    /// The currency as Cregis names it for requests, `chain_id@token_id` (`"195@195"` is TRX
    /// on Tron).
    pub currency: String,
    /// The address to pay.
    pub address: String,
    /// The amount, as decimal text.
    pub amount: String,
    /// Your own id of the payout (`third_party_id`), unique per payout.
    pub third_party_id: String,
    /// Where Cregis sends the payout's callback; the project's default if `None`.
    pub callback_url: Option<String>,
    /// A remark.
    pub remark: Option<String>,
    /// The memo (tag) Ton and Xrp payouts need.
    pub memo: Option<String>,
}

impl CreatePayout {
    /// A payout of `amount` `currency` to `address`, known to you as `third_party_id`.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn new(
        currency: impl Into<String>,
        address: impl Into<String>,
        amount: impl Into<String>,
        third_party_id: impl Into<String>,
    ) -> CreatePayout {
        CreatePayout {
            currency: currency.into(),
            address: address.into(),
            amount: amount.into(),
            third_party_id: third_party_id.into(),
            callback_url: None,
            remark: None,
            memo: None,
        }
    }
}

/// Create a sub-address payout: `POST /api/v1/sub_address_withdrawal`, from one of the
/// project's sub-addresses. The response carries its `cid` ([`Created`]).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::ApiKey;
/// use cregis_payout_callback::request::{CreateWithdrawal, Signer};
///
/// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1382528827416576);
/// let order = CreateWithdrawal::new(
///     "195@195",
///     "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8",
///     "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///     "12.5",
///     "withdrawal-7",
/// )
/// .remark("weekly settlement");
/// let signed = requests.sign(&order);
/// assert_eq!(signed.path(), "/api/v1/sub_address_withdrawal");
/// assert!(signed.body().contains(r#""remark":"weekly settlement","nonce":""#));
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateWithdrawal {
    /// The currency, `chain_id@token_id`.
    pub currency: String,
    /// The sub-address the payout leaves from.
    pub from_address: String,
    /// The address to pay.
    pub to_address: String,
    /// The amount, as decimal text.
    pub amount: String,
    /// Your own id of the payout.
    pub third_party_id: String,
    /// Where Cregis sends the callback; the project's default if `None`.
    pub callback_url: Option<String>,
    /// A remark.
    pub remark: Option<String>,
    /// The memo (tag) Ton and Xrp payouts need.
    pub memo: Option<String>,
}

impl CreateWithdrawal {
    /// A payout of `amount` `currency` from the sub-address `from_address` to `to_address`.
    ///
    /// # Example
    ///
    /// See [`CreateWithdrawal`].
    pub fn new(
        currency: impl Into<String>,
        from_address: impl Into<String>,
        to_address: impl Into<String>,
        amount: impl Into<String>,
        third_party_id: impl Into<String>,
    ) -> CreateWithdrawal {
        CreateWithdrawal {
            currency: currency.into(),
            from_address: from_address.into(),
            to_address: to_address.into(),
            amount: amount.into(),
            third_party_id: third_party_id.into(),
            callback_url: None,
            remark: None,
            memo: None,
        }
    }
}

/// The optional parameters both create requests share: their setters, and how they are sent.
macro_rules! optional_setters {
    ($request:ident) => {
        impl $request {
            /// Sets where Cregis sends this payout's callback.
            ///
            /// # Example
            ///
            #[doc = concat!("See [`", stringify!($request), "`].")]
            #[must_use]
            pub fn callback_url(mut self, url: impl Into<String>) -> Self {
                self.callback_url = Some(url.into());
                self
            }

            /// Sets a remark.
            ///
            /// # Example
            ///
            #[doc = concat!("See [`", stringify!($request), "`].")]
            #[must_use]
            pub fn remark(mut self, remark: impl Into<String>) -> Self {
                self.remark = Some(remark.into());
                self
            }

            /// Sets the memo (tag) Ton and Xrp payouts need.
            ///
            /// # Example
            ///
            #[doc = concat!("See [`", stringify!($request), "`].")]
            #[must_use]
            pub fn memo(mut self, memo: impl Into<String>) -> Self {
                self.memo = Some(memo.into());
                self
            }

            /// Appends the optional parameters that are set, in the documented order.
            fn push_optional(&self, params: &mut Vec<(&'static str, Value)>) {
                let optional = [
                    ("callback_url", &self.callback_url),
                    ("remark", &self.remark),
                    ("memo", &self.memo),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        params.push((name, Value::String(value.clone())));
                    }
                }
            }
        }
    };
}

optional_setters!(CreatePayout);
optional_setters!(CreateWithdrawal);

impl sealed::Sealed for CreatePayout {}

impl Request for CreatePayout {
    fn path(&self) -> &'static str {
        "/api/v1/payout"
    }

    fn params(&self) -> Vec<(&'static str, Value)> {
        let mut params = vec![
            ("currency", self.currency.clone().into()),
            ("address", self.address.clone().into()),
            ("amount", self.amount.clone().into()),
            ("third_party_id", self.third_party_id.clone().into()),
        ];
        self.push_optional(&mut params);
        params
    }
}

impl sealed::Sealed for CreateWithdrawal {}

impl Request for CreateWithdrawal {
    fn path(&self) -> &'static str {
        "/api/v1/sub_address_withdrawal"
    }

    fn params(&self) -> Vec<(&'static str, Value)> {
        let mut params = vec![
            ("currency", self.currency.clone().into()),
            ("from_address", self.from_address.clone().into()),
            ("to_address", self.to_address.clone().into()),
            ("amount", self.amount.clone().into()),
            ("third_party_id", self.third_party_id.clone().into()),
        ];
        self.push_optional(&mut params);
        params
    }
}

/// Ask what became of a wallet payout: `POST /api/v1/payout/query`, by its `cid`. Read the
/// response with [`PayoutState::from_response`].
///
/// # Example
///
/// See [the module](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryPayout {
    /// Cregis's id of the payout, as its create response gave it.
    pub cid: i64,
}

impl sealed::Sealed for QueryPayout {}

impl Request for QueryPayout {
    fn path(&self) -> &'static str {
        "/api/v1/payout/query"
    }

    fn params(&self) -> Vec<(&'static str, Value)> {
        vec![("cid", self.cid.into())]
    }
}

/// Ask what became of a sub-address payout: `POST /api/v1/sub_address_withdrawal/info`, by
/// its `cid`.
///
/// # Example
///
/// See [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryWithdrawal {
    /// Cregis's id of the payout.
    pub cid: i64,
}

impl sealed::Sealed for QueryWithdrawal {}

impl Request for QueryWithdrawal {
    fn path(&self) -> &'static str {
        "/api/v1/sub_address_withdrawal/info"
    }

    fn params(&self) -> Vec<(&'static str, Value)> {
        vec![("cid", self.cid.into())]
    }
}

/// Signs requests for one project: its API key, its `pid`, and a clock for the `timestamp`.
/// Clones share the key.
///
/// # Example
///
/// See [the module](self).
#[derive(Clone)]
pub struct Signer {
    key: ApiKey,
    pid: i64,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Signer {
    /// The `pid`, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs with `key` for the project `pid`, stamping requests with the system clock.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn new(key: ApiKey, pid: i64) -> Signer {
        Signer {
            key,
            pid,
            clock: Arc::new(SystemClock),
        }
    }

    /// Stamps requests with `clock` instead of the system clock (a
    /// [`ManualClock`](crate::testing::ManualClock) in tests).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::ApiKey;
    /// use cregis_payout_callback::request::{QueryPayout, Signer};
    /// use cregis_payout_callback::testing::ManualClock;
    ///
    /// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(1688004243314));
    /// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1).clock(clock);
    /// assert!(requests.sign(&QueryPayout { cid: 2 }).body().contains(r#""timestamp":1688004243314,"#));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Signer {
        self.clock = Arc::new(clock);
        self
    }

    /// The project these requests are for.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, request::Signer};
    ///
    /// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1382528827416576);
    /// assert_eq!(requests.pid(), 1382528827416576);
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn pid(&self) -> i64 {
        self.pid
    }

    /// `request` with `pid`, a fresh `nonce`, the clock's `timestamp` (ms) and `sign`.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn sign(&self, request: &impl Request) -> SignedRequest {
        self.sign_with(request, &fresh_nonce(), self.now_millis())
    }

    /// `request` signed with the `nonce` and `timestamp` given: for a known-answer test or a
    /// body that must not change between runs. Everywhere else use [`sign`](Self::sign), whose
    /// `nonce` is fresh.
    ///
    /// # Example
    ///
    /// The published vector of Cregis's signature page:
    ///
    /// ```
    /// use cregis_payout_callback::ApiKey;
    /// use cregis_payout_callback::request::{CreatePayout, Signer};
    ///
    /// let requests = Signer::new(ApiKey::new("f502a9ac9ca54327986f29c03b271491")?, 1382528827416576);
    /// let order = CreatePayout::new(
    ///     "195@195", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "1.1", "c9231e604da54469a735af3f449c880f",
    /// )
    /// .callback_url("http://192.168.2.29:9099/callback")
    /// .remark("payout");
    /// let signed = requests.sign_with(&order, "hwlkk6", 1688004243314);
    /// assert_eq!(signed.sign(), "d6eef2de79e39f434a38efb910213ba6");
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn sign_with(&self, request: &impl Request, nonce: &str, timestamp: i64) -> SignedRequest {
        let mut params = vec![("pid", Value::from(self.pid))];
        params.extend(request.params());
        let (body, sign) = self.render(params, nonce, timestamp);
        SignedRequest {
            path: request.path(),
            body,
            sign,
        }
    }

    /// A body of `params` in their order, then `nonce`, `timestamp` and `sign`; and the sign.
    /// Callbacks are signed alike: the reconciler renders a queried payout this way.
    ///
    /// The crate's requests and callbacks have flat values only; were an array or an object
    /// among them, it would be written (and signed) as a string of its JSON, so that signing
    /// never fails and the body always says what was signed.
    pub(crate) fn render(
        &self,
        params: Vec<(&'static str, Value)>,
        nonce: &str,
        timestamp: i64,
    ) -> (String, String) {
        let mut params: Vec<(&'static str, Value)> = params
            .into_iter()
            .map(|(name, value)| match value {
                Value::Array(_) | Value::Object(_) => (name, Value::String(value.to_string())),
                flat => (name, flat),
            })
            .collect();
        params.push(("nonce", nonce.into()));
        params.push(("timestamp", timestamp.into()));
        let map: Map<String, Value> = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        // Only a nested value fails to sign, and none is left.
        let sign = match signature::sign(&map, &self.key) {
            Ok(sign) => sign,
            Err(error) => unreachable!("flat values always sign: {error}"),
        };
        let mut body = String::from("{");
        for (name, value) in &params {
            body.push_str(&Value::from(*name).to_string());
            body.push(':');
            body.push_str(&value.to_string());
            body.push(',');
        }
        body.push_str(r#""sign":""#);
        body.push_str(&sign);
        body.push_str(r#""}"#);
        (body, sign)
    }

    /// Now, in ms since the epoch, on this signer's clock.
    pub(crate) fn now_millis(&self) -> i64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A request ready to send: `POST` [`body`](Self::body) as `application/json` to the
/// project's base URL followed by [`path`](Self::path).
///
/// # Example
///
/// See [the module](self).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    path: &'static str,
    body: String,
    sign: String,
}

impl fmt::Debug for SignedRequest {
    /// The path alone: the body carries a signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SignedRequest {
    /// The endpoint's path.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The JSON body, parameters in the documented order, `sign` last.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body, owned.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, request::{QueryPayout, Signer}};
    ///
    /// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1);
    /// let body: String = requests.sign(&QueryPayout { cid: 2 }).into_body();
    /// assert!(body.starts_with(r#"{"pid":1,"cid":2,"nonce":""#));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn into_body(self) -> String {
        self.body
    }

    /// The request's `sign`.
    ///
    /// # Example
    ///
    /// See [`Signer::sign_with`].
    pub fn sign(&self) -> &str {
        &self.sign
    }
}

/// Six random lowercase letters and digits, like Cregis's nonces.
pub(crate) fn fresh_nonce() -> String {
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::Signer;
    use crate::ApiKey;

    /// A nested value (none of the crate's requests has one) is written and signed as the
    /// string of its JSON: the sign is never empty, and the body verifies.
    #[test]
    fn a_nested_value_is_signed_as_its_text_never_with_an_empty_sign() {
        let key = ApiKey::new("fake-api-key-for-tests").unwrap();
        let requests = Signer::new(key.clone(), 1);
        let params: Vec<(&'static str, Value)> =
            vec![("pid", 1.into()), ("odd", json!({"a": [1, 2]}))];
        let (body, sign) = requests.render(params, "abcdef", 1_688_004_243_314);
        assert_eq!(sign.len(), 32);
        assert!(body.contains(r#""odd":"{\"a\":[1,2]}""#), "{body}");
        assert_eq!(
            crate::signature::sign_body(body.as_bytes(), &key).unwrap(),
            sign
        );
    }
}
