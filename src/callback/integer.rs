//! Integer fields: the one canonical decimal text of an `i64`, eight digits at a time (SWAR)
//! for the 13- to 16-digit ids and timestamps every callback carries: -318 instructions per
//! `verify_and_parse` against a digit at a time (commit eebc958, `benches/callgrind.sh`).

/// Parses an integer written the one way it serializes back: an optional `-`, then digits
/// without leading zeros (and no `-0`). Anything else would change the signed text on a
/// round trip.
pub(crate) fn parse_canonical_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    match digits {
        [b'0'] => return (!negative).then_some(0),
        [] | [b'0', ..] => return None,
        _ => {}
    }
    // Up to 16 digits: eight at a time (ids have 16, timestamps 13).
    if (8..=16).contains(&digits.len()) {
        let value = i64::try_from(eight_to_sixteen(digits)?).ok()?;
        return Some(if negative { -value } else { value });
    }
    // Up to 18 digits cannot overflow: no checks per digit.
    if digits.len() <= 18 {
        let mut value: i64 = 0;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(digit - b'0');
        }
        return Some(if negative { -value } else { value });
    }
    // Accumulate negatively: i64::MIN has no positive counterpart.
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// The value of 8 to 16 decimal digits, read as two 8-digit words (the first one padded with
/// leading zeros); `None` if any is not a digit.
fn eight_to_sixteen(digits: &[u8]) -> Option<u64> {
    let (first, last) = (digits.first_chunk::<8>()?, digits.last_chunk::<8>()?);
    // The first word keeps the digits before the last eight, after as many leading zeros.
    let pad = 8 * 16usize.checked_sub(digits.len())?;
    let high = if pad == 64 {
        ZEROS
    } else {
        (u64::from_le_bytes(*first) << pad) | (ZEROS & !(u64::MAX << pad))
    };
    Some(parse_eight(high)? * 100_000_000 + parse_eight(u64::from_le_bytes(*last))?)
}

/// Eight ASCII zeros.
const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);

/// The value of eight ASCII decimal digits read little-endian (the first digit in the low
/// byte); `None` if any byte is not a digit.
fn parse_eight(word: u64) -> Option<u64> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = ONES * 0x80;
    const MASK: u64 = 0x0000_00ff_0000_00ff;
    const MUL1: u64 = 0x000f_4240_0000_0064;
    const MUL2: u64 = 0x0000_2710_0000_0001;
    // Every byte below 0x80, and within `0`..=`9`: the additions carry into no other byte.
    if word & HIGHS != 0 {
        return None;
    }
    let digits = (word + ONES * u64::from(0x80 - b'0')) & !(word + ONES * u64::from(0x7f - b'9'));
    if digits & HIGHS != HIGHS {
        return None;
    }
    // Pairs, then fours, then all eight (as the standard library's float parser does).
    let word = word - ZEROS;
    let word = (word * 10) + (word >> 8);
    Some(
        ((word & MASK)
            .wrapping_mul(MUL1)
            .wrapping_add(((word >> 16) & MASK).wrapping_mul(MUL2)))
            >> 32,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_canonical_i64;

    proptest! {
        /// Exactly the text `i64`'s `Display` writes parses, to that value.
        #[test]
        fn canonical_integers_agree_with_display(
            text in prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                "-?[0-9]{0,20}",
                "-?[0-9/:a]{1,20}",
                "[0-9]{0,15}[^0-9][0-9]{0,4}",
            ],
        ) {
            let expected = text.parse::<i64>().ok().filter(|n| n.to_string() == text);
            prop_assert_eq!(parse_canonical_i64(text.as_bytes()), expected);
        }
    }

    #[test]
    fn canonical_integers_parse_at_every_length() {
        for text in [
            "0",
            "7",
            "-7",
            "999999999999999999",
            "-999999999999999999",
            "12345678",
            "123456789",
            "1000000000000001",
            "9999999999999999",
            "-1686814482000",
            "1382528827416576",
            "1000000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(
                parse_canonical_i64(text.as_bytes()),
                text.parse().ok(),
                "{text}"
            );
        }
        for text in [
            "",
            "-",
            "-0",
            "01",
            "+1",
            "1.0",
            "1e3",
            "12a",
            "99999999999999999a",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "1234567a",
            "12345678a",
            "1a345678123",
            "123456781234567/",
            "12345678:2345678",
        ] {
            assert_eq!(parse_canonical_i64(text.as_bytes()), None, "{text}");
        }
    }
}
