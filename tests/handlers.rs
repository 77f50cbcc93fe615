//! Handlers of every shape, errors that keep their cause, replies that name their delivery,
//! and an API key with whitespace around it.

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{KEY, block_on};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{
    ApiKey, AsyncCallbackHandler, CallbackHandler, Error, PayoutCallback, Reply, Verifier,
    async_handler_fn,
    error::{BoxError, KeyError, StoreOperation},
    handler_fn,
    idempotency::{Attempt, Claim, DeliveryKey, IdempotencyStore, MemoryIdempotencyStore},
};

fn body() -> String {
    CallbackBuilder::new().body(&common::key()).unwrap()
}

#[derive(Default)]
struct Counting(AtomicUsize);

impl CallbackHandler for Counting {
    type Error = std::io::Error;
    fn handle(&self, _: &PayoutCallback) -> Result<(), Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl AsyncCallbackHandler for Counting {
    type Error = std::io::Error;
    async fn handle(&self, _: &PayoutCallback) -> Result<(), Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn every_sync_handler_shape_is_accepted() {
    let verifier = Verifier::new(common::key());
    let body = body();
    let body = body.as_bytes();
    let counting = Arc::new(Counting::default());
    let replies = [
        verifier.process(body, &*counting),
        verifier.process(body, &counting),
        verifier.process(body, &Arc::clone(&counting)),
        verifier.process(body, &|_: &PayoutCallback| Ok::<(), String>(())),
        verifier.process(body, &|_: &PayoutCallback| Err::<(), _>("refused")),
        verifier.process(
            body,
            &handler_fn(|callback| {
                let _: u64 = callback.block_height.as_deref().unwrap_or("0").parse()?;
                Ok(())
            }),
        ),
    ];
    let acks: Vec<bool> = replies.iter().map(Reply::is_ack).collect();
    assert_eq!(acks, [true, true, true, true, false, true]);
    assert_eq!(counting.0.load(Ordering::SeqCst), 3);
}

#[test]
fn every_async_handler_shape_is_accepted() {
    let verifier = Verifier::new(common::key());
    let body = body();
    let body = body.as_bytes();
    let counting = Arc::new(Counting::default());
    let closure = |callback: &PayoutCallback| {
        let id = callback.third_party_id.clone();
        async move { if id.is_empty() { Err("no id") } else { Ok(()) } }
    };
    let async_closure = async |callback: &PayoutCallback| {
        // The future may borrow the callback.
        tokio::task::yield_now().await;
        if callback.amount.is_empty() {
            Err(std::io::Error::other("no amount"))
        } else {
            Ok(())
        }
    };
    let plain = async_handler_fn(|callback| {
        let amount = callback.amount.clone();
        async move {
            let _: f64 = amount.parse()?;
            Ok(())
        }
    });
    let replies = block_on(async {
        [
            verifier.process_async(body, &*counting).await,
            verifier.process_async(body, &counting).await,
            verifier.process_async(body, &closure).await,
            verifier.process_async(body, &async_closure).await,
            verifier.process_async(body, &plain).await,
        ]
    });
    assert!(replies.iter().all(Reply::is_ack), "{replies:?}");
    assert_eq!(counting.0.load(Ordering::SeqCst), 2);
}

#[derive(Debug, PartialEq)]
struct Locked(u32);

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} is locked", self.0)
    }
}

impl std::error::Error for Locked {}

#[test]
fn source_is_the_handlers_own_error_in_both_paths() {
    let verifier = Verifier::new(common::key());
    let body = body();
    let sync = verifier.process(body.as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(Locked(7))
    });
    let failing = |_: &PayoutCallback| async { Err::<(), _>(Locked(8)) };
    let r#async = block_on(verifier.process_async(body.as_bytes(), &failing));
    for (reply, row) in [(sync, 7), (r#async, 8)] {
        let error = reply.error().unwrap();
        assert_eq!(
            error.to_string(),
            format!("handler failed: row {row} is locked")
        );
        assert_eq!(error.source().unwrap().downcast_ref(), Some(&Locked(row)));
    }
}

/// A store whose claim fails with a typed error, or whose complete does.
struct Failing {
    on_claim: bool,
}

impl IdempotencyStore for Failing {
    fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> {
        if self.on_claim {
            Err(Box::new(Locked(1)))
        } else {
            Ok(Claim::Claimed)
        }
    }
    fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
        Err(Box::new(Locked(2)))
    }
    fn release(&self, _: &Attempt) -> Result<(), BoxError> {
        Err(Box::new(Locked(3)))
    }
}

#[test]
fn source_is_the_stores_own_error() {
    let body = body();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    for (on_claim, operation, row, status) in [
        (true, StoreOperation::Claim, 1, 500),
        (false, StoreOperation::Complete, 2, 200),
    ] {
        let verifier = Verifier::builder(common::key())
            .idempotency(Failing { on_claim })
            .build();
        let reply = verifier.process(body.as_bytes(), &ok);
        assert_eq!(reply.status_code(), status);
        let error = reply.error().unwrap();
        assert!(
            matches!(error, Error::Store { operation: op, .. } if *op == operation),
            "{error:?}"
        );
        assert_eq!(error.source().unwrap().downcast_ref(), Some(&Locked(row)));
    }
    // A failed release is kept beside the handler's error.
    let verifier = Verifier::builder(common::key())
        .idempotency(Failing { on_claim: false })
        .build();
    let reply = verifier.process(body.as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(Locked(9))
    });
    let Some(Error::HandlerFailed {
        cause,
        release_failure: Some(release),
    }) = reply.error()
    else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (cause.downcast_ref(), release.downcast_ref()),
        (Some(&Locked(9)), Some(&Locked(3)))
    );
    assert_eq!(
        reply.error().unwrap().to_string(),
        "handler failed: row 9 is locked; releasing its claim failed too: row 3 is locked"
    );
}

#[test]
fn a_reply_names_its_delivery_once_the_callback_is_read() {
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    let body = CallbackBuilder::new().cid(42).body(&common::key()).unwrap();
    let key = DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        42,
        Fact::Status(cregis_payout_callback::CallbackStatus::TransactionSuccessful),
    );
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    let failing = |_: &PayoutCallback| Err::<(), _>("down");
    assert_eq!(
        verifier.process(body.as_bytes(), &failing).delivery(),
        Some(key)
    );
    assert_eq!(verifier.process(body.as_bytes(), &ok).delivery(), Some(key));
    let duplicate = verifier.process(body.as_bytes(), &ok);
    assert!(duplicate.is_duplicate());
    assert_eq!(duplicate.delivery(), Some(key));
    let conflict = CallbackBuilder::new()
        .cid(42)
        .amount("2")
        .body(&common::key())
        .unwrap();
    assert_eq!(
        verifier.process(conflict.as_bytes(), &ok).delivery(),
        Some(key)
    );
    // Before the callback is read, there is nothing to name.
    let forged = CallbackBuilder::new()
        .body(&common::api_key("fake-attacker-key"))
        .unwrap();
    assert_eq!(verifier.process(forged.as_bytes(), &ok).delivery(), None);
    assert_eq!(verifier.process(b"[]", &ok).delivery(), None);
}

#[test]
fn an_api_key_with_whitespace_around_it_is_refused_everywhere() {
    // Every entry point (the verifier, a rotation key, signing, the test kit) takes an
    // `ApiKey`, so refusing a padded key once, in `ApiKey::new`, refuses it everywhere.
    for padded in [
        format!("{KEY}\n"),
        format!(" {KEY}"),
        format!("{KEY}\r\n"),
        format!("\t{KEY}"),
    ] {
        assert_eq!(
            ApiKey::new(padded.as_str()).unwrap_err(),
            KeyError::Whitespace
        );
        assert_eq!(ApiKey::new(padded).unwrap_err(), KeyError::Whitespace);
    }
    let error = KeyError::Whitespace;
    assert_eq!(
        error.to_string(),
        "api key has leading or trailing whitespace (a newline from a file?)"
    );
    // Whitespace inside a key is part of the key; a blank key is still an empty one.
    assert!(ApiKey::new("fake key with spaces").is_ok());
    assert_eq!(ApiKey::new(" \n").unwrap_err(), KeyError::Empty);
}
