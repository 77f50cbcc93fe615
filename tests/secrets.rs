//! No secret leaks: the API key and the expected signature never appear in an error, a reply
//! or a `Debug` output.

mod common;

use common::{
    DOC_EXAMPLE, KEY, body_of, example_with_status, oracle_sign, owned, signed_body, signed_pairs,
    with_field, without_field,
};
use cregis_payout_callback::{
    ApiKey, Error, PayoutCallback, Reply, Verifier,
    signature::{sign_body, verify_sign},
};
use serde_json::{Map, Value};

/// Another obviously fake key, distinctive enough to find in any text.
const SECRET: &str = "fake-secret-key-7f3e9a1c-not-real";

/// Fails if `text` contains any of `secrets`, in either hex case.
#[track_caller]
fn assert_clean(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        for form in [secret.to_string(), secret.to_ascii_uppercase()] {
            assert!(!text.contains(&form), "{what} leaks {form:?}: {text}");
        }
    }
}

/// Bad bodies, each with the signature the crate would expect for it (`None` when the body
/// has no well-defined expected signature, e.g. not JSON).
fn bad_bodies() -> Vec<(String, Option<String>)> {
    let expected = |pairs: &[(String, String)]| Some(oracle_sign(pairs, SECRET));
    let example = owned(DOC_EXAMPLE);
    let forged_sign = |pairs: &[(String, String)]| {
        let sign = oracle_sign(pairs, "fake-attacker-key");
        body_of(&with_field(pairs, "sign", &format!("\"{sign}\"")))
    };
    let tampered = {
        let signed = signed_pairs(&example, SECRET);
        with_field(&signed, "amount", r#""1000""#)
    };
    let tampered_expected = expected(&without_field(&tampered, "sign"));
    vec![
        // Not authentic: the crate computed an expected signature and must keep it to itself.
        (forged_sign(&example), expected(&example)),
        (body_of(&tampered), tampered_expected),
        (
            body_of(&with_field(
                &example,
                "sign",
                r#""0123456789abcdef0123456789abcdef""#,
            )),
            expected(&example),
        ),
        (
            body_of(&with_field(
                &example,
                "sign",
                r#""0123456789ABCDEF0123456789ABCDEF""#,
            )),
            expected(&example),
        ),
        (body_of(&example), expected(&example)),
        (
            body_of(&with_field(&example, "sign", "null")),
            expected(&example),
        ),
        (
            body_of(&with_field(&example, "sign", r#""short""#)),
            expected(&example),
        ),
        (
            body_of(&with_field(&example, "sign", "12")),
            expected(&example),
        ),
        // Signed with a key that is a prefix or a variant of the secret.
        (signed_body(&example, &SECRET[..10]), expected(&example)),
        (
            signed_body(&example, &SECRET.to_ascii_uppercase()),
            expected(&example),
        ),
        // Authentic but not as documented: the received sign IS the expected one.
        (
            signed_body(&example_with_status("8"), SECRET),
            expected(
                &example_with_status("8")
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            signed_body(&with_field(&example, "pid", r#""abc""#), SECRET),
            expected(&with_field(&example, "pid", r#""abc""#)),
        ),
        (
            signed_body(&without_field(&example, "nonce"), SECRET),
            expected(&without_field(&example, "nonce")),
        ),
        // Malformed bodies that carry the secret text themselves are echoed at most as keys;
        // these carry it as a value.
        (format!(r#"{{"pid":1,"pid":"{SECRET}"}}"#), None),
        (format!(r#"{{"fee":["{SECRET}"]}}"#), None),
        (format!(r#"{{"fee":"{SECRET}"}} trailing"#), None),
        (format!(r#"["{SECRET}"]"#), None),
        ("not json".to_owned(), None),
        (String::new(), None),
    ]
}

#[test]
fn errors_and_replies_never_contain_the_key_or_the_expected_sign() {
    let verifier = Verifier::new(common::api_key(SECRET));
    let handler = |_: &PayoutCallback| -> Result<(), String> { Ok(()) };
    for (body, expected) in bad_bodies() {
        let mut secrets = vec![SECRET];
        if let Some(expected) = &expected {
            // The received sign of a contract failure is the expected one; it is not echoed
            // either (it sits in the body, which the crate never repeats).
            secrets.push(expected);
        }
        let err = verifier.verify_and_parse(body.as_bytes()).expect_err(&body);
        assert_clean(&err.to_string(), &secrets, "Display");
        assert_clean(&format!("{err:?}"), &secrets, "Debug");
        assert_clean(&format!("{err:#?}"), &secrets, "Debug (alternate)");

        if let Err(err) = verifier.verify(body.as_bytes()) {
            assert_clean(&err.to_string(), &secrets, "verify Display");
            assert_clean(&format!("{err:?}"), &secrets, "verify Debug");
        }
        if let Err(err) = sign_body(body.as_bytes(), &common::api_key(SECRET)) {
            assert_clean(&err.to_string(), &secrets, "sign_body Display");
            assert_clean(&format!("{err:?}"), &secrets, "sign_body Debug");
        }

        let reply = verifier.process(body.as_bytes(), &handler);
        assert!(!reply.is_ack(), "{body}");
        assert_clean(reply.body(), &secrets, "Reply body");
        assert_clean(&format!("{reply:?}"), &secrets, "Reply Debug");
        if let Some(error) = reply.error() {
            assert_clean(&error.to_string(), &secrets, "Reply error");
        }
    }
}

#[test]
fn the_expected_sign_is_really_what_the_crate_expects() {
    // Guards the test above: the oracle's expected sign does verify with SECRET.
    for (body, expected) in bad_bodies() {
        let Some(expected) = expected else { continue };
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(&body) else {
            panic!("{body}");
        };
        map.insert("sign".to_owned(), Value::String(expected));
        assert_eq!(
            verify_sign(&map, &common::api_key(SECRET)),
            Ok(()),
            "{body}"
        );
    }
}

#[test]
fn map_api_errors_never_contain_the_key_or_the_expected_sign() {
    let mut map: Map<String, Value> =
        serde_json::from_str(&signed_body(DOC_EXAMPLE, "fake-attacker-key")).unwrap();
    let expected = oracle_sign(DOC_EXAMPLE, SECRET);
    let err = verify_sign(&map, &common::api_key(SECRET)).unwrap_err();
    assert_eq!(err, Error::SignatureMismatch);
    assert_clean(
        &format!("{err} {err:?}"),
        &[SECRET, &expected],
        "verify_sign",
    );

    map.insert("sign".to_owned(), Value::from("zz"));
    let err = verify_sign(&map, &common::api_key(SECRET)).unwrap_err();
    assert_eq!(err, Error::MalformedSign);
    assert_clean(
        &format!("{err} {err:?}"),
        &[SECRET, &expected],
        "verify_sign",
    );
}

#[test]
fn handler_failure_details_stay_out_of_the_reply_body() {
    let verifier = Verifier::new(common::api_key(SECRET));
    let body = signed_body(DOC_EXAMPLE, SECRET);
    // A careless host puts the key in its own error text.
    let reply = verifier.process(body.as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(format!("config {SECRET} failed"))
    });
    assert_eq!(reply.status_code(), 500);
    assert_eq!(reply.body(), "internal error");
    assert_clean(reply.body(), &[SECRET], "Reply body");
}

#[test]
fn verifier_debug_redacts_the_key() {
    for key in [SECRET, KEY, "fake-k"] {
        let verifier = Verifier::new(common::api_key(key));
        for text in [
            format!("{verifier:?}"),
            format!("{verifier:#?}"),
            format!("{:?}", verifier.clone()),
            format!(
                "{:?}",
                Verifier::builder(common::api_key(key))
                    .also_accept(common::api_key(SECRET))
                    .max_body_bytes(10)
            ),
            format!("{:?}", common::api_key(key)),
        ] {
            assert!(text.contains("[redacted]"), "{text}");
            assert!(!text.contains(key), "{text}");
        }
    }
}

#[test]
fn reply_debug_of_every_kind_is_clean() {
    let verifier = Verifier::new(common::api_key(SECRET));
    let good = signed_body(DOC_EXAMPLE, SECRET);
    let ack = verifier.process(good.as_bytes(), &|_: &PayoutCallback| Ok::<(), String>(()));
    assert!(ack.is_ack());
    assert_clean(&format!("{ack:?}"), &[SECRET], "ack Debug");
    // A key refused for its padding is not repeated by the error.
    let padded = ApiKey::new(format!("{SECRET}\n")).unwrap_err();
    assert_clean(&format!("{padded} {padded:?}"), &[SECRET], "key error");
    assert_clean(
        &format!("{:?}", Reply::from(Error::HandlerCancelled)),
        &[SECRET],
        "cancelled reply",
    );
}
