//! One structured `tracing` event per delivery (feature `tracing`).
//!
//! Every reply of `Verifier::process*` is reported once, at the end, with what a host needs to
//! log, alert and count: the outcome, the HTTP status, the error's kind and text, whether it
//! was a duplicate, and the fact (`pid`, `cid`, `status`) once the callback was read, with the
//! key that signed it (`signed_with`: `current key` or `previous key N`) and whether its claim
//! took over an expired one. No event ever carries the API key or the expected signature: the
//! error texts never contain them, and a key from the body appears only as a short excerpt.

use crate::Reply;

/// The target of every event: filter on it (`cregis_payout_callback=info`).
#[cfg(feature = "tracing")]
pub(crate) const TARGET: &str = "cregis_payout_callback";

/// Reports `reply`: INFO when acknowledged, WARN when refused (401, 400, 409, 413) or cancelled
/// (503: the host is shutting down), ERROR when the host failed (500), even on an acknowledged
/// delivery whose store failed to record it.
#[cfg(feature = "tracing")]
pub(crate) fn delivery(reply: &Reply) {
    use tracing::Level;

    let outcome = match (reply.is_ack(), reply.is_duplicate()) {
        (true, true) => "duplicate",
        (true, false) => "acknowledged",
        (false, _) => "refused",
    };
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
    let (pid, cid, status) = (
        key.map(|k| k.pid),
        key.map(|k| k.cid),
        key.map(|k| k.status.code()),
    );
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
                pid,
                cid,
                status,
                signed_with,
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

/// Without the `tracing` feature, nothing is reported.
#[cfg(not(feature = "tracing"))]
pub(crate) fn delivery(_: &Reply) {}
