//! Payouts whose callback never came: ask Cregis, and deliver what it says through the same
//! path as a callback (feature `reconcile`).
//!
//! Cregis sends each payout's callback once and never again. A host that was down, a load
//! balancer that refused the request, a mistyped `callback_url`: the payout stays pending in
//! the host's books. A [`Reconciler`] takes the host's own list of payouts waiting for a final
//! status ([`Pending`]), queries those older than a grace period, and turns each final answer
//! into a callback body, signed with the project's key, delivered where the callbacks go
//! ([`Deliver`]: the inbox, or the verifier and handler). The delivery key is the callback's
//! (`payout/<pid>/<cid>/<status>`): whichever of the callback and the query comes first is
//! handled, the other is a duplicate.
//!
//! A query whose amount, address or currency is not what the host recorded is
//! [flagged](Flagged), never delivered: a person must look at that payout. So is a final
//! status the delivery refuses because the payout already holds another one (Cregis's final
//! statuses exclude each other). A payout still not final is asked again later, less and less
//! often. A reconciled delivery says so to the handler ([`Origin`](crate::Origin)).
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use std::time::{Duration, SystemTime};
//! use cregis_payout_callback::{ApiKey, CallbackKind, Reply, Verifier};
//! use cregis_payout_callback::reconcile::{Pending, Reconciler};
//! use cregis_payout_callback::request::{Client, Signer, RawResponse};
//!
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! // Your HTTP client; here, Cregis says the payout succeeded.
//! let transport = |_path: &'static str, _body: String| async {
//!     let body = r#"{"code":"00000","msg":"ok","data":{"pid":1382528827416576,"chain_id":"195",
//!         "token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
//!         "amount":"1.1","status":6,"third_party_id":"order-42","txid":"6dd05b09",
//!         "block_height":"34527604","block_time":1686814482000}}"#;
//!     Ok::<_, std::io::Error>(RawResponse { status: 200, body: body.to_owned() })
//! };
//! let client = Client::new(Signer::new(key.clone(), 1382528827416576), transport);
//! // Where callbacks go: here the verifier and a handler (in production, `ToInbox`, or the
//! // same verifier and idempotency store as your callback route, so that whichever of the
//! // callback and the query comes second is a duplicate).
//! let verifier = Verifier::new(key);
//! let deliver = move |_kind: CallbackKind, body: Vec<u8>| {
//!     let verifier = verifier.clone();
//!     async move {
//!         let settle = |callback: &cregis_payout_callback::PayoutCallback| {
//!             let id = callback.third_party_id.clone();
//!             async move { Ok::<(), std::io::Error>(println!("{id} settled")) }
//!         };
//!         verifier.process_async(&body, &settle).await
//!     }
//! };
//! let reconciler = Reconciler::new(client, deliver).grace(Duration::ZERO);
//! let waiting = [Pending::new(
//!     CallbackKind::Payout,
//!     1391751691788288,
//!     SystemTime::now(),
//!     "1.1",
//!     "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
//! )];
//! let report = reconciler.reconcile(&waiting).await;
//! assert_eq!((report.asked, report.delivered), (1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
#![doc = include_str!("../docs/reconciling.md")]

mod deliver;
mod limits;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The most queries a reconciler runs at once; more saturates to it.
const MAX_CONCURRENCY: usize = 1024;

use crate::deadline::later_from;
use crate::request::{Client, PayoutState, RequestError, Transport, fresh_nonce};
use crate::{CallbackKind, CallbackStatus, Reply};

pub use deliver::Deliver;
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub use deliver::ToInbox;
use limits::Limiter;

/// The final statuses the reconciler delivers unless told otherwise
/// ([`Reconciler::synthesise`]): all five, 3 (approval cancelled, which has no callback)
/// included.
pub const DEFAULT_SYNTHESISED: &[CallbackStatus] = &[
    CallbackStatus::SignatureRejected,
    CallbackStatus::ApprovalCancelled,
    CallbackStatus::ApprovalRejected,
    CallbackStatus::TransactionSuccessful,
    CallbackStatus::TransactionFailed,
];

/// How long after creation a payout is first asked about: 15 minutes. Cregis sends the
/// callback as soon as a payout is final, and most payouts are final within minutes; asking
/// sooner would mostly cost queries for callbacks that are still coming.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);
/// How many queries are in flight at once: 4.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Queries per second at most: 5. Cregis does not document its rate limits; 5 a second still
/// works through a backlog of 10,000 payouts in about half an hour.
pub const DEFAULT_RATE: u32 = 5;
/// When a payout that is not final yet is asked again: after 5 minutes, doubling to
/// [`DEFAULT_RECHECK_MAX`]. A payout waiting a day for approval costs about 30 queries.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(5 * 60);
/// The longest wait between two queries about one payout: an hour.
pub const DEFAULT_RECHECK_MAX: Duration = Duration::from_secs(60 * 60);
/// How long all queries pause after Cregis errors: 1 s, doubling with each error in a row to
/// a minute, and back to none after a success.
pub const DEFAULT_ERROR_BACKOFF: Duration = Duration::from_secs(1);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A payout the host created and has no final status for: what it is, when it was created,
/// and what the host expects of it.
///
/// # Example
///
/// See [the module](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// A wallet payout or a sub-address payout.
    pub kind: CallbackKind,
    /// Cregis's id of the payout, from the create response.
    pub cid: i64,
    /// When the host created it.
    pub created_at: SystemTime,
    /// The amount the host asked for, as the text it sent.
    pub amount: String,
    /// The address the host asked to pay.
    pub address: String,
    /// The currency Cregis reports (`TRX`, `USDT-TRC20`, ...), if the host wants it checked.
    pub currency: Option<String>,
}

impl Pending {
    /// A payout of `kind` with Cregis's id `cid`, created at `created_at`, of `amount` to
    /// `address`.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn new(
        kind: CallbackKind,
        cid: i64,
        created_at: SystemTime,
        amount: impl Into<String>,
        address: impl Into<String>,
    ) -> Pending {
        Pending {
            kind,
            cid,
            created_at,
            amount: amount.into(),
            address: address.into(),
            currency: None,
        }
    }

    /// Also checks the currency Cregis reports, in either form Cregis uses: `chain_id@token_id`
    /// as the create request took it (`195@195`), compared with the query's `chain_id` and
    /// `token_id`; or the symbol (`TRX`, `USDT-TRC20`), compared with its `currency`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use cregis_payout_callback::{CallbackKind, reconcile::Pending};
    ///
    /// let pending = Pending::new(CallbackKind::Withdrawal, 7, SystemTime::now(), "12.5", "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh")
    ///     .currency("144@144"); // as created; `.currency("XRP")` checks the same payout
    /// assert_eq!(pending.currency.as_deref(), Some("144@144"));
    /// ```
    #[must_use]
    pub fn currency(mut self, currency: impl Into<String>) -> Pending {
        self.currency = Some(currency.into());
        self
    }

    /// The first field of `state` that is not what the host expects.
    fn disagreement(&self, state: &PayoutState) -> Option<(&'static str, String, String)> {
        if !crate::same_amount(&state.amount, &self.amount) {
            return Some(("amount", state.amount.clone(), self.amount.clone()));
        }
        if state.to_address != self.address {
            return Some(("address", state.to_address.clone(), self.address.clone()));
        }
        let ours = self.currency.as_ref()?;
        // Either form Cregis uses: `195@195` (chain and token, as a create takes it) or `TRX`
        // (its symbol, as a query and a callback name it).
        let (cregis, same) = if ours.contains('@') {
            let pair = format!("{}@{}", state.chain_id, state.token_id);
            let same = pair == *ours;
            (pair, same)
        } else {
            (state.currency.clone(), state.currency == *ours)
        };
        (!same).then(|| ("currency", cregis, ours.clone()))
    }
}

/// A payout whose queried state is not what the host recorded: not delivered. A person must
/// look at it.
///
/// # Example
///
/// ```
/// # use cregis_payout_callback::reconcile::Flagged;
/// fn alert(flagged: &Flagged) {
///     eprintln!("{flagged}"); // "withdrawal 7: Cregis says amount 125, our record says 12.5"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flagged {
    /// What Cregis says of the payout.
    pub state: PayoutState,
    /// Which field disagrees: `amount`, `address` or `currency` (with the host's record),
    /// or `status`: the delivery found the payout at another final status
    /// ([`ConflictingFinalStatus`](crate::Error::ConflictingFinalStatus)), its code in
    /// `ours`.
    pub field: &'static str,
    /// What Cregis says.
    pub cregis: String,
    /// What the host recorded.
    pub ours: String,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: Cregis says {} {}, our record says {}",
            self.state.kind, self.state.cid, self.field, self.cregis, self.ours
        )
    }
}

/// What one [`Reconciler::reconcile`] pass did.
///
/// # Example
///
/// See [the module](self).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// Queries sent.
    pub asked: usize,
    /// Final states delivered and acknowledged, new ones.
    pub delivered: usize,
    /// Final states delivered that were already known (the callback came first).
    pub duplicates: usize,
    /// Payouts not final yet, to be asked again later.
    pub not_final: usize,
    /// Payouts whose state disagrees with the host's record: not delivered.
    pub flagged: Vec<Flagged>,
    /// Payouts at a final status the reconciler does not deliver
    /// ([`Reconciler::synthesise`]), as Cregis answered: a person settles them.
    pub held: Vec<PayoutState>,
    /// Queries that failed, with why; asked again later.
    pub failed: Vec<(CallbackKind, i64, RequestError)>,
    /// Final states the delivery refused (the inbox could not write, say), with the reply;
    /// asked again later.
    pub refused: Vec<(CallbackKind, i64, Reply)>,
    /// Payouts not asked because Cregis is failing and its backoff runs (the pass ends and
    /// reports instead of waiting): due at the next pass.
    pub deferred: usize,
    /// While Cregis is failing, what is left of the backoff: the next pass asks again once
    /// it is over (one query, then all once one succeeds). `None` when no query was deferred.
    pub backing_off: Option<Duration>,
    /// The pass ended early because `shutdown` completed
    /// ([`reconcile_until`](Reconciler::reconcile_until)): stop your loop here, and do not
    /// poll that future again (a completed `async` block panics when polled).
    pub stopped: bool,
}

/// When a payout is asked about next, and how often it was found not final.
#[derive(Debug, Clone, Copy)]
struct Next {
    at: Instant,
    not_final: u32,
    /// Deliveries refused in a row.
    refused: u32,
}

impl Next {
    /// A payout first seen, due at `at`.
    fn new(at: Instant) -> Next {
        Next {
            at,
            not_final: 0,
            refused: 0,
        }
    }
}

/// The settings of a [`Reconciler`].
#[derive(Debug, Clone)]
struct Settings {
    grace: Duration,
    concurrency: usize,
    rate: u32,
    recheck: Duration,
    recheck_max: Duration,
    error_backoff: Duration,
    /// The final statuses delivered; the others are held ([`Report::held`]).
    synthesise: Vec<CallbackStatus>,
}

/// Asks Cregis about the host's payouts that have no final status, and delivers what it
/// says. Clones share their client, schedule and rate limiter (one budget of queries a
/// second); each keeps its own settings.
///
/// # Example
///
/// See [the module](self).
pub struct Reconciler<T, D> {
    shared: Arc<Shared<T, D>>,
    settings: Settings,
}

impl<T, D> Clone for Reconciler<T, D> {
    fn clone(&self) -> Self {
        Reconciler {
            shared: Arc::clone(&self.shared),
            settings: self.settings.clone(),
        }
    }
}

impl<T, D> fmt::Debug for Reconciler<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconciler")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

struct Shared<T, D> {
    client: Client<T>,
    deliver: D,
    limiter: Limiter,
    schedule: Mutex<HashMap<(CallbackKind, i64), Next>>,
}

impl<T, D> Reconciler<T, D>
where
    T: Transport + 'static,
    D: Deliver + 'static,
{
    /// Asks through `client` and hands final states to `deliver`, with the default settings.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub fn new(client: Client<T>, deliver: D) -> Reconciler<T, D> {
        Reconciler {
            shared: Arc::new(Shared {
                client,
                deliver,
                limiter: Limiter::default(),
                schedule: Mutex::new(HashMap::new()),
            }),
            settings: Settings {
                grace: DEFAULT_GRACE,
                concurrency: DEFAULT_CONCURRENCY,
                rate: DEFAULT_RATE,
                recheck: DEFAULT_RECHECK,
                recheck_max: DEFAULT_RECHECK_MAX,
                error_backoff: DEFAULT_ERROR_BACKOFF,
                synthesise: DEFAULT_SYNTHESISED.to_vec(),
            },
        }
    }

    /// Asks about a payout only once it is this old ([`DEFAULT_GRACE`]).
    ///
    /// # Example
    ///
    /// See [the module](self).
    #[must_use]
    pub fn grace(self, grace: Duration) -> Self {
        Reconciler {
            settings: Settings {
                grace,
                ..self.settings
            },
            ..self
        }
    }

    /// At most `concurrency` queries in flight at once ([`DEFAULT_CONCURRENCY`]; saturates to
    /// 1 ..= 1024).
    ///
    /// # Example
    ///
    /// See [`rate`](Self::rate).
    #[must_use]
    pub fn concurrency(self, concurrency: usize) -> Self {
        Reconciler {
            settings: Settings {
                concurrency: concurrency.clamp(1, MAX_CONCURRENCY),
                ..self.settings
            },
            ..self
        }
    }

    /// At most `per_second` queries a second ([`DEFAULT_RATE`]; at least 1), spaced evenly.
    /// A query that starts late (a busy runtime) lets the next start at once and no more: in
    /// any second at most `per_second + 1` start (`+ 2` from 1,000 a second).
    ///
    /// # Example
    ///
    /// ```
    /// # use cregis_payout_callback::{ApiKey, CallbackKind, Reply, reconcile::Reconciler};
    /// # use cregis_payout_callback::request::{Client, Signer, RawResponse};
    /// # let client = Client::new(Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1),
    /// #     |_: &'static str, _: String| async { Ok::<_, std::io::Error>(RawResponse { status: 503, body: String::new() }) });
    /// # let deliver = |_: CallbackKind, _: Vec<u8>| async { Reply::ack() };
    /// let reconciler = Reconciler::new(client, deliver).concurrency(8).rate(20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rate(self, per_second: u32) -> Self {
        Reconciler {
            settings: Settings {
                rate: per_second.max(1),
                ..self.settings
            },
            ..self
        }
    }

    /// A payout not final yet is asked again after `first`, doubling each time to `max`
    /// ([`DEFAULT_RECHECK`], [`DEFAULT_RECHECK_MAX`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cregis_payout_callback::{ApiKey, CallbackKind, Reply, reconcile::Reconciler};
    /// # use cregis_payout_callback::request::{Client, Signer, RawResponse};
    /// # let client = Client::new(Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1),
    /// #     |_: &'static str, _: String| async { Ok::<_, std::io::Error>(RawResponse { status: 503, body: String::new() }) });
    /// # let deliver = |_: CallbackKind, _: Vec<u8>| async { Reply::ack() };
    /// let reconciler = Reconciler::new(client, deliver)
    ///     .recheck(Duration::from_secs(60), Duration::from_secs(30 * 60));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn recheck(self, first: Duration, max: Duration) -> Self {
        let settings = Settings {
            recheck: first,
            recheck_max: max.max(first),
            ..self.settings
        };
        Reconciler { settings, ..self }
    }

    /// After a failed query all queries pause for `first`, doubling with each failure in a row
    /// to a minute ([`DEFAULT_ERROR_BACKOFF`]). A pass does not wait out the pause: it ends
    /// at once, its report naming the failures ([`Report::failed`]) and the payouts deferred
    /// ([`Report::deferred`], [`Report::backing_off`]), so an outage shows in every pass while
    /// it lasts. Once the pause is over, the next pass sends one query; when one succeeds, all
    /// are asked again.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cregis_payout_callback::{ApiKey, CallbackKind, Reply, reconcile::Reconciler};
    /// # use cregis_payout_callback::request::{Client, Signer, RawResponse};
    /// # let client = Client::new(Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1),
    /// #     |_: &'static str, _: String| async { Ok::<_, std::io::Error>(RawResponse { status: 503, body: String::new() }) });
    /// # let deliver = |_: CallbackKind, _: Vec<u8>| async { Reply::ack() };
    /// let reconciler = Reconciler::new(client, deliver).error_backoff(Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn error_backoff(self, first: Duration) -> Self {
        Reconciler {
            settings: Settings {
                error_backoff: first,
                ..self.settings
            },
            ..self
        }
    }

    /// Which final statuses a query's answer is delivered for ([`DEFAULT_SYNTHESISED`]: all
    /// five). A final status not listed is not delivered: the pass reports it in
    /// [`Report::held`], for a person to settle, and asks again at the longest recheck. Status
    /// 3 (approval cancelled) has no callback at all, so only the reconciler ever delivers it;
    /// leave it out to have a person look at every cancellation. Statuses that are not final
    /// are never delivered, listed or not.
    ///
    /// # Example
    ///
    /// ```
    /// # use cregis_payout_callback::{ApiKey, CallbackKind, CallbackStatus, Reply, reconcile::Reconciler};
    /// # use cregis_payout_callback::request::{Client, Signer, RawResponse};
    /// # let client = Client::new(Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1),
    /// #     |_: &'static str, _: String| async { Ok::<_, std::io::Error>(RawResponse { status: 503, body: String::new() }) });
    /// # let deliver = |_: CallbackKind, _: Vec<u8>| async { Reply::ack() };
    /// use CallbackStatus::*;
    /// let reconciler = Reconciler::new(client, deliver).synthesise(&[
    ///     SignatureRejected,
    ///     ApprovalRejected,
    ///     TransactionSuccessful,
    ///     TransactionFailed,
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn synthesise(self, statuses: &[CallbackStatus]) -> Self {
        let synthesise = statuses.iter().copied().filter(|s| s.is_final()).collect();
        Reconciler {
            settings: Settings {
                synthesise,
                ..self.settings
            },
            ..self
        }
    }

    /// One pass over `pending`, the host's payouts without a final status: asks about each one
    /// past the grace period and due (never asked, or its next ask has come), within the
    /// concurrency and rate limits, and delivers or flags what Cregis says. Returns when every
    /// query of the pass has been answered.
    ///
    /// Payouts no longer in `pending` are forgotten.
    ///
    /// # Example
    ///
    /// See [the module](self).
    pub async fn reconcile(&self, pending: &[Pending]) -> Report {
        self.reconcile_until(pending, std::future::pending::<()>())
            .await
    }

    /// [`reconcile`](Self::reconcile), starting no new query once `shutdown` completes; the
    /// queries in flight are answered and delivered first, and the payouts not asked yet are
    /// asked at the next pass. [`Report::stopped`] says whether `shutdown` completed during
    /// the pass: then it must not be polled again.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn doc(reconciler: cregis_payout_callback::reconcile::Reconciler<
    /// #     impl cregis_payout_callback::request::Transport + 'static,
    /// #     impl cregis_payout_callback::reconcile::Deliver + 'static>) {
    /// use std::time::Duration;
    /// use cregis_payout_callback::reconcile::Pending;
    ///
    /// # async fn pending_payouts() -> Vec<Pending> { Vec::new() }
    /// let mut shutdown = std::pin::pin!(async { let _ = tokio::signal::ctrl_c().await; });
    /// loop {
    ///     // SELECT kind, cid, created_at, amount, address FROM payouts WHERE final_status IS NULL
    ///     let pending: Vec<Pending> = pending_payouts().await;
    ///     let report = reconciler.reconcile_until(&pending, shutdown.as_mut()).await;
    ///     for flagged in &report.flagged {
    ///         eprintln!("look at this payout: {flagged}");
    ///     }
    ///     if report.stopped {
    ///         break; // `shutdown` has completed: polling it again would panic
    ///     }
    ///     tokio::select! {
    ///         () = shutdown.as_mut() => break,
    ///         () = tokio::time::sleep(Duration::from_secs(60)) => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn reconcile_until(
        &self,
        pending: &[Pending],
        shutdown: impl Future<Output = ()>,
    ) -> Report {
        let report = self.pass(pending, shutdown).await;
        trace_report(&report);
        #[cfg(feature = "metrics")]
        crate::meter::reconciled(&report);
        report
    }

    async fn pass(&self, pending: &[Pending], shutdown: impl Future<Output = ()>) -> Report {
        let (shared, settings) = (&self.shared, &self.settings);
        let now = Instant::now();
        let wall = SystemTime::now();
        let due: Vec<Pending> = {
            let mut schedule = shared
                .schedule
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let listed: std::collections::HashSet<_> =
                pending.iter().map(|p| (p.kind, p.cid)).collect();
            schedule.retain(|key, _| listed.contains(key));
            let due: Vec<Pending> = pending
                .iter()
                .filter(|p| {
                    let old_enough = wall
                        .duration_since(p.created_at)
                        .is_ok_and(|age| age >= settings.grace);
                    let next = schedule.get(&(p.kind, p.cid));
                    old_enough && next.is_none_or(|next| next.at <= now)
                })
                .cloned()
                .collect();
            // Reserved until asked: a pass running at the same time (a clone's) skips them.
            for payout in &due {
                let next = schedule
                    .entry((payout.kind, payout.cid))
                    .or_insert(Next::new(now));
                next.at = later_from(now, settings.recheck.max(Duration::from_secs(60)));
            }
            due
        };
        let mut report = Report::default();
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut due = due.into_iter();
        while let Some(payout) = due.next() {
            // Cregis is failing: the rest waits for the next pass, which this one does not.
            if let Some(pause) = shared.limiter.backing_off() {
                let rest: Vec<Pending> = std::iter::once(payout).chain(due.by_ref()).collect();
                self.unreserve(&rest, now);
                report.deferred += rest.len();
                report.backing_off = Some(pause);
                break;
            }
            let permit = tokio::select! {
                biased;
                () = shutdown.as_mut() => None,
                permit = Arc::clone(&permits).acquire_owned() => permit.ok(),
            };
            let Some(permit) = permit else {
                // Not asked: no longer reserved, due at the next pass.
                let rest: Vec<Pending> = std::iter::once(payout).chain(due.by_ref()).collect();
                self.unreserve(&rest, now);
                report.stopped = true;
                break;
            };
            while let Some(done) = tasks.try_join_next() {
                collect(&mut report, done);
            }
            let reconciler = self.clone();
            tasks.spawn(async move {
                let outcome = reconciler.ask(&payout).await;
                drop(permit);
                (payout, outcome)
            });
            report.asked += 1;
        }
        while let Some(done) = tasks.join_next().await {
            collect(&mut report, done);
        }
        report
    }

    /// No longer reserved by this pass: due again at `now`.
    fn unreserve(&self, unasked: &[Pending], now: Instant) {
        let mut schedule = self
            .shared
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for payout in unasked {
            if let Some(next) = schedule.get_mut(&(payout.kind, payout.cid)) {
                next.at = now;
            }
        }
    }

    /// Queries one payout, delivers or flags its state, and schedules its next ask.
    async fn ask(&self, payout: &Pending) -> Outcome {
        let (shared, settings) = (&self.shared, &self.settings);
        let outcome = if let Err(pause) = shared.limiter.wait(settings.rate).await {
            Outcome::Deferred(pause)
        } else {
            self.query(payout).await
        };
        let mut schedule = shared
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = schedule
            .entry((payout.kind, payout.cid))
            .or_insert_with(|| Next::new(Instant::now()));
        let wait = match &outcome {
            Outcome::NotFinal => {
                next.not_final = next.not_final.saturating_add(1);
                doubled(settings.recheck, next.not_final - 1, settings.recheck_max)
            }
            // Flagged or held: a person looks at it; meanwhile, rarely.
            Outcome::Flagged(_) | Outcome::Held(_) => settings.recheck_max,
            // Refused (the inbox could not write, a conflict): asked again less and less
            // often, as after errors, up to the longest recheck.
            Outcome::Delivered(reply) if !reply.is_ack() => {
                next.refused = next.refused.saturating_add(1);
                doubled(settings.recheck, next.refused - 1, settings.recheck_max)
            }
            // Delivered: the host's list drops it once handled; until then, not again soon.
            Outcome::Delivered(_) => {
                next.refused = 0;
                settings.recheck
            }
            // A failed query says nothing of the delivery: its refusals still count.
            Outcome::Failed(_) => settings.recheck,
            // Not asked (Cregis is failing): due at the next pass.
            Outcome::Deferred(_) => Duration::ZERO,
        };
        next.at = later_from(Instant::now(), wait);
        outcome
    }

    /// Sends the query about `payout`, and delivers or flags its state.
    async fn query(&self, payout: &Pending) -> Outcome {
        let (shared, settings) = (&self.shared, &self.settings);
        match shared.client.query(payout.kind, payout.cid).await {
            Err(error) => {
                shared
                    .limiter
                    .failed(settings.error_backoff, ERROR_BACKOFF_MAX);
                Outcome::Failed(error)
            }
            Ok(state) => {
                shared.limiter.succeeded();
                if let Some((field, cregis, ours)) = payout.disagreement(&state) {
                    Outcome::Flagged(Box::new(Flagged {
                        state,
                        field,
                        cregis,
                        ours,
                    }))
                } else if !state.status.is_final() {
                    Outcome::NotFinal
                } else if !settings.synthesise.contains(&state.status) {
                    Outcome::Held(Box::new(state))
                } else {
                    let body = self.callback_body(&state);
                    let reply = shared.deliver.deliver(payout.kind, body.into_bytes()).await;
                    // The payout holds another final status: they exclude each other.
                    if let Some(&crate::Error::ConflictingFinalStatus { recorded, .. }) =
                        reply.error()
                    {
                        let cregis = state.status.code().to_string();
                        return Outcome::Flagged(Box::new(Flagged {
                            state,
                            field: "status",
                            cregis,
                            ours: recorded.code().to_string(),
                        }));
                    }
                    #[cfg(feature = "tracing")]
                    if reply.is_ack() && !reply.is_duplicate() {
                        tracing::info!(
                            target: "cregis_payout_callback",
                            kind = payout.kind.as_str(),
                            cid = payout.cid,
                            status = state.status.code(),
                            origin = crate::Origin::Reconciler.as_str(),
                            "reconcile: delivered a payout's final status"
                        );
                    }
                    Outcome::Delivered(reply)
                }
            }
        }
    }

    /// The callback Cregis would have sent for `state`: its documented fields in their order,
    /// a fresh `nonce`, now as `timestamp`, and [`Origin::FIELD`](crate::Origin::FIELD)
    /// saying who made it, signed with the project's key. Its fingerprint reads the documented
    /// fields only, so that a late callback is a duplicate.
    fn callback_body(&self, state: &PayoutState) -> String {
        let requests = self.shared.client.signer();
        let mut params: Vec<(&'static str, Value)> = vec![
            ("pid", state.pid.into()),
            ("cid", state.cid.into()),
            ("chain_id", state.chain_id.clone().into()),
            ("token_id", state.token_id.clone().into()),
            ("currency", state.currency.clone().into()),
        ];
        if state.kind == CallbackKind::Withdrawal {
            let from = state.from_address.clone().unwrap_or_default();
            params.push(("from_address", from.into()));
            params.push(("to_address", state.to_address.clone().into()));
        } else {
            params.push(("address", state.to_address.clone().into()));
        }
        params.extend([
            ("amount", state.amount.clone().into()),
            ("third_party_id", state.third_party_id.clone().into()),
        ]);
        let optional = |value: &Option<String>| value.clone().map(Value::String);
        let tail = [
            ("remark", optional(&state.remark)),
            ("status", Some(state.status.code().into())),
            ("txid", optional(&state.txid)),
            ("block_height", optional(&state.block_height)),
            ("block_time", state.block_time.map(Value::from)),
            ("memo", optional(&state.memo)),
            // Who made it, signed with the rest: `Origin::Reconciler` to the handler.
            (
                crate::Origin::FIELD,
                Some(crate::Origin::Reconciler.as_str().into()),
            ),
        ];
        params.extend(
            tail.into_iter()
                .filter_map(|(name, value)| Some((name, value?))),
        );
        requests
            .render(params, &fresh_nonce(), requests.now_millis())
            .0
    }
}

/// `first` doubled `times` times, at most `max`.
fn doubled(first: Duration, times: u32, max: Duration) -> Duration {
    first
        .checked_mul(1u32.checked_shl(times.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// What asking about one payout came to.
enum Outcome {
    Delivered(Reply),
    NotFinal,
    Flagged(Box<Flagged>),
    /// Final, but its status is not one the reconciler delivers.
    Held(Box<PayoutState>),
    Failed(RequestError),
    /// Not asked: Cregis is failing, and its backoff has this long to run.
    Deferred(Duration),
}

fn collect(report: &mut Report, done: Result<(Pending, Outcome), tokio::task::JoinError>) {
    let Ok((payout, outcome)) = done else {
        // A delivery that panicked: its payout stays reserved until its recheck (a minute at
        // least), then is asked again.
        return;
    };
    match outcome {
        Outcome::Delivered(reply) if reply.is_ack() && reply.is_duplicate() => {
            report.duplicates += 1;
        }
        Outcome::Delivered(reply) if reply.is_ack() => report.delivered += 1,
        Outcome::Delivered(reply) => report.refused.push((payout.kind, payout.cid, reply)),
        Outcome::NotFinal => report.not_final += 1,
        Outcome::Flagged(flagged) => report.flagged.push(*flagged),
        Outcome::Held(state) => report.held.push(*state),
        Outcome::Failed(error) => report.failed.push((payout.kind, payout.cid, error)),
        Outcome::Deferred(pause) => {
            // Counted as asked when its task began; it sent nothing.
            report.asked = report.asked.saturating_sub(1);
            report.deferred += 1;
            report.backing_off = Some(report.backing_off.map_or(pause, |p| p.max(pause)));
        }
    }
}

#[cfg(feature = "tracing")]
fn trace_report(report: &Report) {
    for flagged in &report.flagged {
        tracing::warn!(
            target: "cregis_payout_callback",
            kind = flagged.state.kind.as_str(),
            cid = flagged.state.cid,
            field = flagged.field,
            "reconcile: {flagged}"
        );
    }
    for state in &report.held {
        tracing::warn!(
            target: "cregis_payout_callback",
            kind = state.kind.as_str(),
            cid = state.cid,
            status = state.status.code(),
            "reconcile: a final status held for a person (not in `synthesise`)"
        );
    }
    for (kind, cid, error) in &report.failed {
        tracing::warn!(target: "cregis_payout_callback", kind = kind.as_str(), cid, "reconcile: query failed: {error}");
    }
    for (kind, cid, reply) in &report.refused {
        tracing::warn!(
            target: "cregis_payout_callback",
            kind = kind.as_str(),
            cid,
            http_status = reply.status_code(),
            "reconcile: delivery refused"
        );
    }
    tracing::info!(
        target: "cregis_payout_callback",
        asked = report.asked,
        delivered = report.delivered,
        duplicates = report.duplicates,
        not_final = report.not_final,
        flagged = report.flagged.len(),
        held = report.held.len(),
        failed = report.failed.len(),
        refused = report.refused.len(),
        deferred = report.deferred,
        backing_off_ms = report.backing_off.map(|p| u64::try_from(p.as_millis()).unwrap_or(u64::MAX)),
        "reconcile pass"
    );
}

#[cfg(not(feature = "tracing"))]
fn trace_report(_: &Report) {}
