//! One pass over a raw request body: JSON syntax, and the exact text of every value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Error;
use crate::params::{Param, Params, Scalar};

impl<'a> Params<'a> {
    /// Parses a raw body into its parameters, borrowing from it wherever no escape has to be
    /// decoded. Numbers keep the exact text they were sent with.
    pub(crate) fn from_body(body: &'a [u8]) -> Result<Self, Error> {
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

        let mut collector = Collector {
            params: Vec::with_capacity(24),
            nested: None,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        de::Deserializer::deserialize_map(&mut de, &mut collector).map_err(|e| invalid_json(&e))?;
        de.end().map_err(|e| invalid_json(&e))?;
        if let Some(key) = collector.nested {
            return Err(Error::NestedValue { key });
        }
        Params::new(collector.params)
    }
}

fn invalid_json(e: &serde_json::Error) -> Error {
    Error::InvalidJson {
        reason: e.to_string(),
    }
}

/// Gathers the top-level entries of the object being parsed.
struct Collector<'a> {
    params: Vec<Param<'a>>,
    /// The first key whose value is an object or array. Reported once the whole body is known
    /// to be valid JSON, so a syntax error always wins.
    nested: Option<String>,
}

impl<'de> Visitor<'de> for &mut Collector<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let raw: &'de RawValue = map.next_value()?;
            match scalar(raw.get()).map_err(de::Error::custom)? {
                Some(value) => self.params.push(Param { key, value }),
                None => {
                    if self.nested.is_none() {
                        self.nested = Some(key.into_owned());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a JSON value from its (syntactically valid) text; `None` for an object or an array.
fn scalar(raw: &str) -> Result<Option<Scalar<'_>>, serde_json::Error> {
    Ok(Some(match raw.as_bytes().first() {
        Some(b'"') => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                Scalar::Str(Cow::Owned(serde_json::from_str::<String>(raw)?))
            } else {
                Scalar::Str(Cow::Borrowed(inner))
            }
        }
        Some(b'n') => Scalar::Null,
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'{' | b'[') | None => return Ok(None),
        Some(_) => Scalar::Number(Cow::Borrowed(raw)),
    }))
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
