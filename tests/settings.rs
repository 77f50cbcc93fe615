//! Every verifier setting at its extremes: none panics or overflows later; the one that cannot
//! work (a claim lease shorter than an approval's decision) is refused by `try_build` with a
//! clear error, and approvals never claim for less than their decision takes.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use cregis_payout_callback::approval::{APPROVAL_RECORD_GRACE, Decision};
use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder, ManualClock};
use cregis_payout_callback::{ApprovalRequest, PayoutCallback, Verifier};

#[test]
fn every_duration_and_size_at_its_extremes_verifies_without_a_panic() {
    let body = CallbackBuilder::new()
        .memo("")
        .raw("fee", r#""0.000001""#)
        .body(&common::key())
        .unwrap();
    let sent = UNIX_EPOCH + Duration::from_millis(1_687_850_657_960);
    for extreme in [Duration::ZERO, Duration::MAX] {
        for clock in [
            ManualClock::new(UNIX_EPOCH),
            ManualClock::new(sent),
            ManualClock::new(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000)),
        ] {
            let verifier = Verifier::builder(common::key())
                .idempotency(MemoryIdempotencyStore::new(16))
                .claim_lease(extreme)
                .approval_timeout(extreme)
                .max_age(extreme)
                .future_skew(extreme)
                .clock(clock)
                .build();
            let handler = |_: &PayoutCallback| Ok::<(), String>(());
            let reply = verifier.process(body.as_bytes(), &handler);
            assert!(
                [200, 400, 401].contains(&reply.status_code()),
                "{extreme:?}: {reply:?}"
            );
        }
    }
    for limit in [0, usize::MAX] {
        let verifier = Verifier::builder(common::key())
            .max_body_bytes(limit)
            .build();
        let handler = |_: &PayoutCallback| Ok::<(), String>(());
        let reply = verifier.process(body.as_bytes(), &handler);
        assert_eq!(
            reply.status_code(),
            if limit == 0 { 413 } else { 200 },
            "{reply:?}"
        );
    }
}

#[test]
fn a_claim_lease_shorter_than_an_approval_decision_is_refused_by_try_build() {
    let store = || MemoryIdempotencyStore::new(16);
    let refused = Verifier::builder(common::key())
        .idempotency(store())
        .approval_timeout(Duration::from_secs(3))
        .claim_lease(Duration::from_secs(3))
        .try_build()
        .unwrap_err();
    assert!(
        refused.to_string().starts_with(
            "the claim lease (3s) is shorter than the approval timeout (3s) plus 500ms"
        ),
        "{refused}"
    );
    // Long enough, or no store (no claims, no lease): built.
    let least = Duration::from_secs(3) + APPROVAL_RECORD_GRACE;
    assert!(
        Verifier::builder(common::key())
            .idempotency(store())
            .approval_timeout(Duration::from_secs(3))
            .claim_lease(least)
            .try_build()
            .is_ok()
    );
    assert!(
        Verifier::builder(common::key())
            .approval_timeout(Duration::MAX)
            .try_build()
            .is_ok()
    );
}

/// Built anyway (`build` accepts a short lease for payout callbacks), the approvals' claims
/// still outlast their decision: a second delivery of the request while the first decides
/// finds the claim held.
#[tokio::test]
async fn approvals_claim_for_their_whole_decision_however_short_the_lease() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(1_687_850_657_960));
    let verifier = Verifier::builder(common::key())
        .idempotency(MemoryIdempotencyStore::new(16))
        .claim_lease(Duration::from_millis(1))
        .approval_timeout(Duration::from_secs(3))
        .clock(clock.clone())
        .build()
        .for_kind::<ApprovalRequest>();
    let body = ApprovalBuilder::new().body(&common::key()).unwrap();
    // The first decision is held open while a second delivery comes, 2 s later.
    let (entered, deciding) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let slots = std::sync::Mutex::new(Some((entered, released)));
    let slow = move |_: &ApprovalRequest| {
        let slot = slots.lock().unwrap().take();
        async move {
            if let Some((entered, released)) = slot {
                let _ = entered.send(());
                let _ = released.await;
            }
            Ok::<Decision, String>(Decision::Approve)
        }
    };
    let first = {
        let (verifier, body) = (verifier.clone(), body.clone());
        tokio::spawn(async move { verifier.decide(body.as_bytes(), &slow).await })
    };
    deciding.await.unwrap();
    clock.advance(Duration::from_secs(2));
    let second = verifier
        .decide(body.as_bytes(), &|_: &ApprovalRequest| async {
            Ok::<Decision, String>(Decision::Approve)
        })
        .await;
    assert_eq!(
        second.body(),
        "deny",
        "the claim was still held: {second:?}"
    );
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().body(), "ok");
}
