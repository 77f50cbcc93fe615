//! The operator console (feature `admin`) on a real SQLite inbox with a running worker.
//!
//! The requests here go through the router in process; `a_browser_...` drives the same
//! console in headless Chromium over loopback (`WebDriver`), and needs Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs. By hand:
//! `apt install chromium chromium-driver && cargo test --test console -- --ignored`.

mod common;
mod faults;
mod production;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use cregis_payout_callback::admin::{Access, Console};
use cregis_payout_callback::error::BoxError;
use cregis_payout_callback::inbox::backend::AfterFailure;
use cregis_payout_callback::inbox::{EntryId, EntryState, Inbox, SqliteInbox, Worker};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{CallbackKind, PayoutCallback, Verifier};
use tower::ServiceExt;

/// A memo from outside, which the pages must show as text.
const MEMO: &str = "<script>document.title='pwned'</script>";

/// The dead entry the operator replays, the one they discard (waiting an hour), and a dead
/// one that forged requests try to replay.
const REPLAYED: i64 = 1_400_000_000_000_101;
const DISCARDED: i64 = 1_400_000_000_000_102;
const TARGETED: i64 = 1_400_000_000_000_103;

/// The host's signed-in user, which its authentication middleware leaves in the request.
#[derive(Clone)]
struct Staff {
    name: String,
    on_call: bool,
}

/// The host's authentication, as the tests play it: a `session` cookie names the user.
async fn authenticate(mut request: Request, next: Next) -> Response {
    let cookies = request
        .headers()
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    for cookie in cookies.split(';').map(str::trim) {
        match cookie {
            "session=alice" => request.extensions_mut().insert(Staff {
                name: "alice".into(),
                on_call: true,
            }),
            "session=bob" => request.extensions_mut().insert(Staff {
                name: "bob".into(),
                on_call: false,
            }),
            _ => None,
        };
    }
    next.run(request).await
}

/// The host's sign-in, as the tests play it: the session cookie, then the console.
async fn sign_in(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(
            header::SET_COOKIE,
            format!("session={name}; Path=/; HttpOnly; SameSite=Lax"),
        )
        .header(header::LOCATION, "/ops/cregis")
        .body(Body::empty())
        .unwrap()
}

/// The inbox's handler: runs counted by `cid`, failing while `broken` (the ledger is down).
#[derive(Clone, Default)]
struct Ledger {
    runs: Arc<Mutex<HashMap<i64, u32>>>,
    broken: Arc<AtomicBool>,
}

impl Ledger {
    fn runs(&self, cid: i64) -> u32 {
        self.runs.lock().unwrap().get(&cid).copied().unwrap_or(0)
    }
}

/// The console's world: an inbox holding two dead entries (their handler failed while the
/// ledger was down) and a waiting one, a worker running (the ledger is back), and the host's
/// app with the console mounted at `/ops/cregis` behind its authentication.
struct World {
    inbox: SqliteInbox,
    ledger: Ledger,
    app: Router,
    _file: tempfile::TempDir,
    _worker: tokio::task::JoinHandle<()>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    let verifier = Verifier::new(common::key());

    // A payout whose run failed and waits an hour for its retry.
    let body = faults::delivery(DISCARDED, 0);
    assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    let taken = inbox
        .take(CallbackKind::Payout, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let retry = AfterFailure::RetryAfter(Duration::from_secs(3600));
    assert!(inbox.fail(&taken, "ledger timed out", retry).await.unwrap());

    let ledger = Ledger::default();
    ledger.broken.store(true, Ordering::SeqCst);
    let handler = {
        let ledger = ledger.clone();
        move |callback: &PayoutCallback| {
            *ledger.runs.lock().unwrap().entry(callback.cid).or_default() += 1;
            let result: Result<(), BoxError> = if ledger.broken.load(Ordering::SeqCst) {
                Err("ledger said <b>insufficient funds</b> & gave up".into())
            } else {
                Ok(())
            };
            std::future::ready(result)
        }
    };
    let worker = Worker::new(inbox.clone(), handler).retry(production::policy(1));
    let worker = tokio::spawn(worker.run(std::future::pending()));
    for cid in [REPLAYED, TARGETED] {
        let body = CallbackBuilder::new()
            .cid(cid)
            .third_party_id(&format!("order-{}", cid % 1000))
            .amount("12.500000")
            .memo(MEMO)
            .raw("fee", r#""0.000001""#)
            .body(&common::key())
            .unwrap();
        assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    }
    production::wait_for(&inbox, EntryState::Dead, 2).await;
    ledger.broken.store(false, Ordering::SeqCst);

    let console = Console::new(inbox.clone(), |request| {
        match request.extensions.get::<Staff>() {
            Some(staff) if staff.on_call => Access::operator(&staff.name),
            Some(_) => Access::forbidden(),
            None => Access::unauthenticated(),
        }
    });
    let app = Router::new()
        .nest("/ops/cregis", console.router())
        .route("/sign-in/{name}", axum::routing::get(sign_in))
        .layer(middleware::from_fn(authenticate));
    World {
        inbox,
        ledger,
        app,
        _file: dir,
        _worker: worker,
    }
}

/// The entry of payout `cid`.
async fn entry_of(inbox: &SqliteInbox, cid: i64) -> Option<EntryId> {
    let all = inbox.list(&[]).await.unwrap();
    all.iter()
        .find(|entry| entry.key.cid == cid)
        .map(|entry| entry.id)
}

/// `request` through the app: its status and page.
async fn send(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get(path: &str, session: Option<&str>) -> axum::http::Request<Body> {
    let mut request = axum::http::Request::get(path);
    if let Some(session) = session {
        request = request.header(header::COOKIE, format!("session={session}"));
    }
    request.body(Body::empty()).unwrap()
}

/// A form post from `site` (`Sec-Fetch-Site`), as alice.
fn post(path: &str, form: &str, site: &str) -> axum::http::Request<Body> {
    axum::http::Request::post(path)
        .header(header::COOKIE, "session=alice")
        .header(header::HOST, "ops.example")
        .header("sec-fetch-site", site)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap()
}

/// The CSRF token in a page's forms.
fn token_in(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).expect("a form") + 19;
    page[start..start + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_lets_in_only_whom_the_host_names() {
    let world = world().await;
    for path in [
        "/ops/cregis",
        "/ops/cregis/entries/1",
        "/ops/cregis/nothing-here",
    ] {
        let (status, page) = send(&world.app, get(path, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {page}");
        assert!(!page.contains("order-101"), "{page}");
        let (status, _) = send(&world.app, get(path, Some("bob"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let id = entry_of(&world.inbox, TARGETED).await.unwrap();
    let path = format!("/ops/cregis/entries/{}/replay", id.0);
    let request = axum::http::Request::post(&path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from("csrf=whatever"))
        .unwrap();
    assert_eq!(send(&world.app, request).await.0, StatusCode::UNAUTHORIZED);

    let (status, page) = send(&world.app, get("/ops/cregis", Some("alice"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Signed in as alice"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_replay_is_refused_and_changes_nothing() {
    let world = world().await;
    let id = entry_of(&world.inbox, TARGETED).await.unwrap();
    let page_path = format!("/ops/cregis/entries/{}", id.0);
    let (status, page) = send(&world.app, get(&page_path, Some("alice"))).await;
    assert_eq!(status, StatusCode::OK);
    let token = token_in(&page);
    let replay = format!("{page_path}/replay");

    let forged = [
        post(&replay, "", "same-origin"),
        post(&replay, "csrf=", "same-origin"),
        post(&replay, &format!("csrf={}", "0".repeat(64)), "same-origin"),
        post(&replay, &format!("csrf={token}"), "cross-site"),
        post(&replay, &format!("csrf={token}"), "same-site"),
    ];
    for request in forged {
        let (status, page) = send(&world.app, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    }
    // A browser without `Sec-Fetch-Site`: its `Origin` decides.
    let from = |origin: Option<&str>| {
        let mut request = axum::http::Request::post(&replay)
            .header(header::COOKIE, "session=alice")
            .header(header::HOST, "ops.example")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(Body::from(format!("csrf={token}"))).unwrap()
    };
    for origin in [None, Some("null"), Some("https://evil.example")] {
        assert_eq!(
            send(&world.app, from(origin)).await.0,
            StatusCode::FORBIDDEN
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.ledger.runs(TARGETED), 1, "only the run that failed");
    let entry = world.inbox.entry(id).await.unwrap().unwrap();
    assert_eq!(entry.state, EntryState::Dead);

    // The same post from the console's origin replays it, once.
    let (status, _) = send(&world.app, from(Some("https://ops.example"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    production::wait_for_one(&world.inbox, EntryState::Done).await;
    assert_eq!(world.ledger.runs(TARGETED), 2);
    let (status, page) = send(&world.app, from(Some("https://ops.example"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_from_outside_is_shown_as_text() {
    let world = world().await;
    let id = entry_of(&world.inbox, REPLAYED).await.unwrap();
    let paths = [
        "/ops/cregis".to_owned(),
        format!("/ops/cregis/entries/{}", id.0),
    ];
    for path in paths {
        let (status, page) = send(&world.app, get(&path, Some("alice"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains("ledger said &lt;b&gt;insufficient funds&lt;/b&gt; &amp; gave up"),
            "{page}"
        );
    }
    let (_, page) = send(
        &world.app,
        get(&format!("/ops/cregis/entries/{}", id.0), Some("alice")),
    )
    .await;
    assert!(
        page.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("order-101") && page.contains("12.500000"),
        "{page}"
    );
    assert!(
        !page.contains(">sign<"),
        "the signature is left out: {page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_each_open_entry_with_its_fact() {
    let world = world().await;
    let (status, page) = send(&world.app, get("/ops/cregis", Some("alice"))).await;
    assert_eq!(status, StatusCode::OK);
    for cid in [REPLAYED, DISCARDED, TARGETED] {
        assert!(page.contains(&cid.to_string()), "{cid}: {page}");
    }
    assert!(page.contains("ledger timed out"), "{page}");
    assert!(page.contains(&format!("order-{DISCARDED}")), "{page}");
    let (status, page) = send(&world.app, get("/ops/cregis?state=done", Some("alice"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("done (0)"), "{page}");
    let (status, _) = send(&world.app, get("/ops/cregis?state=lost", Some("alice"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&world.app, get("/ops/cregis/entries/999999", Some("alice"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A discard without a reason, or of an entry that is not there, does nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_discard_needs_a_reason() {
    let world = world().await;
    let id = entry_of(&world.inbox, DISCARDED).await.unwrap();
    let page_path = format!("/ops/cregis/entries/{}", id.0);
    let (_, page) = send(&world.app, get(&page_path, Some("alice"))).await;
    let token = token_in(&page);
    let discard = format!("{page_path}/discard");
    let discard_for = |reason: &str| {
        let request = post(
            &discard,
            &format!("csrf={token}&reason={reason}"),
            "same-origin",
        );
        let app = world.app.clone();
        async move { send(&app, request).await.0 }
    };
    assert_eq!(discard_for("+").await, StatusCode::BAD_REQUEST);
    assert!(world.inbox.entry(id).await.unwrap().is_some());
    assert_eq!(discard_for("refunded").await, StatusCode::SEE_OTHER);
    assert_eq!(world.inbox.entry(id).await.unwrap(), None);
    assert_eq!(discard_for("refunded").await, StatusCode::CONFLICT);
}

mod browser {
    //! The console in headless Chromium, driven by chromedriver over `WebDriver`.

    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use fantoccini::{Client, ClientBuilder, Locator};
    use serde_json::json;

    use super::{DISCARDED, EntryState, MEMO, REPLAYED, TARGETED, World, entry_of, world};
    use cregis_payout_callback::inbox::Inbox;

    /// chromedriver, stopped when dropped.
    struct Driver(Child);

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// chromedriver on a free port, and a headless Chromium session of its own.
    async fn browser(profile: &std::path::Path) -> (Driver, Client) {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt install chromium chromium-driver)");
        let driver = Driver(driver);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) if Instant::now() > deadline => panic!("chromedriver: {error}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        (driver, client)
    }

    async fn serve(app: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    async fn click(client: &Client, id: &str) {
        client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The page the browser shows once it is titled `title` (a click's navigation may still
    /// be under way), within 10 s.
    async fn page_titled(client: &Client, title: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client.title().await.unwrap() == title {
                return client.source().await.unwrap();
            }
            assert!(Instant::now() < deadline, "never shown: {title}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page shown is the console's 403 saying `why`.
    async fn refused(client: &Client, why: &str) {
        let page = page_titled(client, "Forbidden · Cregis inbox").await;
        assert!(page.contains(why), "{page}");
    }

    async fn text(client: &Client, css: &str) -> String {
        client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "needs chromium and chromedriver (apt install chromium chromium-driver); .ci/run runs it"]
    async fn a_browser_replays_a_dead_entry_discards_a_waiting_one_and_refuses_forgeries() {
        let world = world().await;
        let console = serve(world.app.clone()).await;
        let base = format!("http://{console}/ops/cregis");
        let profile = tempfile::tempdir().unwrap();
        let (_driver, client) = browser(profile.path()).await;

        // Without the host's session: refused, and nothing of the inbox shown.
        client.goto(&base).await.unwrap();
        page_titled(&client, "Unauthorized · Cregis inbox").await;
        assert!(!client.source().await.unwrap().contains("order-101"));

        // Alice signs in (the host's session cookie); the list shows the dead entries with their fact.
        client
            .goto(&format!("http://{console}/sign-in/alice"))
            .await
            .unwrap();
        assert_eq!(client.current_url().await.unwrap().as_str(), base);
        let replayed = entry_of(&world.inbox, REPLAYED).await.unwrap();
        let dead_row = text(&client, &format!("#entries-dead #entry-{}", replayed.0)).await;
        assert!(
            dead_row.contains("order-101") && dead_row.contains("12.500000"),
            "{dead_row}"
        );
        assert!(dead_row.contains("insufficient funds"), "{dead_row}");
        let waiting_row = text(&client, "#entries-waiting").await;
        assert!(
            waiting_row.contains(&DISCARDED.to_string()),
            "{waiting_row}"
        );
        let screenshot = client.screenshot().await.unwrap();
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-list.png");
        std::fs::write(&shot, screenshot).unwrap();
        println!("the list page: {}", shot.display());

        replay_the_dead_entry(&world, &client).await;
        discard_the_waiting_entry(&world, &client, &base).await;
        refuse_forgeries(&world, &client, &base).await;
        client.close().await.unwrap();
    }

    /// The dead entry's page, from the list: its last error, and the memo as text, no script
    /// run. Replay: the worker runs it once, and the page (reloading itself) shows it done.
    async fn replay_the_dead_entry(world: &World, client: &Client) {
        let replayed = entry_of(&world.inbox, REPLAYED).await.unwrap();
        client
            .find(Locator::Css(&format!("#entry-{} a", replayed.0)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let title = format!("entry {} (dead) · Cregis inbox", replayed.0);
        page_titled(client, &title).await;
        assert_eq!(
            text(client, "#last-error").await,
            "ledger said <b>insufficient funds</b> & gave up"
        );
        assert!(text(client, "#body").await.contains(MEMO));
        let scripts = client
            .execute("return document.scripts.length", vec![])
            .await
            .unwrap();
        assert_eq!(scripts, json!(0));
        assert!(!client.title().await.unwrap().contains("pwned"));

        click(client, "replay").await;
        // Pending, then running, then done: the page reloads itself until it is done.
        let done = format!("entry {} (done) · Cregis inbox", replayed.0);
        page_titled(client, &done).await;
        assert_eq!(text(client, "#state").await, "done");
        assert_eq!(
            world.ledger.runs(REPLAYED),
            2,
            "the failed run, then the replay"
        );
    }

    /// Discard the waiting entry, with a reason: the list no longer has it.
    async fn discard_the_waiting_entry(world: &World, client: &Client, base: &str) {
        let discarded = entry_of(&world.inbox, DISCARDED).await.unwrap();
        client
            .goto(&format!("{base}/entries/{}", discarded.0))
            .await
            .unwrap();
        let reason = client.find(Locator::Id("reason")).await.unwrap();
        reason
            .send_keys("refunded by hand, ticket 4411")
            .await
            .unwrap();
        click(client, "discard").await;
        let list = page_titled(client, "Cregis inbox").await;
        assert_eq!(client.current_url().await.unwrap().as_str(), base);
        assert!(!list.contains(&format!("entry-{}", discarded.0)), "{list}");
        assert_eq!(world.inbox.entry(discarded).await.unwrap(), None);
    }

    /// A replay posted without the token is refused; from another origin (another port of
    /// this host: the session cookie goes along, and the token is right), the same form is
    /// refused too. The entry is still dead, and its handler never ran again.
    async fn refuse_forgeries(world: &World, client: &Client, base: &str) {
        let targeted = entry_of(&world.inbox, TARGETED).await.unwrap();
        client
            .goto(&format!("{base}/entries/{}", targeted.0))
            .await
            .unwrap();
        let token = client
            .find(Locator::Css("input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        client
            .execute(
                "document.querySelector('input[name=csrf]').remove()",
                vec![],
            )
            .await
            .unwrap();
        click(client, "replay").await;
        refused(client, "did not carry the console's token").await;

        let forged_form = format!(
            r#"<!doctype html><title>win a prize</title>
            <form method="post" action="{base}/entries/{}/replay">
            <input type="hidden" name="csrf" value="{token}"><button id="claim">Claim</button></form>"#,
            targeted.0
        );
        let elsewhere = serve(axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(forged_form) }),
        ))
        .await;
        client.goto(&format!("http://{elsewhere}/")).await.unwrap();
        click(client, "claim").await;
        refused(client, "not sent from the console's own page").await;

        tokio::time::sleep(Duration::from_millis(300)).await;
        let entry = world.inbox.entry(targeted).await.unwrap().unwrap();
        assert_eq!(entry.state, EntryState::Dead);
        assert_eq!(world.ledger.runs(TARGETED), 1, "only the run that failed");
    }
}
