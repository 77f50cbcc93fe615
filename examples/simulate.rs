//! Plays Cregis: builds a realistic payout callback, signs it, POSTs it, prints the reply.
//!
//! ```sh
//! cargo run --example simulate -- [URL] [--tamper] [--status N] [--amount X] [--memo M]
//!                                 [--id ID] [--cid N] [--repeat N]
//! ```
//!
//! URL defaults to the axum example's endpoint. The key comes from `CREGIS_API_KEY` (an empty
//! or padded one is refused); if it is unset, the examples' fake demo key is used, and the tool
//! says so. `--tamper` changes the amount after signing, as a forger would; `--status` picks the
//! status code, any integer (6 successful, 7 failed, 2 or 4 rejected, others undocumented);
//! `--id` the host's payout id (`third_party_id`); `--cid` Cregis's payout id, so that a later
//! run re-pushes the same fact; `--repeat` sends the callback that many times (each with a
//! fresh `nonce` and `timestamp`, as a console re-push may). Exits with 1 unless every delivery
//! was acknowledged.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::process::ExitCode;

use cregis_payout_callback::testing::CallbackBuilder;
use cregis_payout_callback::{ApiKey, Error};
use md5::{Digest, Md5};

/// The axum example's endpoint.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/cregis/payout-callback";

/// The examples' fake demo key, used when `CREGIS_API_KEY` is not set.
pub const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where to POST the callback.
    pub url: String,
    /// The payout's status code.
    pub status: i64,
    /// The amount, as decimal text.
    pub amount: String,
    /// A memo (Ton and Xrp payouts carry one).
    pub memo: Option<String>,
    /// The host's id of the payout; derived from `cid` if `None`.
    pub third_party_id: Option<String>,
    /// Cregis's id of the payout; random if `None`.
    pub cid: Option<i64>,
    /// How many times to send it.
    pub repeat: u32,
    /// Change the amount after signing.
    pub tamper: bool,
}

impl Options {
    /// Reads the command line (without the program name).
    ///
    /// # Errors
    ///
    /// An unknown flag, a flag without its value, or a value that is not a number.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            url: DEFAULT_URL.to_owned(),
            status: 6,
            amount: "1.1".to_owned(),
            memo: None,
            third_party_id: None,
            cid: None,
            repeat: 1,
            tamper: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value =
                |name: &str| args.next().cloned().ok_or(format!("{name} needs a value"));
            let number = |name: &str, text: String| {
                text.parse::<i64>()
                    .map_err(|_| format!("{name} needs an integer, not {text:?}"))
            };
            match arg.as_str() {
                "--" => {}
                "--tamper" => options.tamper = true,
                "--status" => options.status = number("--status", value("--status")?)?,
                "--amount" => options.amount = value("--amount")?,
                "--memo" => options.memo = Some(value("--memo")?),
                "--id" => options.third_party_id = Some(value("--id")?),
                "--cid" => options.cid = Some(number("--cid", value("--cid")?)?),
                "--repeat" => {
                    let n = number("--repeat", value("--repeat")?)?;
                    options.repeat = u32::try_from(n)
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--repeat needs a count of at least 1")?;
                }
                flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
                url => url.clone_into(&mut options.url),
            }
        }
        Ok(options)
    }

    /// The same options with `cid` fixed (drawn at random if unset), so that every delivery
    /// of this run reports the same fact.
    #[must_use]
    pub fn with_fixed_cid(&self) -> Options {
        let cid = self.cid.unwrap_or_else(|| {
            let random = RandomState::new().hash_one("cid") % 1_000_000_000;
            1391751691788288 + i64::try_from(random).unwrap_or(0)
        });
        Options {
            cid: Some(cid),
            ..self.clone()
        }
    }
}

/// The API key and what to tell the user about it: `CREGIS_API_KEY`, or the demo key.
///
/// # Errors
///
/// `CREGIS_API_KEY` is empty or has whitespace around it (a newline from a file, say).
pub fn api_key(from_env: Option<String>) -> Result<(ApiKey, String), String> {
    let (key, about) = match from_env {
        Some(key) => (key, "signing with the key in CREGIS_API_KEY".to_owned()),
        None => (
            DEMO_API_KEY.to_owned(),
            format!(
                "CREGIS_API_KEY is not set: signing with the examples' fake demo key \
                 {DEMO_API_KEY:?} (set CREGIS_API_KEY=<your key> to sign with yours)"
            ),
        ),
    };
    let key = ApiKey::new(key).map_err(|e| format!("CREGIS_API_KEY is unusable: {e}"))?;
    Ok((key, about))
}

/// The callback `options` describe. Its content depends on `cid` alone (the transaction hash
/// too), so that sending the same `cid` again re-pushes the same fact; `nonce` and
/// `timestamp` are fresh.
pub fn callback(options: &Options) -> CallbackBuilder {
    let cid = options.cid.unwrap_or(1391751691788288);
    let third_party_id = options
        .third_party_id
        .clone()
        .unwrap_or_else(|| format!("order-{}", cid % 100_000));
    let mut builder = CallbackBuilder::new()
        .cid(cid)
        .amount(&options.amount)
        .third_party_id(&third_party_id)
        .status_code(options.status);
    builder = if matches!(options.status, 6 | 7) {
        let txid = |n: u8| hex::encode(Md5::digest(format!("txid-{n}-{cid}")));
        builder.txid(&format!("{}{}", txid(1), txid(2)))
    } else {
        // No transaction was broadcast.
        builder
            .remove("txid")
            .remove("block_height")
            .remove("block_time")
    };
    if let Some(memo) = &options.memo {
        builder = builder.memo(memo);
    }
    builder
}

/// A signed callback body for `options` (tampered after signing if asked).
///
/// # Errors
///
/// A field is not valid JSON (the body cannot be signed).
pub fn build_body(options: &Options, api_key: &ApiKey) -> Result<String, Error> {
    let builder = callback(options);
    let sign = builder.sign(api_key)?;
    Ok(if options.tamper {
        builder.amount("1000000").body_with_sign(&sign)
    } else {
        builder.body_with_sign(&sign)
    })
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

/// Whether a reply acknowledges the delivery.
pub fn acknowledged(status: u16, body: &str) -> bool {
    status == 200 && body == "success"
}

/// Sends the callback `options.repeat` times, printing each body and reply; returns the
/// replies' statuses and bodies.
///
/// # Errors
///
/// The body could not be signed, or a request could not be sent.
pub async fn run(
    options: &Options,
    api_key: &ApiKey,
) -> Result<Vec<(u16, String)>, Box<dyn std::error::Error>> {
    let options = options.with_fixed_cid();
    let mut replies = Vec::new();
    for _ in 0..options.repeat {
        let body = build_body(&options, api_key)?;
        let tampered = if options.tamper {
            " (tampered after signing)"
        } else {
            ""
        };
        println!("POST {}{tampered}\n{body}", options.url);
        let (status, reply) = deliver(&options.url, body).await?;
        let verdict = if acknowledged(status, &reply) {
            "acknowledged"
        } else {
            "refused"
        };
        println!("reply: {status} {reply} ({verdict})");
        replies.push((status, reply));
    }
    Ok(replies)
}

/// The whole tool: reads `args`, signs with `key_from_env` (or the demo key, saying so), sends,
/// and returns the process's exit status: 0 if every delivery was acknowledged, else 1.
///
/// # Errors
///
/// The command line or the key is wrong, or a request could not be sent.
pub async fn simulate(
    args: &[String],
    key_from_env: Option<String>,
) -> Result<u8, Box<dyn std::error::Error>> {
    let options = Options::parse(args)?;
    let (api_key, about_key) = api_key(key_from_env)?;
    eprintln!("{about_key}");
    let replies = run(&options, &api_key).await?;
    let refused = replies.iter().filter(|(s, b)| !acknowledged(*s, b)).count();
    if refused == 0 {
        return Ok(0);
    }
    eprintln!(
        "{refused} of {} deliveries were not acknowledged",
        replies.len()
    );
    Ok(1)
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = simulate(&args, std::env::var("CREGIS_API_KEY").ok()).await?;
    Ok(ExitCode::from(status))
}
