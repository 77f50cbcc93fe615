//! Property tests: sign/verify round trips against the independent oracle in `tests/common`,
//! tamper detection, rendering independence, and "never panics" on arbitrary bytes.

mod common;

use std::fmt::Write as _;

use common::{
    KEY, api_key, block_on, body_of, key as test_key, oracle_sign, spaced_body_of, verifier,
};
use cregis_payout_callback::approval::Decision;
use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder, WithdrawalBuilder};
use cregis_payout_callback::{
    ApprovalRequest, Error, PayoutCallback, Verifier, WithdrawalCallback,
    signature::{sign, verify_sign},
    verifier::{DEFAULT_MAX_BODY_BYTES, MatchedKey},
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

/// A flat JSON value of the kinds Cregis sends.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Null,
}

impl Val {
    /// Its compact JSON text.
    fn raw(&self) -> String {
        match self {
            Val::Str(s) => serde_json::to_string(s).unwrap(),
            Val::Int(n) => n.to_string(),
            Val::Uint(n) => n.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Null => "null".to_owned(),
        }
    }

    fn value(&self) -> Value {
        match self {
            Val::Str(s) => Value::from(s.as_str()),
            Val::Int(n) => Value::from(*n),
            Val::Uint(n) => Value::from(*n),
            Val::Bool(b) => Value::from(*b),
            Val::Null => Value::Null,
        }
    }

    /// Whether it takes part in the signature (everything but `null` and `""`).
    fn is_signed(&self) -> bool {
        !matches!(self, Val::Null) && *self != Val::Str(String::new())
    }

    /// Another value whose signed text differs.
    fn changed(&self) -> Val {
        match self {
            Val::Str(s) => Val::Str(format!("{s}x")),
            Val::Int(n) => Val::Int(n.wrapping_add(1)),
            Val::Uint(n) => Val::Uint(n.wrapping_add(1)),
            Val::Bool(b) => Val::Bool(!b),
            Val::Null => Val::Str("x".to_owned()),
        }
    }
}

/// A JSON string literal with every character outside printable ASCII, and `"`, `\` and `/`,
/// written as an escape (`\uXXXX`, surrogate pairs above the BMP, `\/` for the slash).
fn escape_all(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '/' => out.push_str("\\/"),
            ' '..='~' if c != '"' && c != '\\' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04X}").unwrap();
                }
            }
        }
    }
    out.push('"');
    out
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<String>().prop_map(Val::Str),
        "[ -~]{0,12}".prop_map(Val::Str),
        prop::sample::select(vec![
            "",
            " ",
            "  ",
            "\t",
            "\"",
            "\\",
            "/",
            "é",
            "e\u{301}",
            "\u{2028}",
            "😀",
            "\u{0}",
            "\n\r\u{1f}\u{7f}",
            "null",
            "true",
            "0",
            "1.10",
            "汇款",
        ])
        .prop_map(|s| Val::Str(s.to_owned())),
        any::<i64>().prop_map(Val::Int),
        any::<u64>().prop_map(Val::Uint),
        any::<bool>().prop_map(Val::Bool),
        Just(Val::Null),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        any::<String>(),
        prop::sample::select(vec![
            "", "pid", "cid", "status", "memo", "Sign", "SIGN", "sign_", "a", "A", "é", "\u{0}",
            "\"", "p/d",
        ])
        .prop_map(str::to_owned),
    ]
    .prop_filter("the signature's own key", |k| k != "sign")
}

/// A flat object: distinct keys (never `sign`), in random order.
fn params() -> impl Strategy<Value = Vec<(String, Val)>> {
    prop::collection::btree_map(key(), val(), 0..12)
        .prop_map(|map| map.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

fn raw_pairs(params: &[(String, Val)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.clone(), v.raw())).collect()
}

fn to_map(params: &[(String, Val)]) -> Map<String, Value> {
    params.iter().map(|(k, v)| (k.clone(), v.value())).collect()
}

/// The pairs followed by their correct `sign`.
fn signed(params: &[(String, Val)]) -> Vec<(String, String)> {
    let mut pairs = raw_pairs(params);
    let sign = oracle_sign(&pairs, KEY);
    pairs.push(("sign".to_owned(), format!("\"{sign}\"")));
    pairs
}

/// `signed` with the `sign` of the original params kept, and the params edited after.
fn sign_then_edit(
    params: &[(String, Val)],
    edit: impl FnOnce(&mut Vec<(String, Val)>),
) -> Vec<(String, String)> {
    let sign = oracle_sign(&raw_pairs(params), KEY);
    let mut edited = params.to_vec();
    edit(&mut edited);
    let mut pairs = raw_pairs(&edited);
    pairs.push(("sign".to_owned(), format!("\"{sign}\"")));
    pairs
}

fn signed_indexes(params: &[(String, Val)]) -> Vec<usize> {
    (0..params.len())
        .filter(|&i| params[i].1.is_signed())
        .collect()
}

fn verify(body: &str) -> Result<MatchedKey, Error> {
    verifier().verify(body.as_bytes())
}

/// Checks the invariants that hold for any input; panics in the crate fail the test too.
fn check_any_input(body: &[u8]) -> Result<(), TestCaseError> {
    let verifier = verifier();
    let authentic = verifier.verify(body);
    let parsed = verifier.verify_and_parse(body);
    if let Ok(matched) = authentic {
        // A verifier with one key can only match that key.
        prop_assert_eq!(matched, MatchedKey::Current);
    }
    match (&authentic, &parsed) {
        (Err(e), Err(p)) => prop_assert_eq!(e, p),
        (Err(e), Ok(_)) => prop_assert!(false, "verify failed ({}) but parse succeeded", e),
        (Ok(_), Err(p)) => prop_assert!(p.is_contract(), "authentic body failed with {:?}", p),
        (Ok(_), Ok(_)) => {}
    }
    if body.len() <= DEFAULT_MAX_BODY_BYTES {
        // A verifier made afresh from the key text agrees.
        prop_assert_eq!(&Verifier::new(api_key(KEY)).verify_and_parse(body), &parsed);
    }
    let reply = verifier.process(body, &|_: &PayoutCallback| Ok::<(), String>(()));
    match &parsed {
        Ok(_) => prop_assert!(reply.is_ack()),
        Err(e) => {
            prop_assert_eq!(reply.status_code(), e.http_status());
            prop_assert_eq!(reply.error(), Some(e));
            prop_assert_ne!(reply.body(), "success");
        }
    }
    check_other_kinds(body, &authentic)
}

/// The invariants for the sub-address payout and approval verifiers: each agrees with
/// `verify` on authenticity, refuses an authentic body only as a contract error, acknowledges
/// only what it parsed, and an approval is `ok` only when it parsed and the handler approved.
fn check_other_kinds(
    body: &[u8],
    authentic: &Result<MatchedKey, Error>,
) -> Result<(), TestCaseError> {
    let payouts = verifier();
    let withdrawals = payouts.clone().for_kind::<WithdrawalCallback>();
    let approvals = payouts.for_kind::<ApprovalRequest>();
    let withdrawal = withdrawals.verify_and_parse(body);
    let approval = approvals.verify_and_parse(body);
    for refused in [withdrawal.as_ref().err(), approval.as_ref().err()] {
        match (authentic, refused) {
            (Err(e), Some(p)) => prop_assert_eq!(e, p),
            (Err(e), None) => prop_assert!(false, "verify failed ({}) but parse succeeded", e),
            (Ok(_), Some(p)) => prop_assert!(p.is_contract(), "authentic body failed with {:?}", p),
            (Ok(_), None) => {}
        }
    }
    // No body is read as both: an approval has no status, a withdrawal needs one.
    prop_assert!(withdrawal.is_err() || approval.is_err());
    let reply = withdrawals.process(body, &|_: &WithdrawalCallback| Ok::<(), String>(()));
    prop_assert_eq!(reply.is_ack(), withdrawal.is_ok());
    let approve = |_: &ApprovalRequest| async { Ok::<_, String>(Decision::Approve) };
    let reply = block_on(approvals.decide(body, &approve));
    match &approval {
        Ok(_) => prop_assert_eq!((reply.status_code(), reply.body()), (200, "ok")),
        Err(e) => {
            prop_assert_eq!(
                (reply.status_code(), reply.body()),
                (e.http_status(), "deny")
            );
            prop_assert!(!reply.is_approved());
        }
    }
    Ok(())
}

/// A signed body of one of the three kinds, as the test kit builds it, with a `memo` and an
/// undocumented `network_fee` whose raw JSON is `fee`.
fn body_of_kind(kind: u8, fee: &str) -> String {
    let key = test_key();
    match kind % 3 {
        0 => CallbackBuilder::new()
            .memo("104917")
            .raw("network_fee", fee)
            .body(&key),
        1 => WithdrawalBuilder::new()
            .memo("104917")
            .raw("network_fee", fee)
            .body(&key),
        _ => ApprovalBuilder::new()
            .memo("104917")
            .raw("network_fee", fee)
            .body(&key),
    }
    .unwrap()
}

proptest! {
    #[test]
    fn oracle_signed_body_verifies(params in params()) {
        let pairs = signed(&params);
        prop_assert_eq!(verify(&body_of(&pairs)), Ok(MatchedKey::Current));
    }

    #[test]
    fn sign_agrees_with_the_oracle(params in params(), stray_sign in val()) {
        let mut map = to_map(&params);
        let expected = oracle_sign(&raw_pairs(&params), KEY);
        prop_assert_eq!(sign(&map, &api_key(KEY)), Ok(expected.clone()));
        // Any `sign` already in the map is ignored.
        map.insert("sign".to_owned(), stray_sign.value());
        prop_assert_eq!(sign(&map, &api_key(KEY)), Ok(expected));
    }

    #[test]
    fn sign_then_verify_sign_round_trips(params in params()) {
        let mut map = to_map(&params);
        let signature = sign(&map, &api_key(KEY)).unwrap();
        prop_assert_eq!(signature.len(), 32);
        prop_assert!(signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        map.insert("sign".to_owned(), Value::from(signature.to_ascii_uppercase()));
        prop_assert_eq!(verify_sign(&map, &api_key(KEY)), Ok(()));
        prop_assert_eq!(verify_sign(&map, &api_key("fake-other-key")), Err(Error::SignatureMismatch));
    }

    #[test]
    fn changing_a_signed_value_is_a_mismatch(params in params(), pick in any::<Index>()) {
        let candidates: Vec<usize> = (0..params.len()).collect();
        prop_assume!(!candidates.is_empty());
        let at = *pick.get(&candidates);
        let pairs = sign_then_edit(&params, |p| p[at].1 = p[at].1.changed());
        // Changing null into a value adds a signed field: also a mismatch.
        prop_assert_eq!(verify(&body_of(&pairs)), Err(Error::SignatureMismatch));
    }

    #[test]
    fn removing_a_signed_field_is_a_mismatch(params in params(), pick in any::<Index>()) {
        let candidates = signed_indexes(&params);
        prop_assume!(!candidates.is_empty());
        let at = *pick.get(&candidates);
        let pairs = sign_then_edit(&params, |p| { p.remove(at); });
        prop_assert_eq!(verify(&body_of(&pairs)), Err(Error::SignatureMismatch));
    }

    #[test]
    fn adding_a_signed_field_is_a_mismatch(params in params(), new_key in key(), new_val in val()) {
        prop_assume!(params.iter().all(|(k, _)| *k != new_key));
        prop_assume!(new_val.is_signed());
        let pairs = sign_then_edit(&params, |p| p.push((new_key, new_val)));
        prop_assert_eq!(verify(&body_of(&pairs)), Err(Error::SignatureMismatch));
    }

    #[test]
    fn blank_fields_can_be_added_or_removed(params in params(), new_key in key(), blank in any::<bool>()) {
        prop_assume!(params.iter().all(|(k, _)| *k != new_key));
        let blank = if blank { Val::Null } else { Val::Str(String::new()) };
        let added = sign_then_edit(&params, |p| p.push((new_key, blank)));
        prop_assert_eq!(verify(&body_of(&added)), Ok(MatchedKey::Current));
        let removed = sign_then_edit(&params, |p| p.retain(|(_, v)| v.is_signed()));
        prop_assert_eq!(verify(&body_of(&removed)), Ok(MatchedKey::Current));
    }

    #[test]
    fn rendering_does_not_change_the_outcome(
        params in params(),
        tamper in any::<bool>(),
        pick in any::<Index>(),
        order in any::<u64>(),
    ) {
        let pairs = if tamper && !params.is_empty() {
            let at = pick.index(params.len());
            sign_then_edit(&params, |p| p[at].1 = p[at].1.changed())
        } else {
            signed(&params)
        };
        let outcome = verify(&body_of(&pairs));

        // Another key order (a rotation and a reversal, chosen by `order`).
        let mut reordered = pairs.clone();
        let len = reordered.len();
        reordered.rotate_left(usize::try_from(order % u64::try_from(len).unwrap()).unwrap());
        if order % 2 == 1 {
            reordered.reverse();
        }
        prop_assert_eq!(verify(&body_of(&reordered)), outcome.clone());
        // Unusual whitespace.
        prop_assert_eq!(verify(&spaced_body_of(&reordered)), outcome.clone());
        // serde_json's pretty printer.
        let map: Map<String, Value> = serde_json::from_str(&body_of(&pairs)).unwrap();
        prop_assert_eq!(verify(&serde_json::to_string_pretty(&map).unwrap()), outcome.clone());
        // Every string escaped, keys included (the `sign` value too: it is a string).
        let escaped: Vec<String> = pairs
            .iter()
            .map(|(k, raw)| {
                let value = match serde_json::from_str::<Value>(raw).unwrap() {
                    Value::String(s) => escape_all(&s),
                    _ => raw.clone(),
                };
                format!("{}:{}", escape_all(k), value)
            })
            .collect();
        let escaped = format!("{{{}}}", escaped.join(","));
        prop_assert_eq!(verify(&escaped), outcome);
    }

    #[test]
    fn verify_sign_on_the_map_agrees_with_verify_on_the_bytes(
        params in params(),
        tamper in 0u8..4,
        pick in any::<Index>(),
        extra in val(),
    ) {
        let pairs = match tamper {
            0 => signed(&params),
            1 if !params.is_empty() => {
                let at = pick.index(params.len());
                sign_then_edit(&params, |p| p[at].1 = p[at].1.changed())
            }
            2 => sign_then_edit(&params, |p| {
                if p.iter().all(|(k, _)| k != "extra_field") {
                    p.push(("extra_field".to_owned(), extra));
                }
            }),
            _ => {
                let mut pairs = raw_pairs(&params);
                pairs.push(("sign".to_owned(), "\"0123456789abcdef0123456789ABCDEF\"".to_owned()));
                pairs
            }
        };
        let body = body_of(&pairs);
        let map: Map<String, Value> = serde_json::from_str(&body).unwrap();
        // `verify_sign` says only whether it matched; with one key, a match is the current key.
        prop_assert_eq!(
            verify_sign(&map, &api_key(KEY)).map(|()| MatchedKey::Current),
            verify(&body)
        );
    }

    #[test]
    fn escaped_rendering_of_a_value_signs_like_the_plain_one(s in any::<String>()) {
        let plain = vec![("v".to_owned(), serde_json::to_string(&s).unwrap())];
        let escaped = vec![("v".to_owned(), escape_all(&s))];
        prop_assert_eq!(oracle_sign(&plain, KEY), oracle_sign(&escaped, KEY));
        let mut body = escaped.clone();
        body.push(("sign".to_owned(), format!("\"{}\"", oracle_sign(&plain, KEY))));
        prop_assert_eq!(verify(&body_of(&body)), Ok(MatchedKey::Current));
    }

    #[test]
    fn single_byte_tamper_is_refused_or_harmless(
        params in params(),
        pick in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let body = body_of(&signed(&params)).into_bytes();
        let at = pick.index(body.len());
        prop_assume!(body[at] != byte);
        let mut tampered = body.clone();
        tampered[at] = byte;
        if verifier().verify(&tampered).is_ok() {
            // Only a change that leaves every signed value alone may pass: the case of a hex
            // digit (in `sign`, or in a `\u` escape), one whitespace byte for another, or
            // anything in a field that is not signed (`null` or `""`).
            let lower = |bytes: &[u8]| -> Map<String, Value> {
                let mut map: Map<String, Value> = serde_json::from_slice(bytes).unwrap();
                map.retain(|_, v| !v.is_null() && v.as_str() != Some(""));
                let sign = map["sign"].as_str().unwrap().to_ascii_lowercase();
                map.insert("sign".to_owned(), Value::from(sign));
                map
            };
            prop_assert_eq!(lower(&tampered), lower(&body));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(body in any::<Vec<u8>>()) {
        check_any_input(&body)?;
    }

    #[test]
    fn never_panics_on_arbitrary_strings(body in any::<String>()) {
        check_any_input(body.as_bytes())?;
    }

    #[test]
    fn never_panics_on_json_like_text(body in r#"[{}\[\]":,0-9a-fnulltrse.\\ +-]{0,64}"#) {
        check_any_input(body.as_bytes())?;
        check_any_input(format!("{{{body}}}").as_bytes())?;
        check_any_input(format!(r#"{{"pid":{body}}}"#).as_bytes())?;
    }

    #[test]
    fn never_panics_on_mutated_callbacks(
        kind in 0u8..3,
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut body = body_of_kind(kind, "\"0.35\"").into_bytes();
        for (pick, byte, kind) in edits {
            let at = pick.index(body.len() + 1);
            match kind {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ if at < body.len() => { body.remove(at); }
                _ => body.push(byte),
            }
        }
        check_any_input(&body)?;
    }

    #[test]
    fn never_panics_on_arbitrary_field_values(params in params(), status in any::<i64>()) {
        // Authentic bodies with arbitrary documented-field values: parse must not panic.
        let mut params = params;
        params.retain(|(k, _)| !["status"].contains(&k.as_str()));
        params.push(("status".to_owned(), Val::Int(status)));
        let body = body_of(&signed(&params));
        check_any_input(body.as_bytes())?;
        prop_assert_eq!(verify(&body), Ok(MatchedKey::Current));
    }

    #[test]
    fn each_kind_as_built_is_read_by_its_own_verifier_alone(kind in 0u8..3, fee in val()) {
        // Any value of a field Cregis may add one day, signed with the rest.
        let body = body_of_kind(kind, &fee.raw());
        check_any_input(body.as_bytes())?;
        let payouts = verifier();
        let read = [
            payouts.verify_and_parse(body.as_bytes()).is_ok(),
            payouts.clone().for_kind::<WithdrawalCallback>().verify_and_parse(body.as_bytes()).is_ok(),
            payouts.for_kind::<ApprovalRequest>().verify_and_parse(body.as_bytes()).is_ok(),
        ];
        let mut expected = [false; 3];
        expected[usize::from(kind)] = true;
        prop_assert_eq!(read, expected);
    }
}
