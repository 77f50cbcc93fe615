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

/// What becomes of each run of the handler, decided by a hash of the payout, the run (counted
/// in memory: a count rolled back with the effect would give a retry the same fate) and a
/// seed per process: [`Fate::new`] fails 30 % and panics in 2 %; [`Fate::soak`] also stalls.
#[derive(Debug)]
pub struct Fate {
    seed: u64,
    runs: Mutex<HashMap<i64, u64>>,
    /// Out of 100 runs: how many panic, fail, and stall past their deadline.
    panics: u64,
    fails: u64,
    stalls: u64,
}

/// One run's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Panic,
    Fail,
    Stall,
    Succeed,
}

impl Fate {
    /// 30 % of runs fail, 2 % panic.
    pub fn new() -> Fate {
        Fate::with(2, 30, 0)
    }

    /// The soak's: 1 % of runs panic, 20 % fail, 5 % stall past their deadline.
    pub fn soak() -> Fate {
        Fate::with(1, 20, 5)
    }

    fn with(panics: u64, fails: u64, stalls: u64) -> Fate {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Fate {
            seed: u64::from(nanos) ^ u64::from(std::process::id()) << 32,
            runs: Mutex::default(),
            panics,
            fails,
            stalls,
        }
    }

    /// This run's fate, for payout `cid`.
    pub fn verdict(&self, cid: i64) -> (Verdict, u64) {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let run = runs.entry(cid).or_insert(0);
            *run += 1;
            *run
        };
        let mut z = self.seed ^ u64::from_ne_bytes(cid.to_ne_bytes()) ^ (run << 40);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let roll = (z ^ (z >> 31)) % 100;
        let verdict = if roll < self.panics {
            Verdict::Panic
        } else if roll < self.panics + self.fails {
            Verdict::Fail
        } else if roll < self.panics + self.fails + self.stalls {
            Verdict::Stall
        } else {
            Verdict::Succeed
        };
        (verdict, run)
    }

    /// Called once the run has written its effect: fails, panics or stalls for `stall` as fate
    /// says.
    pub async fn after_effect(
        &self,
        callback: &PayoutCallback,
        stall: Duration,
    ) -> Result<(), String> {
        let (verdict, run) = self.verdict(callback.cid);
        match verdict {
            Verdict::Panic => panic!("the handler's bug (payout {}, run {run})", callback.cid),
            Verdict::Fail => Err(format!(
                "the ledger is busy (payout {}, run {run})",
                callback.cid
            )),
            Verdict::Stall => {
                tokio::time::sleep(stall).await;
                Ok(())
            }
            Verdict::Succeed => Ok(()),
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
    delivery_of(cid, push, CallbackStatus::TransactionSuccessful)
}

/// Payout `cid`'s callback saying `status`, pushed for the `push`th time (as [`delivery`]).
pub fn delivery_of(cid: i64, push: u32, status: CallbackStatus) -> String {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .amount(&format!("{}.{:02}", 10 + cid % 90, cid % 100))
        .status(status)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .nonce(&format!(
            "{:06}",
            (cid.rem_euclid(1_000_000) * 7919 + i64::from(push)) % 1_000_000
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
            send_until_acknowledged(&client, &servers, cid, &sent).await;
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
}

/// Sends payout `cid`'s callback to the servers in turn (a re-send goes to the next one),
/// each push after 20 ms, until one is acknowledged; counts it (and every refusal) in `sent`,
/// and returns how long the acknowledged request took. A server that is down (killed, or not
/// yet up again) is not a refusal.
pub async fn send_until_acknowledged(
    client: &reqwest::Client,
    servers: &Servers,
    cid: i64,
    sent: &Sent,
) -> Duration {
    let mut push = 0u32;
    loop {
        let url = {
            let servers = servers.read().unwrap();
            let at = usize::try_from(cid).unwrap() + push as usize;
            servers[at % servers.len()].1.clone()
        };
        let started = std::time::Instant::now();
        let answer = client
            .post(&url)
            .header("content-type", "application/json")
            .body(delivery(cid, push))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if (status, text.as_str()) == (200, "success") {
                sent.acknowledged.fetch_add(1, Ordering::SeqCst);
                return started.elapsed();
            }
            sent.refused.fetch_add(1, Ordering::SeqCst);
            let at = std::time::Instant::now();
            sent.refusals.lock().unwrap().push((at, status));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        push += 1;
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
    wait_done(inbox, usize::try_from(PAYOUTS).unwrap()).await
}

/// Waits (up to 2 minutes) until `n` entries are done; checks that none is dead, and returns
/// how many runs they took in all.
pub async fn wait_done(inbox: &impl Inbox, n: usize) -> u32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let done = inbox.list(&[EntryState::Done]).await.unwrap();
        if done.len() == n {
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

/// What a soak saw.
#[derive(Debug)]
pub struct Soak {
    /// Callbacks sent (one payout each), every one acknowledged.
    pub sent: usize,
    /// How long each acknowledged request took, sorted.
    pub latencies: Vec<Duration>,
    /// Answers other than `success` (not counting a server that was down).
    pub refused: usize,
    /// The most entries waiting to run (pending, running, waiting) at any sample.
    pub max_backlog: u64,
}

impl Soak {
    /// Prints what the soak saw under `what`, and checks it: every callback acknowledged with
    /// no other answer while a server was up, and the handler failing along the way (`runs`
    /// in all, more than the callbacks).
    pub fn report(&self, what: &str, runs: u32) {
        eprintln!(
            "{what}, 1 SIGKILL: {} callbacks; accept p50 {:?}, p99 {:?}, max {:?}; largest \
             backlog {} entries; {runs} runs",
            self.sent,
            self.percentile(50),
            self.percentile(99),
            self.latencies[self.latencies.len() - 1],
            self.max_backlog,
        );
        assert_eq!(
            self.refused, 0,
            "an answer other than success while a server was up"
        );
        assert_eq!(self.latencies.len(), self.sent);
        let runs = usize::try_from(runs).unwrap();
        assert!(
            runs > self.sent,
            "the handler failed along the way: {runs} runs"
        );
    }

    /// The latency at `percent` (of 100).
    pub fn percentile(&self, percent: usize) -> Duration {
        let at = (self.latencies.len() * percent / 100).min(self.latencies.len() - 1);
        self.latencies[at]
    }
}

/// The soak: `rate` callbacks a second for `length`, each a payout of its own, to the
/// servers in turn; each re-sent (after 20 ms) only while its server is down, until
/// acknowledged. Halfway, `kill` `SIGKILL`s a server and starts it again. The backlog is
/// sampled from `inbox` every 250 ms.
pub async fn soak(
    servers: &Servers,
    inbox: &impl Inbox,
    rate: u32,
    length: Duration,
    kill: impl FnOnce() + Send + 'static,
) -> Soak {
    let client = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Sent::default());
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let started = tokio::time::Instant::now();
    let mut killer = Some(kill);
    let mut next_sample = started;
    let mut max_backlog = 0;
    let mut sends = Vec::new();
    let mut cid = 0i64;
    while started.elapsed() < length {
        ticks.tick().await;
        if started.elapsed() >= length / 2 {
            if let Some(kill) = killer.take() {
                tokio::task::spawn_blocking(kill);
            }
        }
        if tokio::time::Instant::now() >= next_sample {
            next_sample += Duration::from_millis(250);
            let backlog: u64 = inbox
                .counts()
                .await
                .unwrap()
                .iter()
                .filter(|count| !matches!(count.state, EntryState::Done | EntryState::Dead))
                .map(|count| count.entries)
                .sum();
            max_backlog = max_backlog.max(backlog);
        }
        let (client, servers, latencies, sent) = (
            client.clone(),
            Arc::clone(servers),
            Arc::clone(&latencies),
            Arc::clone(&sent),
        );
        sends.push(tokio::spawn(async move {
            let took = send_until_acknowledged(&client, &servers, cid, &sent).await;
            latencies.lock().unwrap().push(took);
        }));
        cid += 1;
    }
    for send in sends {
        send.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    Soak {
        sent: usize::try_from(cid).unwrap(),
        latencies,
        refused: sent.refused.load(Ordering::SeqCst),
        max_backlog,
    }
}

/// Checks that the ledger's effects, counted per payout (`cid`, count), hold each payout once.
pub fn assert_each_applied_once(effects: &[(i64, i64)]) {
    assert_each_of_n_applied_once(effects, usize::try_from(PAYOUTS).unwrap());
}

/// Checks that the ledger's effects, counted per payout (`cid`, count), hold each of `n`
/// payouts once.
pub fn assert_each_of_n_applied_once(effects: &[(i64, i64)], n: usize) {
    assert_eq!(effects.len(), n);
    let twice: Vec<_> = effects.iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
}
