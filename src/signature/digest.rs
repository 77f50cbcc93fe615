//! The MD5 digest of the API key and the signing text, fed whole blocks from the body.
//!
//! The signing text is many short pieces, mostly slices of the body; they are gathered on the
//! stack with fixed 32-byte copies and compressed several blocks at a time (measured with
//! `benches/callgrind.sh`: -237 instructions per verify against one `update` per piece,
//! commit 7574f08). The key passes through the gathering buffer and the MD5 state: both are
//! wiped before the digest is returned.

use md5::block_api::Md5Core;
use md5::digest::Output;
use md5::digest::block_api::{Block, Buffer, FixedOutputCore, UpdateCore};
use zeroize::Zeroize;

use super::ApiKey;
use crate::wire::{KNOWN, Params, bytes_of, known};

/// The MD5 digest of the API key followed by the signing text.
pub(crate) fn digest(params: &Params<'_>, api_key: &ApiKey) -> [u8; 16] {
    let (body, decoded) = (params.body.as_bytes(), params.decoded.as_bytes());
    let key = api_key.as_bytes();
    let mut md5 = Blocks::new(body, key.len());
    md5.write(key);
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
    /// How much of the front of `buffer` may still hold bytes of the API key: it is written
    /// first, and only its last partial block (at most 64 bytes) is ever copied in.
    key_len: usize,
}

impl<'b> Blocks<'b> {
    fn new(body: &'b [u8], key_len: usize) -> Self {
        Blocks {
            core: Md5Core::default(),
            body,
            buffer: [0; GATHER + SLACK],
            len: 0,
            key_len: key_len.min(64),
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
        // Dropped here: the tail and the MD5 state wipe themselves (md-5's `zeroize`
        // feature), and `Drop` below wipes the key's bytes in the gathering buffer.
    }
}

impl Drop for Blocks<'_> {
    fn drop(&mut self) {
        self.buffer[..self.key_len].zeroize();
    }
}
