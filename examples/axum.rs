//! A Cregis payout-callback endpoint on axum.
//!
//! ```sh
//! CREGIS_API_KEY=... PORT=3000 cargo run --example axum
//! # in another terminal:
//! cargo run --example simulate            # an acknowledged callback
//! cargo run --example simulate -- --tamper  # a forged one, refused
//! ```
//!
//! The route takes the raw body bytes (never a parsed `Json<..>`: the signature covers the
//! exact text), hands them to one shared `Verifier`, and answers with its `Reply`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cregis_payout_callback::{
    AsyncCallbackHandler, CallbackStatus, Error, MemoryIdempotencyStore, PayoutCallback, Reply,
    Verifier,
};

/// Where Cregis POSTs the callbacks (the `callback_url` given when creating a payout).
pub const ROUTE: &str = "/cregis/payout-callback";

/// An obviously fake key, used when `CREGIS_API_KEY` is not set.
pub const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

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

/// The application: one route.
pub fn app<H>(verifier: Verifier, handler: Arc<H>) -> Router
where
    H: AsyncCallbackHandler + Send + 'static,
{
    Router::new()
        .route(ROUTE, post(receive::<H>))
        .with_state((verifier, handler))
}

async fn receive<H>(
    State((verifier, handler)): State<(Verifier, Arc<H>)>,
    request: Request,
) -> Response
where
    H: AsyncCallbackHandler + Send + 'static,
{
    // Refuse an oversized body before reading it: by its announced length, or as soon as
    // more than the limit has arrived.
    let limit = verifier.body_limit();
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let reply = match announced {
        Some(len) if len > limit => Reply::from(Error::BodyTooLarge { len, limit }),
        _ => match axum::body::to_bytes(request.into_body(), limit).await {
            // A task of its own: if the client disconnects, the handler still finishes and
            // settles its idempotency claim instead of leaving it in progress.
            Ok(body) => tokio::spawn(async move { verifier.process_async(&body, &*handler).await })
                .await
                .unwrap_or_else(|panic| {
                    Reply::from(Error::HandlerFailed {
                        message: panic.to_string(),
                    })
                }),
            // More than `limit` bytes arrived (at least one more), or the body broke off.
            Err(_) => Reply::from(Error::BodyTooLarge {
                len: limit.saturating_add(1),
                limit,
            }),
        },
    };
    if let Some(error) = reply.error() {
        eprintln!("callback answered {}: {error}", reply.status_code());
    }
    let (status, content_type, body) = reply.into_parts();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The API key from `CREGIS_API_KEY`, or the demo key with a warning.
pub fn api_key_from_env() -> String {
    std::env::var("CREGIS_API_KEY").unwrap_or_else(|_| {
        eprintln!("warning: CREGIS_API_KEY is not set; using the fake demo key {DEMO_API_KEY:?}");
        DEMO_API_KEY.to_owned()
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier =
        Verifier::new(api_key_from_env())?.idempotency(MemoryIdempotencyStore::default());
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    axum::serve(listener, app(verifier, Arc::new(Ledger::default()))).await?;
    Ok(())
}
