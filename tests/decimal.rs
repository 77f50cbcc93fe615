//! The `rust_decimal` feature: the amount as an exact `Decimal`, never through a float.
#![cfg(feature = "rust_decimal")]

use std::str::FromStr;

use cregis_payout_callback::Error;
use cregis_payout_callback::testing::CallbackBuilder;
use rust_decimal::Decimal;

fn amount(text: &str) -> Result<Decimal, Error> {
    CallbackBuilder::new()
        .amount(text)
        .callback()
        .unwrap()
        .amount_decimal()
}

const NOT_PLAIN: Error = Error::InvalidField {
    field: "amount",
    problem: "must be a plain decimal number",
};

const TOO_MANY_DIGITS: Error = Error::InvalidField {
    field: "amount",
    problem: "has more digits than a decimal holds exactly",
};

#[test]
fn valid_amounts_are_exact_and_keep_their_scale() {
    for (text, mantissa, scale) in [
        ("1.1", 11, 1),
        ("0.000001", 1, 6),
        ("12.000001", 12_000_001, 6),
        ("2.50", 250, 2),
        ("00012.3400", 123_400, 4),
        ("0", 0, 0),
        ("100000000", 100_000_000, 0),
    ] {
        let value = amount(text).unwrap();
        assert_eq!(value, Decimal::new(mantissa, scale), "{text}");
        assert_eq!(value.scale(), scale, "{text}");
    }
    // 0.1 + 0.2 is 0.3 exactly: no float on the way.
    assert_eq!(
        amount("0.1").unwrap() + amount("0.2").unwrap(),
        amount("0.3").unwrap()
    );
}

#[test]
fn negative_amounts_are_read_as_such() {
    assert_eq!(amount("-2.50").unwrap(), Decimal::new(-250, 2));
    assert_eq!(amount("-0").unwrap(), Decimal::ZERO);
}

#[test]
fn huge_and_too_precise_amounts_are_errors_not_rounded() {
    let max = "79228162514264337593543950335";
    assert_eq!(amount(max).unwrap(), Decimal::from_str(max).unwrap());
    assert_eq!(
        amount("79228162514264337593543950336"),
        Err(TOO_MANY_DIGITS)
    );
    assert_eq!(
        amount("0.0000000000000000000000000001").unwrap().scale(),
        28
    );
    assert_eq!(
        amount("0.00000000000000000000000000001"),
        Err(TOO_MANY_DIGITS)
    );
    assert_eq!(amount(&"9".repeat(60)), Err(TOO_MANY_DIGITS));
}

#[test]
fn malformed_amounts_are_errors() {
    for text in [
        "", " 1", "1 ", "+1", "1e5", "1E5", "1_000", "1,5", "1.", ".5", "-", "--1", "0x10", "NaN",
        "inf", "1.2.3", "١", "1.1\u{0}",
    ] {
        let parsed = CallbackBuilder::new()
            .amount(text)
            .callback()
            .map(|c| c.amount_decimal());
        match parsed {
            // `""` is "missing" to the signature, so the callback itself is refused.
            Err(error) => assert_eq!(
                error,
                Error::InvalidField {
                    field: "amount",
                    problem: "is missing, null or empty"
                },
                "{text:?}"
            ),
            Ok(decimal) => assert_eq!(decimal, Err(NOT_PLAIN), "{text:?}"),
        }
    }
}
