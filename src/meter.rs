//! The crate's metrics (feature `metrics`), through the `metrics` facade: the `inbox` module
//! docs' "Metrics to alert on" lists them, with the alerts worth setting.

#[cfg(feature = "inbox")]
use std::time::Duration;

#[cfg(feature = "inbox")]
use crate::CallbackKind;
use crate::Reply;

/// Counts a delivery by its kind and what it was answered.
pub(crate) fn delivery(reply: &Reply) {
    let kind = reply.delivery().map_or("unknown", |key| key.kind.as_str());
    let outcome = match reply.error() {
        Some(error) => error.kind(),
        None if reply.is_approved() => "approved",
        None if reply.body() == Reply::DENY => "denied",
        None if reply.is_duplicate() => "duplicate",
        None => "acknowledged",
    };
    ::metrics::counter!("cregis_callbacks_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
}

/// Records how long the inbox took to write an accepted callback.
#[cfg(feature = "inbox")]
pub(crate) fn accepted(kind: CallbackKind, took: Duration) {
    ::metrics::histogram!("cregis_inbox_accept_seconds", "kind" => kind.as_str())
        .record(took.as_secs_f64());
}

/// Counts a handler run that ended with `outcome`.
#[cfg(feature = "inbox")]
pub(crate) fn run(kind: CallbackKind, outcome: &'static str) {
    ::metrics::counter!("cregis_inbox_runs_total", "kind" => kind.as_str(), "outcome" => outcome)
        .increment(1);
}

/// Records how long a handler ran.
#[cfg(feature = "inbox")]
pub(crate) fn ran_for(kind: CallbackKind, took: Duration) {
    ::metrics::histogram!("cregis_inbox_run_seconds", "kind" => kind.as_str())
        .record(took.as_secs_f64());
}

/// Counts an operator's action on an entry.
#[cfg(feature = "inbox")]
pub(crate) fn operator(kind: CallbackKind, action: &'static str) {
    ::metrics::counter!("cregis_inbox_operator_total", "kind" => kind.as_str(), "action" => action)
        .increment(1);
}

/// Counts dead entries an operator replayed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn replayed(entries: u64) {
    if entries > 0 {
        ::metrics::counter!("cregis_inbox_replayed_total").increment(entries);
    }
}

/// Sets the gauges of `kind`'s entries from the inbox's `counts`.
#[cfg(feature = "inbox")]
pub(crate) fn entries(kind: CallbackKind, counts: &[crate::inbox::Count]) {
    use crate::inbox::EntryState;
    let states = [
        EntryState::Pending,
        EntryState::Running,
        EntryState::Waiting,
        EntryState::Done,
        EntryState::Dead,
    ];
    let mut oldest = Duration::ZERO;
    for state in states {
        let count = counts
            .iter()
            .find(|count| count.kind == kind && count.state == state);
        let entries = count.map_or(0, |count| count.entries);
        if !matches!(state, EntryState::Done | EntryState::Dead) {
            oldest = oldest.max(count.map_or(Duration::ZERO, |count| count.oldest));
        }
        #[allow(clippy::cast_precision_loss)] // counts of entries: exact far beyond any inbox
        ::metrics::gauge!("cregis_inbox_entries", "kind" => kind.as_str(), "state" => state.name())
            .set(entries as f64);
    }
    ::metrics::gauge!("cregis_inbox_oldest_unfinished_seconds", "kind" => kind.as_str())
        .set(oldest.as_secs_f64());
}

/// Counts a reconciler pass's asks by outcome.
#[cfg(feature = "reconcile")]
pub(crate) fn reconciled(report: &crate::reconcile::Report) {
    let outcomes = [
        ("delivered", report.delivered),
        ("duplicate", report.duplicates),
        ("not_final", report.not_final),
        ("flagged", report.flagged.len()),
        ("held", report.held.len()),
        ("failed", report.failed.len()),
        ("refused", report.refused.len()),
        ("deferred", report.deferred),
    ];
    for (outcome, n) in outcomes {
        if n > 0 {
            ::metrics::counter!("cregis_reconcile_queries_total", "outcome" => outcome)
                .increment(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
}
