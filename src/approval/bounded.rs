//! What the framework routes run for an approval: the handler bounded by the verifier's
//! timeout, the whole decision by the timeout and [`APPROVAL_RECORD_GRACE`], and every
//! refusal answered `deny`. The adapters (`axum`, `actix-web`, the neutral core) call these
//! two functions only.

use std::time::Duration;

use super::{APPROVAL_RECORD_GRACE, ApprovalHandler, Decision};
use crate::error::{BoxError, PastTimeout};
use crate::idempotency::AsyncStoreSlot;
use crate::{ApprovalRequest, Error, Reply, Verifier};

/// An approval, decided by `handler` within the verifier's
/// [`approval_timeout`](Verifier::approval_timeout): past it, the payout is denied.
pub(crate) async fn decided<St, H>(
    verifier: &Verifier<St, ApprovalRequest>,
    body: &[u8],
    handler: &H,
) -> Reply
where
    St: AsyncStoreSlot,
    H: ApprovalHandler,
{
    let timeout = verifier.approval_timeout();
    let bounded = WithinTimeout { handler, timeout };
    // The handler is bounded by the timeout; the whole decision, the store's claim and record
    // included, by the timeout and the time to record a decision: a store that hangs is denied.
    let whole = timeout.saturating_add(APPROVAL_RECORD_GRACE);
    match tokio::time::timeout(whole, verifier.decide(body, &bounded)).await {
        Ok(reply) => reply,
        Err(_) => refused(Error::HandlerFailed {
            cause: crate::error::Cause::new(PastTimeout { timeout: whole }),
            release_failure: None,
        }),
    }
}

/// An approval handler stopped at `timeout`, with [`PastTimeout`] as its error.
struct WithinTimeout<'h, H> {
    handler: &'h H,
    timeout: Duration,
}

impl<H: ApprovalHandler> ApprovalHandler for WithinTimeout<'_, H> {
    // Boxed as it is, the handler's own error still downcasts to its type in the reply's cause.
    type Error = BoxError;

    async fn decide(&self, request: &ApprovalRequest) -> Result<Decision, BoxError> {
        match tokio::time::timeout(self.timeout, self.handler.decide(request)).await {
            Ok(decided) => decided.map_err(Into::into),
            Err(_) => Err(Box::new(PastTimeout {
                timeout: self.timeout,
            })),
        }
    }
}

/// A request refused before its handler was asked (too large, cut short, not authentic):
/// `deny`, with the error's status code.
pub(crate) fn refused(error: Error) -> Reply {
    let reply = Reply::from(error).for_approval();
    crate::trace::delivery(&reply);
    reply
}
