//! One pass over a raw request body: JSON syntax, and the exact text of every value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Error;
use crate::params::{Param, Params, SIGN_KEY, Scalar};

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

        let mut params = Vec::with_capacity(24);
        if scan_flat_object(text, &mut params).is_none() {
            // Off the fast path (a syntax error, a nested value, an odd escape): serde_json's
            // parser decides, and says what is wrong.
            params.clear();
            collect_with_serde(text, &mut params)?;
        }
        let mut params = Params::new(params)?;
        params.body = text;
        Ok(params)
    }
}

/// The authoritative parse: `serde_json` checks the syntax, and hands over each value's text.
fn collect_with_serde<'a>(text: &'a str, params: &mut Vec<Param<'a>>) -> Result<(), Error> {
    let mut collector = Collector {
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
        Some(key) => Err(Error::NestedValue { key }),
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
    params: &'p mut Vec<Param<'a>>,
    /// The first key whose value is an object or array. Reported once the whole body is known
    /// to be valid JSON, so a syntax error always wins.
    nested: Option<String>,
    /// Whether parsing stopped on a string value that could not be decoded.
    bad_string: bool,
}

impl<'de> Visitor<'de> for &mut Collector<'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let raw: &'de RawValue = map.next_value()?;
            let value = scalar(raw.get()).map_err(|e| {
                self.bad_string = true;
                de::Error::custom(e)
            })?;
            match value {
                Some(value) => self.params.push(Param { key, value }),
                None if key == SIGN_KEY => self.params.push(Param {
                    key,
                    value: Scalar::Compound,
                }),
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

/// The fast path for the common case, a flat object of scalars: one pass over the bytes,
/// borrowing every key and value that holds no escape.
///
/// It accepts only what is certainly valid JSON, and reads it exactly as
/// [`collect_with_serde`] would; on anything else (including every syntax error and every
/// nested value) it returns `None`, and the caller asks `serde_json`.
fn scan_flat_object<'a>(text: &'a str, params: &mut Vec<Param<'a>>) -> Option<()> {
    let mut s = Scanner { text, pos: 0 };
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            let key = s.string()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let value = s.scalar()?;
            params.push(Param { key, value });
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.pos == text.len()).then_some(())
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string, decoded: borrowed when it holds no escape.
    // Inlined into both callers: returning the `Cow` through memory costs more than the copy
    // (6% of a verify, measured in instructions with callgrind); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        self.pos = start;
        let mut escaped = false;
        loop {
            self.skip_plain_string_bytes();
            match bytes.get(self.pos) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                // A control character (invalid inside a JSON string), or the end of the text.
                _ => return None,
            }
        }
        let end = self.pos;
        self.pos += 1;
        if escaped {
            // `serde_json` decodes and checks every escape (surrogate pairs included).
            let raw = self.text.get(start - 1..self.pos)?;
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            // Both ends are next to a `"`: slicing there cannot panic, and indexing (unlike
            // `get`) has its boundary checks inlined.
            Some(Cow::Borrowed(&self.text[start..end]))
        }
    }

    /// Moves past string bytes that need no attention: all but `"`, `\\` and control
    /// characters. Eight bytes at a time, then one at a time near the end of the text.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        /// The high bit of each zero byte of `word` is set; the lowest set bit is always a
        /// true zero byte (only bytes above one can be flagged falsely).
        fn zero_bytes(word: u64) -> u64 {
            word.wrapping_sub(ONES) & !word & HIGHS
        }
        let bytes = self.text.as_bytes();
        while let Some(chunk) = bytes.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let special = zero_bytes(word ^ (ONES * u64::from(b'"')))
                | zero_bytes(word ^ (ONES * u64::from(b'\\')))
                // A byte below 0x20 has none of its top three bits set.
                | zero_bytes(word & (ONES * 0xe0));
            if special != 0 {
                self.pos += special.trailing_zeros() as usize / 8;
                return;
            }
            self.pos += 8;
        }
        while self
            .peek()
            .is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20)
        {
            self.pos += 1;
        }
    }

    /// A string, number, boolean or null; `None` for objects, arrays and anything invalid.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b't' => self.literal("true").map(|()| Scalar::Bool(true)),
            b'f' => self.literal("false").map(|()| Scalar::Bool(false)),
            b'n' => self.literal("null").map(|()| Scalar::Null),
            b'-' | b'0'..=b'9' => self.number().map(Scalar::Number),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.as_bytes().get(self.pos..end)? == word.as_bytes()).then(|| self.pos = end)
    }

    /// A number's exact text, following JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        // An ASCII number: slicing at its ends cannot panic.
        Some(Cow::Borrowed(&self.text[start..self.pos]))
    }

    /// Moves past ASCII digits: eight at a time, then one at a time near the end of the text.
    fn digits(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = ONES * 0x80;
        let bytes = self.text.as_bytes();
        while let Some(chunk) = bytes.get(self.pos..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk);
            // The high bit of each byte that is no digit: at or above 0x80, below `0`, or
            // above `9`.
            // Carries leave the lowest flagged byte exact: they only go up, from a byte that is
            // flagged itself (one at or above 0x80).
            let other = (word
                | !word.wrapping_add(ONES * u64::from(0x80 - b'0'))
                | word.wrapping_add(ONES * u64::from(0x7f - b'9')))
                & HIGHS;
            if other != 0 {
                self.pos += other.trailing_zeros() as usize / 8;
                return;
            }
            self.pos += 8;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the authoritative `serde_json` path makes of `text`.
    fn with_serde(text: &str) -> Result<Vec<Param<'_>>, Error> {
        let mut params = Vec::new();
        collect_with_serde(text, &mut params).map(|()| params)
    }

    /// The fast path must agree with `serde_json` wherever it answers at all.
    fn assert_agrees(text: &str) {
        let mut fast = Vec::new();
        if scan_flat_object(text, &mut fast).is_some() {
            assert_eq!(
                with_serde(text),
                Ok(fast),
                "fast path disagrees on {text:?}"
            );
        }
    }

    /// Valid JSON scalars, in the shapes that trip parsers up.
    fn valid_value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-zA-Z0-9 é€😀/]|\\\\[\"\\\\/bfnrt]|\\\\u00[0-9a-fA-F]{2}|\\\\u[dD]83[dD]\\\\u[dD][eE]00)*\"",
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ]
    }

    /// JSON-ish scalar texts, valid and not.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            valid_value_text(),
            "[-+.0-9eE]{1,6}",
            "\"([a-z]|\\\\[\"\\\\/bfnrtux]|\\\\u[dD][89abAB][0-9a-fA-F]{2}|[\\x00-\\x1f])*\"",
            Just("tru".to_owned()),
            Just("nul".to_owned()),
            Just("{}".to_owned()),
            Just("[1,2]".to_owned()),
        ]
    }

    fn object_of(values: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        let ws = "[ \\t\\n\\r]{0,2}";
        let key = "\"([a-z_]{0,6}|\\\\u00[46][0-9a-f])\"";
        prop::collection::vec((ws, key, ws, values, ws), 0..8).prop_map(|fields| {
            let body: Vec<String> = fields
                .into_iter()
                .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    fn object_text() -> impl Strategy<Value = String> {
        object_of(value_text())
    }

    proptest! {
        #[test]
        fn fast_path_reads_valid_flat_objects_as_serde_does(text in object_of(valid_value_text())) {
            let mut fast = Vec::new();
            prop_assert!(scan_flat_object(&text, &mut fast).is_some(), "declined {text:?}");
            prop_assert_eq!(with_serde(&text), Ok(fast));
        }

        #[test]
        fn fast_path_agrees_with_serde_on_generated_objects(text in object_text()) {
            assert_agrees(&text);
        }

        #[test]
        fn fast_path_agrees_with_serde_after_one_byte_edit(
            text in object_text(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]:,\"\\ 0-.eE+tfnu\x01x".to_vec()),
            edit in 0..3u8,
        ) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match edit {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                assert_agrees(text);
            }
        }

        #[test]
        fn fast_path_agrees_with_serde_on_any_text(text in ".{0,40}") {
            assert_agrees(&text);
        }
    }

    #[test]
    fn fast_path_takes_the_common_case() {
        let text = r#" {"a":"x","b":-1.5e3,"c":true,"d":false,"e":null,"f":"\u00e9","g":0} "#;
        let mut fast = Vec::new();
        assert!(scan_flat_object(text, &mut fast).is_some());
        assert_eq!(with_serde(text), Ok(fast));
    }

    #[test]
    fn fast_path_declines_what_it_must_not_judge() {
        for text in [
            r#"{"a":{}}"#,
            r#"{"a":[]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            "{'a':1}",
        ] {
            assert!(scan_flat_object(text, &mut Vec::new()).is_none(), "{text}");
        }
    }
}
