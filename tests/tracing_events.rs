//! The `tracing` feature: one structured event per delivery, with the fields a host logs and
//! counts, and never the key or the expected signature.
#![cfg(feature = "tracing")]

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use common::KEY;
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{
    PayoutCallback, Verifier,
    error::BoxError,
    idempotency::{Attempt, Claim, IdempotencyStore, MemoryIdempotencyStore},
    signature::sign_body,
    verifier::MatchedKey,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One captured event: its level, target and fields (strings unquoted).
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A subscriber that keeps every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The events `run` emits.
fn events_of(run: impl FnOnce()) -> Vec<Captured> {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), run);
    capture.0.lock().unwrap().clone()
}

#[track_caller]
fn only(events: &[Captured]) -> &Captured {
    assert_eq!(events.len(), 1, "one event per delivery: {events:?}");
    &events[0]
}

#[test]
fn a_handled_delivery_and_its_duplicate() {
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let body = CallbackBuilder::new().cid(77).body(&common::key()).unwrap();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    let first = events_of(|| drop(verifier.process(body.as_bytes(), &ok)));
    let event = only(&first);
    assert_eq!(
        (event.level, event.target.as_str()),
        (Level::INFO, "cregis_payout_callback")
    );
    for (name, value) in [
        ("outcome", "acknowledged"),
        ("status_code", "200"),
        ("duplicate", "false"),
        ("error_kind", "none"),
        ("error", ""),
        ("pid", "1382528827416576"),
        ("cid", "77"),
        ("status", "6"),
        ("message", "cregis payout callback acknowledged"),
    ] {
        assert_eq!(event.field(name), Some(value), "{name} in {event:?}");
    }
    let again = events_of(|| drop(verifier.process(body.as_bytes(), &ok)));
    let event = only(&again);
    assert_eq!(event.level, Level::INFO);
    assert_eq!(event.field("outcome"), Some("duplicate"));
    assert_eq!(event.field("duplicate"), Some("true"));
}

#[test]
fn a_forgery_is_a_warning_without_the_key_or_the_expected_sign() {
    let verifier = Verifier::new(common::key());
    let builder = CallbackBuilder::new();
    let forged = builder.body(&common::api_key("fake-attacker-key")).unwrap();
    let expected = sign_body(forged.as_bytes(), &common::key()).unwrap();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    let events = events_of(|| drop(verifier.process(forged.as_bytes(), &ok)));
    let event = only(&events);
    assert_eq!(event.level, Level::WARN);
    assert_eq!(event.field("outcome"), Some("refused"));
    assert_eq!(event.field("status_code"), Some("401"));
    assert_eq!(event.field("error_kind"), Some("SignatureMismatch"));
    assert_eq!(event.field("error"), Some("signature does not match"));
    // Not read, so not named.
    assert_eq!(event.field("pid"), None);
    for value in event.fields.values() {
        assert!(
            !value.contains(KEY) && !value.contains(&expected),
            "{value}"
        );
    }
}

#[test]
fn a_failing_handler_is_an_error_naming_its_delivery() {
    let verifier = Verifier::new(common::key());
    let body = CallbackBuilder::new()
        .cid(78)
        .status_code(7)
        .body(&common::key())
        .unwrap();
    let failing = |_: &PayoutCallback| async { Err::<(), _>("database is down") };
    let events = events_of(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        drop(runtime.block_on(verifier.process_async(body.as_bytes(), &failing)));
    });
    let event = only(&events);
    assert_eq!(event.level, Level::ERROR);
    assert_eq!(event.field("status_code"), Some("500"));
    assert_eq!(event.field("error_kind"), Some("HandlerFailed"));
    assert_eq!(
        event.field("error"),
        Some("handler failed: database is down")
    );
    assert_eq!(
        (event.field("cid"), event.field("status")),
        (Some("78"), Some("7"))
    );
}

#[test]
fn every_refusal_names_its_kind() {
    let verifier = Verifier::builder(common::key()).expected_pid(1).build();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    let oversized = vec![b' '; 70_000];
    let cases: [(&[u8], &str, &str); 3] = [
        (b"not json", "400", "InvalidJson"),
        (br#"{"pid":1}"#, "401", "MissingSign"),
        (&oversized, "413", "BodyTooLarge"),
    ];
    for (body, status, kind) in cases {
        let events = events_of(|| drop(verifier.process(body, &ok)));
        let event = only(&events);
        assert_eq!(event.level, Level::WARN);
        assert_eq!(
            (event.field("status_code"), event.field("error_kind")),
            (Some(status), Some(kind))
        );
    }
    let other_project = CallbackBuilder::new().body(&common::key()).unwrap();
    let events = events_of(|| drop(verifier.process(other_project.as_bytes(), &ok)));
    assert_eq!(only(&events).field("error_kind"), Some("PidMismatch"));
}

#[test]
fn the_axum_route_reports_the_replies_it_makes_itself() {
    use cregis_payout_callback::axum::callback_route;

    let panicking = |_: &PayoutCallback| async {
        panic!("the handler's own bug");
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    };
    let body = CallbackBuilder::new().cid(79).body(&common::key()).unwrap();
    let events = events_of(|| {
        common::block_on(async {
            let verifier = Verifier::new(common::key());
            let app = axum::Router::new().route("/cb", callback_route(verifier, panicking));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/cb", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let client = reqwest::Client::new();
            let panicked = client.post(&url).body(body).send().await.unwrap();
            assert_eq!(panicked.status(), 500);
            let oversized = client
                .post(&url)
                .body(vec![b' '; 70_000])
                .send()
                .await
                .unwrap();
            assert_eq!(oversized.status(), 413);
        });
    });
    let ours: Vec<&Captured> = events
        .iter()
        .filter(|e| e.target == "cregis_payout_callback")
        .collect();
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert_eq!(ours[0].level, Level::ERROR);
    assert_eq!(ours[0].field("error_kind"), Some("HandlerFailed"));
    assert_eq!(
        ours[0].field("error"),
        Some("handler failed: the handler panicked: the handler's own bug")
    );
    assert_eq!(ours[0].field("cid"), Some("79"));
    assert_eq!(ours[1].level, Level::WARN);
    assert_eq!(
        (ours[1].field("status_code"), ours[1].field("error_kind")),
        (Some("413"), Some("BodyTooLarge"))
    );
}

/// A body whose only key is `key_len` bytes of `k`, its value nested (`nested`) or repeated.
fn body_with_long_key(key_len: usize, nested: bool) -> String {
    let key = "k".repeat(key_len);
    if nested {
        format!(r#"{{"{key}":{{"a":1}}}}"#)
    } else {
        format!(r#"{{"{key}":1,"{key}":2}}"#)
    }
}

#[test]
fn a_sixty_kib_key_stays_out_of_the_reply_and_the_event() {
    const LONG: usize = 60 * 1024;
    // Room for the duplicate's two 60 KiB copies.
    let verifier = Verifier::builder(common::key())
        .max_body_bytes(256 * 1024)
        .build();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    for (nested, kind) in [(false, "DuplicateKey"), (true, "NestedValue")] {
        let body = body_with_long_key(LONG, nested);
        assert!(
            body.len() < verifier.max_body_bytes(),
            "within the body limit"
        );
        let mut reply = None;
        let events = events_of(|| reply = Some(verifier.process(body.as_bytes(), &ok)));
        let reply = reply.unwrap();
        assert_eq!(reply.status_code(), 400);
        assert!(reply.body().len() < 200, "{}", reply.body());
        // The error still names the key's beginning and its length.
        assert!(reply.body().contains(&"k".repeat(20)), "{}", reply.body());
        assert!(
            reply.body().contains(&format!("({LONG} bytes)")),
            "{}",
            reply.body()
        );
        let event = only(&events);
        assert_eq!(event.field("error_kind"), Some(kind));
        assert_eq!(event.field("error"), Some(reply.body()));
        for (name, value) in &event.fields {
            assert!(value.len() < 200, "{name} is {} bytes", value.len());
        }
    }
}

#[test]
fn a_rotation_says_which_key_signed_on_the_reply_and_in_the_event() {
    let (new, old) = (
        common::api_key("fake-new-key"),
        common::api_key("fake-old-key"),
    );
    let verifier = Verifier::builder(new.clone())
        .also_accept(old.clone())
        .build();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    for (key, matched, traced) in [
        (&old, MatchedKey::Previous { index: 0 }, "previous key 0"),
        (&new, MatchedKey::Current, "current key"),
    ] {
        let body = CallbackBuilder::new().body(key).unwrap();
        let mut reply = None;
        let events = events_of(|| reply = Some(verifier.process(body.as_bytes(), &ok)));
        let reply = reply.unwrap();
        assert!(reply.is_ack(), "{reply:?}");
        assert_eq!(reply.signed_with(), Some(matched));
        assert_eq!(only(&events).field("signed_with"), Some(traced));
    }
    // A forgery matched no key, and says none.
    let forged = CallbackBuilder::new()
        .body(&common::api_key("fake-attacker-key"))
        .unwrap();
    let mut reply = None;
    let events = events_of(|| reply = Some(verifier.process(forged.as_bytes(), &ok)));
    assert_eq!(reply.unwrap().signed_with(), None);
    assert_eq!(only(&events).field("signed_with"), None);
}

/// A store that claims, but cannot record a handled delivery.
struct CompleteFails;

impl IdempotencyStore for CompleteFails {
    fn claim(&self, _: &Attempt) -> Result<Claim, BoxError> {
        Ok(Claim::Claimed)
    }
    fn complete(&self, _: &Attempt) -> Result<(), BoxError> {
        Err("disk full".into())
    }
    fn release(&self, _: &Attempt) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn an_acknowledged_delivery_the_store_could_not_record_is_an_error_event() {
    let verifier = Verifier::builder(common::key())
        .idempotency(CompleteFails)
        .build();
    let body = CallbackBuilder::new().body(&common::key()).unwrap();
    let ok = |_: &PayoutCallback| Ok::<(), String>(());
    let mut reply = None;
    let events = events_of(|| reply = Some(verifier.process(body.as_bytes(), &ok)));
    assert!(reply.unwrap().is_ack());
    let event = only(&events);
    // The effect happened, but the claim stays in progress: the host must hear of it.
    assert_eq!(event.level, Level::ERROR);
    assert_eq!(event.field("outcome"), Some("acknowledged"));
    assert_eq!(event.field("error_kind"), Some("Store"));
}

#[cfg(feature = "sqlite")]
#[test]
fn the_inbox_reports_accepted_retry_dead_and_discarded_entries() {
    use cregis_payout_callback::inbox::{EntryState, Inbox, RetryPolicy, SqliteInbox, Worker};
    use std::time::Duration;

    let events = events_of(|| {
        common::block_on(async {
            let inbox = SqliteInbox::open_in_memory().await.unwrap();
            let body = CallbackBuilder::new().cid(80).body(&common::key()).unwrap();
            let reply = Verifier::new(common::key())
                .accept(body.as_bytes(), &inbox)
                .await;
            assert!(reply.is_ack());
            let failing = |_: &PayoutCallback| async { Err::<(), _>("ledger is down") };
            let worker = Worker::new(inbox.clone(), failing)
                .retry(RetryPolicy {
                    initial: Duration::from_millis(1),
                    max_attempts: 2,
                    ..RetryPolicy::default()
                })
                .poll_interval(Duration::from_millis(5));
            // The shutdown signal comes from a task of its own: a shutdown future that queried
            // the inbox itself would hold its (only, in memory) connection while the worker
            // waits for it.
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let watcher = tokio::spawn({
                let inbox = inbox.clone();
                async move {
                    while inbox.list(&[EntryState::Dead]).await.unwrap().is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let _ = stop.send(());
                }
            });
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await;
            watcher.await.unwrap();
            let id = inbox.list(&[EntryState::Dead]).await.unwrap()[0].id;
            assert!(inbox.discard(id, "refunded by hand").await.unwrap());
        });
    });
    let ours: Vec<&Captured> = events
        .iter()
        .filter(|e| e.target == "cregis_payout_callback")
        .collect();
    let kinds: Vec<Option<&str>> = ours.iter().map(|e| e.field("event")).collect();
    assert_eq!(
        kinds,
        [
            None,
            Some("retry scheduled"),
            Some("dead"),
            Some("discarded")
        ],
        "{ours:?}"
    );
    assert_eq!(ours[0].field("outcome"), Some("acknowledged"));
    assert_eq!(
        (ours[1].level, ours[1].field("error"), ours[1].field("cid")),
        (Level::WARN, Some("ledger is down"), Some("80"))
    );
    assert_eq!(
        (ours[2].level, ours[2].field("attempt")),
        (Level::ERROR, Some("2"))
    );
    assert_eq!(
        (ours[3].level, ours[3].field("reason")),
        (Level::WARN, Some("refunded by hand"))
    );
    for event in &ours {
        for value in event.fields.values() {
            assert!(!value.contains(KEY), "{value}");
        }
    }
}

#[cfg(feature = "reconcile")]
#[test]
fn the_reconciler_reports_each_pass_and_warns_of_flagged_and_failed_payouts() {
    use std::time::{Duration, SystemTime};

    use cregis_payout_callback::reconcile::{Pending, Reconciler};
    use cregis_payout_callback::request::{Client, RawResponse, Signer};
    use cregis_payout_callback::{CallbackKind, Reply};

    // Cregis, in memory: cid 1 succeeded as asked, cid 2 reports another amount, cid 3 errs.
    let transport = |_: &'static str, body: String| async move {
        let answer = |amount: &str| RawResponse {
            status: 200,
            body: format!(
                r#"{{"code":"00000","msg":"ok","data":{{"pid":1382528827416576,"chain_id":"195",
                "token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
                "amount":"{amount}","status":6,"third_party_id":"order-1","txid":"6dd05b09",
                "block_height":"34527604","block_time":1686814482000}}}}"#
            ),
        };
        Ok::<_, std::io::Error>(if body.contains(r#""cid":1,"#) {
            answer("1.1")
        } else if body.contains(r#""cid":2,"#) {
            answer("9.9")
        } else {
            RawResponse {
                status: 503,
                body: String::new(),
            }
        })
    };
    let events = events_of(|| {
        common::block_on(async {
            let client = Client::new(Signer::new(common::key(), 1382528827416576), transport);
            let deliver = |_: CallbackKind, _: Vec<u8>| std::future::ready(Reply::ack());
            let reconciler = Reconciler::new(client, deliver)
                .grace(Duration::ZERO)
                .concurrency(1)
                .error_backoff(Duration::from_millis(1));
            let pending: Vec<Pending> = (1..=3)
                .map(|cid| {
                    let to = "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS";
                    Pending::new(CallbackKind::Payout, cid, SystemTime::now(), "1.1", to)
                })
                .collect();
            let report = reconciler.reconcile(&pending).await;
            assert_eq!((report.asked, report.delivered), (3, 1));
        });
    });
    let reconciling: Vec<&Captured> = events
        .iter()
        .filter(|e| {
            e.field("message")
                .is_some_and(|m| m.starts_with("reconcile"))
        })
        .collect();
    let flagged = reconciling
        .iter()
        .find(|e| e.field("field") == Some("amount"))
        .expect("a flagged event");
    assert_eq!(flagged.level, Level::WARN);
    assert_eq!(
        (flagged.field("kind"), flagged.field("cid")),
        (Some("payout"), Some("2"))
    );
    let failed = reconciling
        .iter()
        .find(|e| {
            e.field("message")
                .is_some_and(|m| m.contains("query failed"))
        })
        .expect("a failed query event");
    assert_eq!(
        (failed.level, failed.field("cid")),
        (Level::WARN, Some("3"))
    );
    let pass = reconciling
        .iter()
        .find(|e| e.field("message") == Some("reconcile pass"))
        .expect("a pass event");
    assert_eq!(pass.level, Level::INFO);
    assert_eq!(
        (
            pass.field("asked"),
            pass.field("delivered"),
            pass.field("flagged"),
            pass.field("failed")
        ),
        (Some("3"), Some("1"), Some("1"), Some("1"))
    );
    for event in &events {
        assert!(event.fields.values().all(|v| !v.contains(KEY)), "{event:?}");
        assert_eq!(event.target, "cregis_payout_callback");
    }
}
