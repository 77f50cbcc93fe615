//! Compile-time checks, from outside the crate, that the public API has exactly the shapes
//! issue 2 gave it, as 0.2 names them. Most of this file proves itself by compiling; the tests run the few
//! checks that need values.

use std::fmt::{Debug, Display};
use std::hash::Hash;

use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::{
    ApiKey, CallbackHandler, CallbackStatus, Error, PayoutCallback, Reply, Verifier,
    error::KeyError,
    signature::{sign, sign_body, verify_sign},
    verifier::{MatchedKey, VerifierBuilder},
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

type Params = Map<String, Value>;

#[test]
fn free_functions_have_the_contract_signatures() {
    let _: fn(&Params, &ApiKey) -> Result<String, Error> = sign;
    let _: fn(&Params, &ApiKey) -> Result<(), Error> = verify_sign;
    let _: fn(&[u8], &ApiKey) -> Result<String, Error> = sign_body;
}

#[test]
fn success_ack_is_the_word_success() {
    const ACK: &str = Reply::SUCCESS_ACK;
    assert_eq!(ACK, "success");
}

#[test]
fn verifier_has_the_contract_methods() {
    // A checked key makes an infallible verifier; settings go through the builder.
    let _: fn(ApiKey) -> Verifier = Verifier::new;
    let _: fn(ApiKey) -> VerifierBuilder = Verifier::builder;
    let _: fn(VerifierBuilder, usize) -> VerifierBuilder = VerifierBuilder::max_body_bytes;
    let _: fn(VerifierBuilder, ApiKey) -> VerifierBuilder = VerifierBuilder::also_accept;
    let _: fn(VerifierBuilder) -> Verifier = VerifierBuilder::build;
    let _: fn(&Verifier) -> usize = Verifier::max_body_bytes;
    let _: fn(&Verifier) -> Option<i64> = Verifier::expected_pid;
    let _: fn(&Verifier, &[u8]) -> Result<MatchedKey, Error> = Verifier::verify;
    let _: fn(&Verifier, &[u8]) -> Result<PayoutCallback, Error> = Verifier::verify_and_parse;

    // `ApiKey::new` is generic (`impl Into<String>`); each instance coerces to a plain function.
    let _: fn(&'static str) -> Result<ApiKey, KeyError> = ApiKey::new;
    let _: fn(String) -> Result<ApiKey, KeyError> = ApiKey::new;
    let from_str = ApiKey::new("fake-contract-key");
    let from_string = ApiKey::new(String::from("fake-contract-key"));
    let from_box = ApiKey::new(Box::<str>::from("fake-contract-key"));
    assert!(from_str.is_ok() && from_string.is_ok() && from_box.is_ok());
}

fn process_signature<H: CallbackHandler>() -> fn(&Verifier, &[u8], &H) -> Reply {
    Verifier::process::<H>
}

#[test]
fn process_takes_any_handler_including_closures() {
    struct Host;
    impl CallbackHandler for Host {
        type Error = String;
        fn handle(&self, _: &PayoutCallback) -> Result<(), String> {
            Ok(())
        }
    }
    let _ = process_signature::<Host>();

    let verifier = Verifier::builder(ApiKey::new("fake-contract-key").unwrap())
        .max_body_bytes(1024)
        .build();
    let closure = |_: &PayoutCallback| -> Result<(), std::io::Error> { Ok(()) };
    let reply: Reply = verifier.process(b"{}", &closure);
    assert_eq!(reply.status_code(), 401);
    let reply: Reply = verifier.process(b"{}", &Host);
    assert_eq!(reply.status_code(), 401);
}

fn assert_handler<H: CallbackHandler>(_: &H) {}

#[test]
fn closures_of_any_display_error_are_handlers() {
    assert_handler(&|_: &PayoutCallback| Ok::<(), String>(()));
    assert_handler(&|_: &PayoutCallback| Ok::<(), &'static str>(()));
    assert_handler(&|_: &PayoutCallback| Ok::<(), Error>(()));
    assert_handler(&|_: &PayoutCallback| Ok::<(), std::fmt::Error>(()));
}

#[test]
fn handler_trait_has_the_contract_shape() {
    fn handle_of<H: CallbackHandler>() -> fn(&H, &PayoutCallback) -> Result<(), H::Error> {
        H::handle
    }
    fn error_is_display<H: CallbackHandler>()
    where
        H::Error: Display,
    {
    }
    struct Host;
    impl CallbackHandler for Host {
        type Error = std::io::Error;
        fn handle(&self, _: &PayoutCallback) -> Result<(), std::io::Error> {
            Ok(())
        }
    }
    let _ = handle_of::<Host>();
    error_is_display::<Host>();
}

#[test]
fn reply_has_the_contract_methods() {
    let _: fn(&Reply) -> u16 = Reply::status_code;
    let _: fn(&Reply) -> &str = Reply::body;
    let _: fn(&Reply) -> bool = Reply::is_ack;
    let _: fn(&Reply) -> Option<&Error> = Reply::error;
}

#[test]
fn status_has_the_contract_methods_and_variants() {
    let _: fn(CallbackStatus) -> i32 = CallbackStatus::code;
    let _: fn(CallbackStatus) -> bool = CallbackStatus::is_final;
    let _: fn(CallbackStatus) -> bool = CallbackStatus::is_success;
    let _: fn(i32) -> Result<CallbackStatus, Error> = CallbackStatus::try_from;

    let named = [
        (CallbackStatus::PendingApproval, 0),
        (CallbackStatus::SignatureApproved, 1),
        (CallbackStatus::SignatureRejected, 2),
        (CallbackStatus::ApprovalCancelled, 3),
        (CallbackStatus::ApprovalRejected, 4),
        (CallbackStatus::PendingSignature, 5),
        (CallbackStatus::TransactionSuccessful, 6),
        (CallbackStatus::TransactionFailed, 7),
    ];
    for (status, code) in named {
        assert_eq!(status.code(), code);
    }
}

fn assert_status_traits<
    T: Debug
        + Clone
        + Copy
        + PartialEq
        + Eq
        + Hash
        + Display
        + Serialize
        + DeserializeOwned
        + TryFrom<i32, Error = Error>,
>() {
}

fn assert_callback_traits<T: Debug + Clone + PartialEq + Serialize + DeserializeOwned>() {}

#[test]
fn models_have_the_contract_traits() {
    assert_status_traits::<CallbackStatus>();
    assert_callback_traits::<PayoutCallback>();
}

/// Every public field of `PayoutCallback`, with its exact type.
#[allow(clippy::needless_pass_by_value)]
fn callback_field_types(callback: PayoutCallback) {
    let PayoutCallback {
        pid,
        cid,
        chain_id,
        token_id,
        currency,
        address,
        amount,
        third_party_id,
        remark,
        status,
        txid,
        block_height,
        block_time,
        memo,
        nonce,
        timestamp,
        sign,
        extra,
        ..
    } = callback;
    let _: (i64, i64) = (pid, cid);
    let _: (String, String, String, String, String, String) = (
        chain_id,
        token_id,
        currency,
        address,
        amount,
        third_party_id,
    );
    let _: Option<String> = remark;
    let _: CallbackStatus = status;
    let _: (Option<String>, Option<String>, Option<i64>, Option<String>) =
        (txid, block_height, block_time, memo);
    let _: (String, i64, String) = (nonce, timestamp, sign);
    let _: Map<String, Value> = extra;
}

#[test]
fn callback_has_the_contract_fields() {
    let callback: PayoutCallback = serde_json::from_str(
        r#"{"pid":1,"cid":2,"chain_id":"195","token_id":"195","currency":"TRX",
            "address":"TXsm","amount":"1.1","third_party_id":"order-42","status":6,
            "nonce":"ubqso3","timestamp":1687850657960,"sign":"00"}"#,
    )
    .unwrap();
    let _: fn(&PayoutCallback) -> bool = PayoutCallback::is_final;
    let _: fn(&PayoutCallback) -> bool = PayoutCallback::is_success;
    assert_eq!(callback.pid, 1);
    callback_field_types(callback);
}

/// Every variant the issue names, by name (the enum is `#[non_exhaustive]`, hence the last arm).
fn variant_name(error: &Error) -> &'static str {
    match error {
        Error::BodyTooLarge { .. } => "BodyTooLarge",
        Error::BodyUnreadable { .. } => "BodyUnreadable",
        Error::InvalidJson { .. } => "InvalidJson",
        Error::NotAnObject => "NotAnObject",
        Error::DuplicateKey { .. } => "DuplicateKey",
        Error::MissingSign => "MissingSign",
        Error::MalformedSign => "MalformedSign",
        Error::SignatureMismatch => "SignatureMismatch",
        Error::InvalidField { .. } => "InvalidField",
        Error::UnknownStatus { code } => {
            let _: &i64 = code;
            "UnknownStatus"
        }
        Error::HandlerCancelled => "HandlerCancelled",
        _ => "other",
    }
}

#[test]
fn error_has_the_contract_variants() {
    assert_eq!(
        variant_name(&Error::UnknownStatus { code: 8 }),
        "UnknownStatus"
    );
    assert_eq!(variant_name(&Error::HandlerCancelled), "HandlerCancelled");
    // A stable label for metrics, with or without the `tracing` feature.
    let _: fn(&Error) -> &'static str = Error::kind;
    assert_eq!(Error::HandlerCancelled.kind(), "HandlerCancelled");
    let _: fn(&Error) -> u16 = Error::http_status;
    let _: fn(&Error) -> bool = Error::is_authentication;
    let _: fn(&Error) -> bool = Error::is_contract;
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_clone<T: Clone>() {}
fn assert_std_error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn auto_traits() {
    assert_send_sync::<Verifier>();
    assert_send_sync::<Error>();
    assert_send_sync::<Reply>();
    assert_send_sync::<PayoutCallback>();
    assert_send_sync::<CallbackStatus>();
    assert_send_sync::<ApiKey>();
    assert_send_sync::<KeyError>();
    assert_clone::<Verifier>();
    assert_clone::<ApiKey>();
    assert_std_error::<Error>();
    assert_std_error::<KeyError>();
}

#[test]
fn error_converts_into_boxed_errors() {
    fn host() -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let verifier = Verifier::new(ApiKey::new("")?);
        verifier.verify(b"{}")?;
        Ok(())
    }
    fn request() -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Verifier::new(ApiKey::new("fake-contract-key")?).verify(b"{}")?;
        Ok(())
    }
    let boxed = host().unwrap_err();
    assert_eq!(boxed.to_string(), "api key is empty");
    assert_eq!(boxed.downcast_ref::<KeyError>(), Some(&KeyError::Empty));
    let boxed = request().unwrap_err();
    assert_eq!(boxed.downcast_ref::<Error>(), Some(&Error::MissingSign));
}

#[test]
fn errors_and_debug_are_implemented() {
    fn assert_debug<T: Debug>() {}
    assert_debug::<Verifier>();
    assert_debug::<Reply>();
    assert_debug::<Error>();
    assert_debug::<ApiKey>();
    assert_debug::<KeyError>();
}

// Issues 3 and 4: async handlers, replies for frameworks, idempotency.

fn assert_send<T: Send>(_: &T) {}

#[test]
fn process_async_returns_a_send_future_for_any_async_handler() {
    use cregis_payout_callback::AsyncCallbackHandler;

    struct Host;
    impl AsyncCallbackHandler for Host {
        type Error = String;
        async fn handle(&self, _: &PayoutCallback) -> Result<(), String> {
            Ok(())
        }
    }
    let verifier = Verifier::new(ApiKey::new("fake-contract-key").unwrap());
    assert_send(&verifier.process_async(b"{}", &Host));
    let closure = |callback: &PayoutCallback| {
        let id = callback.third_party_id.clone();
        async move { if id.is_empty() { Err("no id") } else { Ok(()) } }
    };
    assert_send(&verifier.process_async(b"{}", &closure));
}

#[test]
fn reply_answers_in_one_line() {
    let (status, content_type, body) = Reply::ack().into_parts();
    assert_eq!(
        (status, content_type, body.as_str()),
        (200, "text/plain; charset=utf-8", "success")
    );
    assert_eq!(
        Reply::ack().content_type(),
        cregis_payout_callback::Reply::CONTENT_TYPE
    );
}

#[test]
fn idempotency_stores_are_object_safe_and_the_verifier_stays_shareable() {
    use std::sync::Arc;

    use cregis_payout_callback::idempotency::{IdempotencyStore, MemoryIdempotencyStore};

    let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryIdempotencyStore::default());
    let verifier = Verifier::builder(ApiKey::new("fake-contract-key").unwrap())
        .idempotency(store)
        .also_accept(ApiKey::new("fake-old-key").unwrap())
        .expected_pid(1)
        .max_age(std::time::Duration::from_secs(60))
        .future_skew(std::time::Duration::from_secs(5))
        .build();
    assert_send_sync::<Verifier>();
    assert_send_sync::<MemoryIdempotencyStore>();
    let copy = verifier.clone();
    assert_eq!(format!("{copy:?}"), format!("{verifier:?}"));
}

// Issue 10: leases, fingerprints, async stores, a handle on the store.

#[test]
fn async_stores_keep_process_async_send_and_the_store_types_are_shareable() {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use cregis_payout_callback::{
        error::BoxError,
        idempotency::{
            AsyncIdempotencyStore, Attempt, Claim, ClaimInProgress, DEFAULT_CLAIM_LEASE,
            DeliveryKey, Fingerprint, IdempotencyStore, MemoryIdempotencyStore,
        },
    };

    struct Remote;
    impl AsyncIdempotencyStore for Remote {
        async fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> {
            Ok(Claim::Claimed)
        }
        async fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
            Ok(())
        }
        async fn release(&self, _: &Attempt) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let handler = |_: &PayoutCallback| async { Ok::<(), String>(()) };
    let verifier = Verifier::builder(ApiKey::new("fake-contract-key").unwrap())
        .idempotency(Arc::new(Remote))
        .claim_lease(DEFAULT_CLAIM_LEASE)
        .build();
    assert_send(&verifier.process_async(b"{}", &handler));
    assert_send_sync::<Verifier>();
    assert_send_sync::<Attempt>();
    assert_send_sync::<ClaimInProgress>();
    assert_send_sync::<Fingerprint>();

    let store = Arc::new(MemoryIdempotencyStore::default());
    let _verifier = Verifier::builder(ApiKey::new("fake-contract-key").unwrap())
        .idempotency(Arc::clone(&store))
        .build();
    let claims: Vec<ClaimInProgress> = store.claims_in_progress();
    let _: Option<Duration> = claims.first().map(|c| c.age(SystemTime::now()));
    let released: bool = store.release_claim(&DeliveryKey::new(
        CallbackKind::Payout,
        1,
        2,
        Fact::Status(cregis_payout_callback::CallbackStatus::TransactionSuccessful),
    ));
    assert!(!released);
    let _: fn(&MemoryIdempotencyStore, &Attempt) -> Result<Claim, BoxError> =
        <MemoryIdempotencyStore as IdempotencyStore>::claim;
}
