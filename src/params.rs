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

/// A callback's parameters in key order (bytes), each key once.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    /// Up to [`SMALL`] of them, in the order received; beyond, sorted.
    list: Vec<Param<'a>>,
    /// Up to [`SMALL`] parameters, `params[order[i]]` is the `i`-th in key order.
    order: [u8; SMALL],
    /// Up to [`SMALL`] parameters, `params[sign]` is the one under [`SIGN_KEY`], if any.
    sign: Option<u8>,
    /// The body the parameters were read from, if any: most keys and values borrow from it.
    pub(crate) body: &'a str,
}

/// Byte order of keys, deciding on the first byte inline: most keys of a callback differ there,
/// which spares a `memcmp` call per comparison.
fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.first().cmp(&b.first()).then_with(|| a.cmp(b))
}

/// Up to this many parameters (a callback has about 18), [`Params::new`] sorts them on the
/// stack by [`sort_small`].
const SMALL: usize = 64;

/// The first eight bytes of `key`, big-endian, zero-padded. Keys in the order of their
/// prefixes are in byte order, except that keys with equal prefixes (the same first eight
/// bytes, or differing only by trailing NULs) tie.
fn prefix(key: &str) -> u64 {
    let bytes = key.as_bytes();
    if let Some(first) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*first);
    }
    let mut prefix = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        prefix |= u64::from(byte) << (56 - 8 * i);
    }
    prefix
}

/// A repeated key.
fn duplicate(param: &Param<'_>) -> Error {
    Error::DuplicateKey {
        key: param.key.clone().into_owned(),
    }
}

/// Puts at most [`SMALL`] parameters in key order: `params[order[i]]` is the `i`-th.
///
/// Callbacks arrive in Cregis's field order, far from sorted, and a `Param` is large: rather
/// than move parameters, sort their key prefixes, each packed with its position in one `u64`
/// (cheap to compare and to move), then order ties by their full keys. Only keys that tie can
/// be repeated, so only those are compared in full.
///
/// Returns the position of [`SIGN_KEY`], found on the way.
fn sort_small(params: &[Param<'_>], order: &mut [u8; SMALL]) -> Result<Option<u8>, Error> {
    /// The low bits of a slot hold the position; the prefix keeps the bits above.
    const POSITION: u64 = SMALL as u64 - 1;
    let sign_prefix = prefix(SIGN_KEY);
    let n = params.len();
    let mut slots = [0u64; SMALL];
    let mut sign = None;
    for ((slot, param), i) in slots.iter_mut().zip(params).zip(0..) {
        let prefix = prefix(&param.key);
        if prefix == sign_prefix && param.key.len() == SIGN_KEY.len() {
            sign = Some(position(i));
        }
        *slot = (prefix & !POSITION) | i;
    }
    let slots = &mut slots[..n];
    // Insertion sort: few elements, each compared and moved as one integer.
    for i in 1..n {
        let slot = slots[i];
        let mut j = i;
        while j > 0 && slots[j - 1] > slot {
            slots[j] = slots[j - 1];
            j -= 1;
        }
        slots[j] = slot;
    }
    let mut ties = false;
    for (i, (place, &slot)) in order.iter_mut().zip(&*slots).enumerate() {
        *place = position(slot);
        ties |= i > 0 && (slots[i - 1] ^ slot) <= POSITION;
    }
    if !ties {
        return Ok(sign);
    }
    // Runs of equal prefixes: order each by full key, and refuse a repeat.
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && (slots[start] ^ slots[end]) <= POSITION {
            end += 1;
        }
        let run = &mut order[start..end];
        run.sort_unstable_by(|&a, &b| {
            key_order(&params[usize::from(a)].key, &params[usize::from(b)].key)
        });
        for pair in run.windows(2) {
            let first = &params[usize::from(pair[0])];
            if first.key == params[usize::from(pair[1])].key {
                return Err(duplicate(first));
            }
        }
        start = end;
    }
    Ok(sign)
}

/// The position in the low bits of a slot of [`sort_small`].
#[allow(clippy::cast_possible_truncation)]
fn position(slot: u64) -> u8 {
    (slot & (SMALL as u64 - 1)) as u8
}

/// The key that carries the signature and is itself left out of it.
pub(crate) const SIGN_KEY: &str = "sign";

impl<'a> Params<'a> {
    /// Sorts `params` by key and refuses a repeated key.
    pub(crate) fn new(mut params: Vec<Param<'a>>) -> Result<Self, Error> {
        let mut order = [0; SMALL];
        let mut sign = None;
        if params.len() <= SMALL {
            sign = sort_small(&params, &mut order)?;
        } else {
            params.sort_unstable_by(|a, b| key_order(&a.key, &b.key));
            for pair in params.windows(2) {
                if pair[0].key == pair[1].key {
                    return Err(duplicate(&pair[0]));
                }
            }
        }
        Ok(Params {
            list: params,
            order,
            sign,
            body: "",
        })
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

    /// The `i`-th parameter in key order.
    fn at(&self, i: usize) -> &Param<'a> {
        if self.list.len() <= SMALL {
            &self.list[usize::from(self.order[i])]
        } else {
            &self.list[i]
        }
    }

    /// The value under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Scalar<'a>> {
        let (mut low, mut high) = (0, self.list.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let param = self.at(mid);
            match key_order(&param.key, key) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Some(&param.value),
            }
        }
        None
    }

    /// The value under [`SIGN_KEY`], if present.
    pub(crate) fn sign(&self) -> Option<&Scalar<'a>> {
        if self.list.len() <= SMALL {
            self.sign
                .and_then(|i| self.list.get(usize::from(i)))
                .map(|p| &p.value)
        } else {
            self.get(SIGN_KEY)
        }
    }

    /// Every parameter, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Param<'a>> {
        (0..self.list.len()).map(|i| self.at(i))
    }

    /// The `(key, text)` pairs the signature covers, in signing order: every parameter but
    /// `sign`, without the `null` and `""` ones.
    pub(crate) fn signed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().filter_map(|p| {
            if p.key == SIGN_KEY {
                return None;
            }
            p.value.signed_text().map(|text| (p.key.as_ref(), text))
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn params_of(keys: &[String]) -> Vec<Param<'_>> {
        keys.iter()
            .map(|key| Param {
                key: Cow::Borrowed(key),
                value: Scalar::Null,
            })
            .collect()
    }

    proptest! {
        /// Key order is byte order, and only repeats are refused, whatever the keys: shared
        /// prefixes, NULs, empty keys, non-ASCII; up to `SMALL` of them and beyond.
        #[test]
        fn small_sort_sorts_by_key_bytes(
            keys in prop::collection::vec("(x_field_0|[a-c\\x00é]){0,3}[a-c\\x00]{0,2}", 0..=SMALL + 2),
        ) {
            let mut expected = keys.clone();
            expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let repeated = expected.windows(2).find(|pair| pair[0] == pair[1]);
            match Params::new(params_of(&keys)) {
                Ok(params) => {
                    prop_assert!(repeated.is_none());
                    let sorted: Vec<&str> = params.iter().map(|p| p.key.as_ref()).collect();
                    prop_assert_eq!(sorted, expected.clone());
                    for key in &expected {
                        prop_assert_eq!(params.get(key), Some(&Scalar::Null));
                    }
                    prop_assert_eq!(params.get("zz"), None);
                }
                Err(e) => prop_assert_eq!(
                    e,
                    Error::DuplicateKey { key: repeated.unwrap()[0].clone() }
                ),
            }
        }
    }

    #[test]
    fn small_sort_keeps_each_value_with_its_key() {
        let keys: Vec<String> = ["pid", "cid", "chain_id", "amount", "sign", "address"]
            .map(str::to_owned)
            .to_vec();
        let params: Vec<Param<'_>> = keys
            .iter()
            .map(|key| Param {
                key: Cow::Borrowed(key),
                value: Scalar::Str(Cow::Owned(format!("{key}!"))),
            })
            .collect();
        let params = Params::new(params).unwrap();
        for param in params.iter() {
            assert_eq!(
                param.value,
                Scalar::Str(Cow::Owned(format!("{}!", param.key)))
            );
        }
        let keys: Vec<&str> = params.iter().map(|p| p.key.as_ref()).collect();
        assert_eq!(
            keys,
            ["address", "amount", "chain_id", "cid", "pid", "sign"]
        );
    }
}
