//! What the inbox benchmarks share: the key, callbacks as Cregis sends them, the disk's fsync
//! rate, percentiles, and 32 HTTP clients that send as fast as they are acknowledged.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, CallbackStatus};

/// How many keep-alive connections the HTTP senders use.
pub const CONNECTIONS: usize = 32;

/// The first payout's `cid`; payout `n` is `FIRST_CID + n`.
pub const FIRST_CID: i64 = 1391751691788288;

pub fn key() -> ApiKey {
    ApiKey::new("fake-bench-key-not-a-secret").unwrap()
}

/// Payout `n`'s successful callback, as Cregis sends it: the documented order, realistic
/// values, an empty `memo`, an unknown field.
pub fn body(n: usize) -> String {
    let cid = i64::try_from(n).unwrap();
    CallbackBuilder::new()
        .cid(FIRST_CID + cid)
        .third_party_id(&format!("{cid:032x}"))
        .amount(&format!("{}.{:02}", 10 + cid % 900, cid % 100))
        .status(CallbackStatus::TransactionSuccessful)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .body(&key())
        .unwrap()
}

/// fsyncs per second of a 4 KiB write on `dir`'s disk, for `for_how_long`.
pub fn fsync_rate(dir: &std::path::Path, for_how_long: Duration) -> f64 {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let block = [0u8; 4096];
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < for_how_long {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// The value at fraction `p` of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// `p50 .. ms, p99 .. ms` of `sorted`.
pub fn p50_p99(sorted: &[Duration]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms",
        percentile(sorted, 0.50).as_secs_f64() * 1e3,
        percentile(sorted, 0.99).as_secs_f64() * 1e3
    )
}

/// Sends payouts `from..` to `url` from [`CONNECTIONS`] keep-alive connections, each as soon
/// as the previous one on its connection is acknowledged (each must be), until `total` are
/// sent or `until` has passed; `sent(n)` is called just before payout `n` goes. Returns how
/// many were acknowledged, and each one's latency, sorted.
pub async fn send_over_http(
    url: &str,
    from: usize,
    total: usize,
    until: Duration,
    sent: Arc<dyn Fn(usize) + Send + Sync>,
) -> (usize, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(from));
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (next, url, sent) = (Arc::clone(&next), url.to_owned(), Arc::clone(&sent));
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut latencies = Vec::new();
                while start.elapsed() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= from + total {
                        break;
                    }
                    let body = body(n);
                    sent(n);
                    let at = Instant::now();
                    let response = client.post(&url).body(body).send().await.unwrap();
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    assert_eq!((status.as_u16(), text.as_str()), (200, "success"));
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    latencies.sort();
    (latencies.len(), latencies)
}
