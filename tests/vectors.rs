//! Known-answer tests from Cregis's published signature vectors and callback example.

mod common;

use common::{DOC_EXAMPLE, KEY, api_key, body_of, key, oracle_sign, signed_example};
use cregis_payout_callback::{
    CallbackStatus, Error, Verifier,
    signature::{sign, verify_sign},
    verifier::MatchedKey,
};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

const VECTOR_KEY: &str = "f502a9ac9ca54327986f29c03b271491";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The "Signature" page's main vector.
fn first_vector() -> Map<String, Value> {
    object(json!({
        "pid": 1382528827416576u64,
        "currency": "195@195",
        "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
        "amount": "1.1",
        "remark": "payout",
        "third_party_id": "c9231e604da54469a735af3f449c880f",
        "callback_url": "http://192.168.2.29:9099/callback",
        "nonce": "hwlkk6",
        "timestamp": 1688004243314u64
    }))
}

/// The values the same page's step-by-step section used.
fn second_vector() -> Map<String, Value> {
    object(json!({
        "pid": 1382528827416576u64,
        "currency": "195@195",
        "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
        "amount": "1.1",
        "remark": "payout",
        "third_party_id": "19faf9d3c8f34caf926f332f3021e887",
        "callback_url": "http://192.168.2.29:9099/callback",
        "nonce": "mb8udu",
        "timestamp": 1688003966801u64
    }))
}

const FIRST_SIGN: &str = "d6eef2de79e39f434a38efb910213ba6";
const SECOND_SIGN: &str = "c9bae061ae3f5f8d3bfde817f6966c36";
const SECOND_TEXT: &str = "f502a9ac9ca54327986f29c03b271491addressTXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FSamount1.1callback_urlhttp://192.168.2.29:9099/callbackcurrency195@195noncemb8udupid1382528827416576remarkpayoutthird_party_id19faf9d3c8f34caf926f332f3021e887timestamp1688003966801";

#[test]
fn first_published_vector_signs_and_verifies() {
    let mut params = first_vector();
    assert_eq!(sign(&params, &api_key(VECTOR_KEY)).unwrap(), FIRST_SIGN);
    params.insert("sign".into(), FIRST_SIGN.into());
    assert_eq!(verify_sign(&params, &api_key(VECTOR_KEY)), Ok(()));
    // `sign` itself is ignored when signing.
    assert_eq!(sign(&params, &api_key(VECTOR_KEY)).unwrap(), FIRST_SIGN);
}

#[test]
fn second_published_vector_matches_its_signing_text() {
    assert_eq!(
        hex::encode(Md5::digest(SECOND_TEXT.as_bytes())),
        SECOND_SIGN
    );
    let mut params = second_vector();
    assert_eq!(sign(&params, &api_key(VECTOR_KEY)).unwrap(), SECOND_SIGN);
    params.insert("sign".into(), SECOND_SIGN.into());
    assert_eq!(verify_sign(&params, &api_key(VECTOR_KEY)), Ok(()));
}

#[test]
fn published_vectors_verify_as_raw_bodies() {
    let verifier = Verifier::new(api_key(VECTOR_KEY));
    for (params, expected) in [(first_vector(), FIRST_SIGN), (second_vector(), SECOND_SIGN)] {
        let mut params = params;
        params.insert("sign".into(), expected.into());
        let body = serde_json::to_vec(&params).unwrap();
        assert_eq!(verifier.verify(&body), Ok(MatchedKey::Current));
        let pretty = serde_json::to_vec_pretty(&params).unwrap();
        assert_eq!(verifier.verify(&pretty), Ok(MatchedKey::Current));
    }
}

#[test]
fn published_vector_is_refused_with_another_key() {
    let mut params = first_vector();
    params.insert("sign".into(), FIRST_SIGN.into());
    assert_eq!(
        verify_sign(&params, &api_key("fake-wrong-key")),
        Err(Error::SignatureMismatch)
    );
}

#[test]
fn documented_callback_example_parses_once_re_signed() {
    let callback = Verifier::new(key())
        .verify_and_parse(signed_example().as_bytes())
        .unwrap();
    assert_eq!(callback.pid, 1382528827416576);
    assert_eq!(callback.cid, 1391751691788288);
    assert_eq!(callback.address, "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS");
    assert_eq!(callback.chain_id, "195");
    assert_eq!(callback.token_id, "195");
    assert_eq!(callback.currency, "TRX");
    assert_eq!(callback.amount, "1.1");
    assert_eq!(callback.third_party_id, "1e0fb3a0a9454ad8928d26b592e8b3c7");
    assert_eq!(callback.remark.as_deref(), Some("payout"));
    assert_eq!(callback.status, CallbackStatus::PendingApproval);
    assert_eq!(
        callback.txid.as_deref(),
        Some("6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd")
    );
    assert_eq!(callback.block_height.as_deref(), Some("34527604"));
    assert_eq!(callback.block_time, Some(1686814482000));
    assert_eq!(callback.memo, None);
    assert_eq!(callback.nonce, "ubqso3");
    assert_eq!(callback.timestamp, 1687850657960);
    assert_eq!(callback.sign, oracle_sign(DOC_EXAMPLE, KEY));
    assert!(callback.extra.is_empty());
}

#[test]
fn documented_callback_example_sign_is_not_from_a_known_key() {
    let mut pairs: Vec<(&str, &str)> = DOC_EXAMPLE.to_vec();
    pairs.push(("sign", r#""f5be13fdd8c6f63951ca4427359457cb""#));
    let body = body_of(&pairs);
    for key in [VECTOR_KEY, KEY] {
        assert_eq!(
            Verifier::new(api_key(key)).verify_and_parse(body.as_bytes()),
            Err(Error::SignatureMismatch)
        );
    }
}

#[test]
fn a_sign_of_any_shape_in_the_map_is_ignored_when_signing() {
    for stray in [json!(["x"]), json!({"a": 1}), json!(null), json!(7)] {
        let mut params = first_vector();
        params.insert("sign".into(), stray);
        assert_eq!(sign(&params, &api_key(VECTOR_KEY)).unwrap(), FIRST_SIGN);
    }
}
