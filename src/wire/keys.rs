//! The documented keys and the perfect hash that finds their places.
//!
//! Each documented key has a fixed place ([`KNOWN`], in key order), so the scanner files a
//! documented parameter with one multiply, one table load and one or two word compares, and
//! the signature walk needs no sorting of them. Measured with `benches/callgrind.sh`: finding
//! a key this way instead of by a sorted search saved about 800 instructions per callback
//! (commit ebe7bdd).

/// The documented keys, in key order (bytes): each has its place in [`Params`].
pub(crate) const KNOWN: [&str; 19] = [
    "address",
    "amount",
    "block_height",
    "block_time",
    "chain_id",
    "cid",
    "currency",
    "from_address",
    "memo",
    "nonce",
    "pid",
    "remark",
    "sign",
    "status",
    "third_party_id",
    "timestamp",
    "to_address",
    "token_id",
    "txid",
];

/// The places of the documented keys in [`KNOWN`].
#[allow(dead_code)]
pub(crate) mod known {
    pub(crate) const ADDRESS: usize = 0;
    pub(crate) const AMOUNT: usize = 1;
    pub(crate) const BLOCK_HEIGHT: usize = 2;
    pub(crate) const BLOCK_TIME: usize = 3;
    pub(crate) const CHAIN_ID: usize = 4;
    pub(crate) const CID: usize = 5;
    pub(crate) const CURRENCY: usize = 6;
    pub(crate) const FROM_ADDRESS: usize = 7;
    pub(crate) const MEMO: usize = 8;
    pub(crate) const NONCE: usize = 9;
    pub(crate) const PID: usize = 10;
    pub(crate) const REMARK: usize = 11;
    pub(crate) const SIGN: usize = 12;
    pub(crate) const STATUS: usize = 13;
    pub(crate) const THIRD_PARTY_ID: usize = 14;
    pub(crate) const TIMESTAMP: usize = 15;
    pub(crate) const TO_ADDRESS: usize = 16;
    pub(crate) const TOKEN_ID: usize = 17;
    pub(crate) const TXID: usize = 18;
}

/// The key that carries the signature and is itself left out of it.
pub(crate) const SIGN_KEY: &str = "sign";

/// The first eight bytes of a key, little-endian, zero-padded, from a word of eight bytes
/// starting with the key (whatever follows it).
pub(crate) fn masked(word: u64, len: usize) -> u64 {
    if len >= 8 {
        word
    } else {
        word & ((1u64 << (8 * len)) - 1)
    }
}

/// The eight bytes of `bytes` from `start`, little-endian, zero-padded past its end.
pub(crate) fn word_at(bytes: &[u8], start: usize) -> u64 {
    if let Some(word) = bytes.get(start..).and_then(<[u8]>::first_chunk::<8>) {
        return u64::from_le_bytes(*word);
    }
    let mut word = [0u8; 8];
    for (to, from) in word.iter_mut().zip(bytes.get(start..).unwrap_or_default()) {
        *to = *from;
    }
    u64::from_le_bytes(word)
}

/// The first eight bytes of `key`, big-endian, zero-padded: keys in the order of their
/// prefixes are in byte order, except that keys with equal prefixes tie.
pub(crate) fn prefix(key: &[u8]) -> u64 {
    masked(word_at(key, 0), key.len()).swap_bytes()
}

/// A documented key as [`known_place`] finds it.
#[derive(Clone, Copy)]
struct Entry {
    /// The first eight bytes, little-endian, zero-padded.
    head: u64,
    /// The last eight bytes, little-endian, for a key longer than eight bytes.
    tail: u64,
    /// `usize::MAX` for no key.
    len: usize,
    place: usize,
}

/// The multiplier of [`known_place`]'s hash, under which the 19 documented keys fall into 19
/// different buckets of 32 (checked when [`TABLE`] is built).
const HASH: u64 = 0x9331_7ed1_9a00_6f57;

const fn bucket(head: u64) -> usize {
    (head.wrapping_mul(HASH) >> 59) as usize
}

/// The documented keys by [`bucket`] of their first eight bytes.
static TABLE: [Entry; 32] = {
    let mut table = [Entry {
        head: 0,
        tail: 0,
        len: usize::MAX,
        place: 0,
    }; 32];
    let mut place = 0;
    while place < KNOWN.len() {
        let key = KNOWN[place].as_bytes();
        let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
        let mut i = 0;
        while i < key.len() {
            if i < 8 {
                head[i] = key[i];
            }
            if key.len() > 8 && i + 8 >= key.len() {
                tail[i + 8 - key.len()] = key[i];
            }
            i += 1;
        }
        assert!(key.len() <= 16, "a documented key is read in two words");
        let head = u64::from_le_bytes(head);
        let at = bucket(head);
        assert!(table[at].len == usize::MAX, "HASH must separate the keys");
        table[at] = Entry {
            head,
            tail: u64::from_le_bytes(tail),
            len: key.len(),
            place,
        };
        place += 1;
    }
    table
};

/// The place of `key` in [`KNOWN`], if it is documented; `head` is its first eight bytes,
/// little-endian, zero-padded.
// Inlined into the scanner's loop, with `Params::add` (measured with callgrind).
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn known_place(head: u64, key: &[u8]) -> Option<usize> {
    let entry = &TABLE[bucket(head)];
    let tail = || key.last_chunk::<8>().map(|t| u64::from_le_bytes(*t));
    (entry.head == head && entry.len == key.len() && (key.len() <= 8 || tail() == Some(entry.tail)))
        .then_some(entry.place)
}

/// [`prefix`] of each documented key.
pub(crate) static KNOWN_PREFIXES: [u64; KNOWN.len()] = {
    let mut prefixes = [0; KNOWN.len()];
    let mut place = 0;
    while place < KNOWN.len() {
        let key = KNOWN[place].as_bytes();
        let mut head = [0u8; 8];
        let mut i = 0;
        while i < key.len() && i < 8 {
            head[i] = key[i];
            i += 1;
        }
        prefixes[place] = u64::from_be_bytes(head);
        place += 1;
    }
    prefixes
};
