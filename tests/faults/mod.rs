//! Shared parts of the inbox's fault-injection tests: a handler's fate, the server as a child
//! process that can be killed, callbacks shaped like Cregis's, and a sender that re-sends
//! each callback only until it is acknowledged.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cregis_payout_callback::inbox::{EntryState, Inbox, RetryPolicy};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{CallbackStatus, PayoutCallback};

/// The number of payouts each test sends.
pub const PAYOUTS: i64 = 1000;

/// The retry policy of the servers under test: fast, and generous enough that no entry dies.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_attempts: 200,
        ..RetryPolicy::default()
    }
}

/// What becomes of each run of the handler: 30 % fail and 2 % panic, decided by a hash of the
/// payout, the run (counted in memory: a count rolled back with the effect would give a retry
/// the same fate) and a seed per process.
#[derive(Debug)]
pub struct Fate {
    seed: u64,
    runs: Mutex<HashMap<i64, u64>>,
}

impl Fate {
    pub fn new() -> Fate {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Fate {
            seed: u64::from(nanos) ^ u64::from(std::process::id()) << 32,
            runs: Mutex::default(),
        }
    }

    /// Called once the run has written its effect: fails or panics as fate says.
    pub fn after_effect(&self, callback: &PayoutCallback) -> Result<(), String> {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.entry(callback.cid).or_insert(0);
            *run += 1;
            *run
        };
        let mut z = self.seed ^ u64::from_ne_bytes(callback.cid.to_ne_bytes()) ^ (run << 40);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        match (z ^ (z >> 31)) % 100 {
            0..=1 => panic!("the handler's bug (payout {}, run {run})", callback.cid),
            2..=31 => Err(format!(
                "the ledger is busy (payout {}, run {run})",
                callback.cid
            )),
            _ => Ok(()),
        }
    }
}

/// A server's process, killed when dropped (also when the test fails half-way).
#[derive(Debug)]
pub struct ServerProcess(Child);

impl ServerProcess {
    /// SIGKILL, as a crash or an out-of-memory kill would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs this test binary's ignored test `server` in a child process with `env`, and returns
/// it with the URL it serves the inbox route on (which it prints as `listening on ADDR`).
pub fn start_server(env: &[(&str, &OsStr)]) -> (ServerProcess, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "server",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        // libtest writes `test server ... ` before the test's own output, on the same line.
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.to_owned();
        }
    };
    // Keep reading, so that the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (ServerProcess(child), format!("http://{addr}/cb"))
}

/// Payout `cid`'s callback, pushed for the `push`th time: same business fields, fresh
/// `nonce` and `timestamp`, as a console re-push.
pub fn delivery(cid: i64, push: u32) -> String {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .amount(&format!("{}.{:02}", 10 + cid % 90, cid % 100))
        .status(CallbackStatus::TransactionSuccessful)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .nonce(&format!(
            "{:06}",
            (cid * 7919 + i64::from(push)) % 1_000_000
        ))
        .timestamp(1_687_850_657_960 + i64::from(push))
        .body(&crate::common::key())
        .unwrap()
}

/// The servers under test, which a killer replaces while the sender runs.
pub type Servers = Arc<RwLock<Vec<(ServerProcess, String)>>>;

/// What the sender saw.
#[derive(Debug, Default)]
pub struct Sent {
    /// Callbacks acknowledged (`200 success`), one per payout.
    pub acknowledged: AtomicUsize,
    /// Answers other than `success` (not counting a server that was down).
    pub refused: AtomicUsize,
    /// When each refusal came, and its status.
    pub refusals: Mutex<Vec<(std::time::Instant, u16)>>,
}

/// Sends every payout's callback, 32 at a time, each until it is acknowledged and never after,
/// to the servers in turn (a re-send goes to the next one).
pub async fn send_all(servers: &Servers, sent: &Arc<Sent>) {
    let client = reqwest::Client::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut sends = Vec::new();
    for cid in 0..PAYOUTS {
        let (client, servers, permits, sent) = (
            client.clone(),
            Arc::clone(servers),
            Arc::clone(&permits),
            Arc::clone(sent),
        );
        sends.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            for push in 0u32.. {
                let url = {
                    let servers = servers.read().unwrap();
                    let at = usize::try_from(cid).unwrap() + push as usize;
                    servers[at % servers.len()].1.clone()
                };
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(delivery(cid, push))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                // An error: the server is down (killed, or not yet up again).
                if let Ok(response) = answer {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    if (status, text.as_str()) == (200, "success") {
                        sent.acknowledged.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    sent.refused.fetch_add(1, Ordering::SeqCst);
                    let at = std::time::Instant::now();
                    sent.refusals.lock().unwrap().push((at, status));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
}

/// Waits until `sent` has seen `at` acknowledgements.
pub fn wait_for_acknowledged(sent: &Sent, at: usize) {
    while sent.acknowledged.load(Ordering::SeqCst) < at {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (up to 2 minutes) until every payout's entry is done, through the servers' workers;
/// checks that none is dead, and returns how many runs they took in all.
pub async fn wait_all_done(inbox: &impl Inbox) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let done = inbox.list(&[EntryState::Done]).await.unwrap();
        if done.len() == usize::try_from(PAYOUTS).unwrap() {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} entries done",
            done.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(inbox.list(&[EntryState::Dead]).await.unwrap().is_empty());
    done.iter().map(|entry| entry.attempts).sum()
}

/// Checks that the ledger's effects, counted per payout (`cid`, count), hold each payout once.
pub fn assert_each_applied_once(effects: &[(i64, i64)]) {
    assert_eq!(effects.len(), usize::try_from(PAYOUTS).unwrap());
    let twice: Vec<_> = effects.iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
}
