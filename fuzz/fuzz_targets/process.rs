//! Arbitrary bytes through `process` with a no-op handler and the memory idempotency store:
//! never a panic, and never an acknowledgement of an unverified body.
#![no_main]

use std::time::Duration;

use cregis_payout_callback::{
    ApiKey, PayoutCallback, Verifier, idempotency::MemoryIdempotencyStore,
};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fake-fuzz-key";

fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::builder(ApiKey::new(KEY).unwrap())
        .max_age(Duration::from_secs(300))
        .idempotency(MemoryIdempotencyStore::new(16))
        .build();
    let reply = verifier.process(data, &|_: &PayoutCallback| Ok::<(), String>(()));
    assert_ne!(reply.status_code(), 0);
    if reply.is_ack() {
        assert!(verifier.verify(data).is_ok());
    } else {
        assert_ne!(reply.body(), "success");
    }
});
