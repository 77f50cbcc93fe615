//! The simulate and inspect examples, exercised through their own code.

#[path = "../examples/axum.rs"]
#[allow(dead_code, unreachable_pub)]
mod axum_example;
mod common;
#[path = "../examples/inspect.rs"]
#[allow(dead_code, unreachable_pub)]
mod inspect;
#[path = "../examples/simulate.rs"]
#[allow(dead_code, unreachable_pub)]
mod simulate;

use std::sync::Arc;

use common::KEY;
use cregis_payout_callback::{CallbackStatus, Error, Verifier, verify_and_parse};
use simulate::Options;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn simulate_reads_its_command_line() {
    let options = Options::parse(&args(&[
        "http://127.0.0.1:9/x",
        "--tamper",
        "--status",
        "4",
        "--amount",
        "2.50",
        "--memo",
        "hello",
    ]))
    .unwrap();
    assert_eq!(options.url, "http://127.0.0.1:9/x");
    assert!(options.tamper);
    assert_eq!(options.status, CallbackStatus::ApprovalRejected);
    assert_eq!(options.amount, "2.50");
    assert_eq!(options.memo.as_deref(), Some("hello"));

    let defaults = Options::parse(&[]).unwrap();
    assert_eq!(defaults.url, simulate::DEFAULT_URL);
    assert_eq!(defaults.status, CallbackStatus::TransactionSuccessful);
    assert!(!defaults.tamper);

    assert_eq!(
        Options::parse(&args(&["--status", "9"])).unwrap_err(),
        "status 9 is not a documented payout status"
    );
    assert_eq!(
        Options::parse(&args(&["--amount"])).unwrap_err(),
        "--amount needs a value"
    );
    assert_eq!(
        Options::parse(&args(&["--bogus"])).unwrap_err(),
        "unknown flag --bogus"
    );
}

#[test]
fn simulate_builds_authentic_callbacks_and_forgeries() {
    let mut options = Options::parse(&args(&["--memo", "tag-7", "--amount", "12.000001"])).unwrap();
    let body = simulate::build_body(&options, KEY).unwrap();
    let callback = verify_and_parse(body.as_bytes(), KEY).unwrap();
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(callback.amount, "12.000001");
    assert_eq!(callback.memo.as_deref(), Some("tag-7"));
    assert!(callback.txid.is_some() && callback.block_time.is_some());

    options.status = CallbackStatus::SignatureRejected;
    let rejected = simulate::build_body(&options, KEY).unwrap();
    let callback = verify_and_parse(rejected.as_bytes(), KEY).unwrap();
    assert_eq!(callback.txid, None);

    options.tamper = true;
    let forged = simulate::build_body(&options, KEY).unwrap();
    assert_eq!(
        verify_and_parse(forged.as_bytes(), KEY),
        Err(Error::SignatureMismatch)
    );
}

#[tokio::test]
async fn simulate_delivers_to_the_axum_example() {
    let verifier = Verifier::new(KEY).unwrap();
    let ledger = Arc::new(axum_example::Ledger::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        axum_example::ROUTE
    );
    let app = axum_example::app(verifier, Arc::clone(&ledger));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut options = Options::parse(&[url]).unwrap();
    let answer =
        simulate::deliver(&options.url, simulate::build_body(&options, KEY).unwrap()).await;
    assert_eq!(answer.unwrap(), (200, "success".to_owned()));
    assert_eq!(ledger.payouts(), 1);

    options.tamper = true;
    let answer =
        simulate::deliver(&options.url, simulate::build_body(&options, KEY).unwrap()).await;
    assert_eq!(
        answer.unwrap(),
        (401, "signature does not match".to_owned())
    );
    assert_eq!(ledger.payouts(), 1);
}

/// The first published vector, verifiable with `VECTOR_KEY`, plus a null and an empty field.
const VECTOR_KEY: &str = "f502a9ac9ca54327986f29c03b271491";
const VECTOR_BODY: &str = r#"{"pid":1382528827416576,"currency":"195@195",
  "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
  "third_party_id":"c9231e604da54469a735af3f449c880f","memo":null,"txid":"",
  "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
  "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;

fn explain(body: &str, key: &str) -> (bool, String) {
    let mut out = Vec::new();
    let verifies = inspect::explain(body.as_bytes(), key, &mut out).unwrap();
    (verifies, String::from_utf8(out).unwrap())
}

#[test]
fn inspect_explains_a_matching_body() {
    let (verifies, out) = explain(VECTOR_BODY, VECTOR_KEY);
    assert!(verifies);
    assert_eq!(
        out,
        "verifies: yes\n\
         signed text: <api-key>addressTXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FSamount1.1\
         callback_urlhttp://192.168.2.29:9099/callbackcurrency195@195noncehwlkk6\
         pid1382528827416576remarkpayoutthird_party_idc9231e604da54469a735af3f449c880f\
         timestamp1688004243314\n\
         left out: \"memo\" (null values are left out)\n\
         left out: \"sign\" (the signature itself is never signed)\n\
         left out: \"txid\" (empty strings are left out)\n\
         sign received: d6eef2de79e39f434a38efb910213ba6\n\
         sign expected: d6eef2de79e39f434a38efb910213ba6\n"
    );
    assert!(!out.contains(VECTOR_KEY));
}

#[test]
fn inspect_explains_a_mismatching_body_without_showing_the_key() {
    let tampered = VECTOR_BODY.replace(r#""amount":"1.1""#, r#""amount":"1.10""#);
    let (verifies, out) = explain(&tampered, VECTOR_KEY);
    assert!(!verifies);
    assert!(
        out.starts_with("verifies: no (signature does not match)\n"),
        "{out}"
    );
    assert!(out.contains("amount1.10callback_url"), "{out}");
    assert!(
        out.contains("sign received: d6eef2de79e39f434a38efb910213ba6\n"),
        "{out}"
    );
    let expected = out
        .lines()
        .find_map(|l| l.strip_prefix("sign expected: "))
        .unwrap();
    assert_ne!(expected, "d6eef2de79e39f434a38efb910213ba6");
    assert_eq!(expected.len(), 32);
    assert!(!out.contains(VECTOR_KEY));
}

#[test]
fn inspect_explains_bodies_that_cannot_be_signed() {
    let (verifies, out) = explain(r#"{"a":1,"a":2}"#, VECTOR_KEY);
    assert!(!verifies);
    assert_eq!(
        out,
        "verifies: no (key \"a\" appears more than once)\n\
         the body cannot be signed at all: key \"a\" appears more than once\n"
    );
    let (_, out) = explain(VECTOR_BODY, " ");
    assert_eq!(out, "cannot verify: api key is empty\n");
}

#[test]
fn inspect_signs_a_body_correctly() {
    let tampered = VECTOR_BODY.replace(r#""amount":"1.1""#, r#""amount":"2""#);
    let signed = inspect::signed(tampered.as_bytes(), KEY).unwrap();
    let verifier = Verifier::new(KEY).unwrap();
    assert_eq!(verifier.verify(signed.as_bytes()), Ok(()));
    assert!(!signed.contains(KEY));
}
