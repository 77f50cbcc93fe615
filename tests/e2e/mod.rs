//! Shared steps of the end-to-end tests: real HTTP requests to a real server on loopback.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cregis_payout_callback::{AsyncCallbackHandler, PayoutCallback};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Announces a 10 MB body, sends only its first KiB, and returns the status line of the
/// answer: a server that answers has refused the body without reading it whole.
pub async fn announce_huge_body(addr: SocketAddr, path: &str) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    send_and_read_status(addr, head.as_bytes(), &[b' '; 1024]).await
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
