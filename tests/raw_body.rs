//! Signing rules on raw request bodies, through `Verifier::verify` and
//! `Verifier::verify_and_parse`.
//!
//! Every body here is built from `(key, raw JSON value)` pairs and signed by the independent
//! oracle in `tests/common`, then edited (or not) before it reaches the crate.

mod common;

use common::{
    DOC_EXAMPLE, KEY, api_key, body_of, example_with_status, oracle_sign, oracle_signed_body,
    owned, signed_body, signed_example, signed_pairs, spaced_body_of, verifier, with_field,
    without_field,
};
use cregis_payout_callback::{CallbackStatus, Error, Verifier, verifier::MatchedKey};
use serde_json::Value;

/// The fields of the documented example that are strings, and those that are numbers.
fn is_string_field(raw: &str) -> bool {
    raw.starts_with('"')
}

#[track_caller]
fn assert_verifies(body: &str) {
    assert_eq!(
        verifier().verify(body.as_bytes()),
        Ok(MatchedKey::Current),
        "body: {body}"
    );
    assert!(
        verifier().verify_and_parse(body.as_bytes()).is_ok(),
        "body: {body}"
    );
}

#[track_caller]
fn assert_mismatch(body: &str) {
    assert_eq!(
        verifier().verify(body.as_bytes()),
        Err(Error::SignatureMismatch),
        "body: {body}"
    );
    assert_eq!(
        verifier().verify_and_parse(body.as_bytes()),
        Err(Error::SignatureMismatch),
        "body: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Key order and whitespace
// ---------------------------------------------------------------------------------------------

#[test]
fn documented_example_verifies_compact() {
    assert_verifies(&signed_example());
}

#[test]
fn key_order_in_the_body_does_not_matter() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    let expected = verifier()
        .verify_and_parse(body_of(&signed).as_bytes())
        .unwrap();

    // Reversed: `sign` first, everything else backwards.
    let mut reversed = signed.clone();
    reversed.reverse();
    assert_verifies(&body_of(&reversed));
    assert_eq!(
        verifier()
            .verify_and_parse(body_of(&reversed).as_bytes())
            .unwrap(),
        expected
    );

    // Sorted by key, and sorted by key descending.
    let mut sorted = signed.clone();
    sorted.sort();
    assert_verifies(&body_of(&sorted));
    sorted.reverse();
    assert_verifies(&body_of(&sorted));

    // Every rotation.
    for shift in 0..signed.len() {
        let mut rotated = signed.clone();
        rotated.rotate_left(shift);
        assert_verifies(&body_of(&rotated));
    }
}

#[test]
fn whitespace_in_the_body_does_not_matter() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    let compact = verifier()
        .verify_and_parse(body_of(&signed).as_bytes())
        .unwrap();

    let spaced = spaced_body_of(&signed);
    assert_verifies(&spaced);
    assert_eq!(
        verifier().verify_and_parse(spaced.as_bytes()).unwrap(),
        compact
    );

    // serde_json's own pretty printer.
    let map: serde_json::Map<String, Value> = serde_json::from_str(&body_of(&signed)).unwrap();
    let pretty = serde_json::to_string_pretty(&map).unwrap();
    assert!(pretty.contains('\n'));
    assert_verifies(&pretty);
    assert_eq!(
        verifier().verify_and_parse(pretty.as_bytes()).unwrap(),
        compact
    );
}

#[test]
fn pretty_printed_and_reordered_at_once() {
    let mut signed = signed_pairs(DOC_EXAMPLE, KEY);
    signed.reverse();
    assert_verifies(&spaced_body_of(&signed));
}

/// 0.1's free function `verify_and_parse(body, key)` is, in 0.2, a verifier made on the spot
/// from the key: it agrees with the shared one.
#[test]
fn free_function_and_verifier_agree() {
    let body = signed_example();
    assert_eq!(
        Verifier::new(api_key(KEY)).verify_and_parse(body.as_bytes()),
        verifier().verify_and_parse(body.as_bytes())
    );
    let forged = body.replace(r#""amount":"1.1""#, r#""amount":"1000""#);
    assert_ne!(forged, body);
    assert_eq!(
        Verifier::new(api_key(KEY)).verify_and_parse(forged.as_bytes()),
        Err(Error::SignatureMismatch)
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown fields are signed
// ---------------------------------------------------------------------------------------------

#[test]
fn adding_an_unknown_field_after_signing_is_a_mismatch() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    for (key, raw) in [
        ("fee", r#""0.5""#),
        ("memo", r#""123456""#),
        ("callback_url", r#""http://example.invalid/cb""#),
        ("x", "1"),
        ("flag", "true"),
    ] {
        assert_mismatch(&body_of(&with_field(&signed, key, raw)));
    }
}

#[test]
fn body_signed_with_unknown_fields_verifies_and_keeps_them() {
    let pairs = with_field(
        &with_field(
            &with_field(DOC_EXAMPLE, "memo", r#""memo-42""#),
            "fee",
            r#""0.5""#,
        ),
        "fee_included",
        "false",
    );
    let body = signed_body(&pairs, KEY);
    assert_verifies(&body);
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.memo.as_deref(), Some("memo-42"));
    assert_eq!(callback.extra.get("fee"), Some(&Value::from("0.5")));
    assert_eq!(
        callback.extra.get("fee_included"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        callback.extra.len(),
        2,
        "memo is a known field: {callback:?}"
    );

    // The same body without the unknown fields is no longer authentic.
    let signed = signed_pairs(&pairs, KEY);
    assert_mismatch(&body_of(&without_field(&signed, "fee")));
    assert_mismatch(&body_of(&without_field(&signed, "memo")));
    assert_mismatch(&body_of(&without_field(&signed, "fee_included")));
}

// ---------------------------------------------------------------------------------------------
// Removing or changing a signed field
// ---------------------------------------------------------------------------------------------

#[test]
fn removing_any_signed_field_after_signing_is_a_mismatch() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    for &(key, _) in DOC_EXAMPLE {
        assert_mismatch(&body_of(&without_field(&signed, key)));
    }
}

/// A different value of the same JSON type.
fn changed(raw: &str) -> String {
    if is_string_field(raw) {
        let text: String = serde_json::from_str(raw).unwrap();
        serde_json::to_string(&format!("{text}0")).unwrap()
    } else {
        let n: i64 = raw.parse().unwrap();
        (n + 1).to_string()
    }
}

#[test]
fn changing_any_signed_field_after_signing_is_a_mismatch() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    for &(key, raw) in DOC_EXAMPLE {
        let new = changed(raw);
        assert_ne!(new, raw);
        assert_mismatch(&body_of(&with_field(&signed, key, &new)));
    }
}

#[test]
fn changing_a_single_character_of_a_value_is_a_mismatch() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    for &(key, raw) in DOC_EXAMPLE {
        // Flip the case of the last letter, or change the last digit.
        let mut chars: Vec<char> = raw.chars().collect();
        let at = chars.iter().rposition(char::is_ascii_alphanumeric).unwrap();
        chars[at] = match chars[at] {
            '9' => '8',
            c if c.is_ascii_digit() => char::from(u8::try_from(c).unwrap() + 1),
            c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
            c => c.to_ascii_lowercase(),
        };
        let new: String = chars.into_iter().collect();
        assert_ne!(new, raw);
        assert_mismatch(&body_of(&with_field(&signed, key, &new)));
    }
}

#[test]
fn setting_any_signed_field_to_null_or_empty_after_signing_is_a_mismatch() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    for &(key, _) in DOC_EXAMPLE {
        for blank in ["null", r#""""#] {
            assert_mismatch(&body_of(&with_field(&signed, key, blank)));
        }
    }
}

#[test]
fn changing_the_sign_itself_is_a_mismatch() {
    let sign = oracle_sign(DOC_EXAMPLE, KEY);
    for at in [0, 15, 31] {
        let mut forged: Vec<u8> = sign.bytes().collect();
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        let body = body_of(&with_field(DOC_EXAMPLE, "sign", &format!("\"{forged}\"")));
        assert_mismatch(&body);
    }
}

#[test]
fn another_key_is_a_mismatch() {
    let body = signed_body(DOC_EXAMPLE, "fake-other-key-not-a-secret");
    assert_mismatch(&body);
    // A key that differs only by surrounding whitespace is another key.
    let body = oracle_signed_body(DOC_EXAMPLE, &format!(" {KEY}"));
    assert_mismatch(&body);
}

#[test]
fn renaming_a_field_after_signing_is_a_mismatch() {
    // "fee" + "0.5" and "fee0" + ".5" concatenate to the same text; that collision is Cregis's
    // design. But renaming a field keeps its value under another key: a different text.
    let signed = signed_pairs(&with_field(DOC_EXAMPLE, "fee", r#""0.5""#), KEY);
    let renamed: Vec<(String, String)> = signed
        .iter()
        .map(|(k, v)| {
            if k == "fee" {
                ("fee_".to_owned(), v.clone())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    assert_mismatch(&body_of(&renamed));
}

// ---------------------------------------------------------------------------------------------
// `null` and `""` are left out; `" "`, `0`, `false` are kept
// ---------------------------------------------------------------------------------------------

const OPTIONAL_OR_UNKNOWN: &[&str] = &[
    "remark",
    "txid",
    "block_height",
    "block_time",
    "memo",
    "fee",
    "callback_url",
];

#[test]
fn null_or_empty_field_added_after_signing_still_verifies() {
    let base: Vec<(String, String)> = OPTIONAL_OR_UNKNOWN
        .iter()
        .fold(owned(DOC_EXAMPLE), |pairs, key| without_field(&pairs, key));
    let signed = signed_pairs(&base, KEY);
    for key in OPTIONAL_OR_UNKNOWN {
        for blank in ["null", r#""""#] {
            let body = body_of(&with_field(&signed, key, blank));
            assert_verifies(&body);
        }
    }
    // All of them at once, mixed.
    let mut all = signed.clone();
    for (i, key) in OPTIONAL_OR_UNKNOWN.iter().enumerate() {
        all = with_field(&all, key, if i % 2 == 0 { "null" } else { r#""""# });
    }
    assert_verifies(&body_of(&all));
}

#[test]
fn null_or_empty_field_removed_after_signing_still_verifies() {
    for blank in ["null", r#""""#] {
        let pairs = with_field(&with_field(DOC_EXAMPLE, "remark", blank), "fee", blank);
        let signed = signed_pairs(&pairs, KEY);
        assert_verifies(&body_of(&signed));
        assert_verifies(&body_of(&without_field(&signed, "remark")));
        assert_verifies(&body_of(&without_field(&signed, "fee")));
        // And swapping null for "" changes nothing either.
        let other = if blank == "null" { r#""""# } else { "null" };
        assert_verifies(&body_of(&with_field(&signed, "remark", other)));
    }
}

#[test]
fn rejection_without_transaction_fields_verifies_with_blanks() {
    // A rejected payout (status 4): no transaction, so txid, block_height, block_time blank.
    let base = ["txid", "block_height", "block_time"]
        .iter()
        .fold(owned(&example_with_status("4")), |pairs, key| {
            without_field(&pairs, key)
        });
    let signed = signed_pairs(&base, KEY);
    let blanked = with_field(
        &with_field(
            &with_field(&signed, "txid", r#""""#),
            "block_height",
            "null",
        ),
        "block_time",
        r#""""#,
    );
    let callback = verifier()
        .verify_and_parse(body_of(&blanked).as_bytes())
        .unwrap();
    assert_eq!(callback.status, CallbackStatus::ApprovalRejected);
    assert_eq!(callback.txid, None);
    assert_eq!(callback.block_height, None);
    assert_eq!(callback.block_time, None);
}

#[test]
fn space_zero_and_false_are_signed() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    // Unknown fields: any JSON type is fine (the known `memo` must be a string, see below).
    for key in ["fee", "remark_2"] {
        for kept in [
            r#"" ""#,
            r#""  ""#,
            r#""\t""#,
            "0",
            "false",
            r#""null""#,
            r#""0""#,
        ] {
            // Added after signing: they count, so the signature breaks.
            assert_mismatch(&body_of(&with_field(&signed, key, kept)));
            // Signed with them: they verify.
            let pairs = with_field(DOC_EXAMPLE, key, kept);
            assert_verifies(&signed_body(&pairs, KEY));
        }
    }
}

#[test]
fn whitespace_only_memo_is_signed_and_kept() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    assert_mismatch(&body_of(&with_field(&signed, "memo", r#"" ""#)));
    let body = signed_body(&with_field(DOC_EXAMPLE, "memo", r#"" ""#), KEY);
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.memo.as_deref(), Some(" "));
}

#[test]
fn whitespace_only_remark_is_signed_and_kept() {
    // Replacing the example's remark by " " after signing breaks the signature; signing it
    // verifies, and the parsed remark is the space itself.
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    assert_mismatch(&body_of(&with_field(&signed, "remark", r#"" ""#)));
    let body = signed_body(&with_field(DOC_EXAMPLE, "remark", r#"" ""#), KEY);
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.remark.as_deref(), Some(" "));
}

#[test]
fn signature_over_blank_field_equals_signature_without_it() {
    // The sign of a body with remark "" is the sign of the body without remark: move it over.
    let without = oracle_sign(&without_field(DOC_EXAMPLE, "remark"), KEY);
    for blank in ["null", r#""""#] {
        let pairs = with_field(DOC_EXAMPLE, "remark", blank);
        let body = body_of(&with_field(&pairs, "sign", &format!("\"{without}\"")));
        assert_verifies(&body);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON escapes: strings are signed by their decoded value
// ---------------------------------------------------------------------------------------------

/// Signs `pairs` with `signed_raw` as the value of `key`, then sends `sent_raw` instead.
#[track_caller]
fn swap_after_signing(key: &str, signed_raw: &str, sent_raw: &str) -> String {
    let signed = signed_pairs(&with_field(DOC_EXAMPLE, key, signed_raw), KEY);
    body_of(&with_field(&signed, key, sent_raw))
}

#[test]
fn unicode_escape_and_literal_sign_the_same() {
    for (a, b) in [
        (r#""café""#, r#""caf\u00e9""#),
        (r#""café""#, r#""caf\u00E9""#),
        (r#""😀 ok""#, r#""\ud83d\ude00 ok""#),
        (r#""😀 ok""#, r#""\uD83D\uDE00 ok""#),
        (r#""TRX""#, r#""\u0054\u0052\u0058""#),
        (r#""汇款""#, r#""\u6c47\u6b3e""#),
    ] {
        assert_verifies(&swap_after_signing("remark", a, b));
        assert_verifies(&swap_after_signing("remark", b, a));
        assert_verifies(&swap_after_signing("fee", a, b));
    }
}

#[test]
fn escaped_slash_and_slash_sign_the_same() {
    let plain = r#""http://192.168.2.29:9099/callback""#;
    let escaped = r#""http:\/\/192.168.2.29:9099\/callback""#;
    assert_verifies(&swap_after_signing("callback_url", plain, escaped));
    assert_verifies(&swap_after_signing("callback_url", escaped, plain));
}

#[test]
fn short_escapes_are_decoded() {
    // Each pair is the same decoded text written two ways (raw control characters are not
    // legal inside a JSON string, so both sides use escapes where one is needed).
    for (a, b) in [
        (r#""a\bb\fc""#, r#""a\u0008b\u000Cc""#),
        (r#""line\nbreak""#, r#""line\u000abreak""#),
        (r#""tab\there""#, r#""tab\u0009here""#),
        (r#""cr\r""#, r#""cr\u000D""#),
        (r#""say \"hi\"""#, r#""say \u0022hi\u0022""#),
        (r#""back\\slash""#, r#""back\u005cslash""#),
        (r#""a/b""#, r#""a\u002fb""#),
    ] {
        assert_verifies(&swap_after_signing("remark", a, b));
        assert_verifies(&swap_after_signing("remark", b, a));
    }
}

#[test]
fn escaped_value_differing_after_decoding_is_a_mismatch() {
    assert_mismatch(&swap_after_signing("remark", r#""café""#, r#""caf\u00e8""#));
    assert_mismatch(&swap_after_signing("remark", r#""a/b""#, r#""a\\/b""#));
    assert_mismatch(&swap_after_signing("remark", r#""a\nb""#, r#""a\\nb""#));
}

#[test]
fn escaped_keys_are_decoded() {
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    let expected = verifier()
        .verify_and_parse(body_of(&signed).as_bytes())
        .unwrap();
    // `body_of` writes keys with serde_json, so splice escaped keys into the text.
    let body = body_of(&signed)
        .replacen(r#""pid":"#, r#""p\u0069d":"#, 1)
        .replacen(r#""third_party_id":"#, r#""third\u005fparty\u005Fid":"#, 1)
        .replacen(r#""sign":"#, r#""\u0073ign":"#, 1);
    assert!(body.contains(r#""p\u0069d""#));
    assert!(body.contains(r#""\u0073ign""#));
    assert_verifies(&body);
    assert_eq!(
        verifier().verify_and_parse(body.as_bytes()).unwrap(),
        expected
    );
}

#[test]
fn escaped_unknown_key_is_signed_decoded() {
    let signed = signed_pairs(&with_field(DOC_EXAMPLE, "fée", r#""1""#), KEY);
    let body = body_of(&signed).replacen(r#""fée":"#, r#""f\u00e9e":"#, 1);
    assert!(body.contains(r#""f\u00e9e""#));
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.extra.get("fée"), Some(&Value::from("1")));
}

// ---------------------------------------------------------------------------------------------
// Numbers: signed by their exact text
// ---------------------------------------------------------------------------------------------

#[test]
fn big_integers_are_signed_by_their_exact_text() {
    // 9007199254740993 = 2^53 + 1 is not representable as an f64.
    let pairs = with_field(
        &with_field(DOC_EXAMPLE, "cid", "9007199254740993"),
        "snowflake",
        "1382528827416576123",
    );
    let body = signed_body(&pairs, KEY);
    assert_verifies(&body);
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.cid, 9007199254740993);
    assert_eq!(
        callback.extra.get("snowflake"),
        Some(&Value::from(1382528827416576123u64))
    );

    // The float neighbours sign differently.
    let signed = signed_pairs(&pairs, KEY);
    assert_mismatch(&body_of(&with_field(&signed, "cid", "9007199254740992")));
    assert_mismatch(&body_of(&with_field(
        &signed,
        "cid",
        "9.007199254740993e15",
    )));
}

#[test]
fn extreme_integers_verify() {
    for (key, raw) in [
        ("pid", "9223372036854775807"),
        ("cid", "-9223372036854775808"),
        ("big", "18446744073709551615"),
        ("bigger", "123456789012345678901234567890"),
        ("negative", "-123456789012345678901234567890"),
    ] {
        let body = signed_body(&with_field(DOC_EXAMPLE, key, raw), KEY);
        assert_eq!(
            verifier().verify(body.as_bytes()),
            Ok(MatchedKey::Current),
            "{key}: {raw}"
        );
    }
}

#[test]
fn fraction_is_signed_as_written() {
    // Signed as "1.10": verifies as 1.10, not as 1.1.
    let pairs = with_field(DOC_EXAMPLE, "rate", "1.10");
    let body = signed_body(&pairs, KEY);
    assert_verifies(&body);
    let signed = signed_pairs(&pairs, KEY);
    assert_mismatch(&body_of(&with_field(&signed, "rate", "1.1")));
    assert_mismatch(&body_of(&with_field(&signed, "rate", "1.100")));
    assert_mismatch(&body_of(&with_field(&signed, "rate", r#""1.1""#)));
    // ... and the string "1.10" signs like the number 1.10.
    assert_verifies(&body_of(&with_field(&signed, "rate", r#""1.10""#)));
}

#[test]
fn number_spellings_are_distinct() {
    for (signed_raw, sent_raw) in [
        ("1000", "1e3"),
        ("1e3", "1E3"),
        ("1e3", "1e+3"),
        ("1", "1.0"),
        ("0", "-0"),
        ("0.1", "1e-1"),
        ("100", "1.00e2"),
    ] {
        assert_verifies(&swap_after_signing("fee", signed_raw, signed_raw));
        assert_mismatch(&swap_after_signing("fee", signed_raw, sent_raw));
    }
}

#[test]
fn long_fraction_is_signed_as_written() {
    // More digits than any float holds.
    let raw = "0.1000000000000000055511151231257827021181583404541015625000001";
    assert_verifies(&signed_body(&with_field(DOC_EXAMPLE, "rate", raw), KEY));
    assert_mismatch(&swap_after_signing("rate", raw, "0.1"));
}

#[test]
fn number_and_its_string_sign_the_same() {
    // Signed as numbers, sent as strings (and back): the signing text is the same.
    let signed = signed_pairs(DOC_EXAMPLE, KEY);
    let mut as_strings = signed.clone();
    for (key, raw) in &mut as_strings {
        if key != "sign" && !is_string_field(raw) {
            *raw = format!("\"{raw}\"");
        }
    }
    assert_ne!(as_strings, signed);
    assert_verifies(&body_of(&as_strings));
}

// ---------------------------------------------------------------------------------------------
// The sign's hex case; integer fields as decimal strings
// ---------------------------------------------------------------------------------------------

#[test]
fn hex_case_of_sign_does_not_matter() {
    let sign = oracle_sign(DOC_EXAMPLE, KEY);
    let upper = sign.to_ascii_uppercase();
    assert_ne!(upper, sign, "the sign has at least one letter");
    let mixed: String = sign
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    for variant in [&sign, &upper, &mixed] {
        let body = body_of(&with_field(DOC_EXAMPLE, "sign", &format!("\"{variant}\"")));
        assert_verifies(&body);
        let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
        assert_eq!(&callback.sign, variant, "the sign is kept as received");
    }
}

#[test]
fn integer_fields_as_decimal_strings_verify_and_parse() {
    let as_numbers = verifier()
        .verify_and_parse(signed_example().as_bytes())
        .unwrap();
    let mut pairs = owned(DOC_EXAMPLE);
    let mut quoted = Vec::new();
    for (key, raw) in &mut pairs {
        if !is_string_field(raw) {
            *raw = format!("\"{raw}\"");
            quoted.push(key.clone());
        }
    }
    assert_eq!(quoted, ["pid", "cid", "status", "block_time", "timestamp"]);
    let body = signed_body(&pairs, KEY);
    assert_verifies(&body);
    let as_strings = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(as_strings.pid, 1382528827416576);
    assert_eq!(as_strings.cid, 1391751691788288);
    assert_eq!(as_strings.status, CallbackStatus::PendingApproval);
    assert_eq!(as_strings.block_time, Some(1686814482000));
    assert_eq!(as_strings.timestamp, 1687850657960);
    assert_eq!(as_strings, as_numbers);
}

#[test]
fn status_as_string_parses() {
    let body = signed_body(&example_with_status(r#""6""#), KEY);
    let callback = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
}

#[test]
fn doc_example_raw_values_are_what_the_tests_assume() {
    // Guards the helpers above: the example has both string and number fields.
    assert!(DOC_EXAMPLE.iter().any(|(_, raw)| is_string_field(raw)));
    assert_eq!(
        DOC_EXAMPLE
            .iter()
            .filter(|(_, raw)| !is_string_field(raw))
            .map(|(k, _)| *k)
            .collect::<Vec<_>>(),
        ["pid", "cid", "status", "block_time", "timestamp"]
    );
}
