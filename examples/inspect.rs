//! Explains why a callback's signature does or does not match.
//!
//! ```sh
//! CREGIS_API_KEY=... cargo run --example inspect -- callback.json
//! CREGIS_API_KEY=... cargo run --example inspect -- --sign < callback.json > signed.json
//! ```
//!
//! Reads a callback body from a file (or standard input) and the key from `CREGIS_API_KEY`
//! (never from an argument, which would land in shell history and process lists). Prints
//! whether it verifies, the exact text that is signed (the key shown as `<api-key>`), the
//! fields left out and why, and the received and expected `sign`. With `--sign`, prints only
//! the body, correctly signed.
//!
//! This is an operator's tool: it prints the expected signature, which a server must never do.

use std::io::{self, Read, Write};

use cregis_payout_callback::signature::{SigningText, sign_body};
use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, Error, Verifier};

/// Writes the explanation of `body` to `out`; returns whether the body verifies.
///
/// # Errors
///
/// Writing to `out` failed.
pub fn explain(body: &[u8], api_key: &ApiKey, out: &mut impl Write) -> io::Result<bool> {
    let verdict = Verifier::new(api_key.clone()).verify(body);
    match &verdict {
        Ok(_) => writeln!(out, "verifies: yes")?,
        Err(e) => writeln!(out, "verifies: no ({e})")?,
    }
    let signing = match SigningText::of_body(body) {
        Ok(signing) => signing,
        Err(e) => {
            writeln!(out, "the body cannot be signed at all: {e}")?;
            return Ok(false);
        }
    };
    writeln!(out, "signed text: <api-key>{}", signing.text)?;
    if signing.omitted.is_empty() {
        writeln!(out, "left out: nothing")?;
    }
    for (key, why) in &signing.omitted {
        writeln!(out, "left out: {key:?} ({why})")?;
    }
    let expected = match sign_body(body, api_key) {
        Ok(expected) => expected,
        Err(e) => {
            writeln!(out, "cannot sign: {e}")?;
            return Ok(false);
        }
    };
    writeln!(
        out,
        "sign received: {}",
        signing.received_sign.as_deref().unwrap_or("(none)")
    )?;
    writeln!(out, "sign expected: {expected}")?;
    if verdict.is_err()
        && signing
            .received_sign
            .is_some_and(|s| s.eq_ignore_ascii_case(&expected))
    {
        writeln!(
            out,
            "note: the sign matches, so the body fails for another reason above"
        )?;
    }
    Ok(verdict.is_ok())
}

/// `body` with its `sign` replaced by the correct one: every other field as written (numbers
/// keep their exact text), in the same order, `sign` last.
///
/// # Errors
///
/// The body is not a flat JSON object with each key once.
pub fn signed(body: &[u8], api_key: &ApiKey) -> Result<String, Error> {
    CallbackBuilder::from_body(body)?.body(api_key)
}

/// The key from `CREGIS_API_KEY` (`None` if unset), or what to tell the operator.
///
/// # Errors
///
/// The variable is unset, or its key is empty or has whitespace around it.
pub fn api_key(from_env: Option<String>) -> Result<ApiKey, String> {
    let key = from_env
        .ok_or("set CREGIS_API_KEY to the project's API key (never pass it as an argument)")?;
    ApiKey::new(key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sign_it = false;
    let mut path = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--sign" => sign_it = true,
            "--" => {}
            _ => path = Some(arg),
        }
    }
    let key = api_key(std::env::var("CREGIS_API_KEY").ok())?;
    let body = if let Some(path) = path {
        std::fs::read(path)?
    } else {
        let mut body = Vec::new();
        io::stdin().read_to_end(&mut body)?;
        body
    };
    if sign_it {
        println!("{}", signed(&body, &key)?);
        return Ok(());
    }
    let verifies = explain(&body, &key, &mut io::stdout().lock())?;
    std::process::exit(i32::from(!verifies));
}
