//! The framework integrations, and what they share: the body limit before reading, and the
//! reply when the delivery's own task ends without one.
//!
//! Each framework's route refuses an oversized body before reading it (by its
//! `Content-Length`, or once more than the limit has streamed in), runs the delivery in a
//! task of its own so that a client hanging up cannot cancel the handler half-way, and tells
//! a panicking handler (500, with the panic's message in the cause) from a cancelled task
//! (503). With an idempotency store, the handler is also bounded by its claim's lease
//! ([`delivered`]), so that a re-push never runs it a second time while the first still runs.

#[cfg(feature = "actix-web")]
pub mod actix_web;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "http")]
pub mod service;

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{BoxError, PastLease};
use crate::idempotency::AsyncStoreSlot;
use crate::{AsyncCallbackHandler, Error, Notification, Reply, Verifier};

/// What a route's task runs: [`Verifier::process_async`] with `handler`, bounded by the claim's
/// lease when the verifier has a store.
///
/// The lease is how long the claim holds off other deliveries of the same fact: past it, a
/// re-push takes the claim over and runs the handler again. So a handler still running when
/// the lease ends is stopped there (its future dropped at its next `.await`), its claim
/// released, and the delivery answered 500 [`Error::HandlerFailed`] with [`PastLease`] as the
/// cause: never two runs at once. The deadline counts from before the claim, so it falls
/// before the lease the store measures. A blocking call inside the handler cannot be
/// stopped at all: keep those shorter than the lease.
async fn delivered<St, H, C>(verifier: &Verifier<St, C>, body: &[u8], handler: &H) -> Reply
where
    St: AsyncStoreSlot,
    C: Notification,
    H: AsyncCallbackHandler<C>,
{
    if !verifier.has_store() {
        return verifier.process_async(body, handler).await;
    }
    let lease = verifier.claim_lease_setting();
    let bounded = WithinLease {
        handler,
        lease,
        deadline: crate::deadline::later(lease),
    };
    verifier.process_async(body, &bounded).await
}

/// A handler stopped at its claim's deadline (see [`delivered`]).
struct WithinLease<'h, H> {
    handler: &'h H,
    lease: Duration,
    deadline: Instant,
}

impl<C: Notification, H: AsyncCallbackHandler<C>> AsyncCallbackHandler<C> for WithinLease<'_, H> {
    // Boxed as it is, the handler's own error still downcasts to its type in the reply's cause.
    type Error = BoxError;

    async fn handle(&self, callback: &C) -> Result<(), BoxError> {
        match tokio::time::timeout_at(self.deadline, self.handler.handle(callback)).await {
            Ok(outcome) => outcome.map_err(Into::into),
            Err(_) => Err(Box::new(PastLease { lease: self.lease })),
        }
    }
}
/// The body length a request announced (its `Content-Length` header), if it did.
fn announced_len(content_length: Option<&[u8]>) -> Option<usize> {
    std::str::from_utf8(content_length?).ok()?.parse().ok()
}

/// [`Error::BodyTooLarge`] if the request announced a body over `limit`.
fn announced_too_large(announced: Option<usize>, limit: usize) -> Option<Error> {
    let len = announced?;
    (len > limit).then_some(Error::BodyTooLarge { len, limit })
}

/// [`Error::BodyUnreadable`] if the body ended before the length it announced: the client
/// hung up mid-body (some servers end the body there rather than report an error).
fn cut_short(announced: Option<usize>, received: usize) -> Option<Error> {
    let announced = announced?;
    (received < announced).then(|| Error::BodyUnreadable {
        reason: format!("the body ended after {received} of the {announced} bytes announced"),
    })
}

/// The error for a body that streamed past `limit` (its true length is unknown).
fn streamed_too_large(limit: usize) -> Error {
    Error::BodyTooLarge {
        len: limit.saturating_add(1),
        limit,
    }
}

/// The reply to a delivery the adapter refuses itself (an oversized or broken-off body, or a
/// failed verification in axum's extractor), reported like any other.
fn refuse(error: Error) -> Reply {
    let reply = Reply::from(error);
    crate::trace::delivery(&reply);
    reply
}

/// The reply of a delivery run in a task of its own: the task's reply, or, if it ended
/// without one, a 500 for a panic (its message in the cause) or a 503 for a cancelled task.
fn joined<S, C: crate::Callback>(
    verifier: &Verifier<S, C>,
    body: &[u8],
    task: Result<Reply, tokio::task::JoinError>,
) -> Reply {
    match task {
        Ok(reply) => reply,
        Err(error) => {
            let error = match error.try_into_panic() {
                Ok(panic) => Error::handler_panicked(&*panic),
                Err(_) => Error::HandlerCancelled,
            };
            verifier.task_failed(body, error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::ApiKey;
    use crate::testing::CallbackBuilder;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_panicking_task_is_500_with_the_panic_message() {
        let key = ApiKey::new("fake-api-key-for-tests").unwrap();
        let verifier = Verifier::new(key.clone());
        let body = CallbackBuilder::new().cid(7).body(&key).unwrap();
        let task =
            runtime().block_on(async { tokio::spawn(async { panic!("ledger row locked") }).await });
        let reply = joined(&verifier, body.as_bytes(), task);
        assert_eq!((reply.status_code(), reply.body()), (500, "internal error"));
        let error = reply.error().unwrap();
        assert_eq!(error.kind(), "HandlerFailed");
        assert_eq!(
            error.source().unwrap().to_string(),
            "the handler panicked: ledger row locked"
        );
        assert_eq!(reply.delivery().unwrap().cid, 7);
    }

    #[test]
    fn a_cancelled_task_is_503_and_not_a_panic() {
        let key = ApiKey::new("fake-api-key-for-tests").unwrap();
        let verifier = Verifier::new(key.clone());
        let body = CallbackBuilder::new().body(&key).unwrap();
        let task = runtime().block_on(async {
            let task = tokio::spawn(std::future::pending::<Reply>());
            task.abort();
            task.await
        });
        let reply = joined(&verifier, body.as_bytes(), task);
        assert_eq!((reply.status_code(), reply.body()), (503, "internal error"));
        assert_eq!(reply.error(), Some(&Error::HandlerCancelled));
        assert!(reply.delivery().is_some());
    }

    #[test]
    fn announced_lengths_over_the_limit_are_refused() {
        let too_large = |header: Option<&[u8]>| announced_too_large(announced_len(header), 65_536);
        assert_eq!(
            too_large(Some(b"10485760")),
            Some(Error::BodyTooLarge {
                len: 10_485_760,
                limit: 65_536
            })
        );
        assert_eq!(too_large(Some(b"65536")), None);
        assert_eq!(too_large(Some(b"ten")), None);
        assert_eq!(too_large(None), None);
    }

    #[test]
    fn a_body_shorter_than_announced_was_cut_short() {
        assert_eq!(
            cut_short(Some(400), 200),
            Some(Error::BodyUnreadable {
                reason: "the body ended after 200 of the 400 bytes announced".to_owned()
            })
        );
        assert_eq!(cut_short(Some(400), 400), None);
        // Unannounced (chunked): only the server can tell.
        assert_eq!(cut_short(None, 0), None);
    }
}
