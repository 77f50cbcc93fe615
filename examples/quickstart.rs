//! Verifies a signed sample payout callback and dispatches it to a handler; no server needed.
//!
//! Run with `cargo run --example quickstart`.

use cregis_payout_callback::{PayoutCallback, Verifier, sign};
use serde_json::{Value, json};

/// An obviously fake key; a real one comes from your Cregis project settings.
const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At startup: one verifier per API key, shared by every request.
    let verifier = Verifier::new(DEMO_API_KEY)?;

    // What the host does with a verified callback.
    let handler = |callback: &PayoutCallback| -> Result<(), String> {
        println!(
            "  handler: payout {} ({} {} to {}) is now: {}{}",
            callback.third_party_id,
            callback.amount,
            callback.currency,
            callback.address,
            callback.status,
            if callback.is_final() { " (final)" } else { "" },
        );
        Ok(())
    };

    // Cregis's side: the documented example, signed with the demo key.
    let body = sample_body()?;
    println!("callback body: {body}");
    let reply = verifier.process(body.as_bytes(), &handler);
    println!("reply: {} {}", reply.status_code(), reply.body());
    assert!(reply.is_ack());

    // The same body with the amount changed after signing.
    let forged = body.replace(r#""amount":"1.1""#, r#""amount":"1000""#);
    println!("\nforged body (amount changed to 1000):");
    let reply = verifier.process(forged.as_bytes(), &handler);
    println!("reply: {} {}", reply.status_code(), reply.body());
    if let Some(error) = reply.error() {
        println!(
            "  why: {error} (authentication failure: {})",
            error.is_authentication()
        );
    }
    Ok(())
}

/// The documented callback example (which has status 0) with status 6, signed as Cregis would
/// sign it.
fn sample_body() -> Result<String, Box<dyn std::error::Error>> {
    let Value::Object(mut params) = json!({
        "pid": 1382528827416576u64,
        "cid": 1391751691788288u64,
        "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
        "chain_id": "195",
        "token_id": "195",
        "currency": "TRX",
        "amount": "1.1",
        "third_party_id": "1e0fb3a0a9454ad8928d26b592e8b3c7",
        "remark": "payout",
        "status": 6,
        "txid": "6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd",
        "block_height": "34527604",
        "block_time": 1686814482000u64,
        "nonce": "ubqso3",
        "timestamp": 1687850657960u64
    }) else {
        unreachable!("a JSON object literal")
    };
    let signature = sign(&params, DEMO_API_KEY)?;
    params.insert("sign".to_owned(), Value::String(signature));
    Ok(serde_json::to_string(&params)?)
}
