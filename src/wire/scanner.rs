//! The fast path for the common body, a flat object of scalars: one pass over the bytes.
//!
//! It accepts only what is certainly valid JSON and reads it exactly as `serde_json` would
//! (a property test checks this); anything else goes to the `serde_json` path in `body.rs`.
//! Its tricks (the usual separator tested first, strings skipped eight bytes at a time) are
//! each measured with `benches/callgrind.sh`, in the commits that brought them.

use super::body::decode_into;
use super::{Kind, Params, Slot};

/// The fast path for the common case, a flat object of scalars: one pass over the bytes,
/// keeping every key and value that holds no escape as a range of the body.
///
/// It accepts only what is certainly valid JSON, and reads it exactly as
/// `collect_with_serde` would; on anything else (including every syntax error and every
/// nested value) it returns `None`, and the caller asks `serde_json`.
pub(super) fn scan_flat_object<'a>(text: &'a str, params: &mut Params<'a>) -> Option<()> {
    let mut s = Scanner { text, pos: 0 };
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            let (key_start, key_len) = s.string(params)?;
            s.separator(b':')?;
            s.skip_ws_before(b'"');
            let value = s.scalar(params)?;
            params.add(key_start, key_len, value);
            // A comma usually comes at once; the closing brace once.
            if s.peek() == Some(b',') {
                s.pos += 1;
            } else {
                s.skip_ws();
                match s.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
            s.skip_ws_before(b'"');
        }
    }
    s.skip_ws();
    (s.pos == text.len()).then_some(())
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl Scanner<'_> {
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

    /// Moves past whitespace, unless `usual` (where whitespace is rare) comes next: checked
    /// first, it spares the whitespace test (measured with callgrind).
    fn skip_ws_before(&mut self, usual: u8) {
        if self.peek() != Some(usual) {
            self.skip_ws();
        }
    }

    /// Moves past whitespace and then `byte` (checked first, before any whitespace).
    fn separator(&mut self, byte: u8) -> Option<()> {
        if self.peek() != Some(byte) {
            self.skip_ws();
            if self.peek() != Some(byte) {
                return None;
            }
        }
        self.pos += 1;
        Some(())
    }

    /// A string, decoded: its range, in the body when it holds no escape.
    // Inlined into both callers (measured with callgrind); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn string(&mut self, params: &mut Params<'_>) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        self.pos = start;
        self.skip_plain_string_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return self.escaped_string(start, params);
        }
        let end = self.pos;
        self.pos += 1;
        Some((start, end - start))
    }

    /// The rest of a string that starts at `start` (past its quote) and, at `self.pos`, has
    /// an escape, a control character, or the end of the text: decoded, when it is valid.
    // Kept out of the scanner's loop (measured with callgrind: `#[cold]` would cost ~160
    // instructions per verify there, by how it lays the loop out).
    #[inline(never)]
    fn escaped_string(&mut self, start: usize, params: &mut Params<'_>) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.pos) {
                Some(b'"') => break,
                Some(b'\\') => {
                    self.pos += 2;
                    self.skip_plain_string_bytes();
                }
                // A control character (invalid inside a JSON string), or the end of the text.
                _ => return None,
            }
        }
        self.pos += 1;
        // `serde_json` decodes and checks every escape (surrogate pairs included).
        let raw = self.text.get(start - 1..self.pos)?;
        let at = params.push_decoded("");
        decode_into(raw, &mut params.decoded).ok()?;
        Some((at, params.body.len() + params.decoded.len() - at))
    }

    /// Moves past string bytes that need no attention: all but `"`, `\\` and control
    /// characters. Eight bytes at a time, then one at a time near the end of the text.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = ONES * 0x80;
        let bytes = self.text.as_bytes();
        let mut at = self.pos;
        while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk);
            // The high bit of each byte below 0x21 once `"` is flipped to 0x20 (so: a control
            // character or `"`), or equal to `\\`, and below 0x80. Borrows only go up, from a
            // byte that is flagged itself: the lowest flagged byte is exact.
            let special = ((word ^ (ONES * 0x02)).wrapping_sub(ONES * 0x21)
                | (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES))
                & !word
                & HIGHS;
            if special != 0 {
                self.pos = at + special.trailing_zeros() as usize / 8;
                return;
            }
            at += 8;
        }
        self.pos = at;
        while self
            .peek()
            .is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20)
        {
            self.pos += 1;
        }
    }

    /// A string, number, boolean or null; `None` for objects, arrays and anything invalid.
    fn scalar(&mut self, params: &mut Params<'_>) -> Option<Slot> {
        let start = self.pos;
        match self.peek()? {
            b'"' => self
                .string(params)
                .map(|(start, len)| Slot::new(Kind::Str, start, len)),
            b't' => self
                .literal("true")
                .map(|()| Slot::new(Kind::True, start, 4)),
            b'f' => self
                .literal("false")
                .map(|()| Slot::new(Kind::False, start, 5)),
            b'n' => self.literal("null").map(|()| Slot::NULL),
            b'-' | b'0'..=b'9' => self
                .number()
                .map(|()| Slot::new(Kind::Number, start, self.pos - start)),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.as_bytes().get(self.pos..end)? == word.as_bytes()).then(|| self.pos = end)
    }

    /// A number's exact text, following JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
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
        Some(())
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
    use crate::Error;
    use crate::wire::body::collect_with_serde;

    type Listing = Result<Vec<(String, String)>, Error>;

    /// Every parameter, in key order, with its value.
    fn listing(params: &mut Params<'_>) -> Listing {
        params.finish()?;
        Ok(params
            .iter()
            .map(|(key, value)| (key.to_owned(), format!("{value:?}")))
            .collect())
    }

    /// What the authoritative `serde_json` path makes of `text`.
    fn with_serde(text: &str) -> Listing {
        let mut params = Params::empty();
        params.body = text;
        collect_with_serde(text, &mut params)?;
        listing(&mut params)
    }

    /// What the fast path makes of `text`, if it answers at all.
    fn fast(text: &str) -> Option<Listing> {
        let mut params = Params::empty();
        params.body = text;
        scan_flat_object(text, &mut params)?;
        Some(listing(&mut params))
    }

    /// The fast path must agree with `serde_json` wherever it answers at all.
    fn assert_agrees(text: &str) {
        if let Some(fast) = fast(text) {
            assert_eq!(with_serde(text), fast, "fast path disagrees on {text:?}");
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
            let fast = fast(&text);
            prop_assert!(fast.is_some(), "declined {text:?}");
            prop_assert_eq!(with_serde(&text), fast.unwrap());
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
    fn plain_string_bytes_stop_at_the_first_special_byte() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    // Plain bytes around `byte`, high ones among them.
                    let mut bytes: Vec<u8> =
                        (0..len).map(|i| [b'a', 0xc3, 0xa9, b'!'][i % 4]).collect();
                    bytes[at] = byte;
                    bytes.extend_from_slice(b"\"}");
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let expected = text.bytes().position(special).unwrap();
                    let mut s = Scanner {
                        text: &text,
                        pos: 0,
                    };
                    s.skip_plain_string_bytes();
                    assert_eq!(s.pos, expected, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn fast_path_takes_the_common_case() {
        let text = r#" {"a":"x","b":-1.5e3,"c":true,"d":false,"e":null,"f":"\u00e9","g":0} "#;
        let fast = fast(text).expect("the fast path answers");
        assert!(fast.is_ok());
        assert_eq!(with_serde(text), fast);
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
            assert!(fast(text).is_none(), "{text}");
        }
    }
}
