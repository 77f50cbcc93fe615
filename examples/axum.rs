//! A Cregis payout-callback endpoint on axum, with the crate's ready route.
//!
//! ```sh
//! CREGIS_API_KEY=... PORT=3000 cargo run --example axum --features axum
//! # in another terminal:
//! cargo run --example simulate            # an acknowledged callback (with the same key)
//! cargo run --example simulate -- --tamper  # a forged one, refused
//! ```
//!
//! `callback_route` takes the raw body (refusing an oversized one before reading it), runs the
//! verifier and the handler in a task of its own that a client disconnect cannot cancel, and
//! answers with the verifier's `Reply`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};

use axum::Router;
use cregis_payout_callback::axum::callback_route;
use cregis_payout_callback::idempotency::{AsyncStoreSlot, MemoryIdempotencyStore};
use cregis_payout_callback::{
    ApiKey, AsyncCallbackHandler, CallbackStatus, PayoutCallback, Verifier,
};

/// Where Cregis POSTs the callbacks (the `callback_url` given when creating a payout).
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

/// The demo's business logic: keeps each payout's last verified callback in memory.
#[derive(Debug, Default)]
pub struct Ledger {
    payouts: Mutex<HashMap<String, PayoutCallback>>,
}

impl Ledger {
    /// The last callback handled for the host's payout `third_party_id`.
    pub fn last(&self, third_party_id: &str) -> Option<PayoutCallback> {
        let payouts = self.payouts.lock().unwrap_or_else(PoisonError::into_inner);
        payouts.get(third_party_id).cloned()
    }

    /// How many payouts have a recorded status.
    pub fn payouts(&self) -> usize {
        self.payouts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl AsyncCallbackHandler for Ledger {
    type Error = Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Infallible> {
        let outcome = match callback.status {
            CallbackStatus::TransactionSuccessful => "paid out",
            status if status.is_final() => "not paid out",
            _ => "still in progress",
        };
        println!(
            "payout {} ({} {} to {}): {} -> {outcome}",
            callback.third_party_id,
            callback.amount,
            callback.currency,
            callback.address,
            callback.status,
        );
        let mut payouts = self.payouts.lock().unwrap_or_else(PoisonError::into_inner);
        payouts.insert(callback.third_party_id.clone(), callback.clone());
        Ok(())
    }
}

// ---- The part a host writes: the verifier, the route and the server. ----

/// The application: one route, whatever the handler (and the verifier's store, if it can be
/// awaited).
pub fn app<S: AsyncStoreSlot>(
    verifier: Verifier<S>,
    handler: impl AsyncCallbackHandler + Send + 'static,
) -> Router {
    Router::new().route(ROUTE, callback_route(verifier, handler))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let verifier = Verifier::builder(api_key)
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    axum::serve(listener, app(verifier, Ledger::default())).await?;
    Ok(())
}
