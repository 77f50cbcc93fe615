//! The bad-input table: literal bodies and the exact error each one gives, for every variant.
//!
//! Also: each variant's `Display` text, and how each variant is classified
//! (`http_status`, `is_authentication`, `is_contract`).

mod common;

use std::collections::HashSet;
use std::mem::discriminant;

use common::{
    DOC_EXAMPLE, KEY, api_key, body_of, example_with_status, key, oracle_sign, oracle_signed_body,
    signed_body, signed_example, signed_pairs, verifier, with_field, without_field,
};
use cregis_payout_callback::{
    ApiKey, Error, PayoutCallback, Verifier,
    error::{Cause, KeyError},
    signature::{sign, verify_sign},
    verifier::{DEFAULT_MAX_BODY_BYTES, MatchedKey},
};
use serde_json::{Map, Value, json};

/// One row of the table.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    expected: Error,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, expected: Error) -> Case {
    Case {
        name,
        body: body.into(),
        expected,
    }
}

fn invalid_json(reason: &str) -> Error {
    Error::InvalidJson {
        reason: reason.to_owned(),
    }
}

fn duplicate(key: &str) -> Error {
    Error::DuplicateKey { key: key.into() }
}

fn nested(key: &str) -> Error {
    Error::NestedValue { key: key.into() }
}

/// A verifier for [`KEY`] with a body limit of `limit` bytes.
fn verifier_with_limit(limit: usize) -> Verifier {
    Verifier::builder(key()).max_body_bytes(limit).build()
}

fn invalid_field(field: &'static str, problem: &'static str) -> Error {
    Error::InvalidField { field, problem }
}

const MISSING: &str = "is missing, null or empty";
const NOT_INT64: &str = "must be an integer (int64)";
const NOT_STRING: &str = "must be a string";

/// The documented example with `key` set to the raw JSON `raw`, signed with [`KEY`].
fn authentic_with(key: &str, raw: &str) -> String {
    signed_body(&with_field(DOC_EXAMPLE, key, raw), KEY)
}

/// The documented example with `sign` replaced by the raw JSON `raw`.
fn example_with_sign(raw: &str) -> String {
    body_of(&with_field(DOC_EXAMPLE, "sign", raw))
}

/// Not one well-formed JSON text: encoding, emptiness, trailing data.
fn invalid_json_cases() -> Vec<Case> {
    vec![
        case(
            "not utf-8 at all",
            &b"\xff\xfe{}"[..],
            invalid_json("not utf-8 at byte 0"),
        ),
        case(
            "not utf-8 inside a string",
            &b"{\"remark\":\"caf\xe9\"}"[..],
            invalid_json("not utf-8 at byte 14"),
        ),
        case(
            "utf-16 body",
            &b"{\x00\"\x00p\x00i\x00d\x00\"\x00:\x001\x00}\x00"[..],
            invalid_json("key must be a string at line 1 column 2"),
        ),
        case("empty body", "", invalid_json("empty body")),
        case(
            "whitespace-only body",
            " \r\n\t ",
            invalid_json("empty body"),
        ),
        case(
            "trailing garbage",
            r#"{"pid":1} x"#,
            invalid_json("trailing characters at line 1 column 11"),
        ),
        case(
            "two objects",
            "{}{}",
            invalid_json("trailing characters at line 1 column 3"),
        ),
        case(
            "trailing nul byte",
            "{}\0",
            invalid_json("trailing characters at line 1 column 3"),
        ),
    ]
}

/// Not one well-formed JSON text: syntax errors.
fn invalid_json_syntax_cases() -> Vec<Case> {
    let deep_unclosed = format!(r#"{{"x":{}"#, "[".repeat(100_000));
    vec![
        case(
            "truncated object",
            r#"{"pid":1,"sign":"0"#,
            invalid_json("EOF while parsing a string at line 1 column 18"),
        ),
        case(
            "truncated after a value",
            r#"{"pid":1"#,
            invalid_json("EOF while parsing an object at line 1 column 8"),
        ),
        case(
            "single quotes",
            "{'pid':1}",
            invalid_json("key must be a string at line 1 column 2"),
        ),
        case(
            "unquoted key",
            "{pid:1}",
            invalid_json("key must be a string at line 1 column 2"),
        ),
        case(
            "trailing comma",
            r#"{"pid":1,}"#,
            invalid_json("trailing comma at line 1 column 10"),
        ),
        case(
            "missing comma",
            r#"{"pid":1 "cid":2}"#,
            invalid_json("expected `,` or `}` at line 1 column 10"),
        ),
        case(
            "leading zero",
            r#"{"pid":01}"#,
            invalid_json("invalid number at line 1 column 9"),
        ),
        case(
            "NaN",
            r#"{"pid":NaN}"#,
            invalid_json("expected value at line 1 column 8"),
        ),
        case(
            "byte order mark",
            "\u{feff}{}",
            invalid_json("expected value at line 1 column 1"),
        ),
        case(
            "raw control character in a string",
            "{\"remark\":\"a\u{1}\"}",
            invalid_json(
                "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 12",
            ),
        ),
        case(
            "lone surrogate in a key",
            r#"{"\ud800":1}"#,
            invalid_json("unexpected end of hex escape at line 1 column 9"),
        ),
        case(
            "array followed by garbage",
            "[] x",
            invalid_json("trailing characters at line 1 column 4"),
        ),
        case(
            "100000 unclosed brackets in a value",
            deep_unclosed,
            invalid_json("EOF while parsing a list at line 1 column 100005"),
        ),
        case(
            "100000 unclosed brackets at top level",
            "[".repeat(100_000),
            invalid_json("EOF while parsing a list at line 1 column 100000"),
        ),
    ]
}

/// Valid JSON, but not an object.
fn not_an_object_cases() -> Vec<Case> {
    vec![
        case("empty array", "[]", Error::NotAnObject),
        case("array of objects", r#"[{"pid":1}]"#, Error::NotAnObject),
        case("string", r#""str""#, Error::NotAnObject),
        case("number", "1", Error::NotAnObject),
        case("null", "null", Error::NotAnObject),
        case("boolean", " true ", Error::NotAnObject),
        case(
            "100000 closed brackets at top level",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            Error::NotAnObject,
        ),
    ]
}

/// The same key twice in the object.
fn duplicate_key_cases() -> Vec<Case> {
    let example_sign = oracle_sign(DOC_EXAMPLE, KEY);
    vec![
        case("same key twice", r#"{"pid":1,"pid":2}"#, duplicate("pid")),
        case(
            "same key, same value",
            r#"{"pid":1,"pid":1}"#,
            duplicate("pid"),
        ),
        case(
            "sign twice",
            format!(r#"{{"pid":1,"sign":"{example_sign}","sign":"{example_sign}"}}"#),
            duplicate("sign"),
        ),
        case(
            "escaped duplicate",
            r#"{"pid":1,"p\u0069d":2}"#,
            duplicate("pid"),
        ),
        case(
            "null then value",
            r#"{"remark":null,"cid":1,"remark":"x"}"#,
            duplicate("remark"),
        ),
        case("empty key twice", r#"{"":1,"":1}"#, duplicate("")),
        case(
            "duplicate appended to an authentic body",
            signed_example().replacen('{', r#"{"amount":"1000","#, 1),
            duplicate("amount"),
        ),
    ]
}

/// An object or array as a value (refused before the signature is checked).
fn nested_value_cases() -> Vec<Case> {
    let example_sign = oracle_sign(DOC_EXAMPLE, KEY);
    let deep_closed = format!(
        r#"{{"x":{}{},"sign":"{}"}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000),
        "0".repeat(32)
    );
    let deep_objects = format!(
        r#"{{"x":{}1{}}}"#,
        r#"{"a":"#.repeat(100_000),
        "}".repeat(100_000)
    );
    vec![
        case("object value", r#"{"fee":{}}"#, nested("fee")),
        case("array value", r#"{"fee":[]}"#, nested("fee")),
        case("array of numbers", r#"{"fee":[1,2]}"#, nested("fee")),
        case(
            "object inside an authentic-looking body",
            format!(r#"{{"pid":1,"extra":{{"a":1}},"sign":"{example_sign}"}}"#),
            nested("extra"),
        ),
        case(
            "100000 closed brackets in a value",
            deep_closed,
            nested("x"),
        ),
        case(
            "100000 nested objects in a value",
            deep_objects,
            nested("x"),
        ),
    ]
}

/// No `sign`, or a `null` one.
fn missing_sign_cases() -> Vec<Case> {
    let example_sign = oracle_sign(DOC_EXAMPLE, KEY);
    vec![
        case("empty object", "{}", Error::MissingSign),
        case("no sign", body_of(DOC_EXAMPLE), Error::MissingSign),
        case("null sign", example_with_sign("null"), Error::MissingSign),
        case(
            "sign under another case",
            body_of(&with_field(
                DOC_EXAMPLE,
                "SIGN",
                &format!("\"{example_sign}\""),
            )),
            Error::MissingSign,
        ),
    ]
}

/// A `sign` that is not a string of 32 hex characters.
fn malformed_sign_cases() -> Vec<Case> {
    let example_sign = oracle_sign(DOC_EXAMPLE, KEY);
    vec![
        case(
            "31 hex chars",
            example_with_sign(&format!("\"{}\"", &example_sign[..31])),
            Error::MalformedSign,
        ),
        case(
            "33 hex chars",
            example_with_sign(&format!("\"{example_sign}0\"")),
            Error::MalformedSign,
        ),
        case(
            "64 hex chars",
            example_with_sign(&format!("\"{example_sign}{example_sign}\"")),
            Error::MalformedSign,
        ),
        case(
            "non-hex chars",
            example_with_sign(&format!("\"{}g\"", &example_sign[..31])),
            Error::MalformedSign,
        ),
        case(
            "surrounding space",
            example_with_sign(&format!("\" {}\"", &example_sign[..31])),
            Error::MalformedSign,
        ),
        case(
            "0x prefix",
            example_with_sign(&format!("\"0x{}\"", &example_sign[..30])),
            Error::MalformedSign,
        ),
        case(
            "32 bytes of non-ascii",
            example_with_sign(&format!("\"{}\"", "é".repeat(16))),
            Error::MalformedSign,
        ),
        case(
            "number",
            example_with_sign("12345678901234567890123456789012"),
            Error::MalformedSign,
        ),
        case(
            "sign as an array",
            example_with_sign(&format!(r#"["{example_sign}"]"#)),
            Error::MalformedSign,
        ),
        case(
            "sign as an object",
            example_with_sign("{}"),
            Error::MalformedSign,
        ),
        case("true", example_with_sign("true"), Error::MalformedSign),
        case("false", example_with_sign("false"), Error::MalformedSign),
    ]
}

/// A well-formed `sign` that does not match.
fn signature_mismatch_cases() -> Vec<Case> {
    vec![
        case(
            "all-zero sign",
            r#"{"pid":1,"sign":"00000000000000000000000000000000"}"#,
            Error::SignatureMismatch,
        ),
        case(
            "signed with another key",
            signed_body(DOC_EXAMPLE, "fake-other-key-not-a-secret"),
            Error::SignatureMismatch,
        ),
        case(
            "the documented example's own sign",
            example_with_sign(r#""f5be13fdd8c6f63951ca4427359457cb""#),
            Error::SignatureMismatch,
        ),
        case(
            "amount changed after signing",
            signed_example().replace(r#""amount":"1.1""#, r#""amount":"1000""#),
            Error::SignatureMismatch,
        ),
        case(
            "authentic but with a bad pid, changed after signing",
            body_of(&with_field(&signed_pairs(DOC_EXAMPLE, KEY), "pid", "true")),
            Error::SignatureMismatch,
        ),
    ]
}

/// Authentic (signed with [`KEY`]), but an integer field is not a canonical int64.
fn invalid_field_cases() -> Vec<Case> {
    vec![
        case(
            "pid missing",
            signed_body(&without_field(DOC_EXAMPLE, "pid"), KEY),
            invalid_field("pid", MISSING),
        ),
        case(
            "pid boolean",
            authentic_with("pid", "true"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid letters",
            authentic_with("pid", r#""abc""#),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid leading zeros",
            authentic_with("pid", r#""007""#),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid plus sign",
            authentic_with("pid", r#""+7""#),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid negative zero string",
            authentic_with("pid", r#""-0""#),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid negative zero number",
            authentic_with("pid", "-0"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid with spaces",
            authentic_with("pid", r#"" 7""#),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid fraction",
            authentic_with("pid", "1.5"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid integral fraction",
            authentic_with("pid", "1.0"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid exponent",
            authentic_with("pid", "1e3"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid i64 overflow",
            authentic_with("pid", "9223372036854775808"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "pid i64 underflow",
            authentic_with("pid", "-9223372036854775809"),
            invalid_field("pid", NOT_INT64),
        ),
        case(
            "cid i64 overflow as string",
            authentic_with("cid", r#""9223372036854775808""#),
            invalid_field("cid", NOT_INT64),
        ),
        case(
            "block_time letters",
            authentic_with("block_time", r#""soon""#),
            invalid_field("block_time", NOT_INT64),
        ),
        case(
            "timestamp boolean",
            authentic_with("timestamp", "false"),
            invalid_field("timestamp", NOT_INT64),
        ),
    ]
}

/// Authentic, but a documented field has the wrong type or is missing.
fn invalid_field_type_cases() -> Vec<Case> {
    vec![
        case(
            "status over i32",
            authentic_with("status", "4294967296"),
            Error::UnknownStatus { code: 4294967296 },
        ),
        case(
            "status just over i32",
            authentic_with("status", "2147483648"),
            Error::UnknownStatus { code: 2147483648 },
        ),
        case(
            "status fraction",
            authentic_with("status", "6.0"),
            invalid_field("status", NOT_INT64),
        ),
        case(
            "status missing",
            signed_body(&without_field(DOC_EXAMPLE, "status"), KEY),
            invalid_field("status", MISSING),
        ),
        case(
            "currency as number",
            authentic_with("currency", "195"),
            invalid_field("currency", NOT_STRING),
        ),
        case(
            "chain_id as number",
            authentic_with("chain_id", "195"),
            invalid_field("chain_id", NOT_STRING),
        ),
        case(
            "amount as number",
            authentic_with("amount", "1.1"),
            invalid_field("amount", NOT_STRING),
        ),
        case(
            "nonce as boolean",
            authentic_with("nonce", "true"),
            invalid_field("nonce", NOT_STRING),
        ),
        case(
            "optional remark as number",
            authentic_with("remark", "5"),
            invalid_field("remark", NOT_STRING),
        ),
        case(
            "optional memo as boolean",
            authentic_with("memo", "true"),
            invalid_field("memo", NOT_STRING),
        ),
        case(
            "required currency empty",
            authentic_with("currency", r#""""#),
            invalid_field("currency", MISSING),
        ),
        case(
            "required address null",
            authentic_with("address", "null"),
            invalid_field("address", MISSING),
        ),
        case(
            "required nonce missing",
            signed_body(&without_field(DOC_EXAMPLE, "nonce"), KEY),
            invalid_field("nonce", MISSING),
        ),
        case(
            "required timestamp null",
            authentic_with("timestamp", "null"),
            invalid_field("timestamp", MISSING),
        ),
        case(
            "required cid empty",
            authentic_with("cid", r#""""#),
            invalid_field("cid", MISSING),
        ),
    ]
}

/// Authentic (signed with [`KEY`]), but the status is not one of the eight.
fn unknown_status_cases() -> Vec<Case> {
    vec![
        case(
            "status 8",
            signed_body(&example_with_status("8"), KEY),
            Error::UnknownStatus { code: 8 },
        ),
        case(
            "status -1",
            signed_body(&example_with_status("-1"), KEY),
            Error::UnknownStatus { code: -1 },
        ),
        case(
            "status \"8\" as a string",
            signed_body(&example_with_status(r#""8""#), KEY),
            Error::UnknownStatus { code: 8 },
        ),
        case(
            "status i32::MAX",
            signed_body(&example_with_status("2147483647"), KEY),
            Error::UnknownStatus {
                code: i64::from(i32::MAX),
            },
        ),
        case(
            "status i32::MIN",
            signed_body(&example_with_status("-2147483648"), KEY),
            Error::UnknownStatus {
                code: i64::from(i32::MIN),
            },
        ),
    ]
}

/// Bodies refused before the signature is even looked at, or refused as not authentic.
fn unauthentic_cases() -> Vec<Case> {
    [
        invalid_json_cases(),
        invalid_json_syntax_cases(),
        not_an_object_cases(),
        duplicate_key_cases(),
        nested_value_cases(),
        missing_sign_cases(),
        malformed_sign_cases(),
        signature_mismatch_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Authentic bodies (signed with [`KEY`]) that do not match the documented contract.
fn contract_cases() -> Vec<Case> {
    let mut cases = invalid_field_cases();
    cases.extend(invalid_field_type_cases());
    cases.extend(unknown_status_cases());
    cases
}

fn all_cases() -> Vec<Case> {
    let mut cases = unauthentic_cases();
    cases.extend(contract_cases());
    cases
}

#[test]
fn every_bad_body_gives_its_exact_error() {
    let verifier = verifier_with_limit(usize::MAX);
    let wrong: Vec<String> = all_cases()
        .into_iter()
        .filter_map(
            |Case {
                 name,
                 body,
                 expected,
             }| {
                let actual = verifier.verify_and_parse(&body);
                (actual != Err(expected.clone()))
                    .then(|| format!("{name}: expected {expected:?}, got {actual:?}"))
            },
        )
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn lone_surrogate_in_a_value_is_invalid_json() {
    let body = br#"{"remark":"\ud800","sign":"00000000000000000000000000000000"}"#;
    let err = verifier().verify(body).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidJson { reason } if reason.starts_with("unexpected end of hex escape at line 1 column ")),
        "{err:?}"
    );
}

#[test]
fn lone_surrogate_in_a_value_reports_its_position_in_the_body() {
    // The surrogate's escape ends at column 18 of the body.
    let body = br#"{"remark":"\ud800"}"#;
    assert_eq!(
        verifier().verify(body),
        Err(invalid_json(
            "unexpected end of hex escape at line 1 column 18"
        ))
    );
}

/// 0.1's free function `verify_and_parse(body, key)` is, in 0.2, a verifier made on the spot
/// from the key (with the default body limit).
#[test]
fn free_function_gives_the_same_errors() {
    for Case {
        name,
        body,
        expected,
    } in all_cases()
    {
        if body.len() > DEFAULT_MAX_BODY_BYTES {
            continue;
        }
        assert_eq!(
            Verifier::new(api_key(KEY)).verify_and_parse(&body),
            Err(expected),
            "{name}"
        );
    }
}

#[test]
fn verify_stops_at_authenticity() {
    let verifier = verifier_with_limit(usize::MAX);
    for Case {
        name,
        body,
        expected,
    } in unauthentic_cases()
    {
        assert_eq!(verifier.verify(&body), Err(expected), "{name}");
    }
    // Contract failures are authentic: `verify` accepts them, only the parse refuses them.
    for Case {
        name,
        body,
        expected,
    } in contract_cases()
    {
        assert!(expected.is_contract(), "{name}");
        assert_eq!(verifier.verify(&body), Ok(MatchedKey::Current), "{name}");
    }
}

#[test]
fn process_answers_each_bad_body_with_its_error() {
    let verifier = verifier_with_limit(usize::MAX);
    let never = |callback: &PayoutCallback| -> Result<(), String> {
        panic!("handler called for a bad body: {callback:?}")
    };
    for Case {
        name,
        body,
        expected,
    } in all_cases()
    {
        let reply = verifier.process(&body, &never);
        assert_eq!(reply.status_code(), expected.http_status(), "{name}");
        assert_eq!(reply.body(), expected.to_string(), "{name}");
        assert!(!reply.is_ack(), "{name}");
        assert_eq!(reply.error(), Some(&expected), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Empty keys (`KeyError`, from `ApiKey::new`) and BodyTooLarge: not properties of a body alone
// ---------------------------------------------------------------------------------------------

fn example_map() -> Map<String, Value> {
    serde_json::from_str(&signed_example()).unwrap()
}

/// In 0.2 a blank key is refused once, by `ApiKey::new`: `Verifier::new`, `sign`, `verify_sign`
/// and `verify_and_parse` take an `ApiKey`, so none of them can be given one.
#[test]
fn empty_or_blank_api_key_is_refused_everywhere() {
    for blank in ["", " ", " \t", "\n\r\t ", "\u{a0}\u{3000}"] {
        assert_eq!(
            ApiKey::new(blank).unwrap_err(),
            KeyError::Empty,
            "{blank:?}"
        );
        assert_eq!(
            ApiKey::new(blank.to_owned()).unwrap_err(),
            KeyError::Empty,
            "{blank:?}"
        );
    }
}

#[test]
fn body_signed_with_an_empty_key_is_refused() {
    // Anyone can compute this signature: it must not verify.
    for blank in ["", " "] {
        let body = oracle_signed_body(DOC_EXAMPLE, blank);
        // No verifier (nor `verify_sign`, nor `sign`) can be made with the blank key...
        assert_eq!(
            ApiKey::new(blank).unwrap_err(),
            KeyError::Empty,
            "{blank:?}"
        );
        // ... and the real key does not accept the body.
        assert_eq!(
            verifier().verify_and_parse(body.as_bytes()),
            Err(Error::SignatureMismatch)
        );
        let map: Map<String, Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(verify_sign(&map, &key()), Err(Error::SignatureMismatch));
    }
}

#[test]
fn empty_key_is_reported_before_anything_about_the_body() {
    // The key is checked when it is made, before any body can be handed over.
    assert_eq!(ApiKey::new("").unwrap_err(), KeyError::Empty);
    for body in [&b""[..], b"not json", b"[]", b"{}"] {
        // Each of these bodies has a problem of its own, never a key error.
        assert!(verifier().verify_and_parse(body).is_err(), "{body:?}");
    }
    assert_eq!(
        ApiKey::new("\t").unwrap_err(),
        KeyError::Empty,
        "no sign, but the key is the first problem"
    );
    assert_eq!(verify_sign(&Map::new(), &key()), Err(Error::MissingSign));
}

#[test]
fn body_over_the_limit_is_refused_before_parsing() {
    let verifier = verifier_with_limit(16);
    assert_eq!(
        verifier.verify(br#"{"pid":1382528827416576}"#),
        Err(Error::BodyTooLarge { len: 24, limit: 16 })
    );
    // Not even looked at: garbage over the limit is "too large", not "invalid json".
    assert_eq!(
        verifier.verify_and_parse(&[0xff; 17]),
        Err(Error::BodyTooLarge { len: 17, limit: 16 })
    );
    // At the limit exactly: parsed.
    assert_eq!(
        verifier.verify(&[b' '; 16]),
        Err(invalid_json("empty body"))
    );
    assert_eq!(
        verifier.verify(br#"{"sign":"0"}    "#),
        Err(Error::MalformedSign)
    );
    // A zero limit refuses every non-empty body.
    let zero = verifier_with_limit(0);
    assert_eq!(
        zero.verify(b"{}"),
        Err(Error::BodyTooLarge { len: 2, limit: 0 })
    );
    assert_eq!(zero.verify(b""), Err(invalid_json("empty body")));
}

#[test]
fn an_authentic_body_over_the_limit_is_refused() {
    let body = signed_example();
    let len = body.len();
    let at_limit = verifier_with_limit(len);
    assert_eq!(at_limit.verify(body.as_bytes()), Ok(MatchedKey::Current));
    let below = verifier_with_limit(len - 1);
    assert_eq!(
        below.verify_and_parse(body.as_bytes()),
        Err(Error::BodyTooLarge {
            len,
            limit: len - 1
        })
    );
}

#[test]
fn default_limit_is_64_kib() {
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 65536);
    // An authentic body padded with whitespace to exactly 64 KiB verifies; one byte more does not.
    let body = signed_example();
    let padded = format!("{body}{}", " ".repeat(65536 - body.len()));
    assert_eq!(padded.len(), 65536);
    assert_eq!(
        verifier().verify(padded.as_bytes()),
        Ok(MatchedKey::Current)
    );
    assert!(
        Verifier::new(api_key(KEY))
            .verify_and_parse(padded.as_bytes())
            .is_ok()
    );

    let over = format!("{padded} ");
    let too_large = Error::BodyTooLarge {
        len: 65537,
        limit: 65536,
    };
    assert_eq!(verifier().verify(over.as_bytes()), Err(too_large.clone()));
    assert_eq!(
        verifier().verify_and_parse(over.as_bytes()),
        Err(too_large.clone())
    );
    assert_eq!(
        Verifier::new(api_key(KEY)).verify_and_parse(over.as_bytes()),
        Err(too_large)
    );
}

// ---------------------------------------------------------------------------------------------
// The map API: `sign` and `verify_sign`
// ---------------------------------------------------------------------------------------------

#[test]
fn verify_sign_errors_on_maps() {
    let authentic = example_map();
    assert_eq!(verify_sign(&authentic, &key()), Ok(()));

    let mut no_sign = authentic.clone();
    no_sign.remove("sign");
    assert_eq!(verify_sign(&no_sign, &key()), Err(Error::MissingSign));

    for (value, expected) in [
        (Value::Null, Error::MissingSign),
        (json!(""), Error::MissingSign),
        (json!([]), Error::MalformedSign),
        (json!("abc"), Error::MalformedSign),
        (json!(12345678901234567890u64), Error::MalformedSign),
        (json!(true), Error::MalformedSign),
        (json!(["a"]), Error::MalformedSign),
        (json!({"a": 1}), Error::MalformedSign),
        (
            json!("00000000000000000000000000000000"),
            Error::SignatureMismatch,
        ),
    ] {
        let mut map = authentic.clone();
        map.insert("sign".to_owned(), value.clone());
        assert_eq!(verify_sign(&map, &key()), Err(expected), "sign = {value}");
    }

    let mut changed = authentic.clone();
    changed.insert("amount".to_owned(), json!("1000"));
    assert_eq!(verify_sign(&changed, &key()), Err(Error::SignatureMismatch));

    let mut with_object = authentic;
    with_object.insert("fee".to_owned(), json!({"a": 1}));
    assert_eq!(verify_sign(&with_object, &key()), Err(nested("fee")));
    assert_eq!(sign(&with_object, &key()), Err(nested("fee")));
}

// ---------------------------------------------------------------------------------------------
// Every variant, its message and its class
// ---------------------------------------------------------------------------------------------

/// A failing handler's error.
fn handler_failed() -> Error {
    let reply = verifier().process(signed_example().as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>("db down")
    });
    reply.error().cloned().expect("the handler failed")
}

/// One error of each variant a body (or a handler) can cause. 0.1's
/// `EmptyApiKey` came first: it is no longer an `Error` but `KeyError::Empty`, checked apart.
fn one_of_each() -> Vec<Error> {
    vec![
        verifier_with_limit(16)
            .verify(br#"{"pid":1382528827416576}"#)
            .unwrap_err(),
        verifier().verify(b"").unwrap_err(),
        verifier().verify(b"[]").unwrap_err(),
        verifier().verify(br#"{"pid":1,"pid":2}"#).unwrap_err(),
        verifier().verify(br#"{"fee":[]}"#).unwrap_err(),
        verifier().verify(b"{}").unwrap_err(),
        verifier().verify(br#"{"sign":"00"}"#).unwrap_err(),
        verifier()
            .verify(br#"{"sign":"00000000000000000000000000000000"}"#)
            .unwrap_err(),
        verifier()
            .verify_and_parse(authentic_with("pid", r#""abc""#).as_bytes())
            .unwrap_err(),
        verifier()
            .verify_and_parse(signed_body(&example_with_status("8"), KEY).as_bytes())
            .unwrap_err(),
        handler_failed(),
    ]
}

#[test]
fn every_variant_is_produced_by_some_input() {
    // 0.1's `Error::EmptyApiKey` is produced by `ApiKey::new` now.
    assert_eq!(ApiKey::new("").unwrap_err(), KeyError::Empty);
    let samples = [
        Error::BodyTooLarge { len: 0, limit: 0 },
        invalid_json(""),
        Error::NotAnObject,
        duplicate(""),
        nested(""),
        Error::MissingSign,
        Error::MalformedSign,
        Error::SignatureMismatch,
        invalid_field("", ""),
        Error::UnknownStatus { code: 0 },
        Error::HandlerFailed {
            cause: Cause::new(""),
            release_failure: None,
        },
    ];
    let produced: HashSet<_> = one_of_each().iter().map(discriminant).collect();
    assert_eq!(produced.len(), samples.len());
    for sample in &samples {
        assert!(produced.contains(&discriminant(sample)), "{sample:?}");
    }
    // The literal table alone covers every variant a body can cause.
    let table: HashSet<_> = all_cases()
        .iter()
        .map(|c| discriminant(&c.expected))
        .collect();
    for sample in &samples[1..10] {
        assert!(table.contains(&discriminant(sample)), "{sample:?}");
    }
}

#[test]
fn every_variant_has_its_exact_message() {
    let messages: Vec<String> = one_of_each().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "body is 24 bytes, over the limit of 16 bytes",
            "body is not valid json: empty body",
            "body is not a json object",
            r#"key "pid" appears more than once"#,
            r#"field "fee" holds an object or array, which cannot be signed"#,
            "sign is missing",
            "sign is not a string of 32 hex characters",
            "signature does not match",
            r#"field "pid" must be an integer (int64)"#,
            "status 8 is not a documented payout status",
            "handler failed: db down",
        ]
    );
    assert_eq!(ApiKey::new("").unwrap_err().to_string(), "api key is empty");
}

#[test]
fn field_messages_name_the_field_and_the_problem() {
    for (body, message) in [
        (
            signed_body(&without_field(DOC_EXAMPLE, "nonce"), KEY),
            r#"field "nonce" is missing, null or empty"#,
        ),
        (
            authentic_with("currency", "195"),
            r#"field "currency" must be a string"#,
        ),
        (
            authentic_with("status", "4294967296"),
            "status 4294967296 is not a documented payout status",
        ),
        (
            signed_body(&example_with_status("-1"), KEY),
            "status -1 is not a documented payout status",
        ),
        (
            "{\"a\":1} x".to_owned(),
            "body is not valid json: trailing characters at line 1 column 9",
        ),
        (
            "\u{0}".to_owned(),
            "body is not valid json: expected value at line 1 column 1",
        ),
    ] {
        let err = verifier().verify_and_parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let err = verifier().verify(b"{\"a\":\"\xff\"}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "body is not valid json: not utf-8 at byte 6"
    );
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    let key_errors = ["", "fake-key\n"].map(|text| ApiKey::new(text).unwrap_err().to_string());
    let errors = one_of_each()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    for text in errors.into_iter().chain(key_errors) {
        assert!(!text.ends_with('.'), "{text}");
        assert!(
            text.starts_with(|c: char| c.is_ascii_lowercase() || c == '"'),
            "{text}"
        );
    }
}

#[test]
fn every_variant_has_its_class() {
    // (http_status, is_authentication, is_contract), in `one_of_each`'s order. 0.1's
    // `EmptyApiKey` (500, neither) is a `KeyError` now, raised at startup, with no HTTP status.
    let expected = [
        (413, false, false),
        (400, false, false),
        (400, false, false),
        (400, false, false),
        (400, false, false),
        (401, true, false),
        (401, true, false),
        (401, true, false),
        (400, false, true),
        (400, false, true),
        (500, false, false),
    ];
    let errors = one_of_each();
    assert_eq!(errors.len(), expected.len());
    for (err, (status, authentication, contract)) in errors.iter().zip(expected) {
        assert_eq!(err.http_status(), status, "{err:?}");
        assert_eq!(err.is_authentication(), authentication, "{err:?}");
        assert_eq!(err.is_contract(), contract, "{err:?}");
    }
}

#[test]
fn table_errors_are_classified_consistently() {
    for Case { name, expected, .. } in all_cases() {
        let status = expected.http_status();
        if expected.is_authentication() {
            assert_eq!(status, 401, "{name}");
            assert!(!expected.is_contract(), "{name}");
        } else {
            assert_eq!(status, 400, "{name}");
        }
    }
}

#[test]
fn errors_are_comparable_and_cloneable() {
    let err = invalid_field("pid", NOT_INT64);
    assert_eq!(err.clone(), err);
    assert_ne!(err, invalid_field("cid", NOT_INT64));
    assert_ne!(
        Error::UnknownStatus { code: 8 },
        Error::UnknownStatus { code: 9 }
    );
}

#[test]
fn oracle_sign_is_what_the_table_assumes() {
    // Guards the table: a body signed by the oracle with KEY is authentic for the crate.
    let body = signed_body(DOC_EXAMPLE, KEY);
    assert_eq!(verifier().verify(body.as_bytes()), Ok(MatchedKey::Current));
    assert_eq!(body, signed_example());
}
