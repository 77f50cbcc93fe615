//! Plays Cregis: builds a realistic payout callback, signs it, POSTs it, prints the reply.
//!
//! ```sh
//! cargo run --example simulate -- [URL] [--tamper] [--status N] [--amount X] [--memo M] [--id ID]
//! ```
//!
//! URL defaults to the axum example's endpoint. The key comes from `CREGIS_API_KEY` (the
//! examples' fake demo key if unset). `--tamper` changes the amount after signing, as a forger
//! would; `--status` picks the outcome (6 successful, 7 failed, 2 or 4 rejected); `--id` the
//! host's payout id (`third_party_id`, random by default).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use cregis_payout_callback::{CallbackStatus, sign};
use serde_json::{Value, json};

/// The axum example's endpoint.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/cregis/payout-callback";

/// The examples' fake demo key, used when `CREGIS_API_KEY` is not set.
pub const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Where to POST the callback.
    pub url: String,
    /// The payout's status.
    pub status: CallbackStatus,
    /// The amount, as decimal text.
    pub amount: String,
    /// A memo (Ton and Xrp payouts carry one).
    pub memo: Option<String>,
    /// The host's id of the payout; random if `None`.
    pub third_party_id: Option<String>,
    /// Change the amount after signing.
    pub tamper: bool,
}

impl Options {
    /// Reads the command line (without the program name).
    ///
    /// # Errors
    ///
    /// An unknown flag, a flag without its value, or an undocumented status.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            url: DEFAULT_URL.to_owned(),
            status: CallbackStatus::TransactionSuccessful,
            amount: "1.1".to_owned(),
            memo: None,
            third_party_id: None,
            tamper: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().cloned().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--" => {}
                "--tamper" => options.tamper = true,
                "--status" => {
                    let code = value("--status")?;
                    let code: i32 = code.parse().map_err(|_| format!("bad status {code:?}"))?;
                    options.status = CallbackStatus::try_from(code).map_err(|e| e.to_string())?;
                }
                "--amount" => options.amount = value("--amount")?,
                "--memo" => options.memo = Some(value("--memo")?),
                "--id" => options.third_party_id = Some(value("--id")?),
                flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
                url => url.clone_into(&mut options.url),
            }
        }
        Ok(options)
    }
}

/// A random-enough number for ids and nonces, from the standard library's hasher keys.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A signed callback body as Cregis would send it for `options` (tampered after signing if
/// asked).
///
/// # Errors
///
/// The key is empty, or the clock is before 1970.
pub fn build_body(options: &Options, api_key: &str) -> Result<String, Box<dyn std::error::Error>> {
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let nonce: String = format!("{:x}", random()).chars().take(6).collect();
    let Value::Object(mut params) = json!({
        "pid": 1382528827416576u64,
        "cid": 1391751691788288u64 + random() % 1_000_000,
        "chain_id": "195",
        "token_id": "195",
        "currency": "TRX",
        "address": "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
        "amount": options.amount,
        "third_party_id": options
            .third_party_id
            .clone()
            .unwrap_or_else(|| format!("order-{}", random() % 100_000)),
        "remark": "payout",
        "status": options.status.code(),
        "nonce": nonce,
        "timestamp": now_ms,
    }) else {
        unreachable!("a JSON object literal")
    };
    if matches!(
        options.status,
        CallbackStatus::TransactionSuccessful | CallbackStatus::TransactionFailed
    ) {
        let txid = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            random(),
            random(),
            random(),
            random()
        );
        params.insert("txid".into(), txid.into());
        params.insert("block_height".into(), "34527604".into());
        params.insert("block_time".into(), (now_ms - 3_000).into());
    }
    if let Some(memo) = &options.memo {
        params.insert("memo".into(), memo.clone().into());
    }
    let signature = sign(&params, api_key)?;
    params.insert("sign".into(), signature.into());
    if options.tamper {
        params.insert("amount".into(), "1000000".into());
    }
    Ok(serde_json::to_string(&params)?)
}

/// POSTs `body` to `url` and returns the reply's status and body.
///
/// # Errors
///
/// The request could not be sent or the reply not read.
pub async fn deliver(url: &str, body: String) -> Result<(u16, String), reqwest::Error> {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = Options::parse(&args)?;
    let api_key = std::env::var("CREGIS_API_KEY").unwrap_or_else(|_| DEMO_API_KEY.to_owned());
    let body = build_body(&options, &api_key)?;
    println!(
        "POST {}{}",
        options.url,
        if options.tamper {
            " (tampered after signing)"
        } else {
            ""
        }
    );
    println!("{body}");
    let (status, reply) = deliver(&options.url, body).await?;
    let verdict = if status == 200 && reply == "success" {
        "acknowledged"
    } else {
        "refused"
    };
    println!("reply: {status} {reply} ({verdict})");
    Ok(())
}
