//! A Cregis payout-callback endpoint on actix-web, with the crate's ready route.
//!
//! ```sh
//! CREGIS_API_KEY=... PORT=3000 cargo run --example actix --features actix-web
//! # in another terminal:
//! cargo run --example simulate
//! ```
//!
//! `callback_route` takes the raw body (refusing an oversized one before reading it), runs the
//! verifier and the handler in a task of its own that a client disconnect cannot cancel, and
//! answers with the verifier's `Reply`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Server;
use actix_web::{App, HttpServer};
use cregis_payout_callback::actix_web::callback_route;
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

/// The demo's business logic: each payout's last verified status, in memory.
#[derive(Debug, Default)]
pub struct Ledger {
    statuses: Mutex<HashMap<String, CallbackStatus>>,
}

impl Ledger {
    /// The last status handled for the host's payout `third_party_id`.
    pub fn status(&self, third_party_id: &str) -> Option<CallbackStatus> {
        let statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.get(third_party_id).copied()
    }
}

impl AsyncCallbackHandler for Ledger {
    type Error = Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Infallible> {
        println!(
            "payout {} ({} {}): {}",
            callback.third_party_id, callback.amount, callback.currency, callback.status
        );
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses.insert(callback.third_party_id.clone(), callback.status);
        Ok(())
    }
}

// ---- The part a host writes: the verifier, the route and the server. ----

/// The server on an already bound `listener`; every worker shares `verifier` (and its store,
/// if any) and `handler`.
///
/// # Errors
///
/// The listener cannot be used (it is closed, say).
pub fn server<S, H>(
    listener: TcpListener,
    verifier: Verifier<S>,
    handler: Arc<H>,
) -> io::Result<Server>
where
    S: AsyncStoreSlot,
    H: AsyncCallbackHandler + Send + 'static,
{
    let app = move || App::new().route(ROUTE, callback_route(verifier.clone(), handler.clone()));
    Ok(HttpServer::new(app).workers(2).listen(listener)?.run())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |port| port.parse())?;
    let verifier = Verifier::builder(api_key)
        .idempotency(MemoryIdempotencyStore::default())
        .build();
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    server(listener, verifier, Arc::new(Ledger::default()))?.await?;
    Ok(())
}
