//! The simulate and inspect examples, exercised through their own code.

#[path = "../examples/axum.rs"]
#[allow(dead_code, unreachable_pub)]
mod axum_example;
mod common;
#[path = "../examples/inspect.rs"]
#[allow(dead_code, unreachable_pub)]
mod inspect;
#[path = "../examples/simulate.rs"]
#[allow(dead_code, unreachable_pub)]
mod simulate;

use std::sync::Arc;

use common::{KEY, api_key, key, verifier};
use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::verifier::MatchedKey;
use cregis_payout_callback::{
    ApiKey, CallbackKind, CallbackStatus, Error, PayoutCallback, Verifier,
};
use simulate::Options;

/// `body` verified and parsed with [`KEY`].
fn verify_and_parse(body: &str) -> Result<PayoutCallback, Error> {
    verifier().verify_and_parse(body.as_bytes())
}

/// Whether `key` is the key `text`: both sign the same callback alike.
fn is_key(key: &ApiKey, text: &str) -> bool {
    let callback = CallbackBuilder::new();
    callback.sign(key).unwrap() == callback.sign(&api_key(text)).unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn simulate_reads_its_command_line() {
    let options = Options::parse(&args(&[
        "http://127.0.0.1:9/x",
        "--tamper",
        "--status",
        "4",
        "--amount",
        "2.50",
        "--memo",
        "hello",
        "--cid",
        "77",
        "--repeat",
        "3",
    ]))
    .unwrap();
    assert_eq!(options.url, "http://127.0.0.1:9/x");
    assert!(options.tamper);
    assert_eq!(options.status, 4);
    assert_eq!(options.amount, "2.50");
    assert_eq!(options.memo.as_deref(), Some("hello"));
    assert_eq!((options.cid, options.repeat), (Some(77), 3));

    let defaults = Options::parse(&[]).unwrap();
    assert_eq!(defaults.url, simulate::DEFAULT_URL);
    assert_eq!(
        (defaults.status, defaults.repeat, defaults.cid),
        (6, 1, None)
    );
    assert!(!defaults.tamper);

    // Any status integer, documented or not.
    assert_eq!(Options::parse(&args(&["--status", "9"])).unwrap().status, 9);
    assert_eq!(
        Options::parse(&args(&["--status", "six"])).unwrap_err(),
        "--status needs an integer, not \"six\""
    );
    assert_eq!(
        Options::parse(&args(&["--repeat", "0"])).unwrap_err(),
        "--repeat needs a count of at least 1"
    );
    assert_eq!(
        Options::parse(&args(&["--amount"])).unwrap_err(),
        "--amount needs a value"
    );
    assert_eq!(
        Options::parse(&args(&["--bogus"])).unwrap_err(),
        "unknown flag --bogus"
    );
}

#[test]
fn simulate_says_which_key_it_signs_with() {
    let (key, about) = simulate::api_key(None).unwrap();
    assert!(is_key(&key, simulate::DEMO_API_KEY));
    assert!(about.contains("CREGIS_API_KEY is not set"), "{about}");
    assert!(about.contains("set CREGIS_API_KEY=<your key>"), "{about}");
    let (key, about) = simulate::api_key(Some("fake-operator-key".to_owned())).unwrap();
    assert!(is_key(&key, "fake-operator-key"));
    assert!(!is_key(&key, simulate::DEMO_API_KEY));
    assert_eq!(about, "signing with the key in CREGIS_API_KEY");
    assert!(!about.contains("fake-operator-key"));
    // An unusable key is refused, saying where it came from and what is wrong with it.
    assert_eq!(
        simulate::api_key(Some("fake-operator-key\n".to_owned())).unwrap_err(),
        "CREGIS_API_KEY is unusable: api key has leading or trailing whitespace \
         (a newline from a file?)"
    );
    assert_eq!(
        simulate::api_key(Some(String::new())).unwrap_err(),
        "CREGIS_API_KEY is unusable: api key is empty"
    );
}

#[test]
fn simulate_builds_authentic_callbacks_and_forgeries() {
    let mut options = Options::parse(&args(&["--memo", "tag-7", "--amount", "12.000001"])).unwrap();
    let body = simulate::build_body(&options, &key()).unwrap();
    let callback = verify_and_parse(&body).unwrap();
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(callback.amount, "12.000001");
    assert_eq!(callback.memo.as_deref(), Some("tag-7"));
    assert!(callback.txid.is_some() && callback.block_time.is_some());

    options.status = 2;
    let rejected = simulate::build_body(&options, &key()).unwrap();
    let callback = verify_and_parse(&rejected).unwrap();
    assert_eq!(callback.txid, None);

    // An undocumented status is sent as asked; the verifier calls it what it is.
    options.status = 9;
    let unknown = simulate::build_body(&options, &key()).unwrap();
    assert_eq!(
        verify_and_parse(&unknown),
        Err(Error::UnknownStatus { code: 9 })
    );

    options.status = 6;
    options.tamper = true;
    let forged = simulate::build_body(&options, &key()).unwrap();
    assert_eq!(verify_and_parse(&forged), Err(Error::SignatureMismatch));
}

#[test]
fn the_same_cid_is_the_same_fact_with_the_same_content() {
    let options = Options::parse(&args(&["--cid", "1391751691799999"])).unwrap();
    let first = verify_and_parse(&simulate::build_body(&options, &key()).unwrap());
    let again = verify_and_parse(&simulate::build_body(&options, &key()).unwrap());
    let (first, again) = (first.unwrap(), again.unwrap());
    assert_eq!(first.delivery_key(), again.delivery_key());
    assert_eq!(
        (&first.txid, &first.third_party_id, &first.amount),
        (&again.txid, &again.third_party_id, &again.amount)
    );
    assert_ne!(first.nonce, again.nonce);
    // Without --cid, each run draws one cid and keeps it for all its deliveries.
    let drawn = Options::parse(&[]).unwrap().with_fixed_cid();
    assert_eq!(drawn.cid, drawn.with_fixed_cid().cid);
}

/// Serves the axum example on loopback with an idempotency store; returns its URL.
async fn serve_axum_example(ledger: Arc<axum_example::Ledger>) -> String {
    let verifier = Verifier::builder(key())
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        axum_example::ROUTE
    );
    let app = axum_example::app(verifier, ledger);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn simulate_delivers_re_pushes_and_counts_what_was_acknowledged() {
    let ledger = Arc::new(axum_example::Ledger::default());
    let url = serve_axum_example(Arc::clone(&ledger)).await;

    // Three deliveries of one fact: all acknowledged (two as duplicates), handled once.
    let ack = || (200, "success".to_owned());
    let options = Options::parse(&args(&[&url, "--repeat", "3"])).unwrap();
    assert_eq!(
        simulate::run(&options, &key()).await.unwrap(),
        [ack(), ack(), ack()]
    );
    assert_eq!(ledger.payouts(), 1);
    // A later run re-pushing the same cid is acknowledged too.
    let options = Options::parse(&args(&[&url, "--cid", "1391751691700001"])).unwrap();
    assert_eq!(simulate::run(&options, &key()).await.unwrap(), [ack()]);
    assert_eq!(simulate::run(&options, &key()).await.unwrap(), [ack()]);
    assert_eq!(ledger.payouts(), 2);

    // Refused deliveries: a forgery and another key are not authentic (401); an
    // undocumented status is authentic but not as documented (400).
    let forged = (401, "signature does not match".to_owned());
    let tampered = Options::parse(&args(&[&url, "--tamper", "--repeat", "2"])).unwrap();
    assert_eq!(
        simulate::run(&tampered, &key()).await.unwrap(),
        [forged.clone(), forged.clone()]
    );
    let wrong_key = Options::parse(&args(&[&url])).unwrap();
    assert_eq!(
        simulate::run(&wrong_key, &api_key("fake-wrong-key"))
            .await
            .unwrap(),
        [forged]
    );
    let unknown = Options::parse(&args(&[&url, "--status", "9"])).unwrap();
    assert_eq!(
        simulate::run(&unknown, &key()).await.unwrap(),
        [(400, "status 9 is not a documented payout status".to_owned())]
    );
    assert_eq!(ledger.payouts(), 2);
    // The exit status: 0 only when every delivery was acknowledged.
    let from_env = Some(KEY.to_owned());
    let fresh = args(&[&url, "--repeat", "2"]);
    assert_eq!(
        simulate::simulate(&fresh, from_env.clone()).await.unwrap(),
        0
    );
    let forged = args(&[&url, "--tamper"]);
    assert_eq!(
        simulate::simulate(&forged, from_env.clone()).await.unwrap(),
        1
    );
    // Without CREGIS_API_KEY it signs with the demo key, which this server refuses.
    assert_eq!(simulate::simulate(&args(&[&url]), None).await.unwrap(), 1);
    assert_eq!(
        simulate::simulate(&args(&["--status"]), from_env)
            .await
            .unwrap_err()
            .to_string(),
        "--status needs a value"
    );
    // A padded key is refused before anything is sent.
    assert_eq!(
        simulate::simulate(&args(&[&url]), Some(format!(" {KEY}")))
            .await
            .unwrap_err()
            .to_string(),
        "CREGIS_API_KEY is unusable: api key has leading or trailing whitespace \
         (a newline from a file?)"
    );
    let (payout, withdrawal, approval) = (
        CallbackKind::Payout,
        CallbackKind::Withdrawal,
        CallbackKind::Approval,
    );
    assert!(simulate::acknowledged(payout, 200, "success"));
    assert!(simulate::acknowledged(withdrawal, 200, "success"));
    assert!(!simulate::acknowledged(payout, 200, "ok"));
    assert!(!simulate::acknowledged(payout, 409, "success"));
    assert!(simulate::acknowledged(approval, 200, "ok"));
    assert!(!simulate::acknowledged(approval, 200, "deny"));
    assert!(!simulate::acknowledged(approval, 200, "success"));
}

/// The first published vector, verifiable with `VECTOR_KEY`, plus a null and an empty field.
const VECTOR_KEY: &str = "f502a9ac9ca54327986f29c03b271491";
const VECTOR_BODY: &str = r#"{"pid":1382528827416576,"currency":"195@195",
  "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
  "third_party_id":"c9231e604da54469a735af3f449c880f","memo":null,"txid":"",
  "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
  "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;

fn explain(body: &str, key: &str) -> (bool, String) {
    let mut out = Vec::new();
    let verifies = inspect::explain(body.as_bytes(), &api_key(key), &mut out).unwrap();
    (verifies, String::from_utf8(out).unwrap())
}

#[test]
fn inspect_explains_a_matching_body() {
    let (verifies, out) = explain(VECTOR_BODY, VECTOR_KEY);
    assert!(verifies);
    assert_eq!(
        out,
        "verifies: yes\n\
         signed text: <api-key>addressTXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FSamount1.1\
         callback_urlhttp://192.168.2.29:9099/callbackcurrency195@195noncehwlkk6\
         pid1382528827416576remarkpayoutthird_party_idc9231e604da54469a735af3f449c880f\
         timestamp1688004243314\n\
         left out: \"memo\" (null values are left out)\n\
         left out: \"sign\" (the signature itself is never signed)\n\
         left out: \"txid\" (empty strings are left out)\n\
         sign received: d6eef2de79e39f434a38efb910213ba6\n\
         sign expected: d6eef2de79e39f434a38efb910213ba6\n"
    );
    assert!(!out.contains(VECTOR_KEY));
}

#[test]
fn inspect_explains_a_mismatching_body_without_showing_the_key() {
    let tampered = VECTOR_BODY.replace(r#""amount":"1.1""#, r#""amount":"1.10""#);
    let (verifies, out) = explain(&tampered, VECTOR_KEY);
    assert!(!verifies);
    assert!(
        out.starts_with("verifies: no (signature does not match)\n"),
        "{out}"
    );
    assert!(out.contains("amount1.10callback_url"), "{out}");
    assert!(
        out.contains("sign received: d6eef2de79e39f434a38efb910213ba6\n"),
        "{out}"
    );
    let expected = out
        .lines()
        .find_map(|l| l.strip_prefix("sign expected: "))
        .unwrap();
    assert_ne!(expected, "d6eef2de79e39f434a38efb910213ba6");
    assert_eq!(expected.len(), 32);
    assert!(!out.contains(VECTOR_KEY));
}

#[test]
fn inspect_explains_bodies_that_cannot_be_signed() {
    let (verifies, out) = explain(r#"{"a":1,"a":2}"#, VECTOR_KEY);
    assert!(!verifies);
    assert_eq!(
        out,
        "verifies: no (key \"a\" appears more than once)\n\
         the body cannot be signed at all: key \"a\" appears more than once\n"
    );
    // An empty key is refused when it is read, before anything is explained.
    assert_eq!(
        inspect::api_key(Some(" ".to_owned())).unwrap_err(),
        "CREGIS_API_KEY is unusable: api key is empty"
    );
    assert_eq!(
        inspect::api_key(None).unwrap_err(),
        "set CREGIS_API_KEY to the project's API key (never pass it as an argument)"
    );
}

#[test]
fn inspect_signs_the_raw_text_keeping_numbers_as_written() {
    let body = br#"{"pid":1382528827416576,"x_ratio":1.10,"cid":"1391751691788288","sign":"00"}"#;
    let signed = inspect::signed(body, &key()).unwrap();
    assert!(
        signed.starts_with(
            r#"{"pid":1382528827416576,"x_ratio":1.10,"cid":"1391751691788288","sign":""#
        ),
        "{signed}"
    );
    assert_eq!(
        verifier().verify(signed.as_bytes()),
        Ok(MatchedKey::Current)
    );
    // Through a map, `1.10` would have become `1.1` and the signature another one.
    assert_ne!(
        signed,
        inspect::signed(
            br#"{"pid":1382528827416576,"x_ratio":1.1,"cid":"1391751691788288"}"#,
            &key()
        )
        .unwrap()
    );
}

#[test]
fn inspect_refuses_to_sign_a_repeated_key() {
    assert_eq!(
        inspect::signed(br#"{"pid":1,"amount":"1.1","amount":"9.9"}"#, &key()),
        Err(Error::DuplicateKey {
            key: "amount".into()
        })
    );
}

#[test]
fn inspect_signs_a_body_correctly() {
    let tampered = VECTOR_BODY.replace(r#""amount":"1.1""#, r#""amount":"2""#);
    let signed = inspect::signed(tampered.as_bytes(), &key()).unwrap();
    let verifier = Verifier::new(key());
    assert_eq!(verifier.verify(signed.as_bytes()), Ok(MatchedKey::Current));
    assert!(!signed.contains(KEY));
}

#[test]
fn simulate_builds_each_kind() {
    use cregis_payout_callback::{ApprovalRequest, WithdrawalCallback};

    let withdrawal = Options::parse(&args(&["--kind", "withdrawal", "--memo", "104917"])).unwrap();
    assert_eq!(withdrawal.kind, CallbackKind::Withdrawal);
    assert_eq!(
        withdrawal.url,
        "http://127.0.0.1:3000/cregis/withdrawal-callback"
    );
    let body = simulate::build_body(&withdrawal, &key()).unwrap();
    let withdrawals = Verifier::new(key()).for_kind::<WithdrawalCallback>();
    let callback = withdrawals.verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(callback.memo.as_deref(), Some("104917"));
    assert!(callback.txid.is_some());
    // The wallet payout verifier refuses it as the other kind.
    assert_eq!(
        verify_and_parse(&body),
        Err(Error::WrongKind {
            expected: CallbackKind::Payout,
            found: CallbackKind::Withdrawal
        })
    );

    let approval = Options::parse(&args(&["--kind", "approval", "--amount", "250.5"])).unwrap();
    assert_eq!(approval.url, "http://127.0.0.1:3000/cregis/payout-approval");
    let body = simulate::build_body(&approval, &key()).unwrap();
    assert!(
        !body.contains("\"status\"") && !body.contains("\"txid\""),
        "{body}"
    );
    let approvals = Verifier::new(key()).for_kind::<ApprovalRequest>();
    assert_eq!(
        approvals.verify_and_parse(body.as_bytes()).unwrap().amount,
        "250.5"
    );
    let tampered = Options {
        tamper: true,
        ..approval
    };
    let forged = simulate::build_body(&tampered, &key()).unwrap();
    assert_eq!(
        approvals.verify_and_parse(forged.as_bytes()),
        Err(Error::SignatureMismatch)
    );

    assert_eq!(
        Options::parse(&args(&["--kind", "deposit"])).unwrap_err(),
        "--kind: not a callback kind (payout, withdrawal, approval)"
    );
    // A URL given is kept, whatever the kind.
    let given = Options::parse(&args(&["http://127.0.0.1:9/x", "--kind", "approval"])).unwrap();
    assert_eq!(given.url, "http://127.0.0.1:9/x");
}

#[tokio::test]
async fn simulate_counts_an_approval_as_acknowledged_only_when_approved() {
    use cregis_payout_callback::{ApprovalRequest, approval::Decision};

    // Approves only the amount the host created its payout with.
    let check = |request: &ApprovalRequest| {
        let decision = if request.amount == "250.5" {
            Decision::Approve
        } else {
            Decision::deny("not the amount we asked for")
        };
        async move { Ok::<_, std::convert::Infallible>(decision) }
    };
    let verifier = Verifier::new(key()).for_kind::<ApprovalRequest>();
    let route = cregis_payout_callback::axum::approval_route(verifier, check);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/cregis/payout-approval",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new().route("/cregis/payout-approval", route);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let from_env = Some(KEY.to_owned());
    let asked = args(&[&url, "--kind", "approval", "--amount", "250.5"]);
    assert_eq!(
        simulate::simulate(&asked, from_env.clone()).await.unwrap(),
        0
    );
    let options = Options::parse(&asked).unwrap();
    assert_eq!(
        simulate::run(&options, &key()).await.unwrap(),
        [(200, "ok".to_owned())]
    );
    let other = args(&[&url, "--kind", "approval", "--amount", "9999"]);
    let options = Options::parse(&other).unwrap();
    assert_eq!(
        simulate::run(&options, &key()).await.unwrap(),
        [(200, "deny".to_owned())]
    );
    assert_eq!(
        simulate::simulate(&other, from_env.clone()).await.unwrap(),
        1
    );
    let forged = args(&[&url, "--kind", "approval", "--amount", "250.5", "--tamper"]);
    assert_eq!(simulate::simulate(&forged, from_env).await.unwrap(), 1);
}
