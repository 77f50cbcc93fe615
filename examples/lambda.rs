//! A Cregis callback endpoint on AWS Lambda (`lambda_http`, behind an API Gateway HTTP API
//! or a function URL), through the crate's `tower::Service`: the whole handler is
//! `lambda_http::run(service)`.
//!
//! ```sh
//! cargo build --example lambda --features tower   # deploy with cargo-lambda
//! ```
//!
//! The Lambda runtime cannot run here; `tests/lambda.rs` sends the service requests built as
//! `lambda_http` builds them. Keep the idempotency store outside the function (a database):
//! a Lambda instance's memory is gone with it.

use std::convert::Infallible;

use cregis_payout_callback::service::CregisService;
use cregis_payout_callback::{ApiKey, AsyncCallbackHandler, PayoutCallback, Verifier};

/// The demo's business logic: logs each payout's new status.
#[derive(Debug, Clone, Copy)]
pub struct Logger;

impl AsyncCallbackHandler for Logger {
    type Error = Infallible;

    async fn handle(&self, callback: &PayoutCallback) -> Result<(), Infallible> {
        eprintln!(
            "payout {} is now {}",
            callback.third_party_id, callback.status
        );
        Ok(())
    }
}

/// The function's service, for the key `api_key`.
pub fn service(api_key: ApiKey) -> CregisService {
    CregisService::callbacks(Verifier::new(api_key), Logger)
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // Never a default key: a function deployed without one would accept forgeries.
    let api_key = std::env::var("CREGIS_API_KEY").map_err(|_| "set CREGIS_API_KEY")?;
    let api_key = ApiKey::new(api_key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    lambda_http::run(service(api_key)).await
}
