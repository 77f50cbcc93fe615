//! `Verifier::process`: what the host answers Cregis, and when the handler runs.

mod common;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    DOC_EXAMPLE, KEY, assert_handled, example_with_status, signed_body, signed_example, verifier,
    with_field,
};
use cregis_payout_callback::{
    CallbackHandler, CallbackStatus, Error, PayoutCallback, Reply, Verifier,
    error::{Cause, StoreOperation},
};

/// A closure handler that records every callback it sees and succeeds.
fn recording(
    seen: &RefCell<Vec<PayoutCallback>>,
) -> impl Fn(&PayoutCallback) -> Result<(), String> {
    move |callback| {
        seen.borrow_mut().push(callback.clone());
        Ok(())
    }
}

#[test]
fn authentic_callback_is_acknowledged_and_handled() {
    let body = signed_example();
    let seen = RefCell::new(Vec::new());
    let reply = verifier().process(body.as_bytes(), &recording(&seen));

    assert_eq!(reply.status_code(), 200);
    assert_eq!(reply.body(), "success");
    assert_eq!(reply.body(), Reply::SUCCESS_ACK);
    assert!(reply.is_ack());
    assert_eq!(reply.error(), None);
    assert_handled(&reply);

    let expected = verifier().verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(*seen.borrow(), [expected]);
}

#[test]
fn handler_sees_exactly_the_parsed_callback() {
    let pairs = with_field(
        &with_field(&example_with_status("6"), "memo", r#""memo-7""#),
        "fee",
        r#""0.25""#,
    );
    let body = signed_body(&pairs, KEY);
    let seen = RefCell::new(Vec::new());
    let reply = verifier().process(body.as_bytes(), &recording(&seen));
    assert!(reply.is_ack());

    let seen = seen.into_inner();
    assert_eq!(seen.len(), 1);
    let callback = &seen[0];
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(callback.memo.as_deref(), Some("memo-7"));
    assert_eq!(callback.extra.get("fee"), Some(&"0.25".into()));
    assert_eq!(callback.cid, 1391751691788288);
    assert_eq!(
        *callback,
        verifier().verify_and_parse(body.as_bytes()).unwrap()
    );
}

#[test]
fn forged_callback_is_401_and_never_reaches_the_handler() {
    let calls = AtomicUsize::new(0);
    let handler = |_: &PayoutCallback| -> Result<(), String> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    let authentic = signed_example();
    let forged_bodies = [
        authentic.replace(r#""amount":"1.1""#, r#""amount":"1000""#),
        signed_body(DOC_EXAMPLE, "fake-attacker-key-not-a-secret"),
        common::body_of(DOC_EXAMPLE),
        common::body_of(&with_field(DOC_EXAMPLE, "sign", r#""f5be13fd""#)),
        common::body_of(&with_field(DOC_EXAMPLE, "sign", "null")),
    ];
    let expected = [
        Error::SignatureMismatch,
        Error::SignatureMismatch,
        Error::MissingSign,
        Error::MalformedSign,
        Error::MissingSign,
    ];
    for (body, expected) in forged_bodies.iter().zip(expected) {
        let reply = verifier().process(body.as_bytes(), &handler);
        assert_eq!(reply.status_code(), 401, "{body}");
        assert!(!reply.is_ack());
        assert_ne!(reply.body(), Reply::SUCCESS_ACK);
        assert_eq!(reply.body(), expected.to_string());
        assert_eq!(reply.error(), Some(&expected));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // The counter does count: the authentic body reaches the handler once.
    assert!(verifier().process(authentic.as_bytes(), &handler).is_ack());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A handler that counts its calls and must not be called.
fn counting(calls: &Cell<usize>) -> impl Fn(&PayoutCallback) -> Result<(), String> + '_ {
    move |_| {
        calls.set(calls.get() + 1);
        Ok(())
    }
}

#[test]
fn malformed_body_is_400_and_never_reaches_the_handler() {
    let calls = Cell::new(0);
    for (body, expected) in [
        (
            &b"not json"[..],
            Error::InvalidJson {
                reason: "expected ident at line 1 column 2".to_owned(),
            },
        ),
        (
            b"",
            Error::InvalidJson {
                reason: "empty body".to_owned(),
            },
        ),
        (b"[]", Error::NotAnObject),
        (
            br#"{"pid":1,"pid":1}"#,
            Error::DuplicateKey { key: "pid".into() },
        ),
        (br#"{"fee":{}}"#, Error::NestedValue { key: "fee".into() }),
    ] {
        let reply = verifier().process(body, &counting(&calls));
        assert_eq!(reply.status_code(), 400);
        assert_eq!(reply.body(), expected.to_string());
        assert_eq!(reply.error(), Some(&expected));
        assert!(!reply.is_ack());
    }
    assert_eq!(calls.get(), 0);
}

#[test]
fn oversized_body_is_413_and_never_reaches_the_handler() {
    let calls = Cell::new(0);
    let body = signed_example();
    let small = Verifier::builder(common::key())
        .max_body_bytes(body.len() - 1)
        .build();
    let reply = small.process(body.as_bytes(), &counting(&calls));
    assert_eq!(reply.status_code(), 413);
    let expected = Error::BodyTooLarge {
        len: body.len(),
        limit: body.len() - 1,
    };
    assert_eq!(reply.body(), expected.to_string());
    assert_eq!(reply.error(), Some(&expected));
    assert_eq!(calls.get(), 0);

    // The same body within the limit is handled.
    let exact = Verifier::builder(common::key())
        .max_body_bytes(body.len())
        .build();
    assert!(exact.process(body.as_bytes(), &counting(&calls)).is_ack());
    assert_eq!(calls.get(), 1);
}

#[test]
fn authentic_but_unknown_status_is_400_and_never_reaches_the_handler() {
    let calls = Cell::new(0);
    for code in [8, -1, 100] {
        let body = signed_body(&example_with_status(&code.to_string()), KEY);
        let reply = verifier().process(body.as_bytes(), &counting(&calls));
        assert_eq!(reply.status_code(), 400);
        assert_eq!(
            reply.body(),
            format!("status {code} is not a documented payout status")
        );
        assert_eq!(reply.error(), Some(&Error::UnknownStatus { code }));
        assert!(reply.error().unwrap().is_contract());
    }
    assert_eq!(calls.get(), 0);
}

#[test]
fn authentic_but_invalid_field_is_400_and_never_reaches_the_handler() {
    let calls = Cell::new(0);
    let body = signed_body(&with_field(DOC_EXAMPLE, "pid", r#""abc""#), KEY);
    let reply = verifier().process(body.as_bytes(), &counting(&calls));
    assert_eq!(reply.status_code(), 400);
    let expected = Error::InvalidField {
        field: "pid",
        problem: "must be an integer (int64)",
    };
    assert_eq!(reply.body(), expected.to_string());
    assert_eq!(reply.error(), Some(&expected));
    assert_eq!(calls.get(), 0);
}

#[test]
fn every_documented_status_reaches_the_handler() {
    for &status in CallbackStatus::ALL {
        let seen = RefCell::new(Vec::new());
        let body = signed_body(&example_with_status(&status.code().to_string()), KEY);
        let reply = verifier().process(body.as_bytes(), &recording(&seen));
        assert!(reply.is_ack(), "{status}");
        assert_eq!(seen.borrow()[0].status, status);
    }
}

#[test]
fn failing_handler_is_500_with_a_generic_body() {
    let calls = Cell::new(0);
    let handler = |_: &PayoutCallback| -> Result<(), String> {
        calls.set(calls.get() + 1);
        Err("database is down: connection refused".to_owned())
    };
    let reply = verifier().process(signed_example().as_bytes(), &handler);
    assert_eq!(calls.get(), 1);
    assert_eq!(reply.status_code(), 500);
    assert_eq!(reply.body(), "internal error");
    assert!(!reply.is_ack());
    assert_eq!(
        reply.error(),
        Some(&Error::HandlerFailed {
            cause: Cause::new("database is down: connection refused"),
            release_failure: None,
        })
    );
    // The handler's text is for the host's logs, not for Cregis.
    assert!(!reply.body().contains("database"));
}

#[test]
fn the_handlers_own_error_is_the_source_and_a_message_is_enough() {
    use std::error::Error as _;

    #[derive(Debug, PartialEq)]
    struct Opaque(u32);
    impl fmt::Display for Opaque {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "opaque failure {}", self.0)
        }
    }
    impl std::error::Error for Opaque {}

    let reply = verifier().process(signed_example().as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(Opaque(7))
    });
    let error = reply.error().unwrap();
    assert_eq!(error.to_string(), "handler failed: opaque failure 7");
    // The host gets its own error back, from `source()` or from the cause.
    assert_eq!(error.source().unwrap().downcast_ref(), Some(&Opaque(7)));
    let Error::HandlerFailed {
        cause,
        release_failure,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (cause.downcast_ref(), release_failure),
        (Some(&Opaque(7)), &None)
    );

    let reply = verifier().process(signed_example().as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(std::io::Error::other("disk full"))
    });
    assert_eq!(reply.status_code(), 500);
    let source = reply.error().unwrap().source().unwrap();
    assert_eq!(
        source.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "disk full"
    );
    // A plain message is a handler error too.
    let reply = verifier().process(signed_example().as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>(format!("row {} is locked", 42))
    });
    assert_eq!(
        reply.error().map(ToString::to_string).as_deref(),
        Some("handler failed: row 42 is locked")
    );
}

#[test]
fn no_non_ack_reply_says_success() {
    let failing = |_: &PayoutCallback| Err::<(), _>("success");
    let replies = [
        verifier().process(b"", &counting(&Cell::new(0))),
        verifier().process(b"success", &counting(&Cell::new(0))),
        verifier().process(br#""success""#, &counting(&Cell::new(0))),
        verifier().process(br#"{"success":1,"success":2}"#, &counting(&Cell::new(0))),
        verifier().process(br#"{"success":[]}"#, &counting(&Cell::new(0))),
        verifier().process(br#"{"sign":"success"}"#, &counting(&Cell::new(0))),
        verifier().process(
            br#"{"sign":"00000000000000000000000000000000"}"#,
            &counting(&Cell::new(0)),
        ),
        Verifier::builder(common::key())
            .max_body_bytes(1)
            .build()
            .process(b"success", &counting(&Cell::new(0))),
        verifier().process(
            signed_body(&example_with_status("8"), KEY).as_bytes(),
            &counting(&Cell::new(0)),
        ),
        verifier().process(signed_example().as_bytes(), &failing),
        Reply::from(Error::HandlerCancelled),
        Reply::from(Error::Store {
            operation: StoreOperation::Claim,
            cause: Cause::new("success"),
        }),
        Reply::from(Error::HandlerFailed {
            cause: Cause::new("success"),
            release_failure: None,
        }),
    ];
    for reply in &replies {
        assert!(!reply.is_ack(), "{reply:?}");
        assert_ne!(reply.status_code(), 200, "{reply:?}");
        assert_ne!(reply.body(), Reply::SUCCESS_ACK, "{reply:?}");
        assert_ne!(reply.body().trim(), Reply::SUCCESS_ACK, "{reply:?}");
        assert!(!reply.body().is_empty(), "{reply:?}");
        assert!(reply.error().is_some(), "{reply:?}");
    }
}

#[test]
fn reply_from_error_uses_its_status_and_message() {
    for error in [
        Error::MissingSign,
        Error::MalformedSign,
        Error::SignatureMismatch,
        Error::NotAnObject,
        Error::BodyTooLarge { len: 9, limit: 8 },
        Error::UnknownStatus { code: 8 },
    ] {
        let reply = Reply::from(error.clone());
        assert_eq!(reply.status_code(), error.http_status());
        assert_eq!(reply.body(), error.to_string());
        assert_eq!(reply.error(), Some(&error));
    }
    // The host's own faults stay private.
    for error in [
        Error::Store {
            operation: StoreOperation::Complete,
            cause: Cause::new("secret detail"),
        },
        Error::HandlerFailed {
            cause: Cause::new("secret detail"),
            release_failure: None,
        },
        Error::HandlerCancelled,
    ] {
        let reply = Reply::from(error.clone());
        assert_eq!(reply.status_code(), error.http_status());
        assert!(matches!(reply.status_code(), 500 | 503), "{reply:?}");
        assert_eq!(reply.body(), "internal error");
        assert_eq!(reply.error(), Some(&error));
    }
}

/// A host's handler as a struct: a ledger keyed on `(cid, status)`, idempotent.
struct Ledger {
    entries: Mutex<Vec<(i64, CallbackStatus)>>,
}

#[derive(Debug)]
struct LedgerFull;

impl fmt::Display for LedgerFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ledger is full")
    }
}

impl std::error::Error for LedgerFull {}

impl CallbackHandler for Ledger {
    type Error = LedgerFull;

    fn handle(&self, callback: &PayoutCallback) -> Result<(), LedgerFull> {
        let mut entries = self.entries.lock().unwrap();
        let entry = (callback.cid, callback.status);
        if !entries.contains(&entry) {
            if entries.len() >= 2 {
                return Err(LedgerFull);
            }
            entries.push(entry);
        }
        Ok(())
    }
}

#[test]
fn struct_handler_works_too() {
    let ledger = Ledger {
        entries: Mutex::new(Vec::new()),
    };
    let verifier = verifier();
    let success = signed_body(&example_with_status("6"), KEY);
    // Delivered twice (a re-push): acknowledged both times, recorded once.
    assert!(verifier.process(success.as_bytes(), &ledger).is_ack());
    assert!(verifier.process(success.as_bytes(), &ledger).is_ack());
    assert_eq!(
        *ledger.entries.lock().unwrap(),
        [(1391751691788288, CallbackStatus::TransactionSuccessful)]
    );

    let failed = signed_body(&example_with_status("7"), KEY);
    assert!(verifier.process(failed.as_bytes(), &ledger).is_ack());
    let rejected = signed_body(&example_with_status("4"), KEY);
    let reply = verifier.process(rejected.as_bytes(), &ledger);
    assert_eq!(reply.status_code(), 500);
    assert_eq!(reply.body(), "internal error");
    assert_eq!(
        reply.error(),
        Some(&Error::HandlerFailed {
            cause: Cause::new("ledger is full"),
            release_failure: None,
        })
    );

    // A forged body never reaches the struct handler either.
    let forged = success.replace(r#""amount":"1.1""#, r#""amount":"2.2""#);
    let reply = verifier.process(forged.as_bytes(), &ledger);
    assert_eq!(reply.error(), Some(&Error::SignatureMismatch));
    assert_eq!(ledger.entries.lock().unwrap().len(), 2);
}

#[test]
fn handler_can_be_a_named_function() {
    fn handle(callback: &PayoutCallback) -> Result<(), String> {
        if callback.is_success() {
            Ok(())
        } else {
            Err(format!("not paid: {}", callback.status))
        }
    }
    let verifier = Verifier::new(common::key());
    let paid = signed_body(&example_with_status("6"), KEY);
    assert!(verifier.process(paid.as_bytes(), &handle).is_ack());
    let failed = signed_body(&example_with_status("7"), KEY);
    assert_eq!(
        verifier.process(failed.as_bytes(), &handle).error(),
        Some(&Error::HandlerFailed {
            cause: Cause::new("not paid: transaction failed"),
            release_failure: None,
        })
    );
}

#[test]
fn verifier_is_shared_across_threads() {
    let verifier = verifier();
    let body = signed_example();
    let calls = AtomicUsize::new(0);
    let handler = |_: &PayoutCallback| -> Result<(), String> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let clone = verifier.clone();
            let (verifier, body, handler) = (&verifier, &body, &handler);
            scope.spawn(move || {
                assert!(verifier.process(body.as_bytes(), handler).is_ack());
                assert!(clone.process(body.as_bytes(), handler).is_ack());
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 8);
}
