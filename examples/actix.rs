//! A Cregis payout-callback endpoint on actix-web.
//!
//! ```sh
//! CREGIS_API_KEY=... PORT=3000 cargo run --example actix
//! # in another terminal:
//! cargo run --example simulate
//! ```
//!
//! The route takes the raw body bytes (never a parsed `Json<..>`: the signature covers the
//! exact text), hands them to one shared `Verifier`, and answers with its `Reply`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use cregis_payout_callback::{
    AsyncCallbackHandler, CallbackStatus, Error, MemoryIdempotencyStore, PayoutCallback, Reply,
    Verifier,
};

/// Where Cregis POSTs the callbacks (the `callback_url` given when creating a payout).
pub const ROUTE: &str = "/cregis/payout-callback";

/// An obviously fake key, used when `CREGIS_API_KEY` is not set.
pub const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

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

/// Registers the route, with the request body capped at the verifier's limit.
pub fn configure<H>(cfg: &mut web::ServiceConfig, verifier: Verifier, handler: Arc<H>)
where
    H: AsyncCallbackHandler + Send + 'static,
{
    cfg.app_data(web::PayloadConfig::new(verifier.body_limit()))
        .app_data(web::Data::new(verifier))
        .app_data(web::Data::from(handler))
        .route(ROUTE, web::post().to(receive::<H>));
}

async fn receive<H>(
    verifier: web::Data<Verifier>,
    handler: web::Data<H>,
    body: web::Bytes,
) -> HttpResponse
where
    H: AsyncCallbackHandler + Send + 'static,
{
    // A task of its own: if the client disconnects, the handler still finishes and settles its
    // idempotency claim instead of leaving it in progress.
    let reply =
        actix_web::rt::spawn(async move { verifier.process_async(&body, handler.get_ref()).await })
            .await
            .unwrap_or_else(|panic| {
                Reply::from(Error::HandlerFailed {
                    message: panic.to_string(),
                })
            });
    if let Some(error) = reply.error() {
        eprintln!("callback answered {}: {error}", reply.status_code());
    }
    let (status, content_type, body) = reply.into_parts();
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(content_type)
        .body(body)
}

/// The server on an already bound `listener`, ready to run.
///
/// # Errors
///
/// The listener cannot be used (it is closed, say).
pub fn server<H>(
    listener: TcpListener,
    verifier: Verifier,
    handler: Arc<H>,
) -> std::io::Result<Server>
where
    H: AsyncCallbackHandler + Send + 'static,
{
    let server = HttpServer::new(move || {
        let (verifier, handler) = (verifier.clone(), Arc::clone(&handler));
        App::new().configure(move |cfg| configure(cfg, verifier, handler))
    })
    .workers(2)
    .listen(listener)?
    .run();
    Ok(server)
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api_key = std::env::var("CREGIS_API_KEY").unwrap_or_else(|_| {
        eprintln!("warning: CREGIS_API_KEY is not set; using the fake demo key {DEMO_API_KEY:?}");
        DEMO_API_KEY.to_owned()
    });
    let verifier = Verifier::new(api_key)?.idempotency(MemoryIdempotencyStore::default());
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 3000,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening on http://{}{ROUTE}", listener.local_addr()?);
    server(listener, verifier, Arc::new(Ledger::default()))?.await?;
    Ok(())
}
