//! The parameters under undocumented keys: the first few kept in place, so that verifying a
//! real callback allocates nothing (measured with `benches/callgrind.sh`: -164 instructions
//! per verify, commit 3ccd03c).

use super::{Kind, Slot};

/// A parameter under a key that is not documented: the key's byte range, and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Other {
    pub(crate) key_start: usize,
    pub(crate) key_len: usize,
    pub(crate) value: Slot,
}

impl Other {
    const EMPTY: Other = Other {
        key_start: 0,
        key_len: 0,
        value: Slot {
            start: 0,
            len: 0,
            kind: Kind::Absent,
            rank: 0,
        },
    };
}

/// How many parameters under undocumented keys [`Others`] holds without allocating: real
/// callbacks carry none to two.
const INLINE_OTHERS: usize = 4;

/// The parameters under keys that are not documented: the first few in place, so that a real
/// callback needs no list on the heap; all of them in a list once there are more.
#[derive(Debug, Clone)]
pub(crate) struct Others {
    /// Until the list is allocated: the first `len` parameters.
    inline: [Other; INLINE_OTHERS],
    len: usize,
    /// Once allocated (on the first parameter that does not fit in place), every parameter,
    /// from then on: the list keeps its capacity across [`Others::clear`].
    spilled: Vec<Other>,
}

impl Others {
    pub(crate) fn new() -> Self {
        Others {
            inline: [Other::EMPTY; INLINE_OTHERS],
            len: 0,
            spilled: Vec::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.spilled.clear();
    }

    // Inlined into the scanner's loop, with `Params::add` (measured with callgrind).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn push(&mut self, other: Other) {
        if self.spilled.capacity() != 0 {
            if self.spilled.len() == self.spilled.capacity() {
                // Fast growth, for the rare body with many fields.
                self.spilled.reserve(3 * self.spilled.len());
            }
            self.spilled.push(other);
        } else if let Some(free) = self.inline.get_mut(self.len) {
            *free = other;
            self.len += 1;
        } else {
            self.spill(other);
        }
    }

    /// Moves the parameters kept in place to the list, and adds `other`.
    #[cold]
    fn spill(&mut self, other: Other) {
        self.spilled.reserve(3 * INLINE_OTHERS);
        self.spilled.extend_from_slice(&self.inline[..self.len]);
        self.spilled.push(other);
    }
}

impl std::ops::Deref for Others {
    type Target = [Other];

    fn deref(&self) -> &[Other] {
        if self.spilled.capacity() == 0 {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

impl std::ops::DerefMut for Others {
    fn deref_mut(&mut self) -> &mut [Other] {
        if self.spilled.capacity() == 0 {
            &mut self.inline[..self.len]
        } else {
            &mut self.spilled
        }
    }
}
