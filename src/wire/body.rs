//! One pass over a raw request body: JSON syntax, and the exact text of every value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::scanner::scan_flat_object;
use super::{Kind, Params, SIGN_KEY, Slot};
use crate::Error;
use crate::error::KeyExcerpt;

impl<'a> Params<'a> {
    /// Parses a raw body into its parameters, as ranges of the body wherever no escape has to
    /// be decoded. Numbers keep the exact text they were sent with.
    pub(crate) fn from_body(body: &'a [u8]) -> Result<Self, Error> {
        let mut params = Params::empty();
        params.read_body(body)?;
        Ok(params)
    }

    /// [`Params::from_body`] into `self`, which must be empty: filled in place, since
    /// parameters are large to move.
    pub(crate) fn read_body(&mut self, body: &'a [u8]) -> Result<(), Error> {
        let text = std::str::from_utf8(body).map_err(|e| Error::InvalidJson {
            reason: format!("not utf-8 at byte {}", e.valid_up_to()),
        })?;
        match text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .bytes()
            .next()
        {
            Some(b'{') => {}
            None => {
                return Err(Error::InvalidJson {
                    reason: "empty body".to_owned(),
                });
            }
            Some(_) => {
                // Tell "valid JSON, wrong shape" from "not JSON at all".
                return Err(match serde_json::from_str::<IgnoredAny>(text) {
                    Ok(_) => Error::NotAnObject,
                    Err(e) => invalid_json(&e),
                });
            }
        }

        self.body = text;
        if scan_flat_object(text, self).is_none() {
            // Off the fast path (a syntax error, a nested value, an odd escape): serde_json's
            // parser decides, and says what is wrong.
            self.clear();
            collect_with_serde(text, self)?;
        }
        self.finish()
    }
}

/// The authoritative parse: `serde_json` checks the syntax, and hands over each value's text.
pub(super) fn collect_with_serde<'a>(text: &'a str, params: &mut Params<'a>) -> Result<(), Error> {
    let mut collector = Collector {
        text,
        params,
        nested: None,
        bad_string: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de::Deserializer::deserialize_map(&mut de, &mut collector).and_then(|()| de.end());
    if let Err(e) = parsed {
        if collector.bad_string {
            // A string with a bad escape (a lone surrogate): parse the whole body as a value,
            // which fails on that same string and says where it is in the body.
            if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
                return Err(invalid_json(&e));
            }
        }
        return Err(invalid_json(&e));
    }
    match collector.nested {
        Some(key) => Err(Error::NestedValue {
            key: KeyExcerpt::new(&key),
        }),
        None => Ok(()),
    }
}

fn invalid_json(e: &serde_json::Error) -> Error {
    Error::InvalidJson {
        reason: e.to_string(),
    }
}

/// Gathers the top-level entries of the object being parsed.
struct Collector<'a, 'p> {
    /// The body: borrowed keys and values are ranges of it.
    text: &'a str,
    params: &'p mut Params<'a>,
    /// The first key whose value is an object or array. Reported once the whole body is known
    /// to be valid JSON, so a syntax error always wins.
    nested: Option<String>,
    /// Whether parsing stopped on a string value that could not be decoded.
    bad_string: bool,
}

impl Collector<'_, '_> {
    /// Where `part`, a slice of the body, starts in it.
    fn offset(&self, part: &str) -> usize {
        part.as_ptr() as usize - self.text.as_ptr() as usize
    }
}

impl<'de> Visitor<'de> for &mut Collector<'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let raw: &'de RawValue = map.next_value()?;
            let raw = raw.get();
            let value = scalar(raw, self.offset(raw), self.params).map_err(|e| {
                self.bad_string = true;
                de::Error::custom(e)
            })?;
            let value = match value {
                Some(value) => value,
                None if key == SIGN_KEY => Slot::COMPOUND,
                None => {
                    if self.nested.is_none() {
                        self.nested = Some(key.into_owned());
                    }
                    continue;
                }
            };
            let key_start = match &key {
                Cow::Borrowed(key) => self.offset(key),
                Cow::Owned(key) => self.params.push_decoded(key),
            };
            self.params.add(key_start, key.len(), value);
        }
        Ok(())
    }
}

/// Reads a JSON value from its (syntactically valid) text, which starts at `start` in the
/// body; `None` for an object or an array.
fn scalar(
    raw: &str,
    start: usize,
    params: &mut Params<'_>,
) -> Result<Option<Slot>, serde_json::Error> {
    Ok(Some(match raw.as_bytes().first() {
        Some(b'"') => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                let start = params.push_decoded("");
                decode_into(raw, &mut params.decoded)?;
                Slot::new(
                    Kind::Str,
                    start,
                    params.body.len() + params.decoded.len() - start,
                )
            } else {
                Slot::new(Kind::Str, start + 1, inner.len())
            }
        }
        Some(b'n') => Slot::NULL,
        Some(b't') => Slot::new(Kind::True, start, raw.len()),
        Some(b'f') => Slot::new(Kind::False, start, raw.len()),
        Some(b'{' | b'[') | None => return Ok(None),
        Some(_) => Slot::new(Kind::Number, start, raw.len()),
    }))
}

/// Decodes the JSON string `raw` (quotes included), appending its value to `decoded`.
pub(super) fn decode_into(raw: &str, decoded: &mut String) -> Result<(), serde_json::Error> {
    struct Append<'s>(&'s mut String);

    impl Visitor<'_> for Append<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
            self.0.push_str(text);
            Ok(())
        }
    }

    let mut de = serde_json::Deserializer::from_str(raw);
    de::Deserializer::deserialize_str(&mut de, Append(decoded))?;
    de.end()
}

/// Deserializes an object key, borrowing it from the body unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}
