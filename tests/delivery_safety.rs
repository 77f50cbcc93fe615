//! Delivery safety: idempotent processing, the expected project, freshness and key rotation.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{DOC_EXAMPLE, KEY, assert_handled, example_with_status, signed_body, signed_example};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::idempotency::Fact;
use cregis_payout_callback::{
    ApiKey, CallbackStatus, Error, PayoutCallback, Reply, Verifier,
    error::{BoxError, Cause, KeyError, StoreOperation},
    idempotency::{
        Attempt, Claim, DEFAULT_CLAIM_LEASE, DeliveryKey, Fingerprint, IdempotencyStore,
        MemoryIdempotencyStore, Store,
    },
    testing::ManualClock,
    verifier::MatchedKey,
};

/// `timestamp` of the documented example.
const SENT_MS: u64 = 1687850657960;

fn sent_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(SENT_MS)
}

/// The documented example with status 6 and the given nonce and timestamp, signed.
fn delivery(nonce: &str, timestamp: u64) -> String {
    let pairs: Vec<(&str, String)> = example_with_status("6")
        .into_iter()
        .map(|(k, v)| match k {
            "nonce" => (k, format!("\"{nonce}\"")),
            "timestamp" => (k, timestamp.to_string()),
            _ => (k, v),
        })
        .collect();
    signed_body(&pairs, KEY)
}

/// An acknowledgement of a delivery handled before.
#[track_caller]
fn assert_duplicate(reply: &Reply) {
    assert!(reply.is_ack() && reply.is_duplicate(), "{reply:?}");
    assert_eq!((reply.body(), reply.error()), ("success", None));
}

/// A handler that counts its calls and succeeds.
fn counting(calls: &AtomicUsize) -> impl Fn(&PayoutCallback) -> Result<(), String> + '_ {
    move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn idempotent_verifier() -> Verifier<Store<MemoryIdempotencyStore>> {
    Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .build()
}

#[test]
fn a_repeated_delivery_is_acknowledged_without_handling_it_again() {
    let verifier = idempotent_verifier();
    let calls = AtomicUsize::new(0);
    let first = verifier.process(delivery("aaaaaa", SENT_MS).as_bytes(), &counting(&calls));
    // A re-push from the console may carry a fresh nonce and timestamp: still the same fact.
    let again = verifier.process(
        delivery("bbbbbb", SENT_MS + 86_400_000).as_bytes(),
        &counting(&calls),
    );
    assert_handled(&first);
    assert_duplicate(&again);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn another_status_of_the_same_payout_is_a_new_fact_unless_both_are_final() {
    let verifier = idempotent_verifier();
    let calls = AtomicUsize::new(0);
    let process = |status| {
        let body = signed_body(&example_with_status(status), KEY);
        verifier.process(body.as_bytes(), &counting(&calls))
    };
    // Waiting for signatures, then successful: two facts.
    assert!(process("5").is_ack());
    assert!(process("6").is_ack());
    // Failed after successful: final statuses exclude each other.
    let refused = process("7");
    assert_eq!(
        (
            refused.status_code(),
            refused.error().map(cregis_payout_callback::Error::kind)
        ),
        (409, Some("ConflictingFinalStatus"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_delivery_in_progress_elsewhere_gets_409_and_is_not_handled() {
    let verifier = idempotent_verifier();
    let body = signed_example();
    let calls = AtomicUsize::new(0);
    // While the handler runs, the same delivery arrives again.
    let reentrant = |_: &PayoutCallback| -> Result<(), String> {
        let reply = verifier.process(body.as_bytes(), &counting(&calls));
        assert_eq!(reply.status_code(), 409);
        assert_eq!(reply.body(), "the same delivery is being processed");
        assert_eq!(reply.error(), Some(&Error::DeliveryInProgress));
        Ok(())
    };
    assert_handled(&verifier.process(body.as_bytes(), &reentrant));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_failing_handler_releases_the_claim_so_a_re_push_succeeds() {
    let verifier = idempotent_verifier();
    let calls = AtomicUsize::new(0);
    let flaky = |_: &PayoutCallback| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("database is down")
        } else {
            Ok(())
        }
    };
    let body = signed_example();
    let first = verifier.process(body.as_bytes(), &flaky);
    assert_eq!(first.status_code(), 500);
    assert_eq!(
        first.error(),
        Some(&Error::HandlerFailed {
            cause: Cause::new("database is down"),
            release_failure: None,
        })
    );
    assert_handled(&verifier.process(body.as_bytes(), &flaky));
    assert_duplicate(&verifier.process(body.as_bytes(), &flaky));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_panicking_handler_leaves_its_claim_in_progress() {
    let store = Arc::new(MemoryIdempotencyStore::default());
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    let body = signed_example();
    let panicking = |_: &PayoutCallback| -> Result<(), String> { panic!("handler bug") };
    let result = catch_unwind(AssertUnwindSafe(|| {
        verifier.process(body.as_bytes(), &panicking)
    }));
    assert!(result.is_err());
    // Whether the effect happened is unknown: re-deliveries are refused, never run twice.
    let calls = AtomicUsize::new(0);
    let reply = verifier.process(body.as_bytes(), &counting(&calls));
    assert_eq!(reply.error(), Some(&Error::DeliveryInProgress));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Once the host has checked, it releases the claim and a re-push is handled.
    let key = DeliveryKey::new(
        CallbackKind::Payout,
        1382528827416576,
        1391751691788288,
        Fact::Status(CallbackStatus::PendingApproval),
    );
    assert_eq!(store.claims_in_progress()[0].key, key);
    assert!(store.release_claim(&key));
    assert_handled(&verifier.process(body.as_bytes(), &counting(&calls)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_dropped_async_delivery_leaves_its_claim_in_progress_but_an_unpolled_one_claims_nothing() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    let verifier = idempotent_verifier();
    let body = signed_example();
    let never = |_: &PayoutCallback| std::future::pending::<Result<(), String>>();
    // Created and dropped without a poll: nothing happened.
    drop(verifier.process_async(body.as_bytes(), &never));
    let calls = AtomicUsize::new(0);
    // Polled once (the claim is taken, the handler starts), then dropped mid-handler.
    {
        let mut delivery = pin!(verifier.process_async(body.as_bytes(), &never));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(delivery.as_mut().poll(&mut cx).is_pending());
    }
    let reply = verifier.process(body.as_bytes(), &counting(&calls));
    assert_eq!(reply.error(), Some(&Error::DeliveryInProgress));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn sixteen_concurrent_duplicates_are_handled_exactly_once() {
    const THREADS: usize = 16;
    let verifier = idempotent_verifier();
    let body = signed_example();
    let calls = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let handler = |_: &PayoutCallback| -> Result<(), String> {
        calls.fetch_add(1, Ordering::SeqCst);
        // Hold the claim long enough for the other deliveries to run into it.
        thread::sleep(Duration::from_millis(50));
        Ok(())
    };
    let replies: Vec<Reply> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    verifier.process(body.as_bytes(), &handler)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for reply in &replies {
        assert!(
            reply.is_ack() || reply.status_code() == 409,
            "unexpected reply {reply:?}"
        );
        assert!(reply.is_ack() == (reply.body() == "success"));
    }
    assert!(replies.iter().any(Reply::is_ack));
    // Once settled, every re-delivery is acknowledged without running the handler.
    for _ in 0..THREADS {
        assert_duplicate(&verifier.process(body.as_bytes(), &handler));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A store whose every call fails, or whose `complete` alone fails.
struct BrokenStore {
    claim_works: bool,
    released: Mutex<Vec<DeliveryKey>>,
}

impl IdempotencyStore for BrokenStore {
    fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> {
        if self.claim_works {
            Ok(Claim::Claimed)
        } else {
            Err("connection refused".into())
        }
    }

    fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
        Err("disk full".into())
    }

    fn release(&self, attempt: &Attempt) -> Result<(), BoxError> {
        self.released.lock().unwrap().push(attempt.key);
        Err("still disk full".into())
    }
}

#[test]
fn a_failing_store_fails_closed_without_calling_the_handler() {
    let verifier = Verifier::builder(common::key())
        .idempotency(BrokenStore {
            claim_works: false,
            released: Mutex::default(),
        })
        .build();
    let calls = AtomicUsize::new(0);
    let reply = verifier.process(signed_example().as_bytes(), &counting(&calls));
    assert_eq!(reply.status_code(), 500);
    assert_eq!(reply.body(), "internal error");
    assert_eq!(
        reply.error(),
        Some(&Error::Store {
            operation: StoreOperation::Claim,
            cause: Cause::new("connection refused"),
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_handled_delivery_the_store_cannot_record_is_still_acknowledged() {
    let verifier = Verifier::builder(common::key())
        .idempotency(BrokenStore {
            claim_works: true,
            released: Mutex::default(),
        })
        .build();
    let calls = AtomicUsize::new(0);
    let reply = verifier.process(signed_example().as_bytes(), &counting(&calls));
    assert!(reply.is_ack());
    assert_eq!(reply.body(), "success");
    assert_eq!(
        reply.error(),
        Some(&Error::Store {
            operation: StoreOperation::Complete,
            cause: Cause::new("disk full"),
        })
    );
}

#[test]
fn a_failed_release_is_reported_with_the_handler_failure() {
    let store = Arc::new(BrokenStore {
        claim_works: true,
        released: Mutex::default(),
    });
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    let reply = verifier.process(signed_example().as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>("boom")
    });
    assert_eq!(reply.status_code(), 500);
    assert_eq!(
        reply.error(),
        Some(&Error::HandlerFailed {
            cause: Cause::new("boom"),
            release_failure: Some(Cause::new("still disk full")),
        })
    );
    assert_eq!(store.released.lock().unwrap().len(), 1);
}

#[test]
fn unverified_deliveries_never_touch_the_store() {
    let store = Arc::new(MemoryIdempotencyStore::new(1));
    let verifier = Verifier::builder(common::key())
        .idempotency(Arc::clone(&store))
        .build();
    let forged = signed_body(DOC_EXAMPLE, "fake-attacker-key");
    let calls = AtomicUsize::new(0);
    assert_eq!(
        verifier
            .process(forged.as_bytes(), &counting(&calls))
            .status_code(),
        401
    );
    assert_eq!(
        format!("{store:?}"),
        "MemoryIdempotencyStore { capacity: 1, len: 0, .. }"
    );
}

/// An attempt at key (1, `cid`, 6), begun at `sent_at()`, with a 5-minute lease.
fn attempt(cid: i64) -> Attempt {
    let key = DeliveryKey::new(
        CallbackKind::Payout,
        1,
        cid,
        Fact::Status(CallbackStatus::TransactionSuccessful),
    );
    Attempt::new(
        key,
        Fingerprint::from_bytes([1; 16]),
        sent_at(),
        DEFAULT_CLAIM_LEASE,
    )
}

#[test]
fn memory_store_forgets_the_oldest_handled_delivery_when_full() {
    let store = MemoryIdempotencyStore::new(2);
    for cid in 1..=3 {
        assert_eq!(store.claim(&attempt(cid)).unwrap(), Claim::Claimed);
        store.complete(&attempt(cid)).unwrap();
    }
    assert_eq!(store.claim(&attempt(3)).unwrap(), Claim::AlreadyDone);
    assert_eq!(store.claim(&attempt(2)).unwrap(), Claim::AlreadyDone);
    // Key 1 was forgotten to make room for key 3.
    assert_eq!(store.claim(&attempt(1)).unwrap(), Claim::Claimed);
}

#[test]
fn memory_store_full_of_live_claims_refuses_new_ones_until_one_expires() {
    let store = MemoryIdempotencyStore::new(1);
    let first = attempt(1);
    assert_eq!(store.claim(&first).unwrap(), Claim::Claimed);
    let err = store.claim(&attempt(2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory idempotency store is full of deliveries in progress"
    );
    store.release(&first).unwrap();
    assert_eq!(store.claim(&attempt(2)).unwrap(), Claim::Claimed);
    // Full again; once the claim on key 2 has expired, its slot is taken over.
    let mut late = attempt(3);
    late.started = first.lease_until() + Duration::from_nanos(1);
    assert_eq!(store.claim(&late).unwrap(), Claim::Claimed);
    assert_eq!(store.claims_in_progress().len(), 1);
    assert_eq!(store.claims_in_progress()[0].key, late.key);
}

#[test]
fn expected_pid_refuses_an_authentic_callback_for_another_project() {
    let verifier = Verifier::builder(common::key()).expected_pid(42).build();
    let err = verifier.verify(signed_example().as_bytes()).unwrap_err();
    assert_eq!(
        err,
        Error::PidMismatch {
            expected: 42,
            found: 1382528827416576
        }
    );
    assert_eq!(
        err.to_string(),
        "callback is for project 1382528827416576, not the expected project 42"
    );
    assert_eq!(err.http_status(), 400);
    assert!(err.is_contract());

    let ours = Verifier::builder(common::key())
        .expected_pid(1382528827416576)
        .build();
    assert_eq!(
        ours.verify(signed_example().as_bytes()),
        Ok(MatchedKey::Current)
    );
    // The pid check comes after the signature: a forgery is still a 401.
    let forged = signed_body(DOC_EXAMPLE, "fake-attacker-key");
    assert_eq!(
        verifier.verify(forged.as_bytes()),
        Err(Error::SignatureMismatch)
    );
}

#[test]
fn expected_pid_reads_a_pid_sent_as_a_string() {
    let pairs: Vec<(&str, String)> = DOC_EXAMPLE
        .iter()
        .map(|&(k, v)| {
            (
                k,
                if k == "pid" {
                    format!("\"{v}\"")
                } else {
                    v.to_owned()
                },
            )
        })
        .collect();
    let verifier = Verifier::builder(common::key())
        .expected_pid(1382528827416576)
        .build();
    assert_eq!(
        verifier.verify(signed_body(&pairs, KEY).as_bytes()),
        Ok(MatchedKey::Current)
    );
}

#[test]
fn max_age_boundaries_are_exact_to_the_millisecond() {
    let max_age = Duration::from_secs(300);
    let clock = ManualClock::new(sent_at());
    let verifier = Verifier::builder(common::key())
        .max_age(max_age)
        .clock(clock.clone())
        .build();
    let body = signed_example();
    let at = |offset_ms: u64| {
        clock.set(sent_at() + Duration::from_millis(offset_ms));
        &verifier
    };
    assert_eq!(at(0).verify(body.as_bytes()), Ok(MatchedKey::Current));
    assert_eq!(at(300_000).verify(body.as_bytes()), Ok(MatchedKey::Current));
    let err = at(300_001).verify(body.as_bytes()).unwrap_err();
    assert_eq!(err, Error::TimestampTooOld { max_age });
    assert_eq!(
        err.to_string(),
        "timestamp is older than the maximum age of 300s"
    );
    assert!(err.is_authentication());
    assert_eq!(err.http_status(), 401);
    // The same through the parsing and processing entry points.
    assert_eq!(
        at(300_001).verify_and_parse(body.as_bytes()),
        Err(Error::TimestampTooOld { max_age })
    );
    let calls = AtomicUsize::new(0);
    let reply = at(300_001).process(body.as_bytes(), &counting(&calls));
    assert_eq!(reply.status_code(), 401);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn future_skew_defaults_to_one_minute_once_max_age_is_set() {
    let clock = ManualClock::new(sent_at());
    let verifier = Verifier::builder(common::key())
        .max_age(Duration::from_secs(300))
        .clock(clock.clone())
        .build();
    let body = signed_example();
    let before = |ms: u64| {
        clock.set(sent_at() - Duration::from_millis(ms));
        &verifier
    };
    assert_eq!(
        before(60_000).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
    let err = before(60_001).verify(body.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        Error::TimestampInFuture {
            skew: Duration::from_secs(60)
        }
    );
    assert_eq!(err.to_string(), "timestamp is more than 60s in the future");
    assert_eq!(err.http_status(), 401);
}

#[test]
fn future_skew_can_be_set_and_works_alone() {
    let body = signed_example();
    let skew = Duration::from_millis(1500);
    let clock = ManualClock::new(sent_at());
    let verifier = Verifier::builder(common::key())
        .future_skew(skew)
        .clock(clock.clone())
        .build();
    let before = |ms: u64| {
        clock.set(sent_at() - Duration::from_millis(ms));
        &verifier
    };
    let at = |now: SystemTime| {
        clock.set(now);
        &verifier
    };
    assert_eq!(
        before(1500).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
    assert_eq!(
        before(1501).verify(body.as_bytes()),
        Err(Error::TimestampInFuture { skew })
    );
    // No max age: any age passes.
    assert_eq!(
        at(UNIX_EPOCH + Duration::from_secs(1 << 40)).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
}

#[test]
fn freshness_is_off_by_default() {
    let clock = ManualClock::new(UNIX_EPOCH);
    let verifier = Verifier::builder(common::key())
        .clock(clock.clone())
        .build();
    let body = signed_example();
    assert_eq!(verifier.verify(body.as_bytes()), Ok(MatchedKey::Current));
    clock.set(UNIX_EPOCH + Duration::from_secs(1 << 40));
    assert_eq!(verifier.verify(body.as_bytes()), Ok(MatchedKey::Current));
}

#[test]
fn extreme_timestamps_and_clocks_do_not_overflow() {
    let clock = ManualClock::new(UNIX_EPOCH);
    let verifier = Verifier::builder(common::key())
        .max_age(Duration::MAX)
        .future_skew(Duration::ZERO)
        .clock(clock.clone())
        .build();
    let strict = Verifier::builder(common::key())
        .max_age(Duration::ZERO)
        .future_skew(Duration::MAX)
        .clock(clock.clone())
        .build();
    let before_epoch = UNIX_EPOCH - Duration::from_secs(1 << 40);
    for timestamp in [i64::MIN, -1, 0, i64::MAX] {
        let pairs: Vec<(&str, String)> = DOC_EXAMPLE
            .iter()
            .map(|&(k, v)| {
                (
                    k,
                    if k == "timestamp" {
                        timestamp.to_string()
                    } else {
                        v.to_owned()
                    },
                )
            })
            .collect();
        let body = signed_body(&pairs, KEY);
        for now in [UNIX_EPOCH, before_epoch, sent_at()] {
            clock.set(now);
            let loose = verifier.verify(body.as_bytes());
            let tight = strict.verify(body.as_bytes());
            // Every timestamp is old enough for Duration::MAX, and never too far ahead for it.
            assert!(
                matches!(
                    loose,
                    Ok(MatchedKey::Current) | Err(Error::TimestampInFuture { .. })
                ),
                "{loose:?}"
            );
            assert!(
                matches!(
                    tight,
                    Ok(MatchedKey::Current) | Err(Error::TimestampTooOld { .. })
                ),
                "{tight:?}"
            );
        }
    }
}

#[test]
fn a_missing_timestamp_is_an_invalid_field_when_freshness_is_checked() {
    let pairs: Vec<(&str, &str)> = DOC_EXAMPLE
        .iter()
        .copied()
        .filter(|&(k, _)| k != "timestamp")
        .collect();
    let body = signed_body(&pairs, KEY);
    let verifier = Verifier::builder(common::key())
        .max_age(Duration::from_secs(60))
        .build();
    assert_eq!(
        verifier.verify(body.as_bytes()),
        Err(Error::InvalidField {
            field: "timestamp",
            problem: "is missing, null or empty"
        })
    );
}

#[test]
fn during_a_key_rotation_either_key_verifies() {
    let verifier = Verifier::builder(common::api_key("fake-new-key"))
        .also_accept(common::api_key("fake-old-key"))
        .build();
    for (key, matched) in [
        ("fake-new-key", MatchedKey::Current),
        ("fake-old-key", MatchedKey::Previous { index: 0 }),
    ] {
        let body = signed_body(DOC_EXAMPLE, key);
        assert_eq!(
            verifier.verify(body.as_bytes()),
            Ok(matched),
            "signed with {key}"
        );
    }
    let other = signed_body(DOC_EXAMPLE, "fake-third-key");
    assert_eq!(
        verifier.verify(other.as_bytes()),
        Err(Error::SignatureMismatch)
    );
    let debug = format!("{verifier:?}");
    assert!(
        !debug.contains("fake-new-key") && !debug.contains("fake-old-key"),
        "{debug}"
    );
}

#[test]
fn a_rotation_key_must_not_be_empty() {
    assert_eq!(ApiKey::new("").unwrap_err(), KeyError::Empty);
    assert_eq!(ApiKey::new(" \n").unwrap_err(), KeyError::Empty);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let verifier = Verifier::builder(common::key())
        .max_body_bytes(1 << 20)
        .build();
    let mut body = String::from(r#"{"a":"#);
    body.push_str(&"[".repeat(100_000));
    let err = verifier.verify(body.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err:?}");
    let bare = "[".repeat(100_000);
    let err = verifier.verify(bare.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err:?}");
}

#[test]
fn a_ten_megabyte_body_is_refused_before_parsing() {
    let verifier = Verifier::new(common::key());
    let body = vec![b'{'; 10 * 1024 * 1024];
    assert_eq!(
        verifier.verify(&body),
        Err(Error::BodyTooLarge {
            len: 10 * 1024 * 1024,
            limit: 64 * 1024
        })
    );
    let reply = verifier.process(&body, &|_: &PayoutCallback| Ok::<(), String>(()));
    assert_eq!(reply.status_code(), 413);
}

#[test]
fn freshness_counts_the_fraction_of_a_millisecond() {
    let clock = ManualClock::new(sent_at());
    let verifier = Verifier::builder(common::key())
        .max_age(Duration::from_millis(10))
        .future_skew(Duration::from_millis(10))
        .clock(clock.clone())
        .build();
    let body = signed_example();
    let half_ms = Duration::from_micros(500);
    let ten_ms = Duration::from_millis(10);
    let at = |now: SystemTime| {
        clock.set(now);
        &verifier
    };
    assert_eq!(
        at(sent_at() + ten_ms).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
    assert_eq!(
        at(sent_at() + ten_ms + half_ms).verify(body.as_bytes()),
        Err(Error::TimestampTooOld { max_age: ten_ms })
    );
    assert_eq!(
        at(sent_at() - ten_ms).verify(body.as_bytes()),
        Ok(MatchedKey::Current)
    );
    assert_eq!(
        at(sent_at() - ten_ms - half_ms).verify(body.as_bytes()),
        Err(Error::TimestampInFuture { skew: ten_ms })
    );
}
