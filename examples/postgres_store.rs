//! A shared idempotency store on PostgreSQL, for several instances whose handler's effect is
//! not a row in that database (a message to a queue, a call to another service, an email).
//!
//! ```sh
//! DATABASE_URL=postgres://user@127.0.0.1/db CREGIS_API_KEY=... PORT=3000 \
//!     cargo run --example postgres_store --features axum,postgres
//! # in another terminal:
//! cargo run --example simulate
//! ```
//!
//! Every instance claims each delivery in one table, `cregis_claims`
//! ([`PgIdempotencyStore`], on the database's clock), keyed on (`pid`, `cid`, `status`), with
//! the delivery's fingerprint and a lease. So a callback delivered to two instances at once
//! runs the handler on one of them; a duplicate with other content is refused as a conflict;
//! and an instance that dies mid-handler leaves a claim that the next re-push takes over once
//! its lease has ended, on any instance. A URL with `sslmode=require` (or `verify-full`)
//! connects over TLS.
//!
//! This is the direct mode: a handler failure is answered 500 and waits for an operator's
//! re-push. `examples/inbox_postgres.rs` acknowledges first and retries the handler itself;
//! when the effect *is* a row in the same database, it also commits the effect with "done".

use axum::Router;
use cregis_payout_callback::axum::callback_route;
use cregis_payout_callback::idempotency::{PgIdempotencyStore, Store};
use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier};

/// Where Cregis POSTs the callbacks (the `callback_url` given when creating a payout).
pub const ROUTE: &str = "/cregis/payout-callback";

/// What to say when `CREGIS_API_KEY` is not set.
const KEY_MISSING: &str = "set CREGIS_API_KEY to your project's API key (to try the examples \
    locally: CREGIS_API_KEY=fake-demo-key-0123456789abcdef, the key `simulate` signs with when \
    none is set)";

/// The demo's business logic: an effect outside the database the store is in, stood in for
/// by a line on standard output.
#[derive(Debug, Default)]
pub struct Notifier;

impl AsyncCallbackHandler for Notifier {
    type Error = std::convert::Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Self::Error> {
        println!(
            "notify: payout {} ({} {}) is now {}",
            callback.third_party_id, callback.amount, callback.currency, callback.status
        );
        Ok(())
    }
}

/// The application: one route, whatever the handler, with the shared store.
pub fn app(
    verifier: Verifier<Store<PgIdempotencyStore>>,
    handler: impl AsyncCallbackHandler + Send + 'static,
) -> Router {
    Router::new().route(ROUTE, callback_route(verifier, handler))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Never a default key: a server started without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| KEY_MISSING)?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL=postgres://...")?;
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let store = PgIdempotencyStore::connect(&url).await?;
    for stuck in store.claims_in_progress().await? {
        // The database's times: compare them with each other, not with this host's clock.
        let held = stuck
            .lease_until
            .duration_since(stuck.started)
            .unwrap_or_default();
        eprintln!("claim in progress: {} (lease {held:?})", stuck.key);
    }
    let verifier = Verifier::builder(api_key).idempotency(store).build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    axum::serve(listener, app(verifier, Notifier)).await?;
    Ok(())
}
