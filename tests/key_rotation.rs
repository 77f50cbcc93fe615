//! Key rotation: a verifier that accepts the previous key too says, for every verified
//! delivery, which key signed it, so that operators see when the old key has gone quiet.

mod common;

use common::api_key;
use cregis_payout_callback::verifier::MatchedKey;
use cregis_payout_callback::{Error, PayoutCallback, Verifier, testing::CallbackBuilder};

const NEW: &str = "fake-rotation-new-key";
const OLD: &str = "fake-rotation-old-key";
const OLDER: &str = "fake-rotation-older-key";

fn rotating() -> Verifier {
    Verifier::builder(api_key(NEW))
        .also_accept(api_key(OLD))
        .also_accept(api_key(OLDER))
        .build()
}

/// A handler that succeeds (its signature is the handler trait's).
#[allow(clippy::unnecessary_wraps)]
fn ok(_: &PayoutCallback) -> Result<(), String> {
    Ok(())
}

#[test]
fn each_key_is_named_on_verify_and_on_the_reply() {
    let verifier = rotating();
    for (key, expected) in [
        (NEW, MatchedKey::Current),
        (OLD, MatchedKey::Previous { index: 0 }),
        (OLDER, MatchedKey::Previous { index: 1 }),
    ] {
        let body = CallbackBuilder::new().body(&api_key(key)).unwrap();
        assert_eq!(verifier.verify(body.as_bytes()), Ok(expected), "{key}");
        let reply = verifier.process(body.as_bytes(), &ok);
        assert!(reply.is_ack(), "{reply:?}");
        assert_eq!(reply.signed_with(), Some(expected), "{key}");
    }
}

#[test]
fn a_verifier_without_rotation_says_current() {
    let verifier = Verifier::new(api_key(NEW));
    let body = CallbackBuilder::new().body(&api_key(NEW)).unwrap();
    assert_eq!(
        verifier.process(body.as_bytes(), &ok).signed_with(),
        Some(MatchedKey::Current)
    );
}

#[test]
fn the_signer_is_known_on_authentic_refusals_and_unknown_on_forgeries() {
    let verifier = Verifier::builder(api_key(NEW))
        .also_accept(api_key(OLD))
        .expected_pid(1)
        .build();
    // Authentic, but for another project: refused, and still signed with the old key.
    let other_project = CallbackBuilder::new().pid(2).body(&api_key(OLD)).unwrap();
    let reply = verifier.process(other_project.as_bytes(), &ok);
    assert_eq!(
        reply.error(),
        Some(&Error::PidMismatch {
            expected: 1,
            found: 2
        })
    );
    assert_eq!(reply.signed_with(), Some(MatchedKey::Previous { index: 0 }));
    // Authentic, with an unknown status: the same.
    let unknown = CallbackBuilder::new()
        .pid(1)
        .status_code(9)
        .body(&api_key(NEW))
        .unwrap();
    let reply = verifier.process(unknown.as_bytes(), &ok);
    assert_eq!(reply.error(), Some(&Error::UnknownStatus { code: 9 }));
    assert_eq!(reply.signed_with(), Some(MatchedKey::Current));
    // Signed with a key the verifier does not know: no signer at all.
    let forged = CallbackBuilder::new()
        .pid(1)
        .body(&api_key("fake-rotation-attacker-key"))
        .unwrap();
    let reply = verifier.process(forged.as_bytes(), &ok);
    assert_eq!(reply.error(), Some(&Error::SignatureMismatch));
    assert_eq!(reply.signed_with(), None);
}

#[test]
fn matched_keys_read_as_words() {
    assert_eq!(MatchedKey::Current.to_string(), "current key");
    assert_eq!(
        MatchedKey::Previous { index: 1 }.to_string(),
        "previous key 1"
    );
}
