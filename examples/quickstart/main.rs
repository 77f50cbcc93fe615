//! Verifies a signed sample payout callback and dispatches it to a handler; no server needed.
//!
//! Run with `cargo run --example quickstart`.

use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, PayoutCallback, Verifier};

/// An obviously fake key; a real one comes from your Cregis project settings.
const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At startup: one verifier per API key, shared by every request.
    let key = ApiKey::new(DEMO_API_KEY)?;
    let verifier = Verifier::new(key.clone());

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

    // Cregis's side: a successful payout callback in the documented field order (the crate's
    // test kit), signed with the demo key.
    let body = CallbackBuilder::new().body(&key)?;
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
