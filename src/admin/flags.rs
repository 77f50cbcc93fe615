//! What the reconciler flagged or held, kept for the console.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use maud::{Markup, html};

use crate::CallbackKind;
use crate::reconcile::{Pending, Report};

/// The payouts the [reconciler](crate::reconcile) flagged (Cregis's state disagrees with the
/// host's record) or held (a final status it does not synthesise), for the [`Console`]
/// to list until the host settles them. A cheap handle: clones share one list.
///
/// [`Console`]: super::Console
///
/// # Example
///
/// ```no_run
/// # use cregis_payout_callback::{reconcile::{Deliver, Pending, Reconciler}, request::Transport};
/// # async fn doc<T: Transport + 'static, D: Deliver + 'static>(
/// #     reconciler: Reconciler<T, D>,
/// #     inbox: cregis_payout_callback::inbox::SqliteInbox,
/// #     pending_payouts: impl AsyncFn() -> Vec<Pending>,
/// # ) {
/// use std::time::Duration;
/// use cregis_payout_callback::admin::{Access, Console, Flags};
///
/// let flags = Flags::new();
/// let console = Console::new(inbox, |_| Access::unauthenticated()).flags(flags.clone());
/// # let _ = console;
/// loop {
///     let pending = pending_payouts().await; // the payouts the host has no final status for
///     let report = reconciler.reconcile(&pending).await;
///     flags.record(&pending, &report);
///     tokio::time::sleep(Duration::from_secs(60)).await;
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Flags(Arc<Mutex<BTreeMap<Flag, Row>>>);

/// A payout, and what is flagged of it (a field, or `held`).
type Flag = (CallbackKind, i64, &'static str);

/// One flagged or held payout, as the console shows it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    kind: CallbackKind,
    cid: i64,
    third_party_id: String,
    what: &'static str,
    cregis: String,
    ours: String,
    since: SystemTime,
}

impl Flags {
    /// An empty list.
    ///
    /// # Example
    ///
    /// See [`Flags`].
    pub fn new() -> Flags {
        Flags::default()
    }

    /// Takes in one pass's `report`, made from `pending`: its flagged and held payouts are
    /// listed (a payout still flagged keeps the time it was first), and those no longer in
    /// `pending` (the host settled them) are dropped.
    ///
    /// # Example
    ///
    /// See [`Flags`].
    pub fn record(&self, pending: &[Pending], report: &Report) {
        let mut rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rows.retain(|(kind, cid, _), _| pending.iter().any(|p| p.kind == *kind && p.cid == *cid));
        let now = SystemTime::now();
        let flagged = report.flagged.iter().map(|flagged| {
            let state = &flagged.state;
            (
                state,
                flagged.field,
                flagged.cregis.clone(),
                flagged.ours.clone(),
            )
        });
        let held = report.held.iter().map(|state| {
            (
                state,
                "held",
                state.status.code().to_string(),
                String::new(),
            )
        });
        for (state, what, cregis, ours) in flagged.chain(held) {
            let since = rows
                .get(&(state.kind, state.cid, what))
                .map_or(now, |row| row.since);
            rows.insert(
                (state.kind, state.cid, what),
                Row {
                    kind: state.kind,
                    cid: state.cid,
                    third_party_id: state.third_party_id.clone(),
                    what,
                    cregis,
                    ours,
                    since,
                },
            );
        }
    }

    /// The rows, by kind and `cid`.
    pub(super) fn rows(&self) -> Vec<Row> {
        let rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rows.values().cloned().collect()
    }
}

/// The console's table of `rows`.
pub(super) fn table(rows: &[Row]) -> Markup {
    html! {
        @if rows.is_empty() {
            p.note { "None." }
        } @else {
            table id="flags" {
                tr {
                    th { "kind" } th { "cid" } th { "third_party_id" } th { "what" }
                    th { "Cregis says" } th { "our record says" } th { "since" }
                }
                @for row in rows {
                    tr {
                        td { (row.kind.as_str()) }
                        td { (row.cid) }
                        td { (row.third_party_id) }
                        td { (if row.what == "held" { "held: a final status the reconciler does not deliver" } else { row.what }) }
                        td { (row.cregis) }
                        td { (row.ours) }
                        td { (super::pages::span(row.since.elapsed().unwrap_or(Duration::ZERO))) " ago" }
                    }
                }
            }
        }
    }
}
