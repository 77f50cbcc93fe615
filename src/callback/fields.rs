//! Reading the documented fields from verified parameters: strings, and integers sent as JSON
//! integers or as their decimal strings. Every kind of callback reads its fields through one
//! [`Fields`], so the reading rules are the same for all of them.

use serde_json::{Map, Value};

use super::integer::parse_canonical_i64;
use crate::Error;
use crate::wire::{KNOWN, Kind, Params, Scalar};

/// The documented fields of one kind of callback, read from its verified parameters.
///
/// A kind reads each field it documents in key order (the order of [`KNOWN`]), so that the
/// first bad one in key order is reported whatever the kind, then checks the required ones.
/// Whatever it does not document (unknown keys, and documented keys of other kinds) goes to
/// its `extra`.
#[derive(Debug)]
pub struct Fields<'p, 'a> {
    params: &'p Params<'a>,
}

impl<'p, 'a> Fields<'p, 'a> {
    #[inline]
    pub(crate) fn new(params: &'p Params<'a>) -> Self {
        Fields { params }
    }

    /// Whether the field at `place` in [`KNOWN`] is in the body at all (`null` and `""`
    /// included).
    #[inline]
    pub(crate) fn present(&self, place: usize) -> bool {
        self.params.known[place].kind != Kind::Absent
    }

    /// The string field at `place` in [`KNOWN`]: `None` for absent, `null` and `""`.
    // Inlined into each kind's reader (measured with callgrind: `Verifier::verify_and_parse`
    // took 380 more instructions per call with a call per field); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn text(&self, place: usize) -> Result<Option<String>, Error> {
        let slot = self.params.known[place];
        match slot.kind {
            Kind::Absent | Kind::Null => Ok(None),
            Kind::Str if slot.len == 0 => Ok(None),
            Kind::Str => Ok(Some(self.params.text(slot.start, slot.len).to_owned())),
            Kind::True | Kind::False | Kind::Number | Kind::Compound => Err(Error::InvalidField {
                field: KNOWN[place],
                problem: "must be a string",
            }),
        }
    }

    /// The integer field at `place`, from a JSON integer or its decimal string: `None` for
    /// absent, `null` and `""`.
    // Inlined into each kind's reader (measured with callgrind: `Verifier::verify_and_parse`
    // took 380 more instructions per call with a call per field); plain `#[inline]` is ignored.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn integer(&self, place: usize) -> Result<Option<i64>, Error> {
        let slot = self.params.known[place];
        let parsed = match slot.kind {
            Kind::Absent | Kind::Null => return Ok(None),
            Kind::Str if slot.len == 0 => return Ok(None),
            Kind::Str | Kind::Number => {
                parse_canonical_i64(self.params.bytes(slot.start, slot.len))
            }
            Kind::True | Kind::False | Kind::Compound => None,
        };
        integer_or_error(KNOWN[place], parsed)
    }

    /// Every parameter that is not at one of the `documented` places (one bit per place in
    /// [`KNOWN`]), with its value.
    pub(crate) fn extra(&self, documented: u32) -> Map<String, Value> {
        let mut extra = Map::new();
        // Only the places this kind does not document: two or three, not all of them.
        let mut undocumented = !documented & ((1 << KNOWN.len()) - 1);
        while undocumented != 0 {
            let place = undocumented.trailing_zeros() as usize;
            undocumented &= undocumented - 1;
            if let Some(value) = self.params.scalar(self.params.known[place]) {
                extra.insert(KNOWN[place].to_owned(), json_value(value));
            }
        }
        for (key, value) in self.params.others() {
            extra.insert(key.to_owned(), json_value(value));
        }
        extra
    }
}

/// The set of `places` in [`KNOWN`], one bit each, for [`Fields::extra`].
pub(crate) const fn places(places: &[usize]) -> u32 {
    let mut set = 0;
    let mut i = 0;
    while i < places.len() {
        set |= 1 << places[i];
        i += 1;
    }
    set
}

/// The integer field `field` of verified parameters, for checks made before the full parse.
pub(crate) fn required_integer(params: &Params<'_>, field: &'static str) -> Result<i64, Error> {
    required(field, integer(field, params.get(field))?)
}

/// A required field's value: absent, `null` and `""` are refused alike, since the signature
/// cannot tell them apart.
pub(crate) fn required<T>(field: &'static str, value: Option<T>) -> Result<T, Error> {
    // Not `ok_or`: it would build (and drop) the error on every call.
    match value {
        Some(value) => Ok(value),
        None => Err(Error::InvalidField {
            field,
            problem: "is missing, null or empty",
        }),
    }
}

/// An integer field, from a JSON integer or its decimal string: `None` for absent, `null`
/// and `""`.
fn integer(field: &'static str, value: Option<Scalar<'_>>) -> Result<Option<i64>, Error> {
    let parsed = match value {
        None | Some(Scalar::Null | Scalar::Str("")) => return Ok(None),
        Some(Scalar::Str(digits) | Scalar::Number(digits)) => {
            parse_canonical_i64(digits.as_bytes())
        }
        Some(Scalar::Bool(_) | Scalar::Compound) => None,
    };
    integer_or_error(field, parsed)
}

fn integer_or_error(field: &'static str, parsed: Option<i64>) -> Result<Option<i64>, Error> {
    match parsed {
        Some(value) => Ok(Some(value)),
        None => Err(Error::InvalidField {
            field,
            problem: "must be an integer (int64)",
        }),
    }
}

/// An unknown field's value, for a callback's `extra`.
///
/// A number whose text `serde_json` would not write back the same (`1.10`, `-0`, `1e400`, an
/// integer beyond 64 bits) is kept as a string of that exact text instead: it signs the same,
/// so nothing is lost and the serialized callback still verifies.
pub(crate) fn json_value(value: Scalar<'_>) -> Value {
    match value {
        // Only `sign`, a documented field, can hold a compound: it never reaches `extra`.
        Scalar::Null | Scalar::Compound => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Str(s) => Value::String(s.to_owned()),
        Scalar::Number(text) => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(number) if number.to_string() == text => Value::Number(number),
            _ => Value::String(text.to_owned()),
        },
    }
}
