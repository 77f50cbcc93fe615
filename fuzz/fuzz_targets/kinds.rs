//! Arbitrary bytes through the sub-address payout and approval verifiers: never a panic, each
//! agrees with `verify` on authenticity, and an approval is answered `ok` only when the body
//! parsed as an approval request and the handler approved it.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cregis_payout_callback::approval::Decision;
use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier, WithdrawalCallback};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fake-fuzz-key";

/// Polls `future` until it is ready: the memory store and the handler below never wait on
/// anything, so no runtime is needed.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let payouts = Verifier::builder(ApiKey::new(KEY).unwrap())
        .idempotency(MemoryIdempotencyStore::new(16))
        .build();
    let verified = payouts.verify(data);
    let withdrawals = payouts.clone().for_kind::<WithdrawalCallback>();
    let approvals = payouts.clone().for_kind::<ApprovalRequest>();
    let withdrawal = withdrawals.verify_and_parse(data);
    let approval = approvals.verify_and_parse(data);
    for refused in [withdrawal.as_ref().err(), approval.as_ref().err()] {
        match (&verified, refused) {
            (Err(e), refused) => assert_eq!(refused, Some(e)),
            (Ok(_), Some(refused)) => assert!(refused.is_contract(), "{refused:?}"),
            (Ok(_), None) => {}
        }
    }
    assert!(withdrawal.is_err() || approval.is_err());

    let reply = withdrawals.process(data, &|_: &WithdrawalCallback| Ok::<(), String>(()));
    assert_eq!(reply.is_ack(), withdrawal.is_ok());

    let approve = |_: &ApprovalRequest| async { Ok::<_, String>(Decision::Approve) };
    let reply = ready(approvals.decide(data, &approve));
    if reply.is_approved() {
        assert!(approval.is_ok());
        assert_eq!((reply.status_code(), reply.body()), (200, "ok"));
    } else {
        assert_eq!(reply.body(), "deny");
    }
});
