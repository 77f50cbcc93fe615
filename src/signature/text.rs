//! What a signature covers, in words: for finding out why one does not match.

use std::fmt;

use serde_json::{Map, Value};

use crate::Error;
use crate::wire::{Params, SIGN_KEY, Scalar};

/// What the signature of a callback covers, for finding out why a signature does not match.
///
/// `text` is the signing text without the API key: the signature is the lowercase hex MD5 of
/// the key followed by `text`. `omitted` lists the fields left out, and why. Nothing here is
/// secret; compute and compare signatures with [`sign`](super::sign) or a [`Verifier`](crate::Verifier).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::signature::{Omission, SigningText};
///
/// let explained = SigningText::of_body(br#"{"pid":1,"remark":"","b":null,"amount":"1.10","sign":"ab"}"#)?;
/// assert_eq!(explained.text, "amount1.10pid1");
/// assert_eq!(explained.omitted, vec![
///     ("b".to_owned(), Omission::Null),
///     ("remark".to_owned(), Omission::EmptyString),
///     ("sign".to_owned(), Omission::Sign),
/// ]);
/// assert_eq!(explained.received_sign.as_deref(), Some("ab"));
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SigningText {
    /// `key1value1key2value2...` over the signed fields, sorted by key.
    pub text: String,
    /// The fields left out of `text`, in key order, with the reason.
    pub omitted: Vec<(String, Omission)>,
    /// The `sign` field as received, if it is a string.
    pub received_sign: Option<String>,
}

/// Why a field is left out of the signing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Omission {
    /// It is `sign`, the signature itself.
    Sign,
    /// Its value is `null`.
    Null,
    /// Its value is the empty string `""` (a string of spaces is kept).
    EmptyString,
}

impl fmt::Display for Omission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Omission::Sign => "the signature itself is never signed",
            Omission::Null => "null values are left out",
            Omission::EmptyString => "empty strings are left out",
        })
    }
}

impl SigningText {
    /// Explains the signature of a raw body, read exactly as a [`Verifier`](crate::Verifier)
    /// reads it.
    ///
    /// # Example
    ///
    /// See [`SigningText`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidJson`], [`Error::NotAnObject`], [`Error::DuplicateKey`],
    /// [`Error::NestedValue`].
    pub fn of_body(body: &[u8]) -> Result<SigningText, Error> {
        Ok(SigningText::of_params(&Params::from_body(body)?))
    }

    /// Explains the signature of a map, read as [`sign`](super::sign) reads it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::signature::SigningText;
    /// use serde_json::json;
    ///
    /// let map = json!({"b": 2, "a": "x"});
    /// assert_eq!(SigningText::of_map(map.as_object().unwrap())?.text, "axb2");
    /// # Ok::<(), cregis_payout_callback::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NestedValue`].
    pub fn of_map(params: &Map<String, Value>) -> Result<SigningText, Error> {
        Ok(SigningText::of_params(&Params::from_map(params)?))
    }

    pub(crate) fn of_params(params: &Params<'_>) -> SigningText {
        let mut text = String::new();
        for (key, value) in params.signed() {
            text.push_str(key);
            text.push_str(value);
        }
        let omitted = params
            .iter()
            .filter_map(|(key, value)| {
                let why = match value {
                    _ if key == SIGN_KEY => Omission::Sign,
                    Scalar::Null => Omission::Null,
                    Scalar::Str("") => Omission::EmptyString,
                    _ => return None,
                };
                Some((key.to_owned(), why))
            })
            .collect();
        let received_sign = match params.sign() {
            Some(Scalar::Str(s)) => Some(s.to_owned()),
            _ => None,
        };
        SigningText {
            text,
            omitted,
            received_sign,
        }
    }
}
