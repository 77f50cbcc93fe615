//! One structured `tracing` event per delivery (feature `tracing`).
//!
//! Every reply of `Verifier::process*`, `accept` and `decide` is reported once, at the end, with
//! what a host needs to log, alert and count: the outcome (`acknowledged`, `duplicate`,
//! `refused`; for approvals `approved` or `denied`, with the handler's `denial` reason), the
//! HTTP status, the error's kind and text, whether it was a duplicate, and the fact
//! (`callback_kind`, `pid`, `cid`, `status`) once the callback was read, with the
//! key that signed it (`signed_with`: `current key` or `previous key N`) and whether its claim
//! took over an expired one. No event ever carries the API key or the expected signature: the
//! error texts never contain them, and a key from the body appears only as a short excerpt.

#[cfg(not(feature = "tracing"))]
use crate::Reply;

/// The target of every event: filter on it (`cregis_payout_callback=info`).
#[cfg(feature = "tracing")]
pub(crate) const TARGET: &str = "cregis_payout_callback";

/// Reports `reply`: INFO when acknowledged, WARN when refused (401, 400, 409, 413) or cancelled
/// (503: the host is shutting down), ERROR when the host failed (500), even on an acknowledged
/// delivery whose store failed to record it.
#[cfg(feature = "tracing")]
pub(crate) fn delivery(reply: &crate::Reply) {
    use tracing::Level;

    use crate::CallbackStatus;

    #[cfg(feature = "metrics")]
    crate::meter::delivery(reply);

    let outcome = match (reply.is_ack(), reply.is_duplicate()) {
        _ if reply.is_approved() => "approved",
        _ if reply.body() == crate::Reply::DENY => "denied",
        (true, true) => "duplicate",
        (true, false) => "acknowledged",
        (false, _) => "refused",
    };
    let denial = reply.denial();
    let error = reply.error();
    let kind = error.map_or("none", crate::Error::kind);
    let signed_with = reply.signed_with().map(tracing::field::display);
    let message = error.map(ToString::to_string).unwrap_or_default();
    let level = match error {
        None => Level::INFO,
        Some(crate::Error::HandlerCancelled) => Level::WARN,
        Some(error) if error.http_status() >= 500 => Level::ERROR,
        Some(_) => Level::WARN,
    };
    // Known once the callback was read; a `None` field is left out of the event.
    let key = reply.delivery();
    let (callback_kind, pid, cid) = (
        key.map(|k| k.kind.as_str()),
        key.map(|k| k.pid),
        key.map(|k| k.cid),
    );
    let status = key.and_then(|k| k.fact.status()).map(CallbackStatus::code);
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                outcome,
                status_code = reply.status_code(),
                duplicate = reply.is_duplicate(),
                error_kind = kind,
                error = %message,
                callback_kind,
                pid,
                cid,
                status,
                signed_with,
                denial,
                took_over = reply.took_over(),
                "cregis payout callback {outcome}"
            )
        };
    }
    // A level must be a constant in `event!`.
    match level {
        Level::INFO => emit!(Level::INFO),
        Level::WARN => emit!(Level::WARN),
        _ => emit!(Level::ERROR),
    }
}

/// Without the `tracing` feature, no event (the metrics, if on, still count it).
#[cfg(not(feature = "tracing"))]
pub(crate) fn delivery(reply: &Reply) {
    #[cfg(feature = "metrics")]
    crate::meter::delivery(reply);
    let _ = reply;
}
