//! Cregis's signature: MD5 over the API key and the sorted `key value` pairs.

use std::fmt;

use md5::block_api::Md5Core;
use md5::digest::Output;
use md5::digest::block_api::{Block, Buffer, FixedOutputCore, UpdateCore};
use serde_json::{Map, Value};
use subtle::{Choice, ConstantTimeEq};

use crate::Error;
use crate::params::{KNOWN, Params, SIGN_KEY, Scalar, bytes_of, known};

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
/// use cregis_payout_callback::sign;
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
/// let signature = sign(params.as_object().unwrap(), "f502a9ac9ca54327986f29c03b271491")?;
/// assert_eq!(signature, "d6eef2de79e39f434a38efb910213ba6");
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::EmptyApiKey`] if `api_key` is empty or whitespace, [`Error::NestedValue`] if a value
/// is an object or an array.
pub fn sign(params: &Map<String, Value>, api_key: &str) -> Result<String, Error> {
    check_api_key(api_key)?;
    let params = Params::from_map(params)?;
    Ok(hex::encode(digest(&params, api_key)))
}

/// Computes the signature Cregis would put in `sign` for a raw JSON body, exactly as a
/// [`Verifier`](crate::Verifier) checks it: numbers signed as written (`1.10` stays `1.10`),
/// strings decoded, unknown fields included, `null` and `""` left out. A `sign` already in the
/// body is left out, like in the signature.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Error, sign_body};
///
/// // The published vector, as a body.
/// let body = br#"{"pid":1382528827416576,"currency":"195@195","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///   "amount":"1.1","remark":"payout","third_party_id":"c9231e604da54469a735af3f449c880f",
///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6","timestamp":1688004243314}"#;
/// assert_eq!(sign_body(body, "f502a9ac9ca54327986f29c03b271491")?, "d6eef2de79e39f434a38efb910213ba6");
/// assert_eq!(sign_body(br#"{"a":1,"a":2}"#, "fake-key"), Err(Error::DuplicateKey { key: "a".into() }));
/// # Ok::<(), Error>(())
/// ```
///
/// # Errors
///
/// [`Error::EmptyApiKey`] or [`Error::ApiKeyWhitespace`] for a bad key, and the body errors of
/// [`Verifier::verify`](crate::Verifier::verify) before the signature check:
/// [`Error::InvalidJson`], [`Error::NotAnObject`], [`Error::DuplicateKey`],
/// [`Error::NestedValue`].
pub fn sign_body(body: &[u8], api_key: &str) -> Result<String, Error> {
    check_api_key(api_key)?;
    let params = Params::from_body(body)?;
    Ok(hex::encode(digest(&params, api_key)))
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
/// use cregis_payout_callback::{verify_sign, Error};
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
/// verify_sign(params, "f502a9ac9ca54327986f29c03b271491")?;
/// assert_eq!(verify_sign(params, "fake-other-key"), Err(Error::SignatureMismatch));
/// # Ok::<(), Error>(())
/// ```
///
/// # Errors
///
/// [`Error::EmptyApiKey`], [`Error::NestedValue`], [`Error::MissingSign`] (absent or `null`),
/// [`Error::MalformedSign`] (not a string of 32 hex digits), [`Error::SignatureMismatch`].
pub fn verify_sign(params: &Map<String, Value>, api_key: &str) -> Result<(), Error> {
    check_api_key(api_key)?;
    verify_params(&Params::from_map(params)?, &[api_key])
}

/// What the signature of a callback covers, for finding out why a signature does not match.
///
/// `text` is the signing text without the API key: the signature is the lowercase hex MD5 of
/// the key followed by `text`. `omitted` lists the fields left out, and why. Nothing here is
/// secret; compute and compare signatures with [`sign`] or a [`Verifier`](crate::Verifier).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Omission, SigningText};
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

    /// Explains the signature of a map, read as [`sign`] reads it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::SigningText;
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

    fn of_params(params: &Params<'_>) -> SigningText {
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

/// Refuses an API key that is empty or only whitespace, or has whitespace around it.
pub(crate) fn check_api_key(api_key: &str) -> Result<(), Error> {
    let trimmed = api_key.trim();
    if trimmed.is_empty() {
        return Err(Error::EmptyApiKey);
    }
    if trimmed.len() != api_key.len() {
        return Err(Error::ApiKeyWhitespace);
    }
    Ok(())
}

/// Checks the `sign` among `params` against the others, signed with any of `api_keys` (already
/// checked). Every key is tried, whichever matches, and compared in constant time.
pub(crate) fn verify_params<K: AsRef<str>>(
    params: &Params<'_>,
    api_keys: &[K],
) -> Result<(), Error> {
    let received = received_sign(params)?;
    let matched = api_keys.iter().fold(Choice::from(0), |matched, key| {
        matched | digest(params, key.as_ref()).ct_eq(&received)
    });
    if bool::from(matched) {
        Ok(())
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

/// Decodes 32 hex digits, in either case, to 16 bytes; `None` for anything else.
///
/// Eight digits at a time in one `u64`. The received signature is not secret: how long this
/// takes may depend on it (the comparison with the computed one is constant-time).
fn decode_hex16(text: &[u8]) -> Option<[u8; 16]> {
    let text: &[u8; 32] = text.try_into().ok()?;
    let mut bytes = [0u8; 16];
    for (digits, out) in text.chunks_exact(8).zip(bytes.chunks_exact_mut(4)) {
        let word = u64::from_le_bytes(digits.try_into().ok()?);
        out.copy_from_slice(&decode_hex8(word)?.to_le_bytes());
    }
    Some(bytes)
}

/// Eight ASCII hex digits (little-endian: the first digit in the low byte) to their four
/// bytes, the first two digits in the low byte.
fn decode_hex8(word: u64) -> Option<u32> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = ONES * 0x80;
    if word & HIGHS != 0 {
        return None;
    }
    // With every byte below 0x80, adding at most 0x7f per byte carries into no other byte:
    // the high bit of `byte + (0x80 - low)` says `byte >= low`, of `byte + (0x7f - high)`
    // says `byte > high`.
    let in_range = |x: u64, low: u8, high: u8| {
        (x + ONES * u64::from(0x80 - low)) & !(x + ONES * u64::from(0x7f - high)) & HIGHS
    };
    let digit = in_range(word, b'0', b'9');
    // `| 0x20` maps `A`-`F` and only them onto `a`-`f`.
    let letter = in_range(word | (ONES * 0x20), b'a', b'f');
    if digit | letter != HIGHS {
        return None;
    }
    // Each byte's value: its low four bits, plus 9 for a letter (`a` is 0x61).
    let letter = letter >> 7;
    let nibbles = (word & (ONES * 0x0f)) + (letter << 3) + letter;
    // Byte 2k gets digit 2k in its high half and digit 2k+1 in its low half.
    let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    #[allow(clippy::cast_possible_truncation)] // the four bytes are in the low half now
    Some((pairs | (pairs >> 16)) as u32)
}

/// The MD5 digest of the API key followed by the signing text.
pub(crate) fn digest(params: &Params<'_>, api_key: &str) -> [u8; 16] {
    let (body, decoded) = (params.body.as_bytes(), params.decoded.as_bytes());
    let mut md5 = Blocks::new(body);
    md5.write(api_key.as_bytes());
    // The documented keys in key order, each after the other keys that sort before it.
    let mut others = params.others.iter().peekable();
    for (place, slot) in params.known.iter().enumerate() {
        while let Some(other) = others.next_if(|o| usize::from(o.value.rank) == place) {
            if other.value.len != 0 {
                md5.write_range(decoded, other.key_start, other.key_len);
                md5.write_range(decoded, other.value.start, other.value.len);
            }
        }
        if slot.len != 0 && place != known::SIGN {
            md5.write_known_key(place);
            md5.write_range(decoded, slot.start, slot.len);
        }
    }
    for other in others {
        if other.value.len != 0 {
            md5.write_range(decoded, other.key_start, other.key_len);
            md5.write_range(decoded, other.value.start, other.value.len);
        }
    }
    md5.finish()
}

/// The documented keys, each padded to 32 bytes: copied as one fixed piece.
static PADDED_KEYS: [[u8; 32]; KNOWN.len()] = {
    let mut padded = [[0; 32]; KNOWN.len()];
    let mut place = 0;
    while place < KNOWN.len() {
        let key = KNOWN[place].as_bytes();
        let mut i = 0;
        while i < key.len() {
            padded[place][i] = key[i];
            i += 1;
        }
        place += 1;
    }
    padded
};

/// How many bytes [`Blocks`] gathers before compressing them.
const GATHER: usize = 8 * 64;
/// Room past [`GATHER`] for the longest write that is gathered, plus the up to 31 bytes a
/// copy of a short piece writes beyond its end.
const SLACK: usize = 64 + 32;

/// MD5 fed whole 64-byte blocks: the signing text comes in many short pieces, which are
/// gathered on the stack and compressed several blocks at a time.
///
/// Most pieces are slices of the body: those are copied 16 bytes at a time from the body
/// (reading past the piece, within the body, and writing past the gathered bytes, where the
/// next piece goes), which spares a `memcpy` call per piece.
struct Blocks<'b> {
    core: Md5Core,
    /// The body the pieces are mostly slices of.
    body: &'b [u8],
    buffer: [u8; GATHER + SLACK],
    /// How much of `buffer` is gathered.
    len: usize,
}

impl<'b> Blocks<'b> {
    fn new(body: &'b [u8]) -> Self {
        Blocks {
            core: Md5Core::default(),
            body,
            buffer: [0; GATHER + SLACK],
            len: 0,
        }
    }

    // Inlined into the loop over the pieces, which the call's register saving would
    // otherwise dominate (measured with callgrind); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() > 64 {
            self.write_long(bytes);
            return;
        }
        // Where `bytes` starts in the body, if it is a slice of it: then, up to 32 bytes
        // long, it is copied as one fixed 32-byte piece read from the body.
        let at = (bytes.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        let from = self.body.get(at..).and_then(<[u8]>::first_chunk::<32>);
        let to = self.buffer[self.len..].first_chunk_mut::<32>();
        match (from, to) {
            (Some(from), Some(to)) if bytes.len() <= 32 => *to = *from,
            _ => self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes),
        }
        self.len += bytes.len();
        if self.len >= GATHER {
            self.compress();
        }
    }

    /// Writes the range `start..start + len` of the body followed by `decoded`. Up to 32
    /// bytes of the body are copied as one fixed 32-byte piece (reading past the range, within
    /// the body).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn write_range(&mut self, decoded: &[u8], start: usize, len: usize) {
        let from = self.body.get(start..).and_then(<[u8]>::first_chunk::<32>);
        let to = self.buffer[self.len..].first_chunk_mut::<32>();
        match (from, to) {
            (Some(from), Some(to)) if len <= 32 => {
                *to = *from;
                self.len += len;
                if self.len >= GATHER {
                    self.compress();
                }
            }
            _ => self.write(bytes_of(self.body, decoded, start, len)),
        }
    }

    /// Writes the documented key at `place` in [`KNOWN`].
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn write_known_key(&mut self, place: usize) {
        if let Some(to) = self.buffer[self.len..].first_chunk_mut::<32>() {
            *to = PADDED_KEYS[place];
        }
        self.len += KNOWN[place].len();
        if self.len >= GATHER {
            self.compress();
        }
    }

    /// Compresses every whole block gathered, and moves the rest to the front.
    fn compress(&mut self) {
        let (blocks, rest) = Block::<Md5Core>::slice_as_chunks(&self.buffer[..self.len]);
        self.core.update_blocks(blocks);
        let (done, rest) = (self.len - rest.len(), rest.len());
        self.buffer.copy_within(done..done + rest, 0);
        self.len = rest;
    }

    /// A piece longer than a block: whole blocks of it are compressed where they are.
    fn write_long(&mut self, mut bytes: &[u8]) {
        let fill = (64 - self.len % 64) % 64;
        let (now, later) = bytes.split_at(fill.min(bytes.len()));
        self.buffer[self.len..self.len + now.len()].copy_from_slice(now);
        self.len += now.len();
        bytes = later;
        if self.len % 64 == 0 {
            self.compress();
            let (blocks, rest) = Block::<Md5Core>::slice_as_chunks(bytes);
            self.core.update_blocks(blocks);
            self.buffer[..rest.len()].copy_from_slice(rest);
            self.len = rest.len();
        }
    }

    fn finish(mut self) -> [u8; 16] {
        self.compress();
        let mut tail = Buffer::<Md5Core>::new(&self.buffer[..self.len]);
        let mut out = Output::<Md5Core>::default();
        self.core.finalize_fixed_core(&mut tail, &mut out);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::decode_hex16;

    proptest! {
        /// Exactly what `hex` accepts, in either case, decoded the same.
        #[test]
        fn hex_decoding_agrees_with_the_hex_crate(
            text in prop_oneof![
                "[0-9a-fA-F]{32}",
                "[0-9a-fA-F]{0,40}",
                prop::collection::vec(any::<u8>(), 32).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                "[0-9a-f]{31}[\\x00-\\x7f]",
            ],
        ) {
            let mut expected = [0u8; 16];
            let expected = hex::decode_to_slice(text.as_bytes(), &mut expected).ok().map(|()| expected);
            prop_assert_eq!(decode_hex16(text.as_bytes()), expected);
        }
    }

    #[test]
    fn hex_decoding_refuses_every_byte_that_is_no_digit() {
        let digits = b"0123456789abcdefABCDEF";
        for byte in 0..=u8::MAX {
            for at in [0, 7, 8, 31] {
                let mut text = *b"0123456789abcdef0123456789ABCDEF";
                text[at] = byte;
                assert_eq!(
                    decode_hex16(&text).is_some(),
                    digits.contains(&byte),
                    "{byte:#x} at {at}"
                );
            }
        }
        assert_eq!(
            decode_hex16(b"0123456789abcdef0123456789ABCDEF"),
            Some([
                0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef
            ])
        );
    }
}
