//! One delivery, from the raw body to the reply: verify, parse, claim, handle, settle.
//!
//! The synchronous and the async path share every step but the calls to the handler and the
//! store; each step's outcome maps to one reply here.

use std::time::SystemTime;

use super::{MatchedKey, Verifier};
use crate::error::{BoxError, Cause, StoreOperation};
use crate::idempotency::{
    AsyncIdempotencyStore, AsyncStoreSlot, Attempt, Claim, Fingerprint, SyncStoreSlot,
};
use crate::wire::Params;
use crate::{AsyncCallbackHandler, Callback, CallbackHandler, Error, Notification, Reply};

/// A verified callback on its way to the handler, with the attempt to claim it under, if the
/// verifier has a store.
///
/// Dropped before it is settled (the handler panicked, or an async handler's future was
/// dropped), the claim stays in progress until its lease ends: whether the effect happened is
/// unknown, and a re-delivery answered 409 is safer than a payout handled twice.
struct Delivery<C> {
    callback: C,
    matched: MatchedKey,
    attempt: Option<Attempt>,
}

impl<C: Notification> Delivery<C> {
    /// `reply`, about this delivery.
    fn reply(&self, reply: Reply) -> Reply {
        reply
            .about(self.callback.delivery_key())
            .with_signer(self.matched)
    }
}

impl<S, C: Notification> Verifier<S, C> {
    /// Everything before the claim: verification, parsing, and the attempt to claim the
    /// delivery under when there is a store (`with_store`).
    fn begin(&self, body: &[u8], with_store: bool) -> Result<Delivery<C>, Reply> {
        let settings = &*self.settings;
        // The clock is read once, and only if a claim or a freshness check needs it.
        let now = with_store.then(|| settings.clock.now());
        let mut params = Params::empty();
        let (callback, matched) = self.verified(body, &mut params, now)?;
        let attempt = now.map(|now: SystemTime| {
            Attempt::new(
                callback.delivery_key(),
                Fingerprint::of::<C>(&params),
                now,
                settings.claim_lease,
            )
        });
        Ok(Delivery {
            callback,
            matched,
            attempt,
        })
    }
}

impl<S, C: Callback> Verifier<S, C> {
    /// Verification and parsing: the callback and the key that signed it, or the reply that
    /// refuses the body. `params` is filled in place (it is large to move).
    pub(crate) fn verified<'b>(
        &self,
        body: &'b [u8],
        params: &mut Params<'b>,
        now: Option<SystemTime>,
    ) -> Result<(C, MatchedKey), Reply> {
        let matched = self.authentic_params(body, params).map_err(Reply::from)?;
        // From here on the body is authentic: every reply says which key signed it.
        let matched = MatchedKey::from_index(matched);
        let callback = self
            .checks(params, now)
            .and_then(|()| super::parse(params))
            .map_err(|error| Reply::from(error).with_signer(matched))?;
        Ok((callback, matched))
    }

    /// What the inbox records of a delivery: the verified callback, the key that signed it and
    /// the fingerprint of its content; or the reply that refuses it.
    #[cfg(feature = "inbox")]
    pub(crate) fn verified_entry(
        &self,
        body: &[u8],
    ) -> Result<(C, MatchedKey, Fingerprint), Reply> {
        let mut params = Params::empty();
        let (callback, matched) = self.verified(body, &mut params, None)?;
        Ok((callback, matched, Fingerprint::of::<C>(&params)))
    }
}

impl<S: SyncStoreSlot, C: Notification> Verifier<S, C> {
    /// [`process`](Verifier::process), before the reply is reported.
    pub(super) fn deliver<H: CallbackHandler<C>>(&self, body: &[u8], handler: &H) -> Reply {
        let store = self.store.store();
        let delivery = match self.begin(body, store.is_some()) {
            Ok(delivery) => delivery,
            Err(reply) => return reply,
        };
        let claim = store.zip(delivery.attempt.as_ref());
        let mut took_over = false;
        if let Some((store, attempt)) = claim {
            match claimed(attempt, store.claim(attempt)) {
                Ok(taken) => took_over = taken,
                Err(reply) => return delivery.reply(reply),
            }
        }
        let outcome = handler.handle(&delivery.callback).map_err(Cause::new);
        let settled = claim.map(|(store, attempt)| match outcome {
            Ok(()) => store.complete(attempt),
            Err(_) => store.release(attempt),
        });
        delivery.reply(settle(outcome, settled).with_takeover(took_over))
    }
}

impl<S: AsyncStoreSlot, C: Notification> Verifier<S, C> {
    /// [`process_async`](Verifier::process_async), before the reply is reported.
    pub(super) async fn deliver_async<H: AsyncCallbackHandler<C>>(
        &self,
        body: &[u8],
        handler: &H,
    ) -> Reply {
        let store = self.store.store();
        let delivery = match self.begin(body, store.is_some()) {
            Ok(delivery) => delivery,
            Err(reply) => return reply,
        };
        let claim = store.zip(delivery.attempt.as_ref());
        let mut took_over = false;
        if let Some((store, attempt)) = claim {
            match claimed(attempt, store.claim(attempt).await) {
                Ok(taken) => took_over = taken,
                Err(reply) => return delivery.reply(reply),
            }
        }
        let outcome = handler.handle(&delivery.callback).await.map_err(Cause::new);
        let settled = match claim {
            None => None,
            Some((store, attempt)) => Some(match outcome {
                Ok(()) => AsyncIdempotencyStore::complete(store, attempt).await,
                Err(_) => AsyncIdempotencyStore::release(store, attempt).await,
            }),
        };
        delivery.reply(settle(outcome, settled).with_takeover(took_over))
    }
}

/// What the store found when `attempt` claimed its key: `Ok` to go on to the handler (`true`
/// if the claim took over an expired one), or the reply to send without calling it.
pub(crate) fn claimed(attempt: &Attempt, found: Result<Claim, BoxError>) -> Result<bool, Reply> {
    Err(match found {
        Ok(Claim::Claimed) => return Ok(false),
        Ok(Claim::TakenOver) => return Ok(true),
        Ok(Claim::AlreadyDone) => Reply::duplicate(),
        Ok(Claim::InProgress) => Error::DeliveryInProgress.into(),
        Ok(Claim::Conflict) => Error::ConflictingDelivery { key: attempt.key }.into(),
        Ok(Claim::OtherFinal { recorded }) => Error::ConflictingFinalStatus {
            key: attempt.key,
            recorded,
        }
        .into(),
        Err(e) => Error::Store {
            operation: StoreOperation::Claim,
            cause: Cause::new(e),
        }
        .into(),
    })
}

/// The reply for the handler's `outcome`, once its claim (if any) was completed or released
/// with the result `settled`.
fn settle(outcome: Result<(), Cause>, settled: Option<Result<(), BoxError>>) -> Reply {
    match (outcome, settled) {
        (Ok(()), None | Some(Ok(()))) => Reply::ack(),
        // The effect happened: acknowledge it, and let the host log the failure.
        (Ok(()), Some(Err(e))) => Reply::ack_with(Error::Store {
            operation: StoreOperation::Complete,
            cause: Cause::new(e),
        }),
        (Err(cause), settled) => Error::HandlerFailed {
            cause,
            release_failure: settled.and_then(Result::err).map(Cause::new),
        }
        .into(),
    }
}

/// What the framework adapters need of a verifier, whatever its store.
#[cfg(feature = "http")]
impl<S, C: Callback> Verifier<S, C> {
    /// The reply to a delivery whose handler's task ended without a reply (it panicked, or
    /// was cancelled): about the delivery (read again from `body`, which was verified before
    /// the task began; the freshness checks are not run again on a later clock), reported like
    /// any other.
    pub(crate) fn task_failed(&self, body: &[u8], error: Error) -> Reply {
        let mut reply = Reply::from(error);
        let mut params = Params::empty();
        if let Ok(matched) = self.authentic_params(body, &mut params) {
            reply = reply.with_signer(MatchedKey::from_index(matched));
            if let Ok(callback) = crate::callback::from_params::<C>(&params) {
                reply = reply.about(crate::callback::Sealed::reply_key(&callback));
            }
        }
        if C::KIND == crate::CallbackKind::Approval {
            reply = reply.for_approval();
        }
        crate::trace::delivery(&reply);
        reply
    }
}
