//! `PayoutCallback`: reading rules, the flat serialized form, `Deserialize`, and its methods.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{
    DOC_EXAMPLE, KEY, api_key, body_of, example_with_status, key, owned, signed_body,
    signed_example, verifier, with_field, without_field,
};
use cregis_payout_callback::{
    CallbackStatus, Error, PayoutCallback, signature::verify_sign, verifier::MatchedKey,
};
use serde_json::{Map, Value, json};

const OPTIONAL: [&str; 5] = ["remark", "txid", "block_height", "block_time", "memo"];

/// Verifies and parses the documented example with `pairs`' edits, signed with [`KEY`].
#[track_caller]
fn parse<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> PayoutCallback {
    let body = signed_body(pairs, KEY);
    verifier()
        .verify_and_parse(body.as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Reads an unsigned body through `Deserialize`.
#[track_caller]
fn deserialize<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> PayoutCallback {
    let body = body_of(pairs);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn optional_fields(callback: &PayoutCallback) -> [Option<String>; 5] {
    [
        callback.remark.clone(),
        callback.txid.clone(),
        callback.block_height.clone(),
        callback.block_time.map(|t| t.to_string()),
        callback.memo.clone(),
    ]
}

fn example_sign_pair() -> Vec<(String, String)> {
    with_field(
        DOC_EXAMPLE,
        "sign",
        &format!("\"{}\"", common::oracle_sign(DOC_EXAMPLE, KEY)),
    )
}

// ---------------------------------------------------------------------------------------------
// Optional fields
// ---------------------------------------------------------------------------------------------

#[test]
fn optional_fields_present_are_some() {
    let callback = parse(&with_field(DOC_EXAMPLE, "memo", r#""m-1""#));
    assert_eq!(
        optional_fields(&callback),
        [
            Some("payout".to_owned()),
            Some("6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd".to_owned()),
            Some("34527604".to_owned()),
            Some("1686814482000".to_owned()),
            Some("m-1".to_owned()),
        ]
    );
}

#[test]
fn optional_fields_absent_null_or_empty_are_none() {
    let none: [Option<String>; 5] = Default::default();
    let absent = OPTIONAL
        .iter()
        .fold(owned(DOC_EXAMPLE), |pairs, key| without_field(&pairs, key));
    let null = OPTIONAL.iter().fold(owned(DOC_EXAMPLE), |pairs, key| {
        with_field(&pairs, key, "null")
    });
    let empty = OPTIONAL.iter().fold(owned(DOC_EXAMPLE), |pairs, key| {
        with_field(&pairs, key, r#""""#)
    });

    let from_absent = parse(&absent);
    assert_eq!(optional_fields(&from_absent), none);
    let from_null = parse(&null);
    let from_empty = parse(&empty);
    assert_eq!(optional_fields(&from_null), none);
    assert_eq!(optional_fields(&from_empty), none);
    // All three sign the same, so apart from `sign` itself they are the same callback.
    assert_eq!(from_absent.sign, from_null.sign);
    assert_eq!(from_absent, from_null);
    assert_eq!(from_absent, from_empty);
    assert!(from_null.extra.is_empty(), "{:?}", from_null.extra);

    // Same through `Deserialize`.
    for pairs in [&absent, &null, &empty] {
        let mut pairs = pairs.clone();
        pairs.push(("sign".to_owned(), r#""00""#.to_owned()));
        assert_eq!(optional_fields(&deserialize(&pairs)), none);
    }
}

#[test]
fn each_optional_field_alone_can_be_blank() {
    for key in OPTIONAL {
        for blank in ["null", r#""""#] {
            let callback = parse(&with_field(DOC_EXAMPLE, key, blank));
            let fields = optional_fields(&callback);
            let index = OPTIONAL.iter().position(|k| *k == key).unwrap();
            assert_eq!(fields[index], None, "{key} = {blank}");
            let others = fields
                .iter()
                .enumerate()
                .filter(|&(i, f)| i != index && f.is_some());
            // memo is absent from the example; every other optional field is present.
            let expected_others = if key == "memo" { 4 } else { 3 };
            assert_eq!(others.count(), expected_others, "{key} = {blank}");
        }
    }
}

#[test]
fn whitespace_is_a_value_not_a_blank() {
    let callback = parse(&with_field(
        &with_field(DOC_EXAMPLE, "txid", r#"" ""#),
        "memo",
        r#""\t""#,
    ));
    assert_eq!(callback.txid.as_deref(), Some(" "));
    assert_eq!(callback.memo.as_deref(), Some("\t"));
}

// ---------------------------------------------------------------------------------------------
// Integer fields
// ---------------------------------------------------------------------------------------------

#[test]
fn integer_fields_from_numbers() {
    let callback = parse(&owned(DOC_EXAMPLE));
    assert_eq!(
        (
            callback.pid,
            callback.cid,
            callback.status.code(),
            callback.block_time,
            callback.timestamp
        ),
        (
            1382528827416576,
            1391751691788288,
            0,
            Some(1686814482000),
            1687850657960
        )
    );
}

#[test]
fn integer_fields_from_canonical_decimal_strings() {
    for (key, raw, check) in [
        ("pid", r#""1382528827416576""#, 1382528827416576),
        ("pid", r#""-5""#, -5),
        ("pid", r#""0""#, 0),
        ("cid", r#""9223372036854775807""#, i64::MAX),
        ("cid", r#""-9223372036854775808""#, i64::MIN),
        ("timestamp", r#""1687850657960""#, 1687850657960),
        ("block_time", r#""1686814482000""#, 1686814482000),
    ] {
        let callback = parse(&with_field(DOC_EXAMPLE, key, raw));
        let value = match key {
            "pid" => callback.pid,
            "cid" => callback.cid,
            "timestamp" => callback.timestamp,
            _ => callback.block_time.unwrap(),
        };
        assert_eq!(value, check, "{key} = {raw}");

        // And the same through `Deserialize` (whose `sign` is the example's, unchecked).
        let mut unsigned = deserialize(&with_field(&example_sign_pair(), key, raw));
        unsigned.sign.clone_from(&callback.sign);
        assert_eq!(unsigned, callback, "{key} = {raw}");
    }
}

#[test]
fn integer_fields_at_the_i64_limits_as_numbers() {
    let callback = parse(&with_field(
        &with_field(DOC_EXAMPLE, "pid", "9223372036854775807"),
        "cid",
        "-9223372036854775808",
    ));
    assert_eq!((callback.pid, callback.cid), (i64::MAX, i64::MIN));
}

#[test]
fn non_canonical_integer_strings_are_refused() {
    for raw in [
        r#""007""#,
        r#""+7""#,
        r#""-0""#,
        r#"" 7""#,
        r#""7 ""#,
        r#""7.0""#,
        r#""1e3""#,
        r#""0x10""#,
        r#""-""#,
    ] {
        let body = signed_body(&with_field(DOC_EXAMPLE, "cid", raw), KEY);
        assert_eq!(
            verifier().verify_and_parse(body.as_bytes()),
            Err(Error::InvalidField {
                field: "cid",
                problem: "must be an integer (int64)"
            }),
            "cid = {raw}"
        );
    }
}

#[test]
fn every_status_code_parses() {
    for code in 0..=7 {
        for raw in [code.to_string(), format!("\"{code}\"")] {
            let callback = parse(&example_with_status(&raw));
            assert_eq!(callback.status.code(), code, "{raw}");
            assert_eq!(callback.status, CallbackStatus::try_from(code).unwrap());
            let unsigned = deserialize(&with_field(&example_sign_pair(), "status", &raw));
            assert_eq!(unsigned.status.code(), code);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The serialized form
// ---------------------------------------------------------------------------------------------

fn as_map(callback: &PayoutCallback) -> Map<String, Value> {
    match serde_json::to_value(callback).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn serializes_to_a_flat_object_with_extra_at_top_level() {
    let pairs = with_field(
        &with_field(
            &with_field(
                &without_field(&example_with_status("6"), "remark"),
                "memo",
                r#""m-1""#,
            ),
            "fee",
            r#""0.5""#,
        ),
        "retry",
        "3",
    );
    let callback = parse(&pairs);
    let map = as_map(&callback);
    let sign = common::oracle_sign(&pairs, KEY);
    assert_eq!(
        Value::Object(map.clone()),
        json!({
            "pid": 1382528827416576u64,
            "cid": 1391751691788288u64,
            "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
            "chain_id": "195",
            "token_id": "195",
            "currency": "TRX",
            "amount": "1.1",
            "third_party_id": "1e0fb3a0a9454ad8928d26b592e8b3c7",
            "status": 6,
            "txid": "6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd",
            "block_height": "34527604",
            "block_time": 1686814482000u64,
            "memo": "m-1",
            "nonce": "ubqso3",
            "timestamp": 1687850657960u64,
            "sign": sign,
            "fee": "0.5",
            "retry": 3
        })
    );
    assert!(!map.contains_key("extra"));
    assert!(!map.contains_key("remark"), "None is omitted");
    assert!(map.values().all(|v| !v.is_object() && !v.is_array()));
}

#[test]
fn none_fields_are_omitted() {
    let blank = OPTIONAL.iter().fold(owned(DOC_EXAMPLE), |pairs, key| {
        with_field(&pairs, key, "null")
    });
    let map = as_map(&parse(&blank));
    for key in OPTIONAL {
        assert!(!map.contains_key(key), "{key}");
    }
    assert_eq!(map.len(), DOC_EXAMPLE.len() - 4 + 1, "{map:?}");
}

#[test]
fn serialized_callback_still_passes_verify_sign() {
    let cases: Vec<Vec<(String, String)>> = vec![
        owned(DOC_EXAMPLE),
        owned(&example_with_status("6")),
        with_field(DOC_EXAMPLE, "memo", r#""m-1""#),
        with_field(DOC_EXAMPLE, "fee", r#""0.5""#),
        with_field(DOC_EXAMPLE, "snowflake", "1382528827416576123"),
        with_field(DOC_EXAMPLE, "u64_max", "18446744073709551615"),
        with_field(DOC_EXAMPLE, "negative", "-42"),
        with_field(DOC_EXAMPLE, "flag", "false"),
        with_field(DOC_EXAMPLE, "zero", "0"),
        with_field(DOC_EXAMPLE, "half", "1.5"),
        with_field(DOC_EXAMPLE, "blank", r#""""#),
        with_field(DOC_EXAMPLE, "nothing", "null"),
        with_field(DOC_EXAMPLE, "space", r#"" ""#),
        with_field(DOC_EXAMPLE, "escaped", r#""caf\u00e9 \/ \"q\"""#),
        with_field(DOC_EXAMPLE, "remark", r#""""#),
        with_field(DOC_EXAMPLE, "pid", r#""1382528827416576""#),
        with_field(DOC_EXAMPLE, "cid", "9007199254740993"),
        with_field(DOC_EXAMPLE, "status", r#""7""#),
        OPTIONAL
            .iter()
            .fold(owned(DOC_EXAMPLE), |pairs, key| without_field(&pairs, key)),
    ];
    for pairs in cases {
        let callback = parse(&pairs);
        let map = as_map(&callback);
        assert_eq!(verify_sign(&map, &key()), Ok(()), "{pairs:?}");
        assert_eq!(
            verify_sign(&map, &api_key("fake-other-key")),
            Err(Error::SignatureMismatch)
        );
        // As a raw body too.
        let text = serde_json::to_string(&callback).unwrap();
        assert_eq!(
            verifier().verify(text.as_bytes()),
            Ok(MatchedKey::Current),
            "{text}"
        );
        // And it reads back to the same callback.
        assert_eq!(
            verifier().verify_and_parse(text.as_bytes()).unwrap(),
            callback
        );
        assert_eq!(
            serde_json::from_str::<PayoutCallback>(&text).unwrap(),
            callback
        );
        assert_eq!(
            serde_json::from_value::<PayoutCallback>(Value::Object(map)).unwrap(),
            callback
        );
    }
}

#[test]
fn serialized_callback_with_a_huge_unknown_integer_passes_verify_sign() {
    // Not a fraction, so the documented exception does not cover it.
    let callback = parse(&with_field(
        DOC_EXAMPLE,
        "huge",
        "123456789012345678901234567890",
    ));
    assert_eq!(verify_sign(&as_map(&callback), &key()), Ok(()));
}

#[test]
fn serialized_callback_with_unknown_negative_zero_passes_verify_sign() {
    let callback = parse(&with_field(DOC_EXAMPLE, "delta", "-0"));
    assert_eq!(verify_sign(&as_map(&callback), &key()), Ok(()));
}

#[test]
fn unknown_number_out_of_float_range_is_not_lost() {
    let callback = parse(&with_field(DOC_EXAMPLE, "big_exp", "1e400"));
    assert_ne!(callback.extra.get("big_exp"), Some(&Value::Null));
    assert_eq!(verify_sign(&as_map(&callback), &key()), Ok(()));
}

#[test]
fn unknown_fractional_number_keeps_its_exact_text_in_extra() {
    // serde_json would write 1.10 back as 1.1: the exact text is kept, as a string that signs
    // the same.
    let callback = parse(&with_field(DOC_EXAMPLE, "rate", "1.10"));
    assert_eq!(callback.extra.get("rate"), Some(&json!("1.10")));
    assert_eq!(verify_sign(&as_map(&callback), &key()), Ok(()));
    // A number that round-trips stays a number.
    let callback = parse(&with_field(DOC_EXAMPLE, "rate", "1.5"));
    assert_eq!(callback.extra.get("rate"), Some(&json!(1.5)));
}

// ---------------------------------------------------------------------------------------------
// `Deserialize`
// ---------------------------------------------------------------------------------------------

#[test]
fn deserialize_reads_the_documented_example_without_checking_sign() {
    let pairs = with_field(DOC_EXAMPLE, "sign", r#""not a signature at all""#);
    let callback = deserialize(&pairs);
    assert_eq!(callback.sign, "not a signature at all");
    assert_eq!(callback.pid, 1382528827416576);
    assert_eq!(callback.status, CallbackStatus::PendingApproval);
}

#[test]
fn deserialize_keeps_unknown_fields_in_extra() {
    let pairs = with_field(
        &with_field(&example_sign_pair(), "fee", r#""0.5""#),
        "big",
        "1382528827416576123",
    );
    let callback = deserialize(&pairs);
    assert_eq!(callback.extra.get("fee"), Some(&json!("0.5")));
    assert_eq!(
        callback.extra.get("big"),
        Some(&json!(1382528827416576123u64))
    );
    assert_eq!(callback.extra.len(), 2);
}

#[track_caller]
fn deserialize_error(body: &str) -> String {
    serde_json::from_str::<PayoutCallback>(body)
        .expect_err(body)
        .to_string()
}

#[test]
fn deserialize_refuses_duplicate_keys() {
    for (key, raw) in [
        ("pid", "1"),
        ("amount", r#""1000""#),
        ("sign", r#""00""#),
        ("fee", "1"),
    ] {
        let mut pairs = with_field(&example_sign_pair(), "fee", "0");
        pairs.push((key.to_owned(), raw.to_owned()));
        let message = deserialize_error(&body_of(&pairs));
        assert_eq!(
            message,
            Error::DuplicateKey { key: key.into() }.to_string(),
            "{key}"
        );
    }
    // An escaped spelling is the same key.
    let body = body_of(&example_sign_pair()).replacen('{', r#"{"p\u0069d":2,"#, 1);
    assert_eq!(
        deserialize_error(&body),
        r#"key "pid" appears more than once"#
    );
}

#[test]
fn deserialize_refuses_nested_values() {
    for (key, raw) in [
        ("fee", "{}"),
        ("fee", "[1]"),
        ("pid", "[1]"),
        ("memo", r#"{"a":"b"}"#),
    ] {
        let body = body_of(&with_field(&example_sign_pair(), key, raw));
        assert_eq!(
            deserialize_error(&body),
            Error::NestedValue { key: key.into() }.to_string(),
            "{key}: {raw}"
        );
    }
    // Deep nesting is an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = body_of(&with_field(&example_sign_pair(), "fee", &deep));
    assert!(
        deserialize_error(&body).starts_with("recursion limit exceeded"),
        "{}",
        deserialize_error(&body)
    );
}

#[test]
fn deserialize_applies_the_same_field_rules() {
    for (key, raw, message) in [
        (
            "pid",
            r#""007""#,
            r#"field "pid" must be an integer (int64)"#,
        ),
        ("currency", "195", r#"field "currency" must be a string"#),
        (
            "nonce",
            r#""""#,
            r#"field "nonce" is missing, null or empty"#,
        ),
        ("sign", "null", r#"field "sign" is missing, null or empty"#),
        ("status", "8", "status 8 is not a documented payout status"),
        (
            "status",
            "4294967296",
            "status 4294967296 is not a documented payout status",
        ),
    ] {
        let body = body_of(&with_field(&example_sign_pair(), key, raw));
        assert_eq!(deserialize_error(&body), message, "{key}: {raw}");
    }
    assert_eq!(
        deserialize_error("[]"),
        "invalid type: sequence, expected a flat JSON object at line 1 column 0"
    );
    assert_eq!(
        deserialize_error("{}"),
        r#"field "pid" is missing, null or empty"#
    );
}

// ---------------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------------

#[test]
fn is_final_and_is_success_follow_the_status() {
    for code in 0..=7 {
        let callback = parse(&example_with_status(&code.to_string()));
        assert_eq!(
            callback.is_final(),
            [2, 3, 4, 6, 7].contains(&code),
            "{code}"
        );
        assert_eq!(callback.is_success(), code == 6, "{code}");
        assert_eq!(callback.is_final(), callback.status.is_final());
        assert_eq!(callback.is_success(), callback.status.is_success());
    }
}

#[test]
fn sent_at_and_block_at_are_milliseconds_since_the_epoch() {
    let callback = verifier()
        .verify_and_parse(signed_example().as_bytes())
        .unwrap();
    assert_eq!(
        callback.sent_at(),
        Some(UNIX_EPOCH + Duration::from_millis(1687850657960))
    );
    assert_eq!(
        callback.block_at(),
        // 1686814482000 ms.
        Some(UNIX_EPOCH + Duration::from_secs(1686814482))
    );

    let without_block = parse(&without_field(DOC_EXAMPLE, "block_time"));
    assert_eq!(without_block.block_at(), None);
    assert!(without_block.sent_at().is_some());

    let epoch = parse(&with_field(
        &with_field(DOC_EXAMPLE, "timestamp", "0"),
        "block_time",
        "1",
    ));
    assert_eq!(epoch.sent_at(), Some(UNIX_EPOCH));
    assert_eq!(
        epoch.block_at(),
        Some(UNIX_EPOCH + Duration::from_millis(1))
    );

    let before = parse(&with_field(DOC_EXAMPLE, "timestamp", "-1500"));
    assert_eq!(
        before.sent_at(),
        Some(UNIX_EPOCH - Duration::from_millis(1500))
    );
}

#[test]
fn extreme_timestamps_do_not_panic() {
    for raw in ["9223372036854775807", "-9223372036854775808"] {
        let callback = parse(&with_field(
            &with_field(DOC_EXAMPLE, "timestamp", raw),
            "block_time",
            raw,
        ));
        let millis = callback.timestamp.unsigned_abs();
        // Either out of range, or exactly that many milliseconds from the epoch.
        if let Some(at) = callback.sent_at() {
            let offset = if callback.timestamp >= 0 {
                at.duration_since(UNIX_EPOCH).unwrap()
            } else {
                UNIX_EPOCH.duration_since(at).unwrap()
            };
            assert_eq!(offset, Duration::from_millis(millis));
        }
        assert_eq!(callback.block_at(), callback.sent_at());
    }
}

#[test]
fn callbacks_compare_and_clone() {
    let a = verifier()
        .verify_and_parse(signed_example().as_bytes())
        .unwrap();
    let b = a.clone();
    assert_eq!(a, b);
    let other = parse(&example_with_status("6"));
    assert_ne!(a, other);
    assert!(format!("{a:?}").contains("PayoutCallback"));
}
