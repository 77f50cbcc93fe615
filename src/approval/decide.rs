//! Answering an approval request: verify, decide once, fail closed.

use std::future::Future;

use super::{ApprovalHandler, Decision};
use crate::error::{Cause, StoreOperation};
use crate::idempotency::{AsyncIdempotencyStore, AsyncStoreSlot, Attempt, Claim, Fingerprint};
use crate::verifier::Verifier;
use crate::verifier::delivery::claimed;
use crate::wire::Params;
use crate::{ApprovalRequest, Error, Reply, trace};

impl<S: AsyncStoreSlot> Verifier<S, ApprovalRequest> {
    /// Verifies and parses an approval request, asks `handler` to decide, and says what to
    /// answer: 200 `ok` only when the request is authentic and well-formed and the handler
    /// approved it; `deny` on every other path, with the status code of what went wrong (401
    /// not authentic, 400 malformed or for another project or kind, 409 being decided right
    /// now or other content under a `cid` already decided, 500 the handler or the store
    /// failed), and 200 `deny` when the handler denied.
    ///
    /// With an idempotency store
    /// ([`VerifierBuilder::idempotency`](crate::verifier::VerifierBuilder::idempotency)),
    /// the decision is recorded under the request's
    /// [`decision_key`](ApprovalRequest::decision_key): the same request asked again gets the
    /// same answer without asking the handler ([`Reply::is_duplicate`]), and a request with
    /// other content under a `cid` already decided is denied (409). A handler error is not
    /// recorded: the next ask asks the handler again. If the approval cannot be recorded, the
    /// payout is denied.
    ///
    /// It does not bound the handler's time, nor catch its panics: the framework routes
    /// (`approval_route`) run it in a task of its own, answer `deny` on a panic, and stop it at
    /// [`approval_timeout`](Verifier::approval_timeout). In your own glue, do the same.
    ///
    /// # Example
    ///
    /// See [`approval`](crate::approval).
    // Not an `async fn`: the signature promises a `Send` future, which callers can rely on.
    #[allow(clippy::manual_async_fn)]
    pub fn decide<H: ApprovalHandler>(
        &self,
        body: &[u8],
        handler: &H,
    ) -> impl Future<Output = Reply> + Send {
        async move {
            let reply = self.decided(body, handler).await.for_approval();
            trace::delivery(&reply);
            reply
        }
    }

    async fn decided<H: ApprovalHandler>(&self, body: &[u8], handler: &H) -> Reply {
        let settings = &*self.settings;
        let store = self.store.store();
        // The clock is read once, and only if a claim or a freshness check needs it.
        let now = store.map(|_| settings.clock.now());
        let mut params = Params::empty();
        let (request, matched) = match self.verified(body, &mut params, now) {
            Ok(verified) => verified,
            Err(refused) => return refused,
        };
        let about = |reply: Reply, approved: bool| {
            reply
                .about(request.decision_key(approved))
                .with_signer(matched)
        };
        let (Some(store), Some(now)) = (store, now) else {
            return match handler.decide(&request).await {
                Ok(Decision::Approve) => about(Reply::approved(), true),
                Ok(Decision::Deny { reason }) => about(Reply::denied(Some(reason)), false),
                Err(error) => about(handler_failed(Cause::new(error), None), false),
            };
        };
        let fingerprint = Fingerprint::of::<ApprovalRequest>(&params);
        // The claim outlasts the decision, however short the lease set: a second delivery must
        // not take over a claim whose decision is still being made.
        let lease = settings.claim_lease.max(
            settings
                .approval_timeout
                .saturating_add(crate::approval::APPROVAL_RECORD_GRACE),
        );
        let attempt =
            |approved| Attempt::new(request.decision_key(approved), fingerprint, now, lease);
        let (approve, deny) = (attempt(true), attempt(false));
        // Both decisions are claimed before the handler is asked: a decision already made (or
        // being made, or made on other content) is found under one of them.
        match store.claim(&approve).await {
            Ok(Claim::AlreadyDone) => return about(Reply::approved().into_duplicate(), true),
            found => {
                if let Err(refused) = claimed(&approve, found) {
                    return about(refused, false);
                }
            }
        }
        let decided_before = match store.claim(&deny).await {
            Ok(Claim::AlreadyDone) => Some(Reply::denied(None).into_duplicate()),
            found => claimed(&deny, found).err(),
        };
        if let Some(refused) = decided_before {
            let _ = AsyncIdempotencyStore::release(store, &approve).await;
            return about(refused, false);
        }
        // The handler's error becomes a `Cause` at once: it need not be `Send`.
        let decided = handler.decide(&request).await.map_err(Cause::new);
        match decided {
            Ok(Decision::Approve) => {
                if let Err(error) = AsyncIdempotencyStore::complete(store, &approve).await {
                    // Not recorded, not approved: the next ask decides again.
                    let _ = AsyncIdempotencyStore::release(store, &approve).await;
                    let _ = AsyncIdempotencyStore::release(store, &deny).await;
                    let error = Error::Store {
                        operation: StoreOperation::Complete,
                        cause: Cause::new(error),
                    };
                    return about(error.into(), false);
                }
                let _ = AsyncIdempotencyStore::release(store, &deny).await;
                about(Reply::approved(), true)
            }
            Ok(Decision::Deny { reason }) => {
                let recorded = AsyncIdempotencyStore::complete(store, &deny).await;
                let _ = AsyncIdempotencyStore::release(store, &approve).await;
                let reply = Reply::denied(Some(reason));
                let reply = match recorded {
                    Ok(()) => reply,
                    // Denied all the same; the host's log shows the store failed.
                    Err(error) => reply.with_error(Error::Store {
                        operation: StoreOperation::Complete,
                        cause: Cause::new(error),
                    }),
                };
                about(reply, false)
            }
            Err(cause) => {
                let released = AsyncIdempotencyStore::release(store, &approve).await;
                let released = released.and(AsyncIdempotencyStore::release(store, &deny).await);
                let release_failure = released.err().map(Cause::new);
                about(handler_failed(cause, release_failure), false)
            }
        }
    }
}

fn handler_failed(cause: Cause, release_failure: Option<Cause>) -> Reply {
    Error::HandlerFailed {
        cause,
        release_failure,
    }
    .into()
}
