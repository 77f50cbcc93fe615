//! Arbitrary bytes through verification and typed parsing: never a panic, and the entry
//! points agree with each other.
#![no_main]

use cregis_payout_callback::verifier::MatchedKey;
use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fake-fuzz-key";

fuzz_target!(|data: &[u8]| {
    let key = ApiKey::new(KEY).unwrap();
    let verifier = Verifier::new(key.clone());
    let verified = verifier.verify(data);
    let parsed = verifier.verify_and_parse(data);
    // Parsing adds checks after verification, never removes any.
    match &verified {
        Err(e) => assert_eq!(parsed.as_ref().err(), Some(e)),
        // The one key there is signed it.
        Ok(matched) => assert_eq!(*matched, MatchedKey::Current),
    }
    // A verifier made by the builder with no setting is the default one.
    assert_eq!(
        parsed,
        Verifier::builder(key).build().verify_and_parse(data)
    );

    // The typed conversion, reached without a signature.
    if let Ok(callback) = serde_json::from_slice::<PayoutCallback>(data) {
        // What it reads serializes back, and reads back the same.
        let text = serde_json::to_string(&callback).unwrap();
        let again: PayoutCallback = serde_json::from_str(&text).unwrap();
        assert_eq!(again.delivery_key(), callback.delivery_key());
    }
});
