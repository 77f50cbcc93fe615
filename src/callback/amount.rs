//! The one comparison of amounts: as decimal numbers when both are plain decimals, else as text.

use std::borrow::Cow;

/// Whether two amounts are the same amount: the one rule the crate compares amounts by, in
/// [`PayoutCallback::check_against`](crate::PayoutCallback::check_against), the delivery
/// fingerprint (a re-push or a reconciled delivery of the same fact is a duplicate, not a
/// conflict) and the reconciler.
///
/// Two *plain decimals* (ASCII digits, at most one `.` with digits on both sides, no sign, no
/// exponent, no spaces) are the same amount when they denote the same number: `12.5`,
/// `12.500000` (Cregis may answer a query with the scale of its own column) and `012.50` are
/// one amount. Anything else (`1e2`, `-1`, `.5`, ` 1`, `""`) is not a decimal this crate
/// interprets: it is the same amount only as the same text, and differs from every plain
/// decimal. Never through a float.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::same_amount;
///
/// assert!(same_amount("12.5", "12.500000"));
/// assert!(same_amount("7", "7.000"));
/// assert!(!same_amount("12.5", "125"));
/// assert!(!same_amount("1e2", "100")); // not a plain decimal: compared as text
/// assert!(same_amount("1e2", "1e2"));
/// ```
#[must_use]
pub fn same_amount(a: &str, b: &str) -> bool {
    match (plain(a), plain(b)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => a == b,
        _ => false,
    }
}

/// The text an amount is fingerprinted by: a plain decimal's shortest form (`012.500` is
/// `12.5`, `0.0` is `0`), anything else as it is.
pub(crate) fn canonical_amount(text: &str) -> Cow<'_, str> {
    match plain(text) {
        None => Cow::Borrowed(text),
        Some((whole, "")) => Cow::Borrowed(whole),
        // Nothing trimmed: the text is its own shortest form (no allocation, the usual case).
        Some((whole, fraction)) if whole.len() + 1 + fraction.len() == text.len() => {
            Cow::Borrowed(text)
        }
        Some((whole, fraction)) => Cow::Owned(format!("{whole}.{fraction}")),
    }
}

/// A plain decimal's whole part without leading zeros (`"0"` for none) and fraction without
/// trailing zeros; `None` for anything that is not a plain decimal.
fn plain(amount: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = match amount.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (amount, ""),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    Some((
        if whole.is_empty() { "0" } else { whole },
        fraction.trim_end_matches('0'),
    ))
}

#[cfg(test)]
mod tests {
    use super::{canonical_amount, same_amount};

    #[test]
    fn plain_decimals_are_compared_as_numbers() {
        for (a, b) in [
            ("12.5", "12.500000"),
            ("012.5", "12.50"),
            ("7", "7.000"),
            ("0", "0.0"),
            ("0", "000"),
            ("100", "100.0"),
            (
                "123456789012345678901234567890.1",
                "123456789012345678901234567890.100",
            ),
        ] {
            assert!(same_amount(a, b), "{a} {b}");
            assert!(same_amount(b, a), "{b} {a}");
            assert_eq!(canonical_amount(a), canonical_amount(b), "{a} {b}");
        }
    }

    #[test]
    fn anything_else_is_compared_as_text() {
        for (a, b) in [
            ("12.5", "125"),
            ("1.05", "1.5"),
            ("10", "1"),
            ("-1", "1"),
            ("1e2", "100"),
            ("", "0"),
            (".5", "0.5"),
            ("5.", "5"),
            (" 1", "1"),
            ("1.2.3", "1.2"),
            ("１", "1"),
        ] {
            assert!(!same_amount(a, b), "{a} {b}");
            assert!(!same_amount(b, a), "{b} {a}");
        }
        for text in ["1e2", "-1", "", "5.", " 1"] {
            assert!(same_amount(text, text), "{text:?}");
            assert_eq!(canonical_amount(text), text);
        }
    }

    #[test]
    fn the_canonical_form_is_the_shortest() {
        for (text, canonical) in [
            ("12.5", "12.5"),
            ("12.500000", "12.5"),
            ("012.50", "12.5"),
            ("7.000", "7"),
            ("0.0", "0"),
            ("0.10", "0.1"),
            ("00", "0"),
            ("1000", "1000"),
        ] {
            assert_eq!(canonical_amount(text), canonical, "{text}");
        }
    }
}
