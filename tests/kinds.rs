//! The sub-address payout callback and the approval request: each read exactly, refused by
//! the verifier of another kind, and approvals failing closed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{block_on, key};

use cregis_payout_callback::approval::Decision;
use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder, WithdrawalBuilder};
use cregis_payout_callback::{
    ApprovalRequest, CallbackKind, CallbackStatus, Error, Verifier, WithdrawalCallback,
};

#[test]
fn a_withdrawal_in_documented_order_reads_every_documented_field() {
    let body = WithdrawalBuilder::new()
        .cid(1391751691788288)
        .memo("104857")
        .string("network_fee", "0.35")
        .nonce("ubqso3")
        .timestamp(1687850657960)
        .body(&key())
        .unwrap();
    assert!(body.starts_with(
        r#"{"pid":1382528827416576,"cid":1391751691788288,"chain_id":"195","token_id":"195","currency":"TRX","from_address":"#
    ));
    let verifier = Verifier::new(key()).for_kind::<WithdrawalCallback>();
    let callback = verifier.verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(callback.from_address, "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8");
    assert_eq!(callback.to_address, "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS");
    assert_eq!(callback.memo.as_deref(), Some("104857"));
    assert_eq!(callback.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(callback.extra.len(), 1);
    assert_eq!(callback.extra["network_fee"], "0.35");
    // Serialized back, it reads the same and still verifies.
    let text = serde_json::to_string(&callback).unwrap();
    let round_trip: WithdrawalCallback = serde_json::from_str(&text).unwrap();
    assert_eq!(round_trip, callback);
    assert_eq!(
        verifier.verify_and_parse(text.as_bytes()).unwrap(),
        callback
    );
    assert_eq!(
        callback.delivery_key().to_string(),
        "withdrawal/1382528827416576/1391751691788288/6"
    );
}

#[test]
fn an_approval_in_documented_order_reads_every_documented_field_exactly() {
    // A cid above 2^53 sent as a string, as some Cregis services do: read exactly.
    let body = ApprovalBuilder::new()
        .raw("cid", r#""9007199254740993""#)
        .amount("250.500000")
        .memo("104857")
        .string("network_fee", "0.35")
        .nonce("ubqso3")
        .timestamp(1687850657960)
        .body(&key())
        .unwrap();
    assert!(body.starts_with(
        r#"{"pid":1382528827416576,"cid":"9007199254740993","chain_id":"195","token_id":"195","from_address":"#
    ));
    assert!(body.contains(r#""remark":"payout","memo":"104857","nonce":"ubqso3","#));
    let verifier = Verifier::new(key()).for_kind::<ApprovalRequest>();
    let request = verifier.verify_and_parse(body.as_bytes()).unwrap();
    assert_eq!(request.cid, 9007199254740993);
    assert_eq!(request.amount, "250.500000");
    assert_eq!(request.from_address, "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8");
    assert_eq!(request.to_address, "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS");
    assert_eq!(request.memo.as_deref(), Some("104857"));
    assert_eq!(request.extra.len(), 1);
    assert_eq!(request.extra["network_fee"], "0.35");
    let text = serde_json::to_string(&request).unwrap();
    let round_trip: ApprovalRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(round_trip, request);
    assert_eq!(
        request.decision_key(true).to_string(),
        "approval/1382528827416576/9007199254740993/ok"
    );
    assert_eq!(
        request.decision_key(false).to_string(),
        "approval/1382528827416576/9007199254740993/deny"
    );
}

#[test]
fn each_kind_is_refused_by_the_verifier_of_another_with_a_clear_error() {
    use CallbackKind::{Approval, Payout, Withdrawal};

    let payout = CallbackBuilder::new().body(&key()).unwrap();
    let withdrawal = WithdrawalBuilder::new().body(&key()).unwrap();
    let approval = ApprovalBuilder::new().body(&key()).unwrap();
    let payouts = Verifier::new(key());
    let withdrawals = payouts.clone().for_kind::<WithdrawalCallback>();
    let approvals = payouts.clone().for_kind::<ApprovalRequest>();
    let wrong = |expected, found| Error::WrongKind { expected, found };
    assert_eq!(
        payouts.verify_and_parse(withdrawal.as_bytes()).unwrap_err(),
        wrong(Payout, Withdrawal)
    );
    assert_eq!(
        payouts.verify_and_parse(approval.as_bytes()).unwrap_err(),
        wrong(Payout, Approval)
    );
    assert_eq!(
        withdrawals.verify_and_parse(payout.as_bytes()).unwrap_err(),
        wrong(Withdrawal, Payout)
    );
    assert_eq!(
        withdrawals
            .verify_and_parse(approval.as_bytes())
            .unwrap_err(),
        wrong(Withdrawal, Approval)
    );
    // A withdrawal has every field an approval has, and a status: never read as an approval.
    assert_eq!(
        approvals
            .verify_and_parse(withdrawal.as_bytes())
            .unwrap_err(),
        wrong(Approval, Withdrawal)
    );
    assert_eq!(
        approvals.verify_and_parse(payout.as_bytes()).unwrap_err(),
        wrong(Approval, Payout)
    );
    let error = payouts.verify_and_parse(withdrawal.as_bytes()).unwrap_err();
    assert_eq!(error.http_status(), 400);
    assert!(
        error
            .to_string()
            .contains("withdrawal callback, not a payout callback")
    );
}

#[test]
fn a_documented_field_of_another_kind_is_kept_in_extra_and_signed() {
    // `from_address` is a withdrawal's field: in a wallet payout body it is unknown content.
    let body = CallbackBuilder::new()
        .string("from_address", "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
        .body(&key())
        .unwrap();
    let callback = Verifier::new(key())
        .verify_and_parse(body.as_bytes())
        .unwrap();
    assert_eq!(
        callback.extra["from_address"],
        "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"
    );
    let tampered = body.replace("TJRabPrwbZy45", "TJRabPrwbZy46");
    assert_eq!(
        Verifier::new(key()).verify(tampered.as_bytes()),
        Err(Error::SignatureMismatch)
    );
}

#[test]
fn a_withdrawal_without_its_addresses_is_refused_naming_the_field() {
    let body = WithdrawalBuilder::new()
        .remove("to_address")
        .body(&key())
        .unwrap();
    let verifier = Verifier::new(key()).for_kind::<WithdrawalCallback>();
    assert_eq!(
        verifier.verify_and_parse(body.as_bytes()),
        Err(Error::InvalidField {
            field: "to_address",
            problem: "is missing, null or empty"
        })
    );
}

#[test]
fn a_withdrawal_is_handled_once_under_idempotency_and_a_payout_with_its_cid_is_another_fact() {
    let store = MemoryIdempotencyStore::default();
    let payouts = Verifier::builder(key()).idempotency(store).build();
    let withdrawals = payouts.clone().for_kind::<WithdrawalCallback>();
    let runs = AtomicUsize::new(0);
    let handler = |_: &WithdrawalCallback| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<(), String>(())
    };
    let first = WithdrawalBuilder::new().cid(77);
    // A re-push: the same fact, fresh nonce and timestamp.
    let again = first.clone().nonce("q8x1z0").timestamp(1687850999999);
    let reply = withdrawals.process(first.body(&key()).unwrap().as_bytes(), &handler);
    assert!(reply.is_ack() && !reply.is_duplicate());
    let reply = withdrawals.process(again.body(&key()).unwrap().as_bytes(), &handler);
    assert!(reply.is_ack() && reply.is_duplicate());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let payout = CallbackBuilder::new().cid(77).body(&key()).unwrap();
    let reply = payouts.process(
        payout.as_bytes(),
        &|_: &cregis_payout_callback::PayoutCallback| Ok::<(), String>(()),
    );
    assert!(reply.is_ack() && !reply.is_duplicate());
}

#[test]
fn an_approval_is_ok_only_when_the_handler_approved_an_authentic_request() {
    let verifier = Verifier::new(key()).for_kind::<ApprovalRequest>();
    let approve = |_: &ApprovalRequest| async { Ok::<_, String>(Decision::Approve) };
    let deny = |_: &ApprovalRequest| async { Ok::<_, String>(Decision::deny("not ours")) };
    let failing = |_: &ApprovalRequest| async { Err::<Decision, _>("database is down") };
    let body = ApprovalBuilder::new()
        .string("network_fee", "0.35")
        .body(&key())
        .unwrap();
    block_on(async {
        let reply = verifier.decide(body.as_bytes(), &approve).await;
        assert_eq!((reply.status_code(), reply.body()), (200, "ok"));
        assert!(reply.is_approved() && !reply.is_ack());

        let reply = verifier.decide(body.as_bytes(), &deny).await;
        assert_eq!(
            (reply.status_code(), reply.body(), reply.denial()),
            (200, "deny", Some("not ours"))
        );
        assert!(!reply.is_approved());

        let reply = verifier.decide(body.as_bytes(), &failing).await;
        assert_eq!((reply.status_code(), reply.body()), (500, "deny"));

        let builder = ApprovalBuilder::new();
        let forged = builder.body_with_sign("0123456789abcdef0123456789abcdef");
        let missing = builder.unsigned_body();
        for (body, status) in [
            (forged.as_str(), 401),
            (missing.as_str(), 401),
            (r#"{"pid":1,"#, 400),
        ] {
            let reply = verifier.decide(body.as_bytes(), &approve).await;
            assert_eq!(
                (reply.status_code(), reply.body()),
                (status, "deny"),
                "{body}"
            );
        }
        let other_project = Verifier::builder(key())
            .expected_pid(1)
            .build()
            .for_kind::<ApprovalRequest>();
        let reply = other_project.decide(body.as_bytes(), &approve).await;
        assert_eq!((reply.status_code(), reply.body()), (400, "deny"));
        assert!(matches!(reply.error(), Some(Error::PidMismatch { .. })));
    });
}

#[test]
fn a_repeated_approval_gets_the_same_decision_once_and_other_content_is_denied() {
    let verifier = Verifier::builder(key())
        .idempotency(MemoryIdempotencyStore::default())
        .build()
        .for_kind::<ApprovalRequest>();
    let asked = AtomicUsize::new(0);
    let approve = |_: &ApprovalRequest| {
        asked.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, String>(Decision::Approve) }
    };
    let request = ApprovalBuilder::new().cid(9).amount("250.5");
    let again = request.clone().nonce("a1b2c3").timestamp(1687850999999);
    let other = request.clone().amount("2500.5");
    block_on(async {
        let reply = verifier
            .decide(request.body(&key()).unwrap().as_bytes(), &approve)
            .await;
        assert_eq!(reply.body(), "ok");
        let reply = verifier
            .decide(again.body(&key()).unwrap().as_bytes(), &approve)
            .await;
        assert_eq!(reply.body(), "ok");
        assert!(reply.is_duplicate());
        let reply = verifier
            .decide(other.body(&key()).unwrap().as_bytes(), &approve)
            .await;
        assert_eq!((reply.status_code(), reply.body()), (409, "deny"));
    });
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // A denial is remembered too, and a handler error is not.
    let deny = |_: &ApprovalRequest| async { Ok::<_, String>(Decision::deny("limit")) };
    let failing = |_: &ApprovalRequest| async { Err::<Decision, _>("database is down") };
    block_on(async {
        let denied = ApprovalBuilder::new().cid(10);
        let reply = verifier
            .decide(denied.body(&key()).unwrap().as_bytes(), &deny)
            .await;
        assert_eq!(reply.body(), "deny");
        let reply = verifier
            .decide(denied.body(&key()).unwrap().as_bytes(), &approve)
            .await;
        assert_eq!((reply.body(), reply.is_duplicate()), ("deny", true));

        let retried = ApprovalBuilder::new().cid(11);
        let reply = verifier
            .decide(retried.body(&key()).unwrap().as_bytes(), &failing)
            .await;
        assert_eq!((reply.status_code(), reply.body()), (500, "deny"));
        let reply = verifier
            .decide(retried.body(&key()).unwrap().as_bytes(), &approve)
            .await;
        assert_eq!(reply.body(), "ok");
    });
}
