//! The flat parameters of a callback, in the form the signature is computed over.
//!
//! The documented keys have a fixed place each ([`KNOWN`], in key order), so that they need
//! no sorting and no key comparison; only the other keys are sorted, among themselves. Keys and
//! values are kept as byte ranges of the body they were read from, or of a side buffer holding
//! the few texts that had to be decoded (escapes) or converted: a parameter holds no pointer
//! and owns nothing, and dropping the parameters frees at most two buffers.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::Error;
use crate::error::KeyExcerpt;

mod body;
mod keys;
mod others;
mod scanner;

pub(crate) use keys::{KNOWN, SIGN_KEY, known};
use keys::{KNOWN_PREFIXES, known_place, masked, prefix, word_at};
pub(crate) use others::Other;
use others::Others;

/// One parameter's value, read from its [`Slot`]. Objects and arrays never get here: they are
/// refused while collecting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A JSON number's exact text (or, from a map, its `Display` text).
    Number(&'a str),
    /// A JSON string's decoded value.
    Str(&'a str),
    /// An object or an array under `sign`, which is never signed: kept so that verification
    /// can call it a malformed signature. Under any other key it is refused as nested.
    Compound,
}

/// What a [`Slot`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing: the key is not in the callback.
    #[default]
    Absent,
    Null,
    True,
    False,
    Number,
    Str,
    Compound,
}

/// A value: its kind, and the byte range of the text it contributes to the signature. The
/// range is empty exactly when the value is left out of the signature (absent, `null`, `""`
/// or a compound), so the signature walk looks at `len` only.
///
/// Ranges start in the body (below its length) or, from the body's length on, in the side
/// buffer of decoded texts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) kind: Kind,
    /// For a key that is not documented: how many documented keys sort before it.
    pub(crate) rank: u8,
}

impl Slot {
    pub(crate) const NULL: Slot = Slot {
        start: 0,
        len: 0,
        kind: Kind::Null,
        rank: 0,
    };
    pub(crate) const COMPOUND: Slot = Slot {
        start: 0,
        len: 0,
        kind: Kind::Compound,
        rank: 0,
    };

    pub(crate) fn new(kind: Kind, start: usize, len: usize) -> Slot {
        Slot {
            start,
            len,
            kind,
            rank: 0,
        }
    }
}

/// A callback's parameters, each key once: the documented ones in their places, the others
/// sorted by key.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    /// The body the parameters were read from (empty for a map): most ranges are in it.
    pub(crate) body: &'a str,
    /// The texts that are not in the body as they are: decoded strings and keys, and
    /// everything read from a map. Ranges into it start at `body.len()`.
    pub(crate) decoded: String,
    /// The documented parameters, in the order of [`KNOWN`].
    pub(crate) known: [Slot; KNOWN.len()],
    /// The other parameters, in key order (once collected).
    pub(crate) others: Others,
    /// While collecting: the documented keys seen more than once, one bit each.
    repeated: u32,
}

impl<'a> Params<'a> {
    /// No parameters yet.
    pub(crate) fn empty() -> Self {
        Params {
            body: "",
            decoded: String::new(),
            known: [Slot::default(); KNOWN.len()],
            others: Others::new(),
            repeated: 0,
        }
    }

    /// Forgets every parameter collected so far.
    pub(crate) fn clear(&mut self) {
        self.decoded.clear();
        self.known = [Slot::default(); KNOWN.len()];
        self.others.clear();
        self.repeated = 0;
    }

    /// The bytes of the range `start..start + len` of the body or of the decoded texts.
    pub(crate) fn bytes(&self, start: usize, len: usize) -> &[u8] {
        bytes_of(self.body.as_bytes(), self.decoded.as_bytes(), start, len)
    }

    /// The text of a range (always whole characters: both ends are next to ASCII or at an end
    /// of a decoded text).
    // Inlined into its callers (measured with callgrind); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn text(&self, start: usize, len: usize) -> &str {
        let body = self.body;
        if start < body.len() {
            &body[start..start + len]
        } else {
            &self.decoded[start - body.len()..][..len]
        }
    }

    /// Appends `text` to the decoded texts; returns where it starts.
    pub(crate) fn push_decoded(&mut self, text: &str) -> usize {
        let start = self.body.len() + self.decoded.len();
        self.decoded.push_str(text);
        start
    }

    /// Adds the parameter under the key at `key_start..key_start + key_len`. A repeated key
    /// is refused by [`Params::finish`].
    // Inlined into the scanner's loop (measured with callgrind); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn add(&mut self, key_start: usize, key_len: usize, value: Slot) {
        let (body, decoded) = (self.body.as_bytes(), self.decoded.as_bytes());
        // Eight bytes from the key's start (past its end too: they are masked off).
        let head = if key_start < body.len() {
            word_at(body, key_start)
        } else {
            word_at(decoded, key_start - body.len())
        };
        let key = bytes_of(body, decoded, key_start, key_len);
        if let Some(place) = known_place(masked(head, key_len), key) {
            let slot = &mut self.known[place];
            if slot.kind == Kind::Absent {
                *slot = value;
            } else {
                self.repeated |= 1 << place;
            }
            return;
        }
        self.others.push(Other {
            key_start,
            key_len,
            value,
        });
    }

    /// Adds a parameter whose key is anywhere.
    fn add_key(&mut self, key: &str, value: Slot) {
        let start = self.push_decoded(key);
        self.add(start, key.len(), value);
    }

    /// Once every parameter is added: sorts the others, and refuses a repeated key (the first
    /// in key order, if several are).
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        let (body, decoded) = (self.body.as_bytes(), self.decoded.as_bytes());
        let key = |o: &Other| bytes_of(body, decoded, o.key_start, o.key_len);
        let others = &mut self.others[..];
        if others.len() <= 8 {
            // Insertion sort: few elements, usually none or one.
            for i in 1..others.len() {
                let mut j = i;
                while j > 0 && key(&others[j - 1]) > key(&others[j]) {
                    others.swap(j - 1, j);
                    j -= 1;
                }
            }
        } else {
            others.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
        let repeated_other = others
            .windows(2)
            .find(|pair| key(&pair[0]) == key(&pair[1]))
            .map(|pair| key(&pair[0]));
        if self.repeated != 0 || repeated_other.is_some() {
            let repeated_known = (self.repeated != 0)
                .then(|| KNOWN[self.repeated.trailing_zeros() as usize].as_bytes());
            let first = match (repeated_known, repeated_other) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or_default(),
            };
            return Err(Error::DuplicateKey {
                key: KeyExcerpt::new(&String::from_utf8_lossy(first)),
            });
        }
        // How many documented keys sort before each other key: a merge of the two orders.
        let mut place = 0;
        for other in others.iter_mut() {
            let key = bytes_of(body, decoded, other.key_start, other.key_len);
            let head = prefix(key);
            while place < KNOWN.len() && {
                let known = KNOWN[place].as_bytes();
                match KNOWN_PREFIXES[place].cmp(&head) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => known < key,
                }
            } {
                place += 1;
            }
            #[allow(clippy::cast_possible_truncation)] // at most 19
            {
                other.value.rank = place as u8;
            }
        }
        Ok(())
    }

    /// Borrows each entry of a JSON object, refusing nested objects and arrays.
    pub(crate) fn from_values<I>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (&'a String, &'a Value)>,
    {
        let mut params = Params::empty();
        for (key, value) in entries {
            let slot = match value {
                Value::Null => Slot::NULL,
                Value::Bool(b) => {
                    let text = if *b { "true" } else { "false" };
                    let start = params.push_decoded(text);
                    Slot::new(if *b { Kind::True } else { Kind::False }, start, text.len())
                }
                Value::Number(n) => {
                    let start = params.push_decoded("");
                    // Writing to a `String` cannot fail.
                    let _ = write!(params.decoded, "{n}");
                    Slot::new(Kind::Number, start, params.decoded.len() - start)
                }
                Value::String(s) => {
                    let start = params.push_decoded(s);
                    Slot::new(Kind::Str, start, s.len())
                }
                Value::Array(_) | Value::Object(_) if key == SIGN_KEY => Slot::COMPOUND,
                Value::Array(_) | Value::Object(_) => {
                    return Err(Error::NestedValue {
                        key: KeyExcerpt::new(key),
                    });
                }
            };
            params.add_key(key, slot);
        }
        params.finish()?;
        Ok(params)
    }

    /// Borrows a `serde_json` map.
    pub(crate) fn from_map(map: &'a Map<String, Value>) -> Result<Self, Error> {
        Params::from_values(map)
    }

    /// A slot's value.
    pub(crate) fn scalar(&self, slot: Slot) -> Option<Scalar<'_>> {
        Some(match slot.kind {
            Kind::Absent => return None,
            Kind::Null => Scalar::Null,
            Kind::True => Scalar::Bool(true),
            Kind::False => Scalar::Bool(false),
            Kind::Number => Scalar::Number(self.text(slot.start, slot.len)),
            Kind::Str => Scalar::Str(self.text(slot.start, slot.len)),
            Kind::Compound => Scalar::Compound,
        })
    }

    /// The documented parameter at `place` in [`KNOWN`], if present.
    pub(crate) fn known(&self, place: usize) -> Option<Scalar<'_>> {
        self.scalar(self.known[place])
    }

    /// The signed text of the documented parameter at `place` in [`KNOWN`]: empty when it is
    /// absent, `null` or `""` (none of which is signed).
    pub(crate) fn signed_text(&self, place: usize) -> &str {
        let slot = self.known[place];
        if slot.len == 0 {
            ""
        } else {
            self.text(slot.start, slot.len)
        }
    }

    /// The value under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<Scalar<'_>> {
        let bytes = key.as_bytes();
        if let Some(place) = known_place(masked(word_at(bytes, 0), bytes.len()), bytes) {
            return self.known(place);
        }
        let at = self
            .others
            .binary_search_by(|o| self.bytes(o.key_start, o.key_len).cmp(bytes))
            .ok()?;
        self.scalar(self.others[at].value)
    }

    /// The value under [`SIGN_KEY`], if present.
    pub(crate) fn sign(&self) -> Option<Scalar<'_>> {
        self.known(known::SIGN)
    }

    /// The parameters under keys that are not documented, in key order.
    pub(crate) fn others(&self) -> impl Iterator<Item = (&str, Scalar<'_>)> {
        self.others.iter().map(|o| {
            let value = self.scalar(o.value).unwrap_or(Scalar::Null);
            (self.text(o.key_start, o.key_len), value)
        })
    }

    /// Every parameter, in key order, with its slot.
    fn slots(&self) -> impl Iterator<Item = (&str, Slot)> {
        let mut others = self.others.iter().peekable();
        let mut place = 0;
        std::iter::from_fn(move || {
            loop {
                if let Some(other) = others.next_if(|o| usize::from(o.value.rank) <= place) {
                    return Some((self.text(other.key_start, other.key_len), other.value));
                }
                let slot = *self.known.get(place)?;
                place += 1;
                if slot.kind != Kind::Absent {
                    return Some((KNOWN[place - 1], slot));
                }
            }
        })
    }

    /// Every parameter, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Scalar<'_>)> {
        self.slots()
            .map(|(key, slot)| (key, self.scalar(slot).unwrap_or(Scalar::Null)))
    }

    /// The `(key, text)` pairs the signature covers, in signing order: every parameter but
    /// `sign`, without the `null` and `""` ones.
    pub(crate) fn signed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.slots()
            .filter(|&(key, slot)| slot.len != 0 && key != SIGN_KEY)
            .map(|(key, slot)| (key, self.text(slot.start, slot.len)))
    }
}

/// The bytes of the range `start..start + len` of `body` followed by `decoded`.
// Inlined into the scanner's loop, with `Params::add` (measured with callgrind).
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn bytes_of<'t>(
    body: &'t [u8],
    decoded: &'t [u8],
    start: usize,
    len: usize,
) -> &'t [u8] {
    if start < body.len() {
        &body[start..start + len]
    } else {
        &decoded[start - body.len()..][..len]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn params_of(keys: &[String]) -> Result<Params<'static>, Error> {
        let entries: Vec<(String, Value)> =
            keys.iter().map(|key| (key.clone(), Value::Null)).collect();
        let entries: &'static [(String, Value)] = Box::leak(entries.into_boxed_slice());
        Params::from_values(entries.iter().map(|(k, v)| (k, v)))
    }

    proptest! {
        /// Key order is byte order, and only repeats are refused, whatever the keys: shared
        /// prefixes, NULs, empty keys, non-ASCII, documented keys among them; few of them and
        /// many.
        #[test]
        fn keys_are_in_byte_order(
            keys in prop::collection::vec(
                "(x_field_0|sign|pid|cid|txid|block_time|[a-c\\x00é]){0,3}[a-c\\x00]{0,2}",
                0..=80,
            ),
        ) {
            let mut expected = keys.clone();
            expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let repeated = expected.windows(2).find(|pair| pair[0] == pair[1]);
            match params_of(&keys) {
                Ok(params) => {
                    prop_assert!(repeated.is_none());
                    let sorted: Vec<&str> = params.iter().map(|(key, _)| key).collect();
                    prop_assert_eq!(sorted, expected.clone());
                    for key in &expected {
                        prop_assert_eq!(params.get(key), Some(Scalar::Null));
                    }
                    prop_assert_eq!(params.get("zz"), None);
                    prop_assert_eq!(params.get("amount"), None);
                }
                Err(e) => prop_assert_eq!(
                    e,
                    Error::DuplicateKey { key: repeated.unwrap()[0].as_str().into() }
                ),
            }
        }
    }

    #[test]
    fn every_documented_key_has_its_place() {
        for (place, key) in KNOWN.iter().enumerate() {
            let bytes = key.as_bytes();
            assert_eq!(
                known_place(masked(word_at(bytes, 0), bytes.len()), bytes),
                Some(place)
            );
            for other in [
                format!("{key}x"),
                key[..key.len() - 1].to_owned(),
                key.to_uppercase(),
            ] {
                let bytes = other.as_bytes();
                assert_eq!(
                    known_place(masked(word_at(bytes, 0), bytes.len()), bytes),
                    None
                );
            }
        }
        assert!(KNOWN.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn values_stay_with_their_keys() {
        let map = serde_json::json!({
            "pid": 1, "cid": "c", "chain_id": true, "zeta": "z", "amount": null, "sign": "s",
            "address": "", "alpha": 2.5
        });
        let params = Params::from_map(map.as_object().unwrap()).unwrap();
        let all: Vec<(&str, Scalar<'_>)> = params.iter().collect();
        assert_eq!(
            all,
            [
                ("address", Scalar::Str("")),
                ("alpha", Scalar::Number("2.5")),
                ("amount", Scalar::Null),
                ("chain_id", Scalar::Bool(true)),
                ("cid", Scalar::Str("c")),
                ("pid", Scalar::Number("1")),
                ("sign", Scalar::Str("s")),
                ("zeta", Scalar::Str("z")),
            ]
        );
        let signed: Vec<(&str, &str)> = params.signed().collect();
        assert_eq!(
            signed,
            [
                ("alpha", "2.5"),
                ("chain_id", "true"),
                ("cid", "c"),
                ("pid", "1"),
                ("zeta", "z")
            ]
        );
    }
}
