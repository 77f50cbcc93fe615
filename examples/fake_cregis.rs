//! A fake Cregis for tests and demos: creates payouts, sends their callbacks to the
//! `callback_url` (dropping a chosen share, sending others only after they were queried), and
//! answers the query APIs. Every request's signature is checked, as Cregis does.
//!
//! ```sh
//! CREGIS_API_KEY=fake-demo-key-0123456789abcdef cargo run --example fake_cregis -- \
//!     [--port 4000] [--drop 20] [--late 10] [--final-after-ms 500]
//! ```
//!
//! The tests (`tests/reconcile_e2e.rs`) run it in process; `examples/reconcile.rs` talks to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use cregis_payout_callback::signature::sign;
use cregis_payout_callback::testing::{CallbackBuilder, WithdrawalBuilder};
use cregis_payout_callback::{ApiKey, CallbackKind, CallbackStatus};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// The first `cid` the fake hands out: above 2^53, where a float would lose digits.
pub const FIRST_CID: i64 = 9_007_199_254_740_993;

/// What happens to a payout's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Sent as soon as the payout is final.
    Sent,
    /// Never sent (the host was down, a load balancer refused it, ...).
    Dropped,
    /// Sent only once the payout was queried after it became final.
    AfterQuery,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project's key: requests must be signed with it, callbacks are.
    pub key: ApiKey,
    /// The project's id.
    pub pid: i64,
    /// Percent of callbacks never sent.
    pub drop_percent: u64,
    /// Percent of callbacks sent only after a query.
    pub late_percent: u64,
    /// How long after its creation a payout becomes final.
    pub final_after: Duration,
    /// How long a late callback waits after the query that releases it.
    pub late_delay: Duration,
    /// How long a query takes to answer.
    pub query_latency: Duration,
    /// Percent of payouts whose queries answer the amount in the scale of Cregis's own
    /// column (`12.5` as `12.500000`), as a real Cregis may.
    pub scaled_percent: u64,
}

impl Options {
    /// No callback dropped or late, final after 100 ms, queries answered at once.
    pub fn new(key: ApiKey, pid: i64) -> Options {
        Options {
            key,
            pid,
            drop_percent: 0,
            late_percent: 0,
            final_after: Duration::from_millis(100),
            late_delay: Duration::from_millis(50),
            query_latency: Duration::ZERO,
            scaled_percent: 0,
        }
    }

    /// Whether the queries of the `n`th payout created answer its amount in six decimals.
    pub fn scaled(&self, n: u64) -> bool {
        n * 53 % 100 < self.scaled_percent
    }

    /// The fate of the `n`th payout created: exact shares in every 100 payouts, spread out.
    pub fn fate(&self, n: u64) -> Fate {
        let r = n * 37 % 100;
        if r < self.drop_percent {
            Fate::Dropped
        } else if r < self.drop_percent + self.late_percent {
            Fate::AfterQuery
        } else {
            Fate::Sent
        }
    }
}

/// The final status of the `n`th payout: one in ten fails on chain, one in twenty is
/// rejected at approval (no transaction), the rest succeed.
pub fn final_status(n: u64) -> CallbackStatus {
    match n * 53 % 100 {
        0..10 => CallbackStatus::TransactionFailed,
        10..15 => CallbackStatus::ApprovalRejected,
        _ => CallbackStatus::TransactionSuccessful,
    }
}

/// One payout, as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Payout {
    /// A wallet payout or a sub-address payout.
    pub kind: CallbackKind,
    /// Its place in the order of creation.
    pub n: u64,
    /// The id the fake gave it.
    pub cid: i64,
    /// The currency as created (`chain_id@token_id`).
    pub currency: String,
    /// Where it leaves from.
    pub from_address: String,
    /// Where it goes.
    pub to_address: String,
    /// The amount, as created.
    pub amount: String,
    /// The host's id.
    pub third_party_id: String,
    /// The remark, as created.
    pub remark: String,
    /// The memo, as created.
    pub memo: String,
    /// Where its callback goes.
    pub callback_url: Option<String>,
    /// Where it is in its life.
    pub status: CallbackStatus,
    /// What happens to its callback.
    pub fate: Fate,
    /// Queried after it became final.
    pub queried_final: bool,
    /// The amount the query reports instead, if set ([`FakeCregis::misreport_amount`]).
    pub reported_amount: Option<String>,
}

/// A callback the fake sent and what the host answered (`None`: no answer, the host was down).
#[derive(Debug, Clone)]
pub struct SentCallback {
    /// The payout.
    pub cid: i64,
    /// Its fate.
    pub fate: Fate,
    /// When it was sent, since the fake started.
    pub at: Duration,
    /// When the answer came (or the attempt failed), on the same clock.
    pub done: Duration,
    /// The host's status and body.
    pub answer: Option<(u16, String)>,
}

/// What the fake counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Queries answered.
    pub queries: AtomicUsize,
    /// Queries in flight right now.
    pub in_flight: AtomicUsize,
    /// The most queries in flight at once.
    pub max_in_flight: AtomicUsize,
    /// When each query arrived, since the fake started.
    pub query_times: Mutex<Vec<Duration>>,
    /// Signer refused for a bad signature.
    pub forged: AtomicUsize,
}

impl Counters {
    /// The most queries that arrived within any `window`.
    pub fn max_in_window(&self, window: Duration) -> usize {
        let mut times = self
            .query_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        times.sort();
        let mut most = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].saturating_sub(times[start]) >= window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }
}

struct Fake {
    options: Options,
    started: Instant,
    next: AtomicU64,
    next_cid: AtomicI64,
    payouts: Mutex<HashMap<i64, Payout>>,
    queried: Notify,
    sent: Mutex<Vec<SentCallback>>,
    counters: Counters,
    http: reqwest::Client,
}

/// A running fake Cregis, on loopback.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct FakeCregis {
    fake: Arc<Fake>,
    addr: SocketAddr,
}

impl FakeCregis {
    /// Serves the fake on `127.0.0.1:port` (0: any free port), in the background.
    ///
    /// # Errors
    ///
    /// The port cannot be bound.
    pub async fn start(options: Options, port: u16) -> std::io::Result<FakeCregis> {
        let fake = Arc::new(Fake {
            options,
            started: Instant::now(),
            next: AtomicU64::new(0),
            next_cid: AtomicI64::new(FIRST_CID),
            payouts: Mutex::new(HashMap::new()),
            queried: Notify::new(),
            sent: Mutex::new(Vec::new()),
            counters: Counters::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = Router::new()
            .route("/api/v1/payout", post(create))
            .route("/api/v1/sub_address_withdrawal", post(create))
            .route("/api/v1/payout/query", post(query))
            .route("/api/v1/sub_address_withdrawal/info", post(query))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeCregis { fake, addr })
    }

    /// The base URL requests go to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every payout, by `cid`.
    pub fn payouts(&self) -> HashMap<i64, Payout> {
        lock(&self.fake.payouts).clone()
    }

    /// Every callback sent, in order.
    pub fn sent(&self) -> Vec<SentCallback> {
        lock(&self.fake.sent).clone()
    }

    /// How long the fake has been running: the clock of [`SentCallback::at`].
    pub fn elapsed(&self) -> Duration {
        self.fake.started.elapsed()
    }

    /// What the fake counted.
    pub fn counters(&self) -> &Counters {
        &self.fake.counters
    }

    /// Payout `cid` is now at `status` (Cregis changed its mind, or a bug): queries report
    /// it from now on.
    pub fn set_status(&self, cid: i64, status: CallbackStatus) {
        if let Some(payout) = lock(&self.fake.payouts).get_mut(&cid) {
            payout.status = status;
        }
    }

    /// From now on, queries about `cid` report `amount` (a payout changed behind the host's
    /// back, or a bug): the reconciler must flag it.
    pub fn misreport_amount(&self, cid: i64, amount: &str) {
        if let Some(payout) = lock(&self.fake.payouts).get_mut(&cid) {
            payout.reported_amount = Some(amount.to_owned());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer Cregis gives: `{code, msg, data}`.
fn envelope(code: &str, msg: &str, data: &Value) -> String {
    json!({ "code": code, "msg": msg, "data": data }).to_string()
}

/// The request's parameters, if it is signed with the project's key.
fn signed_params(fake: &Fake, body: &str) -> Option<Map<String, Value>> {
    let Ok(Value::Object(params)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let given = params.get("sign")?.as_str()?;
    let authentic = sign(&params, &fake.options.key).ok()? == given
        && params.get("pid").and_then(Value::as_i64) == Some(fake.options.pid);
    if !authentic {
        fake.counters.forged.fetch_add(1, Ordering::SeqCst);
    }
    authentic.then_some(params)
}

fn text(params: &Map<String, Value>, name: &str) -> String {
    params
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The currency's name for `chain_id@token_id`.
fn currency_name(currency: &str) -> &'static str {
    match currency {
        "195@195" => "TRX",
        "195@TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t" => "USDT-TRC20",
        "144@144" => "XRP",
        _ => "UNKNOWN",
    }
}

async fn create(State(fake): State<Arc<Fake>>, uri: axum::http::Uri, body: String) -> String {
    let Some(params) = signed_params(&fake, &body) else {
        return envelope("10001", "sign error", &Value::Null);
    };
    let kind = if uri.path() == "/api/v1/sub_address_withdrawal" {
        CallbackKind::Withdrawal
    } else {
        CallbackKind::Payout
    };
    let n = fake.next.fetch_add(1, Ordering::SeqCst);
    let cid = fake.next_cid.fetch_add(1, Ordering::SeqCst);
    let (from, to) = match kind {
        CallbackKind::Withdrawal => (text(&params, "from_address"), text(&params, "to_address")),
        _ => (
            "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8".to_owned(),
            text(&params, "address"),
        ),
    };
    let payout = Payout {
        kind,
        n,
        cid,
        currency: text(&params, "currency"),
        from_address: from,
        to_address: to,
        amount: text(&params, "amount"),
        third_party_id: text(&params, "third_party_id"),
        remark: text(&params, "remark"),
        memo: text(&params, "memo"),
        callback_url: params
            .get("callback_url")
            .and_then(Value::as_str)
            .map(str::to_owned),
        status: CallbackStatus::PendingSignature,
        fate: fake.options.fate(n),
        queried_final: false,
        reported_amount: None,
    };
    lock(&fake.payouts).insert(cid, payout);
    tokio::spawn(finish(Arc::clone(&fake), cid));
    envelope("00000", "ok", &json!({ "cid": cid }))
}

/// Makes the payout final after a while, and sends its callback as its fate says.
async fn finish(fake: Arc<Fake>, cid: i64) {
    tokio::time::sleep(fake.options.final_after).await;
    let destiny = {
        let mut payouts = lock(&fake.payouts);
        let Some(payout) = payouts.get_mut(&cid) else {
            return;
        };
        payout.status = final_status(payout.n);
        payout.fate
    };
    match destiny {
        Fate::Dropped => return,
        Fate::Sent => {}
        Fate::AfterQuery => {
            loop {
                let released = fake.queried.notified();
                if lock(&fake.payouts)
                    .get(&cid)
                    .is_some_and(|p| p.queried_final)
                {
                    break;
                }
                released.await;
            }
            tokio::time::sleep(fake.options.late_delay).await;
        }
    }
    let Some(payout) = lock(&fake.payouts).get(&cid).cloned() else {
        return;
    };
    let Some(url) = payout.callback_url.clone() else {
        return;
    };
    let body = callback_body(&fake.options.key, fake.options.pid, &payout);
    let at = fake.started.elapsed();
    let answer = match fake
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            Some((status, response.text().await.unwrap_or_default()))
        }
        Err(_) => None,
    };
    lock(&fake.sent).push(SentCallback {
        cid,
        fate: destiny,
        at,
        done: fake.started.elapsed(),
        answer,
    });
}

/// The payout's transaction (`txid`, `block_height`, `block_time`), for a callback and a
/// query answer alike: none before it is broadcast, or for a payout rejected before that.
fn transaction(payout: &Payout) -> Option<(String, String, i64)> {
    let broadcast = matches!(
        payout.status,
        CallbackStatus::TransactionSuccessful | CallbackStatus::TransactionFailed
    );
    if !broadcast {
        return None;
    }
    let n = i64::try_from(payout.n).unwrap_or(i64::MAX / 4);
    let txid = format!(
        "{:064x}",
        u128::from(payout.n).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    Some((
        txid,
        format!("{}", 34_527_604 + payout.n),
        1_686_814_482_000 + 3_000 * n,
    ))
}

/// The callback Cregis sends for `payout`, in its documented field order, as a Java back end
/// writes it: a rejection carries an empty `txid` and `block_height` and a `block_time` of 0,
/// and every callback an undocumented `network_fee` (the query answer has neither).
pub fn callback_body(key: &ApiKey, pid: i64, payout: &Payout) -> String {
    let (txid, height, time) = transaction(payout).unwrap_or_default();
    let currency = currency_name(&payout.currency);
    let (chain, token) = payout.currency.split_once('@').unwrap_or(("195", "195"));
    // The two builders share their setters; each kind adds its own addresses.
    macro_rules! fields {
        ($builder:expr) => {{
            let builder = $builder
                .pid(pid)
                .cid(payout.cid)
                .chain_id(chain)
                .token_id(token)
                .currency(currency)
                .amount(&payout.amount)
                .third_party_id(&payout.third_party_id)
                .remark(&payout.remark)
                .status(payout.status)
                .txid(&txid)
                .block_height(&height)
                .block_time(time)
                .string("network_fee", "0.35");
            if payout.memo.is_empty() {
                builder.body(key)
            } else {
                builder.memo(&payout.memo).body(key)
            }
        }};
    }
    let signed = if payout.kind == CallbackKind::Withdrawal {
        fields!(
            WithdrawalBuilder::new()
                .from_address(&payout.from_address)
                .to_address(&payout.to_address)
        )
    } else {
        fields!(CallbackBuilder::new().address(&payout.to_address))
    };
    signed.unwrap_or_default()
}

async fn query(State(fake): State<Arc<Fake>>, uri: axum::http::Uri, body: String) -> String {
    let counters = &fake.counters;
    let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
    lock(&counters.query_times).push(fake.started.elapsed());
    tokio::time::sleep(fake.options.query_latency).await;
    let answer = answer_query(&fake, uri.path(), &body);
    counters.queries.fetch_add(1, Ordering::SeqCst);
    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    answer
}

fn answer_query(fake: &Fake, path: &str, body: &str) -> String {
    let Some(params) = signed_params(fake, body) else {
        return envelope("10001", "sign error", &Value::Null);
    };
    let Some(cid) = params.get("cid").and_then(Value::as_i64) else {
        return envelope("10002", "cid is required", &Value::Null);
    };
    let withdrawal = path == "/api/v1/sub_address_withdrawal/info";
    let payout = {
        let mut payouts = lock(&fake.payouts);
        let Some(payout) = payouts.get_mut(&cid) else {
            return envelope("20004", "order not found", &Value::Null);
        };
        if (payout.kind == CallbackKind::Withdrawal) != withdrawal {
            return envelope("20004", "order not found", &Value::Null);
        }
        if payout.status.is_final() {
            payout.queried_final = true;
        }
        payout.clone()
    };
    fake.queried.notify_waiters();
    let (chain, token) = payout.currency.split_once('@').unwrap_or(("195", "195"));
    let (txid, height, time) = transaction(&payout).unwrap_or_default();
    let mut data = json!({
        "pid": fake.options.pid,
        "chain_id": chain,
        "token_id": token,
        "currency": currency_name(&payout.currency),
        "from_address": payout.from_address,
        "amount": reported_amount(&fake.options, &payout),
        "status": payout.status.code(),
        "third_party_id": payout.third_party_id,
        "remark": payout.remark,
        "memo": payout.memo,
        "txid": txid,
        "block_height": height,
        "block_time": time,
    });
    let to = if withdrawal { "to_address" } else { "address" };
    data[to] = payout.to_address.clone().into();
    envelope("00000", "ok", &data)
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = std::env::var("CREGIS_API_KEY").map_err(|_| "set CREGIS_API_KEY")?;
    let mut options = Options::new(ApiKey::new(key)?, 1_382_528_827_416_576);
    let mut port = 4000;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).ok_or("every flag needs a value")?;
        match pair[0].as_str() {
            "--port" => port = value.parse()?,
            "--drop" => options.drop_percent = value.parse()?,
            "--late" => options.late_percent = value.parse()?,
            "--final-after-ms" => options.final_after = Duration::from_millis(value.parse()?),
            flag => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let fake = FakeCregis::start(options, port).await?;
    println!("fake Cregis on {}", fake.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The amount a query answers for `payout`: a misreported one, or as created, in six decimals
/// for the share [`Options::scaled_percent`] says.
fn reported_amount(options: &Options, payout: &Payout) -> String {
    if let Some(amount) = &payout.reported_amount {
        return amount.clone();
    }
    match payout.amount.split_once('.') {
        Some((whole, fraction)) if options.scaled(payout.n) && fraction.len() < 6 => {
            format!("{whole}.{fraction:0<6}")
        }
        None if options.scaled(payout.n) => format!("{}.000000", payout.amount),
        _ => payout.amount.clone(),
    }
}
