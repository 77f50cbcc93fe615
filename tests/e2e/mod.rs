//! Shared steps of the end-to-end tests: real HTTP requests to a real server on loopback.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cregis_payout_callback::idempotency::{MemoryIdempotencyStore, Store};
use cregis_payout_callback::{AsyncCallbackHandler, Error, PayoutCallback, Verifier};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The verifier the end-to-end servers use: the tests' key, the memory store, claims held
/// for `lease`.
pub fn memory_verifier(lease: Duration) -> Verifier<Store<MemoryIdempotencyStore>> {
    Verifier::builder(crate::common::key())
        .idempotency(MemoryIdempotencyStore::default())
        .claim_lease(lease)
        .build()
}

/// An HTTP answer, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.status, self.body)
    }
}

/// POSTs `body` as JSON to `url` with a real HTTP client.
pub async fn post(url: &str, body: impl Into<Vec<u8>>) -> Answer {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.into())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.expect("a text body");
    Answer {
        status,
        content_type,
        body,
    }
}

/// Announces a 10 MB body, sends none of it, and returns the status line of the answer: a
/// server that answers has refused the body before it was sent.
pub async fn announce_huge_body(addr: SocketAddr, path: &str) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    send_and_read_status(addr, head.as_bytes(), &[]).await
}

/// Sends a whole request for `body`, then hangs up `after` it, before any answer can come.
pub async fn post_and_hang_up(addr: SocketAddr, path: &str, body: &[u8], after: Duration) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::sleep(after).await;
    drop(stream);
}

/// Announces a body of `announced` bytes, sends only `sent`, and hangs up: the server's read
/// of the body breaks off.
pub async fn send_part_and_hang_up(addr: SocketAddr, path: &str, announced: usize, sent: &[u8]) {
    assert!(sent.len() < announced);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {announced}\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
}

/// The [`Error`] each response of a server carried in its extensions (`None` for an
/// acknowledgement), as a logging layer in front of the route sees it: whether or not the
/// client was still there to read the response.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Option<Error>>>>);

impl Seen {
    /// Records one response's error.
    pub fn record(&self, error: Option<&Error>) {
        self.0.lock().unwrap().push(error.cloned());
    }

    /// Waits (up to 10 s) until `n` responses were recorded, and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Option<Error>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.0.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} responses: {seen:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls `future` by hand, on the calling thread, outside of any runtime: a route's future
/// driven this way spawns its task on whatever runtime the caller has entered, which can then
/// be shut down under it.
pub struct ByHand<F: Future>(Pin<Box<F>>);

impl<F: Future> ByHand<F> {
    pub fn new(future: F) -> ByHand<F> {
        ByHand(Box::pin(future))
    }

    /// Polls once.
    pub fn poll(&mut self) -> Poll<F::Output> {
        self.0
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Polls every 5 ms until the future is ready (at most 10 s).
    pub fn wait(mut self) -> F::Output {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Poll::Ready(output) = self.poll() {
                return output;
            }
            assert!(Instant::now() < deadline, "the future never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Streams a body of unannounced length: one chunk of `len` bytes, and no end. Returns the
/// status line of the answer, which a server can only give by refusing the body unfinished.
pub async fn stream_endless_body(addr: SocketAddr, path: &str, len: usize) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{len:x}\r\n"
    );
    let mut chunk = vec![b' '; len];
    chunk.extend_from_slice(b"\r\n");
    send_and_read_status(addr, head.as_bytes(), &chunk).await
}

async fn send_and_read_status(addr: SocketAddr, head: &[u8], body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer))
        .await
        .expect("the server answers before the body is complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// A handler whose database is down: it counts its calls and fails every one.
#[derive(Debug, Default)]
pub struct Failing(AtomicUsize);

impl Failing {
    pub fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl AsyncCallbackHandler for Failing {
    type Error = String;

    async fn handle(&self, _: &PayoutCallback) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("database is down".to_owned())
    }
}

/// A handler that takes its time: it counts the calls that started and the ones that ran to
/// their end, `delay` after starting.
#[derive(Debug)]
pub struct Slow {
    delay: Duration,
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Slow {
    pub fn new(delay: Duration) -> Slow {
        Slow {
            delay,
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        }
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s) until `n` calls have run to their end.
    pub async fn wait_finished(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.finished() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the handler never finished: it was cancelled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl AsyncCallbackHandler for Slow {
    type Error = std::convert::Infallible;

    async fn handle(&self, _: &PayoutCallback) -> Result<(), Self::Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A handler that panics.
#[derive(Debug, Default)]
pub struct Panicking;

impl AsyncCallbackHandler for Panicking {
    type Error = std::convert::Infallible;

    async fn handle(&self, _: &PayoutCallback) -> Result<(), Self::Error> {
        panic!("the handler's own bug")
    }
}

/// The checks every framework adapter must pass, each against a server freshly started on
/// loopback with the handler given. `url` is the route's full URL.
pub mod checks {
    use super::*;
    use crate::common::{DOC_EXAMPLE, KEY, signed_body};

    /// Asserts that `answer` refuses the delivery: never `success` in a non-ack body.
    #[track_caller]
    pub fn assert_refused(answer: &Answer, status: u16) {
        assert_eq!(answer.status, status, "{answer}");
        assert_ne!(answer.body, "success", "{answer}");
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }

    /// A client that hangs up 50 ms into a 300 ms handler does not cancel it; the re-push is
    /// acknowledged as a duplicate, and the handler ran once.
    pub async fn disconnect_does_not_cancel_the_handler(addr: SocketAddr, path: &str, slow: &Slow) {
        let body = signed_body(DOC_EXAMPLE, KEY);
        post_and_hang_up(addr, path, body.as_bytes(), Duration::from_millis(50)).await;
        assert_eq!(
            slow.finished(),
            0,
            "the hang-up came before the handler's end"
        );
        slow.wait_finished(1).await;
        let answer = post(&format!("http://{addr}{path}"), body).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
        assert_eq!((slow.started(), slow.finished()), (1, 1));
    }

    /// 401 for a forgery, 400 for malformed bodies, 413 for an announced 10 MB body (before
    /// any of it is sent) and for an endless chunked one.
    pub async fn bad_deliveries_are_refused(addr: SocketAddr, path: &str, limit: usize) {
        let url = format!("http://{addr}{path}");
        let forged = post(&url, signed_body(DOC_EXAMPLE, "fake-attacker-key")).await;
        assert_refused(&forged, 401);
        assert_eq!(forged.body, "signature does not match");
        for (body, reason) in [
            (
                &b"not json"[..],
                "body is not valid json: expected ident at line 1 column 2",
            ),
            (b"[1,2]", "body is not a json object"),
            (br#"{"a":1,"a":2}"#, "key \"a\" appears more than once"),
            (b"", "body is not valid json: empty body"),
        ] {
            let answer = post(&url, body).await;
            assert_refused(&answer, 400);
            assert_eq!(answer.body, reason);
        }
        let status_line = announce_huge_body(addr, path).await;
        assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
        let status_line = stream_endless_body(addr, path, limit + 1).await;
        assert_eq!(status_line, "HTTP/1.1 413 Payload Too Large");
    }

    /// A failing handler gets 500 each time, and each re-push runs it again (its claim was
    /// released).
    pub async fn failing_handler_gets_500(addr: SocketAddr, path: &str, failing: &Failing) {
        let body = signed_body(DOC_EXAMPLE, KEY);
        for attempt in 1..=2 {
            let answer = post(&format!("http://{addr}{path}"), body.clone()).await;
            assert_refused(&answer, 500);
            assert_eq!(answer.body, "internal error");
            assert_eq!(failing.calls(), attempt);
        }
    }

    /// A handler still running when its claim's `lease` ends is stopped there: 500 with
    /// `PastLease` as the cause, the claim released. A re-push runs it again (not 409), and no
    /// run ever reaches its end, so none ran past the lease while another could start.
    pub async fn handler_past_its_lease_is_stopped(
        addr: SocketAddr,
        path: &str,
        slow: &Slow,
        seen: &Seen,
        lease: Duration,
    ) {
        let url = format!("http://{addr}{path}");
        let body = signed_body(DOC_EXAMPLE, KEY);
        for run in 1..=2 {
            let answer = post(&url, body.clone()).await;
            assert_refused(&answer, 500);
            assert_eq!(answer.body, "internal error");
            let errors = seen.wait_for(run).await;
            let Some(Error::HandlerFailed { cause, .. }) = &errors[run - 1] else {
                panic!("{errors:?}")
            };
            let past = cause.downcast_ref::<cregis_payout_callback::error::PastLease>();
            assert_eq!(past.map(|p| p.lease), Some(lease), "{cause}");
            assert_eq!(slow.started(), run, "the re-push found the claim released");
        }
        // Past the handler's own delay: had either run gone on, it would have ended by now.
        tokio::time::sleep(slow.delay() + Duration::from_millis(200)).await;
        assert_eq!(slow.finished(), 0, "a run went on past its lease");
    }

    /// A panicking handler gets 500, and the server goes on answering. The response's error
    /// (for the host's logs) keeps the panic's message.
    pub async fn panicking_handler_gets_500(addr: SocketAddr, path: &str, seen: &Seen) {
        let url = format!("http://{addr}{path}");
        let answer = post(&url, signed_body(DOC_EXAMPLE, KEY)).await;
        assert_refused(&answer, 500);
        assert_eq!(answer.body, "internal error");
        let errors = seen.wait_for(1).await;
        let Some(error @ Error::HandlerFailed { .. }) = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(error.kind(), "HandlerFailed");
        assert_eq!(
            error.to_string(),
            "handler failed: the handler panicked: the handler's own bug"
        );
        assert_refused(&post(&url, b"not json").await, 400);
    }

    /// A client that hangs up half-way through the body: the read breaks off, which is
    /// `BodyUnreadable` (400), not a malformed body, and no handler runs.
    pub async fn a_body_cut_short_is_unreadable(
        addr: SocketAddr,
        path: &str,
        seen: &Seen,
        slow: &Slow,
    ) {
        let body = signed_body(DOC_EXAMPLE, KEY);
        let half = &body.as_bytes()[..body.len() / 2];
        send_part_and_hang_up(addr, path, body.len(), half).await;
        let errors = seen.wait_for(1).await;
        let Some(error @ Error::BodyUnreadable { .. }) = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!((error.kind(), error.http_status()), ("BodyUnreadable", 400));
        assert!(
            !error.is_authentication() && !error.is_contract(),
            "{error}"
        );
        assert_eq!(slow.started(), 0);
        // The server goes on: the whole body is acknowledged.
        let answer = post(&format!("http://{addr}{path}"), body).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    }
}

/// Stops an actix-web test server, gracefully, but for 10 s at most. Once in a `.ci/run`, the
/// graceful stop of actix-server 2.6.0 never returned although its listener and worker had
/// already exited (a race in its shutdown; actix/actix-net#945 fixes a neighbouring one). The
/// server's own shutdown is not what these tests check, and a test must pass or fail, never
/// hang: this says so when it gave up and goes on.
pub async fn stop_actix(server: actix_web::dev::ServerHandle) {
    if tokio::time::timeout(Duration::from_secs(10), server.stop(true))
        .await
        .is_err()
    {
        eprintln!(
            "actix-web's graceful stop did not finish in 10 s (actix/actix-net#945); going on"
        );
    }
}
