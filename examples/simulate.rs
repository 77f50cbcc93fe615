//! Plays Cregis: builds a realistic payout callback, signs it, POSTs it, prints the reply.
//!
//! ```sh
//! cargo run --example simulate -- [URL] [--kind K] [--tamper] [--status N] [--amount X]
//!                                 [--memo M] [--id ID] [--cid N] [--repeat N]
//! ```
//!
//! `--kind` is `payout` (the wallet payout callback, the default), `withdrawal` (the
//! sub-address payout callback) or `approval` (the external verification request, which has
//! no status: a reply `ok` approves, anything else refuses). URL defaults to the axum
//! example's endpoint for `payout`, and to the same host's `/cregis/withdrawal-callback` or
//! `/cregis/payout-approval` for the other kinds.
//!
//! `--via-cregis CREGIS_URL` plays the host's create call instead: it creates `--repeat N`
//! payouts (of `--amount`, kind `payout` or `withdrawal`) at a Cregis, normally the fake one
//! (`cargo run --example fake_cregis --features axum`), with URL as their `callback_url`, and
//! prints each `cid`; the fake then sends their callbacks (or drops them, as it was told). The key comes from `CREGIS_API_KEY` (an empty
//! or padded one is refused); if it is unset, the examples' fake demo key is used, and the tool
//! says so. `--tamper` changes the amount after signing, as a forger would; `--status` picks the
//! status code, any integer (6 successful, 7 failed, 2 or 4 rejected, others undocumented);
//! `--id` the host's payout id (`third_party_id`); `--cid` Cregis's payout id, so that a later
//! run re-pushes the same fact; `--repeat` sends the callback that many times (each with a
//! fresh `nonce` and `timestamp`, as a console re-push may). Exits with 1 unless every delivery
//! was acknowledged (for `approval`: approved).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::process::ExitCode;

use cregis_payout_callback::request::{
    Client, CreatePayout, CreateWithdrawal, RawResponse, Signer,
};
use cregis_payout_callback::testing::{ApprovalBuilder, CallbackBuilder, WithdrawalBuilder};
use cregis_payout_callback::{ApiKey, CallbackKind, Error};
use md5::{Digest, Md5};

/// The axum example's endpoint.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000/cregis/payout-callback";

/// The default URL for `kind`: [`DEFAULT_URL`]'s host, each kind at a path of its own (a
/// route reads one kind and refuses the others).
pub fn default_url(kind: CallbackKind) -> String {
    let path = match kind {
        CallbackKind::Withdrawal => "/cregis/withdrawal-callback",
        CallbackKind::Approval => "/cregis/payout-approval",
        _ => return DEFAULT_URL.to_owned(),
    };
    format!("http://127.0.0.1:3000{path}")
}

/// The examples' fake demo key, used when `CREGIS_API_KEY` is not set.
pub const DEMO_API_KEY: &str = "fake-demo-key-0123456789abcdef";

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where to POST the callback.
    pub url: String,
    /// Which callback to send.
    pub kind: CallbackKind,
    /// The payout's status code (not sent in an approval request).
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
    /// Create the payouts at this Cregis instead of sending their callbacks.
    pub via_cregis: Option<String>,
}

impl Options {
    /// Reads the command line (without the program name).
    ///
    /// # Errors
    ///
    /// An unknown flag, a flag without its value, or a value that is not a number.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut url = None;
        let mut options = Options {
            url: String::new(),
            kind: CallbackKind::Payout,
            status: 6,
            amount: "1.1".to_owned(),
            memo: None,
            third_party_id: None,
            cid: None,
            repeat: 1,
            tamper: false,
            via_cregis: None,
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
                "--via-cregis" => options.via_cregis = Some(value("--via-cregis")?),
                "--kind" => {
                    let kind = value("--kind")?;
                    options.kind = kind.parse().map_err(|e| format!("--kind: {e}"))?;
                }
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
                given => url = Some(given.to_owned()),
            }
        }
        options.url = url.unwrap_or_else(|| default_url(options.kind));
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

/// A body being built, of one of the kinds.
#[derive(Debug, Clone)]
pub enum Draft {
    /// A wallet payout callback.
    Payout(CallbackBuilder),
    /// A sub-address payout callback.
    Withdrawal(WithdrawalBuilder),
    /// An external verification request.
    Approval(ApprovalBuilder),
}

/// Calls the same builder method, whatever the kind (the builders share their setters).
macro_rules! each {
    ($draft:expr, $builder:ident => $call:expr) => {
        match $draft {
            Draft::Payout($builder) => Draft::Payout($call),
            Draft::Withdrawal($builder) => Draft::Withdrawal($call),
            Draft::Approval($builder) => Draft::Approval($call),
        }
    };
}

/// Sets the payout notifications' fields (status and transaction); an approval has none.
macro_rules! notification {
    ($draft:expr, $builder:ident => $call:expr) => {
        match $draft {
            Draft::Payout($builder) => Draft::Payout($call),
            Draft::Withdrawal($builder) => Draft::Withdrawal($call),
            approval @ Draft::Approval(_) => approval,
        }
    };
}

impl Draft {
    /// The signature of this body with `api_key`.
    ///
    /// # Errors
    ///
    /// A field is not valid JSON.
    pub fn sign(&self, api_key: &ApiKey) -> Result<String, Error> {
        match self {
            Draft::Payout(builder) => builder.sign(api_key),
            Draft::Withdrawal(builder) => builder.sign(api_key),
            Draft::Approval(builder) => builder.sign(api_key),
        }
    }

    /// The body with `sign` as its signature.
    pub fn body_with_sign(&self, sign: &str) -> String {
        match self {
            Draft::Payout(builder) => builder.body_with_sign(sign),
            Draft::Withdrawal(builder) => builder.body_with_sign(sign),
            Draft::Approval(builder) => builder.body_with_sign(sign),
        }
    }
}

/// The callback `options` describe. Its content depends on `cid` alone (the transaction hash
/// too), so that sending the same `cid` again re-pushes the same fact; `nonce` and
/// `timestamp` are fresh.
pub fn callback(options: &Options) -> Draft {
    let cid = options.cid.unwrap_or(1391751691788288);
    let third_party_id = options
        .third_party_id
        .clone()
        .unwrap_or_else(|| format!("order-{}", cid % 100_000));
    let mut draft = match options.kind {
        CallbackKind::Withdrawal => Draft::Withdrawal(WithdrawalBuilder::new()),
        CallbackKind::Approval => Draft::Approval(ApprovalBuilder::new()),
        _ => Draft::Payout(CallbackBuilder::new()),
    };
    draft = each!(draft, b => b.cid(cid).amount(&options.amount).third_party_id(&third_party_id));
    draft = notification!(draft, b => b.status_code(options.status));
    draft = if matches!(options.status, 6 | 7) {
        let txid = |n: u8| hex::encode(Md5::digest(format!("txid-{n}-{cid}")));
        let txid = format!("{}{}", txid(1), txid(2));
        notification!(draft, b => b.txid(&txid))
    } else {
        // No transaction was broadcast.
        notification!(draft, b => b.remove("txid").remove("block_height").remove("block_time"))
    };
    if let Some(memo) = &options.memo {
        draft = each!(draft, b => b.memo(memo));
    }
    draft
}

/// A signed callback body for `options` (tampered after signing if asked).
///
/// # Errors
///
/// A field is not valid JSON (the body cannot be signed).
pub fn build_body(options: &Options, api_key: &ApiKey) -> Result<String, Error> {
    let draft = callback(options);
    let sign = draft.sign(api_key)?;
    Ok(if options.tamper {
        each!(draft, b => b.amount("1000000")).body_with_sign(&sign)
    } else {
        draft.body_with_sign(&sign)
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

/// Whether a reply acknowledges a delivery of `kind`: `success` for a payout notification,
/// `ok` (approved) for an approval request.
pub fn acknowledged(kind: CallbackKind, status: u16, body: &str) -> bool {
    let ack = if kind == CallbackKind::Approval {
        "ok"
    } else {
        "success"
    };
    status == 200 && body == ack
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
        let verdict = match (acknowledged(options.kind, status, &reply), options.kind) {
            (true, CallbackKind::Approval) => "approved",
            (true, _) => "acknowledged",
            (false, _) => "refused",
        };
        println!("reply: {status} {reply} ({verdict})");
        replies.push((status, reply));
    }
    Ok(replies)
}

/// Creates `options.repeat` payouts at the Cregis at `cregis`, with `options.url` as their
/// `callback_url`, and returns their `cid`s, printing each.
///
/// # Errors
///
/// An approval cannot be created, or a create request failed.
pub async fn create_via_cregis(
    options: &Options,
    cregis: &str,
    api_key: &ApiKey,
) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let base = cregis.trim_end_matches('/').to_owned();
    let transport = move |path: &'static str, body: String| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>(RawResponse {
                status,
                body: response.text().await?,
            })
        }
    };
    let pid = CallbackBuilder::new().callback()?.pid;
    let client = Client::new(Signer::new(api_key.clone(), pid), transport);
    let mut cids = Vec::new();
    for i in 0..options.repeat {
        let id = options
            .third_party_id
            .clone()
            .map_or_else(|| format!("order-sim-{i}"), |id| format!("{id}-{i}"));
        let created = match options.kind {
            CallbackKind::Payout => {
                let mut order = CreatePayout::new(
                    "195@195",
                    "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
                    &options.amount,
                    &id,
                )
                .callback_url(&options.url);
                order.memo.clone_from(&options.memo);
                client.create_payout(&order).await?
            }
            CallbackKind::Withdrawal => {
                let mut order = CreateWithdrawal::new(
                    "195@195",
                    "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8",
                    "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
                    &options.amount,
                    &id,
                )
                .callback_url(&options.url);
                order.memo.clone_from(&options.memo);
                client.create_withdrawal(&order).await?
            }
            _ => return Err("--via-cregis creates payouts or withdrawals, not approvals".into()),
        };
        println!("created {} {id}: cid {}", options.kind, created.cid);
        cids.push(created.cid);
    }
    Ok(cids)
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
    if let Some(cregis) = &options.via_cregis {
        create_via_cregis(&options, cregis, &api_key).await?;
        return Ok(0);
    }
    let replies = run(&options, &api_key).await?;
    let refused = replies
        .iter()
        .filter(|(s, b)| !acknowledged(options.kind, *s, b))
        .count();
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
