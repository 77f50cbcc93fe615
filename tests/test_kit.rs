//! The public test kit: bodies shaped like Cregis's, signed exactly as the independent oracle
//! signs them, and callbacks for unit-testing a handler.

mod common;

use common::{KEY, oracle_sign};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{
    ApiKey, CallbackStatus, Error, Verifier, error::KeyError, verifier::MatchedKey,
};
use proptest::prelude::*;
use serde_json::Value;

/// The keys of a body, in the order they are written.
fn keys_in_order(body: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(body);
    let map: serde_json::Map<String, Value> =
        serde::Deserialize::deserialize(&mut de).expect("a JSON object");
    // `Map` sorts its keys: recover the written order from their positions.
    let mut positioned: Vec<(usize, &String)> = map
        .keys()
        .map(|k| (body.find(&format!("\"{k}\":")).unwrap(), k))
        .collect();
    positioned.sort();
    keys.extend(positioned.into_iter().map(|(_, k)| k.clone()));
    keys
}

#[test]
fn a_new_callback_is_in_the_documented_wire_order_with_sign_last() {
    let body = CallbackBuilder::new()
        .memo("104857")
        .string("network_fee", "0.35")
        .body(&common::key())
        .unwrap();
    assert_eq!(
        keys_in_order(&body),
        [
            "pid",
            "cid",
            "chain_id",
            "token_id",
            "currency",
            "address",
            "amount",
            "third_party_id",
            "remark",
            "status",
            "txid",
            "block_height",
            "block_time",
            "memo",
            "nonce",
            "timestamp",
            "network_fee",
            "sign"
        ]
    );
    Verifier::new(common::key())
        .verify(body.as_bytes())
        .unwrap();
}

#[test]
fn nonce_and_timestamp_are_fresh_unless_set() {
    let a = CallbackBuilder::new().callback().unwrap();
    let b = CallbackBuilder::new().callback().unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert!(a.nonce.len() == 6 && a.nonce.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert!(a.timestamp > 1_700_000_000_000);
    let fixed = || {
        CallbackBuilder::new()
            .nonce("ubqso3")
            .timestamp(1687850657960)
            .body(&common::key())
            .unwrap()
    };
    assert_eq!(fixed(), fixed());
}

#[test]
fn every_field_can_be_set_removed_or_given_raw_json() {
    let builder = CallbackBuilder::new()
        .raw("cid", r#""1391751691788288""#) // an integer sent as a string
        .raw("remark", "null")
        .txid("")
        .raw("x_ratio", "1.10")
        .remove("block_height")
        .status_code(7)
        .amount("0.000001")
        .third_party_id("order-\u{e9}")
        .nonce("abcdef")
        .timestamp(1);
    let body = builder.body(&common::key()).unwrap();
    assert!(body.contains(r#""cid":"1391751691788288","#));
    assert!(body.contains(r#""remark":null,"#));
    assert!(body.contains(r#""txid":"","#));
    assert!(!body.contains("block_height"));
    assert!(body.contains(r#""x_ratio":1.10,"#));
    let callback = Verifier::new(common::key())
        .verify_and_parse(body.as_bytes())
        .unwrap();
    assert_eq!(callback, builder.callback().unwrap().with_sign_of(&body));
    assert_eq!(
        (
            callback.cid,
            callback.remark.as_deref(),
            callback.txid.as_deref()
        ),
        (1391751691788288, None, None)
    );
    assert_eq!(callback.status, CallbackStatus::TransactionFailed);
    assert_eq!(callback.extra["x_ratio"], "1.10");
}

/// `PayoutCallback::sign` of a verified body, for comparing with the unsigned value.
trait WithSignOf {
    fn with_sign_of(self, body: &str) -> Self;
}

impl WithSignOf for cregis_payout_callback::PayoutCallback {
    fn with_sign_of(mut self, body: &str) -> Self {
        let map: serde_json::Map<String, Value> = serde_json::from_str(body).unwrap();
        map["sign"].as_str().unwrap().clone_into(&mut self.sign);
        self
    }
}

#[test]
fn a_changed_body_keeps_a_stale_sign_when_asked() {
    let builder = CallbackBuilder::new();
    let sign = builder.sign(&common::key()).unwrap();
    let verifier = Verifier::new(common::key());
    assert_eq!(
        verifier.verify(builder.body_with_sign(&sign).as_bytes()),
        Ok(MatchedKey::Current)
    );
    let tampered = builder.amount("1000").body_with_sign(&sign);
    assert_eq!(
        verifier.verify(tampered.as_bytes()),
        Err(Error::SignatureMismatch)
    );
}

#[test]
fn a_sign_set_by_hand_is_replaced_never_repeated() {
    let builder = CallbackBuilder::new().raw("sign", r#""00000000000000000000000000000000""#);
    let body = builder.body(&common::key()).unwrap();
    assert_eq!(body.matches(r#""sign":"#).count(), 1);
    assert_eq!(
        Verifier::new(common::key()).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
    assert!(!builder.unsigned_body().contains("sign"));
    assert_eq!(
        builder
            .body_with_sign("ab")
            .matches(r#""sign":"ab""#)
            .count(),
        1
    );
}

#[test]
fn what_the_kit_cannot_sign_is_an_error_not_a_panic() {
    let builder = CallbackBuilder::empty().raw("pid", "[1]");
    assert_eq!(
        builder.body(&common::key()),
        Err(Error::NestedValue { key: "pid".into() })
    );
    // An empty key cannot reach the kit: `ApiKey::new` refuses it first.
    assert_eq!(ApiKey::new("").unwrap_err(), KeyError::Empty);
    assert_eq!(
        CallbackBuilder::new().remove("amount").callback(),
        Err(Error::InvalidField {
            field: "amount",
            problem: "is missing, null or empty"
        })
    );
}

proptest! {
    /// The kit signs what it writes exactly as the oracle written from SPEC.md does.
    #[test]
    fn the_kit_signs_as_the_independent_oracle(
        fields in proptest::collection::vec(
            ("[a-z_]{1,12}", prop_oneof![
                "[ -~]{0,16}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                any::<i64>().prop_map(|n| n.to_string()),
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("1.10".to_owned()),
            ]),
            1..12,
        )
    ) {
        let builder = fields.iter().fold(CallbackBuilder::empty(), |b, (k, v)| b.raw(k, v));
        let body = builder.unsigned_body();
        // The pairs as the body holds them (later values replace earlier ones, in place).
        let map: serde_json::Map<String, Value> = serde_json::from_str(&body).unwrap();
        let pairs: Vec<(String, String)> = map.iter().map(|(k, v)| {
            let raw = fields.iter().rev().find(|(fk, _)| fk == k).unwrap().1.clone();
            let _ = v;
            (k.clone(), raw)
        }).collect();
        prop_assert_eq!(builder.sign(&common::key()).unwrap(), oracle_sign(&pairs, KEY));
    }
}
