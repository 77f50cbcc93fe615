//! The flat parameters of a callback, in the form the signature is computed over.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::Error;

/// One parameter's value. Objects and arrays never get here: they are refused while collecting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A JSON number's exact text (or, from a map, its `Display` text).
    Number(Cow<'a, str>),
    /// A JSON string's decoded value.
    Str(Cow<'a, str>),
    /// An object or an array under `sign`, which is never signed: kept so that verification
    /// can call it a malformed signature. Under any other key it is refused as nested.
    Compound,
}

impl Scalar<'_> {
    /// The text this value contributes to the signature, or `None` when the value is left out
    /// (`null` and `""`; everything else, `" "`, `0` and `false` included, is kept).
    pub(crate) fn signed_text(&self) -> Option<&str> {
        match self {
            Scalar::Null | Scalar::Compound => None,
            Scalar::Str(s) if s.is_empty() => None,
            Scalar::Bool(true) => Some("true"),
            Scalar::Bool(false) => Some("false"),
            Scalar::Number(text) | Scalar::Str(text) => Some(text),
        }
    }
}

/// One key and its value, both decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Param<'a> {
    pub(crate) key: Cow<'a, str>,
    pub(crate) value: Scalar<'a>,
}

/// A callback's parameters sorted by key (byte order), each key once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params<'a>(Vec<Param<'a>>);

/// Byte order of keys, deciding on the first byte inline: most keys of a callback differ there,
/// which spares a `memcmp` call per comparison.
fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.first().cmp(&b.first()).then_with(|| a.cmp(b))
}

/// The key that carries the signature and is itself left out of it.
pub(crate) const SIGN_KEY: &str = "sign";

impl<'a> Params<'a> {
    /// Sorts `params` by key and refuses a repeated key.
    pub(crate) fn new(mut params: Vec<Param<'a>>) -> Result<Self, Error> {
        params.sort_unstable_by(|a, b| key_order(&a.key, &b.key));
        if let Some(pair) = params.windows(2).find(|pair| pair[0].key == pair[1].key) {
            return Err(Error::DuplicateKey {
                key: pair[0].key.clone().into_owned(),
            });
        }
        Ok(Params(params))
    }

    /// Borrows each entry of a JSON object, refusing nested objects and arrays.
    pub(crate) fn from_values<I>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (&'a String, &'a Value)>,
    {
        let params = entries
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Null => Scalar::Null,
                    Value::Bool(b) => Scalar::Bool(*b),
                    Value::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
                    Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
                    Value::Array(_) | Value::Object(_) if key == SIGN_KEY => Scalar::Compound,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(Error::NestedValue { key: key.clone() });
                    }
                };
                Ok(Param {
                    key: Cow::Borrowed(key),
                    value,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Params::new(params)
    }

    /// Borrows a `serde_json` map.
    pub(crate) fn from_map(map: &'a Map<String, Value>) -> Result<Self, Error> {
        Params::from_values(map)
    }

    /// The value under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Scalar<'a>> {
        self.0
            .binary_search_by(|p| key_order(&p.key, key))
            .ok()
            .map(|index| &self.0[index].value)
    }

    /// Every parameter, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Param<'a>> {
        self.0.iter()
    }

    /// The `(key, text)` pairs the signature covers, in signing order: every parameter but
    /// `sign`, without the `null` and `""` ones.
    pub(crate) fn signed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().filter_map(|p| {
            if p.key == SIGN_KEY {
                return None;
            }
            p.value.signed_text().map(|text| (p.key.as_ref(), text))
        })
    }
}
