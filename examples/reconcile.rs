//! Nothing lost: create payouts, take their callbacks through the inbox, and reconcile the
//! ones whose callback never came, all against the fake Cregis (`examples/fake_cregis.rs`),
//! which here drops 20 % of the callbacks.
//!
//! ```sh
//! cargo run --example reconcile --features sqlite,axum,reconcile
//! ```
//!
//! The parts to copy:
//! - [`HttpTransport`]: the crate's [`Transport`] on `reqwest`, with a connect timeout, a
//!   timeout on the whole request, and no redirects (a signed body is never re-sent elsewhere).
//!   For the real Cregis API, enable one of reqwest's TLS features.
//! - [`Host`]: the host's `payouts` table, written when a payout is created (with the `cid`
//!   Cregis returned), read by the reconciler ([`Host::pending`]), and updated by the inbox's
//!   worker in the inbox's transaction ([`Settle`]), whether the final status came by callback
//!   or by query.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use cregis_payout_callback::axum::inbox_route;
use cregis_payout_callback::inbox::{InTransaction, SqliteHandler, SqliteInbox, Worker};
use cregis_payout_callback::reconcile::{Flagged, Pending, Reconciler, ToInbox};
use cregis_payout_callback::request::{
    Client, CreatePayout, CreateWithdrawal, NotSent, RawResponse, Signer, Transport,
};
use cregis_payout_callback::{
    ApiKey, CallbackKind, CallbackStatus, PayoutCallback, Verifier, WithdrawalCallback,
    error::BoxError,
};
use sqlx::SqliteConnection;

/// The fake Cregis the demo runs against (its own example, `cargo run --example fake_cregis`).
#[path = "fake_cregis.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod fake_cregis;

/// The wallet payouts' callback route.
pub const PAYOUT_ROUTE: &str = "/cregis/payout-callback";
/// The sub-address payouts' callback route.
pub const WITHDRAWAL_ROUTE: &str = "/cregis/withdrawal-callback";

/// The crate's [`Transport`] on `reqwest`.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base_url: String,
    client: reqwest::Client,
}

impl HttpTransport {
    /// Signer to `base_url` (the project's API host, `https://...`).
    ///
    /// # Errors
    ///
    /// The client cannot be built (no TLS backend for an `https` URL, say).
    pub fn new(base_url: impl Into<String>) -> Result<HttpTransport, reqwest::Error> {
        HttpTransport::with_timeouts(base_url, Duration::from_secs(5), Duration::from_secs(15))
    }

    /// Signer to `base_url` that give up connecting after `connect` and waiting for the
    /// whole answer after `total`.
    ///
    /// # Errors
    ///
    /// As [`HttpTransport::new`].
    pub fn with_timeouts(
        base_url: impl Into<String>,
        connect: Duration,
        total: Duration,
    ) -> Result<HttpTransport, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            // A redirect would send the signed body to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpTransport {
            base_url: base_url.into(),
            client,
        })
    }
}

impl Transport for HttpTransport {
    type Error = BoxError;

    /// A connection that could not be made is [`NotSent`]: nothing reached Cregis. Anything
    /// later (a timeout, a reset, an answer cut short) may have.
    async fn post(&self, path: &'static str, body: String) -> Result<RawResponse, BoxError> {
        let sent = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Err(error) if error.is_connect() => return Err(NotSent::new(error).into()),
            sent => sent?,
        };
        let status = response.status().as_u16();
        Ok(RawResponse {
            status,
            body: response.text().await?,
        })
    }
}

/// The host's own record of its payouts, in the inbox's database file.
pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS payouts (
        cid          INTEGER PRIMARY KEY,
        kind         TEXT NOT NULL,
        amount       TEXT NOT NULL,
        address      TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        final_status INTEGER,
        flagged      TEXT
    )",
    // One row per status applied: the evidence that each payout was settled once.
    "CREATE TABLE IF NOT EXISTS ledger (cid INTEGER NOT NULL, status INTEGER NOT NULL)",
];

/// The host: its payouts table, beside the inbox.
#[derive(Debug, Clone)]
pub struct Host {
    inbox: SqliteInbox,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Host {
    /// The host on `inbox`'s database, its tables created if need be.
    ///
    /// # Errors
    ///
    /// The tables cannot be created.
    pub async fn new(inbox: SqliteInbox) -> Result<Host, sqlx::Error> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(inbox.pool()).await?;
        }
        Ok(Host { inbox })
    }

    /// Records a payout just created, with the `cid` Cregis returned.
    ///
    /// # Errors
    ///
    /// The row cannot be written.
    pub async fn created(
        &self,
        kind: CallbackKind,
        cid: i64,
        amount: &str,
        address: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO payouts (cid, kind, amount, address, created_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(cid)
        .bind(kind.as_str())
        .bind(amount)
        .bind(address)
        .bind(millis(SystemTime::now()))
        .execute(self.inbox.pool())
        .await?;
        Ok(())
    }

    /// The payouts still waiting for a final status (and not flagged for a person).
    ///
    /// # Errors
    ///
    /// The table cannot be read.
    pub async fn pending(&self) -> Result<Vec<Pending>, sqlx::Error> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT cid, kind, amount, address, created_ms FROM payouts
             WHERE final_status IS NULL AND flagged IS NULL",
        )
        .fetch_all(self.inbox.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(cid, kind, amount, address, created)| {
                let kind = kind.parse().ok()?;
                let created = UNIX_EPOCH + Duration::from_millis(u64::try_from(created).ok()?);
                Some(Pending::new(kind, cid, created, amount, address))
            })
            .collect())
    }

    /// Marks a payout the reconciler flagged: a person looks at it; it is not asked again.
    ///
    /// # Errors
    ///
    /// The row cannot be written.
    pub async fn flag(&self, flagged: &Flagged) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE payouts SET flagged = ? WHERE cid = ?")
            .bind(flagged.to_string())
            .bind(flagged.state.cid)
            .execute(self.inbox.pool())
            .await?;
        Ok(())
    }
}

/// The worker's handler: applies a final status to the host's payout, in the inbox's
/// transaction, once its amount and address agree with the host's record.
#[derive(Debug, Clone, Copy)]
pub struct Settle;

async fn settle(
    tx: &mut SqliteConnection,
    cid: i64,
    status: CallbackStatus,
    amount: &str,
    address: &str,
) -> Result<(), String> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT amount, address FROM payouts WHERE cid = ?")
            .bind(cid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    // Not recorded yet (the callback raced the create response): the worker retries.
    let (ours, to) = row.ok_or_else(|| format!("payout {cid} is not recorded yet"))?;
    // One rule for amounts: `12.5` and a query's `12.500000` are the same.
    if !cregis_payout_callback::same_amount(&ours, amount) || to != address {
        let why =
            format!("payout {cid}: Cregis says {amount} to {address}, we sent {ours} to {to}");
        sqlx::query("UPDATE payouts SET flagged = ? WHERE cid = ?")
            .bind(&why)
            .bind(cid)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("FLAGGED {why}");
        return Ok(());
    }
    sqlx::query("UPDATE payouts SET final_status = ? WHERE cid = ?")
        .bind(status.code())
        .bind(cid)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("INSERT INTO ledger (cid, status) VALUES (?, ?)")
        .bind(cid)
        .bind(status.code())
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

impl SqliteHandler for Settle {
    type Error = String;

    async fn handle(&self, c: &PayoutCallback, tx: &mut SqliteConnection) -> Result<(), String> {
        settle(tx, c.cid, c.status, &c.amount, &c.address).await
    }
}

impl SqliteHandler<WithdrawalCallback> for Settle {
    type Error = String;

    async fn handle(
        &self,
        c: &WithdrawalCallback,
        tx: &mut SqliteConnection,
    ) -> Result<(), String> {
        settle(tx, c.cid, c.status, &c.amount, &c.to_address).await
    }
}

/// The host's server: both callback routes into the inbox.
pub fn app(verifier: &Verifier, inbox: &SqliteInbox) -> Router {
    let withdrawals = verifier.clone().for_kind::<WithdrawalCallback>();
    Router::new()
        .route(PAYOUT_ROUTE, inbox_route(verifier.clone(), inbox.clone()))
        .route(WITHDRAWAL_ROUTE, inbox_route(withdrawals, inbox.clone()))
}

/// The host's background work until `shutdown`: a worker per kind (its entries' leases
/// `lease` long: `inbox::DEFAULT_LEASE` in production), and a reconciliation pass every
/// `every` (flagged payouts marked for a person).
pub async fn background(
    host: Host,
    inbox: SqliteInbox,
    reconciler: Reconciler<HttpTransport, ToInbox<SqliteInbox>>,
    every: Duration,
    lease: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    // One worker per kind; `Settle` handles both.
    let payouts: Worker<_, InTransaction<Settle, PayoutCallback>> =
        Worker::in_transaction(inbox.clone(), Settle)
            .poll_interval(every)
            .lease(lease);
    let withdrawals: Worker<_, InTransaction<Settle, WithdrawalCallback>> =
        Worker::in_transaction(inbox, Settle)
            .poll_interval(every)
            .lease(lease);
    let workers = [
        tokio::spawn(payouts.run(until())),
        tokio::spawn(withdrawals.run(until())),
    ];
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        match host.pending().await {
            Ok(pending) => {
                let report = reconciler
                    .reconcile_until(&pending, shutdown.as_mut())
                    .await;
                for flagged in &report.flagged {
                    eprintln!("FLAGGED {flagged}");
                    if let Err(error) = host.flag(flagged).await {
                        eprintln!("could not flag {}: {error}", flagged.state.cid);
                    }
                }
                if report.stopped {
                    break; // `shutdown` completed: it must not be polled again
                }
            }
            Err(error) => eprintln!("the pending payouts could not be read: {error}"),
        }
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.await;
    }
}

/// Creates `n` payouts (every fifth a sub-address payout, every tenth one in XRP with a memo)
/// and records each with its `cid`.
///
/// # Errors
///
/// A create request failed, or a payout could not be recorded.
pub async fn create_payouts(
    client: &Client<HttpTransport>,
    host: &Host,
    callback_base: &str,
    n: usize,
) -> Result<Vec<i64>, Box<dyn std::error::Error + Send + Sync>> {
    let mut cids = Vec::with_capacity(n);
    for i in 0..n {
        let amount = format!("{}.{:02}", 10 + i % 90, i % 100);
        let id = format!("order-{i}");
        let (kind, to, created) = if i % 5 == 4 {
            // Every other sub-address payout is in XRP, whose callbacks carry a memo.
            let (currency, from, to, memo) = if i % 10 == 9 {
                let (from, to) = (
                    "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY",
                    "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
                );
                ("144@144", from, to, Some(format!("{}", 104_900 + i)))
            } else {
                let (from, to) = (
                    "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8",
                    "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
                );
                ("195@195", from, to, None)
            };
            let mut order = CreateWithdrawal::new(currency, from, to, &amount, &id)
                .callback_url(format!("{callback_base}{WITHDRAWAL_ROUTE}"))
                .remark("withdrawal");
            order.memo = memo;
            let created = client.create_withdrawal(&order).await?;
            (CallbackKind::Withdrawal, to, created)
        } else {
            let to = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
            let order = CreatePayout::new("195@195", to, &amount, &id)
                .callback_url(format!("{callback_base}{PAYOUT_ROUTE}"))
                .remark("payout");
            (
                CallbackKind::Payout,
                to,
                client.create_payout(&order).await?,
            )
        };
        let cid = created.cid;
        host.created(kind, cid, &amount, to).await?;
        cids.push(cid);
    }
    Ok(cids)
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let key = ApiKey::new("fake-demo-key-0123456789abcdef")?;
    let pid = 1_382_528_827_416_576;
    let mut options = fake_cregis::Options::new(key.clone(), pid);
    options.drop_percent = 20;
    let fake = fake_cregis::FakeCregis::start(options, 0).await?;

    let dir = tempfile::tempdir()?;
    let inbox = SqliteInbox::open(dir.path().join("host.db")).await?;
    let host = Host::new(inbox.clone()).await?;
    let verifier = Verifier::new(key.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback_base = format!("http://{}", listener.local_addr()?);
    let app = app(&verifier, &inbox);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::new(
        Signer::new(key.clone(), pid),
        HttpTransport::new(fake.url())?,
    );
    let reconciler = Reconciler::new(
        Client::new(Signer::new(key, pid), HttpTransport::new(fake.url())?),
        ToInbox::new(verifier, inbox.clone()),
    )
    // Demo timings; in production keep the defaults (15 min grace, 5 queries a second).
    .grace(Duration::from_millis(500))
    .recheck(Duration::from_millis(300), Duration::from_secs(2))
    .rate(50);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let background = tokio::spawn(background(
        host.clone(),
        inbox,
        reconciler,
        Duration::from_millis(200),
        cregis_payout_callback::inbox::DEFAULT_LEASE,
        async {
            let _ = stopped.await;
        },
    ));

    let cids = create_payouts(&client, &host, &callback_base, 50).await?;
    println!(
        "created {} payouts; Cregis will drop 20 % of their callbacks",
        cids.len()
    );
    let started = std::time::Instant::now();
    while !host.pending().await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acknowledged = fake.sent().iter().filter(|s| s.answer.is_some()).count();
    println!(
        "all {} final after {:?}: {acknowledged} by callback, {} by reconciliation ({} queries)",
        cids.len(),
        started.elapsed(),
        cids.len() - acknowledged,
        fake.counters()
            .queries
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    let _ = stop.send(());
    background.await?;
    Ok(())
}
