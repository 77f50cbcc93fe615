//! The reconciler against the fake Cregis over real HTTP on loopback: the grace period, payouts
//! not final asked again later, a disagreeing payout flagged and never delivered, backoff when
//! Cregis errors, a delivered body that is the callback Cregis would have sent, and the
//! concurrency and rate limits under a backlog of 10,000 payouts, counted by the fake.
#![cfg(all(feature = "reconcile", feature = "sqlite", feature = "axum"))]

mod common;
#[path = "../examples/reconcile.rs"]
#[allow(dead_code, unreachable_pub)]
mod host;
#[path = "../examples/inbox.rs"]
#[allow(dead_code, unreachable_pub)]
mod inbox_example;
#[path = "../examples/simulate.rs"]
#[allow(dead_code, unreachable_pub)]
mod simulate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::key;
use cregis_payout_callback::admin::{Access, Console, Flags};
use cregis_payout_callback::reconcile::{self, Pending, Reconciler};
use cregis_payout_callback::request::{Client, CreatePayout, RawResponse, Signer};
use cregis_payout_callback::{
    CallbackKind, CallbackStatus, Origin, PayoutCallback, Reply, Verifier,
};
use host::HttpTransport;
use host::fake_cregis::{self, FakeCregis, Options};

const PID: i64 = 1382528827416576;
const TO: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

fn client(fake: &FakeCregis) -> Client<HttpTransport> {
    Client::new(
        Signer::new(key(), PID),
        HttpTransport::new(fake.url()).unwrap(),
    )
}

/// Creates `n` wallet payouts at the fake (no callback URL: only queries find them), and
/// returns them as the host would list them, created `age` ago.
async fn create(fake: &FakeCregis, n: usize, age: Duration) -> Vec<Pending> {
    let client = Arc::new(client(fake));
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let client = Arc::clone(&client);
        tasks.spawn(async move {
            let mut created = Vec::new();
            for i in (chunk..n).step_by(8) {
                let amount = format!("{}.{:02}", 10 + i % 90, i % 100);
                let order = CreatePayout::new("195@195", TO, &amount, format!("order-{i}"));
                let cid = client.create_payout(&order).await.unwrap().cid;
                let created_at = SystemTime::now() - age;
                created.push(Pending::new(
                    CallbackKind::Payout,
                    cid,
                    created_at,
                    amount,
                    TO,
                ));
            }
            created
        });
    }
    let mut all = Vec::new();
    while let Some(created) = tasks.join_next().await {
        all.extend(created.unwrap());
    }
    all
}

/// Delivers into a list, checking each body with the verifier as a callback route would.
#[derive(Debug, Clone, Default)]
struct Delivered(Arc<Mutex<Vec<PayoutCallback>>>);

impl Delivered {
    fn deliver(&self) -> impl Fn(CallbackKind, Vec<u8>) -> std::future::Ready<Reply> + use<> {
        let delivered = self.clone();
        move |kind, body| {
            assert_eq!(kind, CallbackKind::Payout);
            let verifier = Verifier::new(key());
            let callback = verifier.verify_and_parse(&body).unwrap();
            delivered.0.lock().unwrap().push(callback);
            std::future::ready(Reply::ack())
        }
    }

    fn all(&self) -> Vec<PayoutCallback> {
        self.0.lock().unwrap().clone()
    }

    /// Each of `n` payouts delivered, and none twice.
    fn assert_each_once(&self, n: usize) {
        let all = self.all();
        let mut cids: Vec<i64> = all.iter().map(|c| c.cid).collect();
        cids.sort_unstable();
        cids.dedup();
        assert_eq!((cids.len(), all.len()), (n, n), "each payout once");
    }

    /// The payouts of `pending` not delivered yet: what the host's list still holds.
    fn left(&self, pending: &[Pending]) -> Vec<Pending> {
        let settled: Vec<i64> = self.all().iter().map(|c| c.cid).collect();
        pending
            .iter()
            .filter(|p| !settled.contains(&p.cid))
            .cloned()
            .collect()
    }
}

/// A transport to `fake` that answers what `failure` returns instead, while it returns one.
fn failing(
    fake: &FakeCregis,
    failure: impl Fn() -> Option<RawResponse> + Send + Sync + 'static,
) -> impl cregis_payout_callback::request::Transport + 'static {
    let real = HttpTransport::new(fake.url()).unwrap();
    let failure = Arc::new(failure);
    move |path: &'static str, body: String| {
        let (real, failure) = (real.clone(), Arc::clone(&failure));
        async move {
            match failure() {
                Some(answer) => Ok(answer),
                None => cregis_payout_callback::request::Transport::post(&real, path, body).await,
            }
        }
    }
}

#[tokio::test]
async fn a_payout_is_asked_after_its_grace_again_until_final_and_delivered_as_its_callback() {
    let mut options = Options::new(key(), PID);
    options.final_after = Duration::from_millis(400);
    let fake = FakeCregis::start(options, 0).await.unwrap();
    let pending = create(&fake, 1, Duration::ZERO).await;
    let delivered = Delivered::default();
    let reconciler = Reconciler::new(client(&fake), delivered.deliver())
        .grace(Duration::from_millis(150))
        .recheck(Duration::from_millis(100), Duration::from_millis(100));

    // Younger than the grace period: not asked.
    let report = reconciler.reconcile(&pending).await;
    assert_eq!(report.asked, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Old enough, not final yet: asked, and not again before the recheck.
    let report = reconciler.reconcile(&pending).await;
    assert_eq!((report.asked, report.not_final), (1, 1));
    assert_eq!(reconciler.reconcile(&pending).await.asked, 0);
    // Final now: asked again and delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = reconciler.reconcile(&pending).await;
    assert_eq!((report.asked, report.delivered), (1, 1), "{report:?}");
    assert_eq!(fake.counters().queries.load(Ordering::SeqCst), 2);

    // What was delivered is the callback Cregis would have sent: same business fields.
    let payout = fake.payouts()[&pending[0].cid].clone();
    let sent = fake_cregis::callback_body(&key(), PID, &payout);
    let sent = Verifier::new(key())
        .verify_and_parse(sent.as_bytes())
        .unwrap();
    let got = delivered.all().pop().unwrap();
    assert_eq!(got.delivery_key(), sent.delivery_key());
    assert_eq!(
        (
            &got.amount,
            &got.address,
            &got.txid,
            &got.block_height,
            got.block_time
        ),
        (
            &sent.amount,
            &sent.address,
            &sent.txid,
            &sent.block_height,
            sent.block_time
        )
    );
    assert_eq!(
        (&got.currency, &got.third_party_id),
        (&sent.currency, &sent.third_party_id)
    );
    assert!(got.status.is_final());
    // And it says who made it: the handler can tell it from Cregis's callback.
    assert_eq!(
        (got.origin(), sent.origin()),
        (Origin::Reconciler, Origin::Cregis)
    );
    let extra: Vec<&String> = got.extra.keys().collect();
    assert_eq!(extra, [Origin::FIELD], "{:?}", got.extra);
}

/// A create refused at connect was not sent (`Transport`, safe to send again); a create whose
/// answer never came, after the server read it, may have reached Cregis (`MaybeSent`).
#[tokio::test]
async fn a_create_whose_answer_is_lost_may_have_reached_cregis() {
    use cregis_payout_callback::request::RequestError;
    use tokio::io::AsyncReadExt;

    let order = CreatePayout::new("195@195", TO, "12.5", "order-lost");
    let through = |url: String| {
        let transport =
            HttpTransport::with_timeouts(url, Duration::from_secs(2), Duration::from_millis(300))
                .unwrap();
        Client::new(Signer::new(key(), PID), transport)
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let refused = through(url).create_payout(&order).await.unwrap_err();
    assert!(
        matches!(refused, RequestError::Transport { .. }) && !refused.may_have_reached_cregis(),
        "{refused:?}"
    );

    // A server that reads the request and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let read = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn({
        let read = Arc::clone(&read);
        async move {
            let (mut socket, _) = silent.accept().await.unwrap();
            let mut buffer = [0; 4096];
            let n = socket.read(&mut buffer).await.unwrap();
            read.fetch_add(n, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    });
    let lost = through(url).create_payout(&order).await.unwrap_err();
    server.abort();
    assert!(lost.may_have_reached_cregis(), "{lost:?}");
    assert!(
        read.load(Ordering::SeqCst) > 0,
        "the server had the request"
    );
    assert!(
        lost.to_string()
            .starts_with("the request may have reached cregis")
    );
}

/// A final status left out of `synthesise` is held for a person, never delivered, and not
/// asked again before the longest recheck.
#[tokio::test]
async fn a_final_status_the_reconciler_does_not_synthesise_is_held() {
    let fake = final_at_once().await;
    let pending = create(&fake, 1, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.set_status(pending[0].cid, CallbackStatus::ApprovalCancelled);
    let delivered = Delivered::default();
    let others: Vec<CallbackStatus> = reconcile::DEFAULT_SYNTHESISED
        .iter()
        .copied()
        .filter(|status| *status != CallbackStatus::ApprovalCancelled)
        .collect();
    let reconciler = Reconciler::new(client(&fake), delivered.deliver())
        .grace(Duration::ZERO)
        .synthesise(&others);
    let report = reconciler.reconcile(&pending).await;
    assert_eq!((report.asked, report.delivered), (1, 0), "{report:?}");
    let held: Vec<_> = report.held.iter().map(|s| (s.cid, s.status)).collect();
    assert_eq!(held, [(pending[0].cid, CallbackStatus::ApprovalCancelled)]);
    assert!(delivered.all().is_empty());
    assert_eq!(reconciler.reconcile(&pending).await.asked, 0);
}

#[tokio::test]
async fn a_payout_cregis_reports_otherwise_is_flagged_never_delivered() {
    let fake = final_at_once().await;
    let pending = create(&fake, 3, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.misreport_amount(pending[1].cid, "1000000");
    let moved = Pending::new(
        CallbackKind::Payout,
        pending[2].cid,
        pending[2].created_at,
        &pending[2].amount,
        "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
    );
    let waiting = [pending[0].clone(), pending[1].clone(), moved];
    let delivered = Delivered::default();
    let reconciler = Reconciler::new(client(&fake), delivered.deliver());
    let report = reconciler.reconcile(&waiting).await;
    assert_eq!((report.asked, report.delivered), (3, 1));
    let mut flagged: Vec<_> = report
        .flagged
        .iter()
        .map(|f| (f.state.cid, f.field))
        .collect();
    flagged.sort_unstable();
    assert_eq!(
        flagged,
        [(pending[1].cid, "amount"), (pending[2].cid, "address")]
    );
    let amount = report.flagged.iter().find(|f| f.field == "amount").unwrap();
    assert_eq!(
        amount.to_string(),
        format!(
            "payout {}: Cregis says amount 1000000, our record says {}",
            pending[1].cid, pending[1].amount
        )
    );
    assert_eq!(delivered.all().len(), 1);
    assert_eq!(delivered.all()[0].cid, pending[0].cid);

    // The operator console lists them until the host settles them.
    let flags = Flags::new();
    flags.record(&waiting, &report);
    let inbox = cregis_payout_callback::inbox::SqliteInbox::open_in_memory()
        .await
        .unwrap();
    let console = Console::new(inbox, |_| Access::operator("alice"))
        .flags(flags.clone())
        .router::<()>();
    let page = || async {
        let response = tower::ServiceExt::oneshot(
            console.clone(),
            axum::http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let listed = page().await;
    let payout = format!("<td>payout</td><td>{}</td><td>order-", pending[1].cid);
    let amount = format!(
        "<td>amount</td><td>1000000</td><td>{}</td>",
        pending[1].amount
    );
    assert!(
        listed.contains(&payout) && listed.contains(&amount),
        "{listed}"
    );
    assert!(listed.contains("<td>address</td><td>"), "{listed}");
    flags.record(&waiting[2..], &reconcile::Report::default());
    let listed = page().await;
    assert!(!listed.contains(&pending[1].cid.to_string()), "{listed}");
    assert!(listed.contains(&pending[2].cid.to_string()), "{listed}");
}

#[tokio::test]
async fn cregis_errors_are_reported_at_once_and_all_queries_back_off() {
    // Cregis answers 503 three times, then works. The host calls a pass every 20 ms.
    let fake = FakeCregis::start(Options::new(key(), PID), 0)
        .await
        .unwrap();
    let pending = create(&fake, 4, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let transport = failing(&fake, {
        let calls = Arc::clone(&calls);
        move || {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            (calls.len() <= 3).then(|| RawResponse {
                status: 503,
                body: String::new(),
            })
        }
    });
    let delivered = Delivered::default();
    let reconciler = Reconciler::new(
        Client::new(Signer::new(key(), PID), transport),
        delivered.deliver(),
    )
    .concurrency(1)
    .rate(1000)
    .error_backoff(Duration::from_millis(100))
    .recheck(Duration::ZERO, Duration::ZERO);
    // The first pass: one query fails, the other three are deferred, and it says so at once.
    let report = reconciler.reconcile(&pending).await;
    assert_eq!(
        (report.asked, report.failed.len(), report.deferred),
        (1, 1, 3),
        "{report:?}"
    );
    assert_eq!(report.failed[0].2.to_string(), "cregis answered http 503");
    assert!(report.backing_off.is_some(), "{report:?}");
    let mut failures = report.failed.len();
    let mut left: Vec<Pending> = pending.clone();
    let mut passes = 1;
    while !left.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let report = reconciler.reconcile(&left).await;
        passes += 1;
        failures += report.failed.len();
        // During the backoff a pass sends nothing and ends at once, naming the pause.
        if report.asked == 0 {
            assert_eq!(report.deferred, left.len(), "{report:?}");
            assert!(report.backing_off.is_some(), "{report:?}");
        }
        left = delivered.left(&left);
        assert!(passes < 200, "never settled: {report:?}");
    }
    assert_eq!(failures, 3);
    delivered.assert_each_once(4);
    // The pauses after the 1st, 2nd and 3rd error in a row: 100, 200, 400 ms.
    let calls = calls.lock().unwrap().clone();
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, at_least) in gaps.iter().zip([100, 200, 400]) {
        assert!(*gap >= Duration::from_millis(at_least), "{gaps:?}");
    }
}

/// An outage longer than the host's pass interval: every pass while Cregis answers 500 ends
/// at once with a report naming the failure or the backoff (the host's loop sees the outage
/// while it lasts), and once Cregis is back every payout is delivered exactly once.
#[tokio::test]
async fn an_outage_is_reported_while_it_lasts_and_settles_once_after() {
    use std::sync::atomic::AtomicBool;
    let fake = FakeCregis::start(Options::new(key(), PID), 0)
        .await
        .unwrap();
    let pending = create(&fake, 20, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let down = Arc::new(AtomicBool::new(true));
    let transport = failing(&fake, {
        let down = Arc::clone(&down);
        move || {
            down.load(Ordering::SeqCst).then(|| RawResponse {
                status: 500,
                body: r#"{"code":"99999","msg":"system busy","data":null}"#.to_owned(),
            })
        }
    });
    let delivered = Delivered::default();
    let reconciler = Reconciler::new(
        Client::new(Signer::new(key(), PID), transport),
        delivered.deliver(),
    )
    .rate(1000)
    .error_backoff(Duration::from_millis(50))
    .recheck(Duration::ZERO, Duration::ZERO);
    // The host's loop: a pass every 30 ms. The outage lasts 20 passes (600 ms, against a
    // backoff that doubles from 50 ms): far longer than the interval.
    let mut reports_during_outage = Vec::new();
    for _ in 0..20 {
        let report = reconciler.reconcile(&pending).await;
        assert_eq!(report.delivered, 0);
        assert!(
            !report.failed.is_empty() || report.backing_off.is_some(),
            "a pass during the outage says so: {report:?}"
        );
        reports_during_outage.push(report);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let named: Vec<String> = reports_during_outage
        .iter()
        .flat_map(|r| r.failed.iter().map(|(_, _, e)| e.to_string()))
        .collect();
    assert!(named.len() >= 2, "{named:?}");
    assert!(
        named
            .iter()
            .all(|e| e == "cregis answered http 500: 99999 system busy"),
        "{named:?}"
    );
    down.store(false, Ordering::SeqCst);
    let mut left = pending.clone();
    for _ in 0..200 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        reconciler.reconcile(&left).await;
        left = delivered.left(&left);
    }
    assert!(left.is_empty(), "{} never settled", left.len());
    delivered.assert_each_once(20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_ten_thousand_stays_within_the_concurrency_and_rate_limits() {
    const BACKLOG: usize = 10_000;
    let (concurrency, rate): (usize, u32) = (8, 1_000);
    let mut options = Options::new(key(), PID);
    options.final_after = Duration::ZERO;
    options.query_latency = Duration::from_millis(3);
    let fake = FakeCregis::start(options, 0).await.unwrap();
    let pending = create(&fake, BACKLOG, Duration::from_secs(3600)).await;
    let deliveries = Arc::new(AtomicUsize::new(0));
    let deliver = {
        let deliveries = Arc::clone(&deliveries);
        move |_: CallbackKind, _: Vec<u8>| {
            deliveries.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Reply::ack())
        }
    };
    let reconciler = Reconciler::new(client(&fake), deliver)
        .concurrency(concurrency)
        .rate(rate);
    let started = Instant::now();
    let report = reconciler.reconcile(&pending).await;
    let took = started.elapsed();
    assert_eq!((report.asked, report.delivered), (BACKLOG, BACKLOG));
    assert_eq!(deliveries.load(Ordering::SeqCst), BACKLOG);
    let counters = fake.counters();
    let most_in_flight = counters.max_in_flight.load(Ordering::SeqCst);
    let most_in_a_second = counters.max_in_window(Duration::from_secs(1));
    eprintln!(
        "{BACKLOG} queries in {took:?}: at most {most_in_flight} in flight, \
         {most_in_a_second} in any second"
    );
    assert!(most_in_flight <= concurrency, "{most_in_flight} in flight");
    assert!(most_in_flight >= 2, "queries ran one at a time");
    // The limiter starts at most `rate + 2` queries in any second at this rate (its unit test
    // checks that exactly, through a stalled runtime); the fake counts arrivals, which the
    // loopback and two busy cores can bunch by a few milliseconds: 1 % is allowed for that.
    let rate = usize::try_from(rate).unwrap();
    assert!(
        most_in_a_second <= rate + rate / 100,
        "{most_in_a_second} in a second"
    );
    assert!(
        took >= Duration::from_millis(9_900),
        "{took:?}: faster than the rate allows"
    );
    // Every payout was final: each asked once.
    assert_eq!(counters.queries.load(Ordering::SeqCst), BACKLOG);
}

#[tokio::test]
async fn simulate_drives_the_fake_cregis_whose_callbacks_reach_the_host() {
    let fake = FakeCregis::start(Options::new(key(), PID), 0)
        .await
        .unwrap();
    let delivered = Delivered::default();
    let route = {
        let delivered = delivered.clone();
        axum::routing::post(move |body: axum::body::Bytes| {
            let delivered = delivered.clone();
            async move { delivered.deliver()(CallbackKind::Payout, body.to_vec()).await }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(
        async move { axum::serve(listener, axum::Router::new().route("/cb", route)).await },
    );

    let args: Vec<String> = [
        &url,
        "--via-cregis",
        &fake.url(),
        "--repeat",
        "3",
        "--amount",
        "7.25",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(
        simulate::simulate(&args, Some(common::KEY.to_owned()))
            .await
            .unwrap(),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.all().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", fake.sent());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let callbacks = delivered.all();
    assert!(
        callbacks
            .iter()
            .all(|c| c.amount == "7.25" && c.status.is_final())
    );
    assert!(
        fake.sent()
            .iter()
            .all(|s| s.answer == Some((200, "success".to_owned())))
    );
    // A forged create (another key) is refused by the fake.
    let forged = simulate::simulate(&args, Some("fake-wrong-key".to_owned())).await;
    assert!(forged.unwrap_err().to_string().contains("sign error"));
}

#[tokio::test]
async fn a_pass_stopped_by_shutdown_leaves_the_rest_due_and_clones_never_ask_twice() {
    let fake = final_at_once().await;
    let pending = create(&fake, 20, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let delivered = Delivered::default();
    let reconciler = Reconciler::new(client(&fake), delivered.deliver()).rate(1000);

    // Shut down before the pass starts: nothing asked, and nothing left reserved.
    let report = reconciler
        .reconcile_until(&pending, std::future::ready(()))
        .await;
    assert_eq!(report.asked, 0);

    // Two clones reconciling the same list at once: each payout asked once in all.
    let other = reconciler.clone();
    let (one, two) = tokio::join!(reconciler.reconcile(&pending), other.reconcile(&pending));
    assert_eq!(one.asked + two.asked, 20, "{one:?} {two:?}");
    assert_eq!(fake.counters().queries.load(Ordering::SeqCst), 20);
    assert_eq!(delivered.all().len(), 20);
    assert!(!one.stopped && !two.stopped);

    // Shut down during a pass, in the `reconcile` module docs' loop: the report says so, and the loop ends
    // without polling the completed `async` block again (which would panic).
    let more = create(&fake, 20, Duration::from_secs(3600)).await;
    let slow = Reconciler::new(client(&fake), Delivered::default().deliver())
        .concurrency(1)
        .rate(50);
    let mut shutdown = std::pin::pin!(async {
        tokio::time::sleep(Duration::from_millis(60)).await;
    });
    let mut passes = Vec::new();
    loop {
        let report = slow.reconcile_until(&more, shutdown.as_mut()).await;
        passes.push(report.asked);
        if report.stopped {
            break;
        }
        tokio::select! {
            () = shutdown.as_mut() => break,
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    assert!(
        passes.len() == 1 && (1..20).contains(&passes[0]),
        "{passes:?}"
    );
}

/// Every duration setting at `Duration::ZERO` and `Duration::MAX`, and the counts at their
/// extremes, reconcile without a panic: a recheck of `Duration::MAX` means "not again" (0.2
/// panicked adding it to an instant).
#[tokio::test]
async fn every_setting_at_its_extremes_reconciles_without_a_panic() {
    let fake = final_at_once().await;
    let pending = create(&fake, 3, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (concurrency, rate) in [(0, 0), (usize::MAX, u32::MAX)] {
        let delivered = Delivered::default();
        let reconciler = Reconciler::new(client(&fake), delivered.deliver())
            .grace(Duration::ZERO)
            .recheck(Duration::MAX, Duration::MAX)
            .error_backoff(Duration::MAX)
            .concurrency(concurrency)
            .rate(rate);
        let report = reconciler.reconcile(&pending).await;
        assert_eq!((report.asked, report.delivered), (3, 3), "{report:?}");
        // Not asked again: the recheck is as far ahead as an instant goes.
        assert_eq!(reconciler.reconcile(&pending).await.asked, 0);
        let zero = Reconciler::new(client(&fake), delivered.deliver())
            .recheck(Duration::ZERO, Duration::ZERO)
            .error_backoff(Duration::ZERO)
            .grace(Duration::MAX);
        assert_eq!(
            zero.reconcile(&pending).await.asked,
            0,
            "younger than the grace"
        );
    }
}

/// A fake Cregis whose payouts are final as soon as they are created.
async fn final_at_once() -> FakeCregis {
    let mut options = Options::new(key(), PID);
    options.final_after = Duration::ZERO;
    FakeCregis::start(options, 0).await.unwrap()
}

/// Creates payout `order` of 12.5 TRX to [`TO`] with no callback URL (its callback is lost:
/// only a query finds it), and waits until `fake` has made it final; its `cid`.
async fn lost_payout(fake: &FakeCregis, order: &str) -> i64 {
    let order = CreatePayout::new("195@195", TO, "12.5", order);
    let cid = client(fake).create_payout(&order).await.unwrap().cid;
    tokio::time::sleep(Duration::from_millis(50)).await;
    cid
}

/// An inbox with `examples/inbox.rs`'s `payouts` table, holding the host's record of payout
/// `order` of `amount` TRX to [`TO`].
async fn host_inbox(order: &str, amount: &str) -> cregis_payout_callback::inbox::SqliteInbox {
    let inbox = cregis_payout_callback::inbox::SqliteInbox::open_in_memory()
        .await
        .unwrap();
    sqlx::query(inbox_example::PAYOUTS)
        .execute(inbox.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO payouts (third_party_id, amount, currency, address) VALUES (?, ?, ?, ?)",
    )
    .bind(order)
    .bind(amount)
    .bind("TRX")
    .bind(TO)
    .execute(inbox.pool())
    .await
    .unwrap();
    inbox
}

/// The one comparison of amounts, end to end: a payout the host recorded as `12.5` whose
/// callback is lost, and whose query answers `12.500000` (the scale of Cregis's column). The
/// reconciler delivers it to the inbox, `examples/inbox.rs`'s handler settles it once, and
/// the real callback, re-pushed afterwards with its `12.5`, is acknowledged as a duplicate.
#[tokio::test]
async fn an_amount_answered_in_another_scale_settles_once_and_its_callback_is_a_duplicate() {
    use cregis_payout_callback::inbox::{EntryState, Inbox, Worker};
    use cregis_payout_callback::reconcile::ToInbox;

    let fake = final_at_once().await;
    let cid = lost_payout(&fake, "order-12").await;
    fake.misreport_amount(cid, "12.500000");

    let inbox = host_inbox("order-12", "12.5").await;
    let pending = Pending::new(
        CallbackKind::Payout,
        cid,
        SystemTime::now() - Duration::from_secs(3600),
        "12.5",
        TO,
    );
    let deliver = ToInbox::new(Verifier::new(key()), inbox.clone());
    let report = Reconciler::new(client(&fake), deliver)
        .reconcile(&[pending])
        .await;
    assert_eq!((report.asked, report.delivered), (1, 1), "{report:?}");
    assert!(report.flagged.is_empty(), "{report:?}");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::in_transaction(inbox.clone(), inbox_example::Payouts)
            .poll_interval(Duration::from_millis(10))
            .run(async {
                let _ = stopped.await;
            }),
    );
    let settled = async {
        loop {
            let row: (Option<i32>, Option<i64>) =
                sqlx::query_as("SELECT status, cid FROM payouts WHERE third_party_id = ?")
                    .bind("order-12")
                    .fetch_one(inbox.pool())
                    .await
                    .unwrap();
            if row.0.is_some() {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (status, settled_cid) = tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the reconciled delivery settles the payout");
    let payout = fake.payouts()[&cid].clone();
    assert_eq!(
        (status, settled_cid),
        (Some(payout.status.code()), Some(cid))
    );

    // The real callback, re-pushed from the console: `12.5`, a fresh nonce and signature.
    let body = fake_cregis::callback_body(&key(), PID, &payout);
    assert!(body.contains(r#""amount":"12.5""#), "{body}");
    let reply = Verifier::new(key()).accept(body.as_bytes(), &inbox).await;
    assert_eq!((reply.status_code(), reply.body()), (200, "success"));
    assert!(
        reply.is_duplicate(),
        "a duplicate, not a new fact nor a conflict: {reply:?}"
    );

    let _ = stop.send(());
    worker.await.unwrap();
    let entries = inbox
        .list(&[
            EntryState::Pending,
            EntryState::Waiting,
            EntryState::Running,
            EntryState::Done,
            EntryState::Dead,
        ])
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "one entry, done once: {entries:?}");
    assert_eq!(entries[0].state, EntryState::Done);
    assert_eq!(
        entries[0].origin,
        Origin::Reconciler,
        "the listing says who made it"
    );
    assert_eq!(entries[0].attempts, 1);
}

/// Final statuses exclude each other: a payout whose callback said 6, handled by
/// `examples/inbox.rs`'s handler, then receives a 7, first as a re-push (refused with 409
/// `ConflictingFinalStatus`), then from a query (flagged by the reconciler, field `status`).
/// The host's row still says 6, and the inbox holds the one entry.
#[tokio::test]
async fn a_done_final_status_refuses_another_from_a_re_push_and_from_a_query() {
    use cregis_payout_callback::inbox::{EntryState, Inbox, Worker};
    use cregis_payout_callback::reconcile::ToInbox;
    use cregis_payout_callback::{CallbackStatus, Error};

    let fake = final_at_once().await;
    let cid = lost_payout(&fake, "order-67").await;
    fake.set_status(cid, CallbackStatus::TransactionSuccessful);

    let inbox = host_inbox("order-67", "12.5").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::in_transaction(inbox.clone(), inbox_example::Payouts)
            .poll_interval(Duration::from_millis(10))
            .run(async {
                let _ = stopped.await;
            }),
    );
    let verifier = Verifier::new(key());
    let paid = fake.payouts()[&cid].clone();
    let body = fake_cregis::callback_body(&key(), PID, &paid);
    assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    let host_status = || async {
        sqlx::query_scalar::<_, Option<i32>>("SELECT status FROM payouts WHERE cid = ?")
            .bind(cid)
            .fetch_optional(inbox.pool())
            .await
            .unwrap()
            .flatten()
    };
    let settled = async {
        while host_status().await.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the callback settles the payout");

    // A re-push saying 7, the payout's other fields unchanged.
    let mut failed = paid.clone();
    failed.status = CallbackStatus::TransactionFailed;
    let body = fake_cregis::callback_body(&key(), PID, &failed);
    let reply = verifier.accept(body.as_bytes(), &inbox).await;
    assert_eq!(reply.status_code(), 409, "{reply:?}");
    assert!(
        matches!(
            reply.error(),
            Some(Error::ConflictingFinalStatus {
                recorded: CallbackStatus::TransactionSuccessful,
                ..
            })
        ),
        "{reply:?}"
    );

    // The query says 7 too.
    fake.set_status(cid, CallbackStatus::TransactionFailed);
    let pending = Pending::new(
        CallbackKind::Payout,
        cid,
        SystemTime::now() - Duration::from_secs(3600),
        "12.5",
        TO,
    );
    let deliver = ToInbox::new(verifier.clone(), inbox.clone());
    let report = Reconciler::new(client(&fake), deliver)
        .reconcile(&[pending])
        .await;
    assert_eq!((report.asked, report.delivered), (1, 0), "{report:?}");
    assert!(
        report.refused.is_empty(),
        "flagged, not refused: {report:?}"
    );
    let flagged = report.flagged.first().expect("the 7 is flagged");
    assert_eq!(
        (
            flagged.field,
            flagged.cregis.as_str(),
            flagged.ours.as_str()
        ),
        ("status", "7", "6")
    );

    let _ = stop.send(());
    worker.await.unwrap();
    assert_eq!(host_status().await, Some(6), "the host's row is unchanged");
    let counts = inbox.counts().await.unwrap();
    let entries: u64 = counts.iter().map(|count| count.entries).sum();
    assert_eq!(entries, 1, "{counts:?}");
    assert_eq!(inbox.list(&[EntryState::Done]).await.unwrap().len(), 1);
}

/// A delivery the host refuses (its inbox cannot write, say) is asked again less and less
/// often, doubling from the recheck to its longest, and reported once per pass.
#[tokio::test]
async fn a_refused_delivery_backs_off_instead_of_being_asked_every_recheck() {
    let fake = final_at_once().await;
    let pending = create(&fake, 1, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refusals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let deliver = {
        let refusals = Arc::clone(&refusals);
        move |_: CallbackKind, _: Vec<u8>| {
            refusals.lock().unwrap().push(Instant::now());
            std::future::ready(Reply::from(cregis_payout_callback::Error::HandlerFailed {
                cause: cregis_payout_callback::error::Cause::new("the inbox is read-only"),
                release_failure: None,
            }))
        }
    };
    let reconciler = Reconciler::new(client(&fake), deliver)
        .rate(1000)
        .recheck(Duration::from_millis(20), Duration::from_millis(160));
    let started = Instant::now();
    let mut reported = 0;
    while started.elapsed() < Duration::from_millis(900) {
        let report = reconciler.reconcile(&pending).await;
        reported += report.refused.len();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refusals = refusals.lock().unwrap().clone();
    // Every refusal is in the report of its pass, and only there.
    assert_eq!(reported, refusals.len());
    let gaps: Vec<Duration> = refusals.windows(2).map(|w| w[1] - w[0]).collect();
    // 20, 40, 80, 160, 160, ... ms: not every 20 ms (some 45 times in 900 ms).
    assert!(refusals.len() <= 10, "{} asks: {gaps:?}", refusals.len());
    for (gap, at_least) in gaps.iter().zip([20, 40, 80, 160, 160]) {
        assert!(*gap >= Duration::from_millis(at_least), "{gaps:?}");
    }
}

/// The currency as the create took it (`195@195`) or as Cregis names it (`TRX`): either is
/// checked against the query, and another currency is flagged.
#[tokio::test]
async fn the_currency_is_checked_in_either_form_cregis_uses() {
    let fake = final_at_once().await;
    let pending = create(&fake, 1, Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (currency, flagged) in [
        ("195@195", None),
        ("TRX", None),
        (
            "144@144",
            Some("payout {cid}: Cregis says currency 195@195, our record says 144@144"),
        ),
        (
            "XRP",
            Some("payout {cid}: Cregis says currency TRX, our record says XRP"),
        ),
    ] {
        let delivered = Delivered::default();
        let reconciler = Reconciler::new(client(&fake), delivered.deliver());
        let payout = pending[0].clone().currency(currency);
        let report = reconciler.reconcile(&[payout]).await;
        let cid = pending[0].cid.to_string();
        match flagged {
            None => assert_eq!(
                (report.delivered, report.flagged.len()),
                (1, 0),
                "{currency}: {report:?}"
            ),
            Some(text) => {
                assert_eq!(
                    (report.delivered, report.flagged.len()),
                    (0, 1),
                    "{currency}: {report:?}"
                );
                assert_eq!(report.flagged[0].to_string(), text.replace("{cid}", &cid));
            }
        }
    }
}
