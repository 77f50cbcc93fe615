//! Cregis's signature: MD5 over the API key and the sorted `key value` pairs.
//!
//! A [`Verifier`](crate::Verifier) checks signatures on raw bodies; this module holds the key
//! type and the functions for everything else: signing a request or a test body
//! ([`sign`], [`sign_body`]), checking a map that was already parsed ([`verify_sign`]), and
//! explaining what a signature covers ([`SigningText`]).
//!
//! MD5 is Cregis's choice of hash; it is used here only to interoperate.
//!
//! # Example
//!
//! ```
//! use cregis_payout_callback::{ApiKey, signature::{SigningText, sign_body}};
//!
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! let body = br#"{"pid":1382528827416576,"amount":"1.10","remark":""}"#;
//! assert_eq!(SigningText::of_body(body)?.text, "amount1.10pid1382528827416576");
//! assert_eq!(sign_body(body, &key)?.len(), 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::{Map, Value};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::Error;
use crate::wire::{Params, Scalar};

mod digest;
mod hex;
mod key;
mod text;

pub(crate) use digest::digest;
use hex::decode_hex16;
pub use key::ApiKey;
pub use text::{Omission, SigningText};

/// Computes the signature Cregis would put in `sign` for these parameters.
///
/// The algorithm, exactly as Cregis defines it: leave out `sign` and every `null` or `""`
/// value, sort the rest by key (byte order), concatenate `key1value1key2value2...`, prepend the
/// API key, and take the lowercase hex MD5 of those UTF-8 bytes. Strings contribute their
/// decoded value, booleans `true`/`false`, and numbers their `Display` text.
///
/// A `serde_json::Value` number holding a fraction has already been through a float; to sign
/// numbers exactly as written, verify the raw body with a [`Verifier`](crate::Verifier) instead.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, signature::sign};
/// use serde_json::json;
///
/// // The published vector from Cregis's "Signature" page.
/// let params = json!({
///     "pid": 1382528827416576u64,
///     "currency": "195@195",
///     "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///     "amount": "1.1",
///     "remark": "payout",
///     "third_party_id": "c9231e604da54469a735af3f449c880f",
///     "callback_url": "http://192.168.2.29:9099/callback",
///     "nonce": "hwlkk6",
///     "timestamp": 1688004243314u64
/// });
/// let key = ApiKey::new("f502a9ac9ca54327986f29c03b271491")?;
/// let signature = sign(params.as_object().unwrap(), &key)?;
/// assert_eq!(signature, "d6eef2de79e39f434a38efb910213ba6");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::NestedValue`] if a value is an object or an array.
pub fn sign(params: &Map<String, Value>, api_key: &ApiKey) -> Result<String, Error> {
    let params = Params::from_map(params)?;
    Ok(::hex::encode(digest(&params, api_key)))
}

/// Computes the signature Cregis would put in `sign` for a raw JSON body, exactly as a
/// [`Verifier`](crate::Verifier) checks it: numbers signed as written (`1.10` stays `1.10`),
/// strings decoded, unknown fields included, `null` and `""` left out. A `sign` already in the
/// body is left out, like in the signature.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Error, signature::sign_body};
///
/// // The published vector, as a body.
/// let body = br#"{"pid":1382528827416576,"currency":"195@195","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///   "amount":"1.1","remark":"payout","third_party_id":"c9231e604da54469a735af3f449c880f",
///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6","timestamp":1688004243314}"#;
/// let key = ApiKey::new("f502a9ac9ca54327986f29c03b271491")?;
/// assert_eq!(sign_body(body, &key)?, "d6eef2de79e39f434a38efb910213ba6");
/// assert_eq!(sign_body(br#"{"a":1,"a":2}"#, &key), Err(Error::DuplicateKey { key: "a".into() }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The body errors of [`Verifier::verify`](crate::Verifier::verify), before the signature check:
/// [`Error::InvalidJson`], [`Error::NotAnObject`], [`Error::DuplicateKey`],
/// [`Error::NestedValue`].
pub fn sign_body(body: &[u8], api_key: &ApiKey) -> Result<String, Error> {
    let params = Params::from_body(body)?;
    Ok(::hex::encode(digest(&params, api_key)))
}

/// Checks `params["sign"]` against a signature of the other parameters.
///
/// This is the check for hosts that already hold the callback as a map. Given the raw body,
/// prefer [`Verifier::verify`](crate::Verifier::verify): a map parsed with default `serde_json`
/// settings has lost duplicate keys and the exact text of fractional numbers.
///
/// The hex digits of `sign` may be in either case; the comparison is on the 16 decoded bytes,
/// in constant time.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, Error, signature::verify_sign};
/// use serde_json::json;
///
/// let params = json!({
///     "pid": 1382528827416576u64, "currency": "195@195",
///     "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "amount": "1.1", "remark": "payout",
///     "third_party_id": "c9231e604da54469a735af3f449c880f",
///     "callback_url": "http://192.168.2.29:9099/callback", "nonce": "hwlkk6",
///     "timestamp": 1688004243314u64, "sign": "d6eef2de79e39f434a38efb910213ba6"
/// });
/// let params = params.as_object().unwrap();
/// verify_sign(params, &ApiKey::new("f502a9ac9ca54327986f29c03b271491")?)?;
/// assert_eq!(verify_sign(params, &ApiKey::new("fake-other-key")?), Err(Error::SignatureMismatch));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::NestedValue`], [`Error::MissingSign`] (absent or `null`),
/// [`Error::MalformedSign`] (not a string of 32 hex digits), [`Error::SignatureMismatch`].
pub fn verify_sign(params: &Map<String, Value>, api_key: &ApiKey) -> Result<(), Error> {
    verify_params(&Params::from_map(params)?, std::slice::from_ref(api_key)).map(drop)
}

/// Checks the `sign` among `params` against the others, signed with any of `api_keys`, and
/// says which key matched (its index). Every key is tried, whichever matches, and compared in
/// constant time; the index is chosen in constant time too.
pub(crate) fn verify_params(params: &Params<'_>, api_keys: &[ApiKey]) -> Result<usize, Error> {
    let received = received_sign(params)?;
    let mut matched = Choice::from(0);
    let mut index = 0u32;
    for (i, key) in (0u32..).zip(api_keys) {
        let equal = digest(params, key).ct_eq(&received);
        index.conditional_assign(&i, equal);
        matched |= equal;
    }
    if bool::from(matched) {
        Ok(index as usize)
    } else {
        Err(Error::SignatureMismatch)
    }
}

/// Decodes the `sign` parameter to its 16 bytes.
fn received_sign(params: &Params<'_>) -> Result<[u8; 16], Error> {
    match params.sign() {
        // `""` counts as absent, as everywhere in the signature.
        None | Some(Scalar::Null | Scalar::Str("")) => Err(Error::MissingSign),
        Some(Scalar::Str(hex_text)) => {
            decode_hex16(hex_text.as_bytes()).ok_or(Error::MalformedSign)
        }
        Some(_) => Err(Error::MalformedSign),
    }
}
