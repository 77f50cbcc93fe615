//! A Cregis callback endpoint on a plain hyper server, through the crate's `tower::Service`.
//!
//! ```sh
//! CREGIS_API_KEY=... PORT=3000 cargo run --example hyper --features tower
//! # in another terminal:
//! cargo run --example simulate
//! ```
//!
//! `CregisService` refuses an oversized body before reading it, runs the verifier and the
//! handler in a task of its own (hyper drops a request's future when its client hangs up; the
//! handler still finishes), and answers 500 for a panic. This server routes nothing: every
//! request reaches the service, whatever its path; put it behind your router for more.

use std::convert::Infallible;

use cregis_payout_callback::idempotency::{MemoryIdempotencyStore, Store};
use cregis_payout_callback::service::CregisService;
use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

/// The demo's business logic: prints each payout's new status.
#[derive(Debug, Clone, Copy)]
pub struct Printer;

impl AsyncCallbackHandler for Printer {
    type Error = Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Infallible> {
        println!(
            "payout {} is now {}",
            callback.third_party_id, callback.status
        );
        Ok(())
    }
}

/// Serves `service` on every connection `listener` accepts, one task per connection.
///
/// # Errors
///
/// The listener fails to accept.
pub async fn serve(listener: TcpListener, service: CregisService) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // A connection that breaks ends here; the deliveries it started go on.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let verifier: Verifier<Store<MemoryIdempotencyStore>> = Verifier::builder(api_key)
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{}/cregis/payout-callback",
        listener.local_addr()?
    );
    serve(listener, CregisService::callbacks(verifier, Printer)).await?;
    Ok(())
}
