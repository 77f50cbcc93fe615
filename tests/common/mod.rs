//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use cregis_payout_callback::{ApiKey, testing::CallbackBuilder};
use md5::{Digest, Md5};

/// An obviously fake API key, as text (for the independent oracle).
pub const KEY: &str = "fake-test-key-not-a-secret";

/// [`KEY`] as an [`ApiKey`].
#[track_caller]
pub fn key() -> ApiKey {
    api_key(KEY)
}

/// `text` as an [`ApiKey`]; panics on an empty or padded key (a test's own mistake).
#[track_caller]
pub fn api_key(text: &str) -> ApiKey {
    ApiKey::new(text).expect("a test key is neither empty nor padded")
}

/// The fields of the documented callback example (status 0), without its `sign`, as raw JSON.
pub const DOC_EXAMPLE: &[(&str, &str)] = &[
    ("pid", "1382528827416576"),
    ("cid", "1391751691788288"),
    ("address", r#""TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS""#),
    ("chain_id", r#""195""#),
    ("token_id", r#""195""#),
    ("currency", r#""TRX""#),
    ("amount", r#""1.1""#),
    ("third_party_id", r#""1e0fb3a0a9454ad8928d26b592e8b3c7""#),
    ("remark", r#""payout""#),
    ("status", "0"),
    (
        "txid",
        r#""6dd05b0972075542219a3fcc116c58feaf9480f1f698cc46c4367ded83955cfd""#,
    ),
    ("block_height", r#""34527604""#),
    ("block_time", "1686814482000"),
    ("nonce", r#""ubqso3""#),
    ("timestamp", "1687850657960"),
];

/// The documented example with `status` replaced.
pub fn example_with_status(status: &str) -> Vec<(&'static str, String)> {
    DOC_EXAMPLE
        .iter()
        .map(|&(k, v)| {
            (
                k,
                if k == "status" {
                    status.to_owned()
                } else {
                    v.to_owned()
                },
            )
        })
        .collect()
}

/// An independent oracle for Cregis's signature over `(key, raw JSON value)` pairs, written
/// straight from SPEC.md: drop `sign`, `null` and `""`, sort by key bytes, concatenate, MD5.
#[track_caller]
pub fn oracle_sign<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], api_key: &str) -> String {
    let mut kept: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.as_ref() != "sign")
        .filter_map(|(k, v)| {
            let raw = v.as_ref().trim();
            let text = if raw.starts_with('"') {
                serde_json::from_str::<String>(raw).expect("valid JSON string")
            } else if raw == "null" {
                return None;
            } else {
                raw.to_owned()
            };
            (!text.is_empty()).then(|| (k.as_ref().to_owned(), text))
        })
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = api_key.to_owned();
    for (k, v) in kept {
        text.push_str(&k);
        text.push_str(&v);
    }
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A JSON object body from `(key, raw JSON value)` pairs, in the order given.
pub fn body_of<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::to_string(k.as_ref()).unwrap(),
                v.as_ref()
            )
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The crate's test kit holding `(key, raw JSON value)` pairs (documented fields in their
/// documented order, others in the order given).
pub fn builder_of<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> CallbackBuilder {
    pairs
        .iter()
        .fold(CallbackBuilder::empty(), |builder, (k, v)| {
            builder.raw(k.as_ref(), v.as_ref())
        })
}

/// `pairs` as a body signed with `api_key`, made with the crate's public test kit.
#[track_caller]
pub fn signed_body<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], api_key: &str) -> String {
    builder_of(pairs)
        .body(&self::api_key(api_key))
        .expect("the test kit signs the pairs")
}

/// The body of `pairs` exactly in the order given (repeated keys too), followed by a `sign`
/// made with the independent [`oracle_sign`]: for the tests that check the crate's signature
/// against a reference, or that need a body the test kit cannot make.
#[track_caller]
pub fn oracle_signed_body<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)], api_key: &str) -> String {
    let sign = oracle_sign(pairs, api_key);
    let mut all = owned(pairs);
    all.push(("sign".to_owned(), format!("\"{sign}\"")));
    body_of(&all)
}

/// The documented example, re-signed with [`KEY`].
pub fn signed_example() -> String {
    signed_body(DOC_EXAMPLE, KEY)
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the behaviour tests (raw_body, bad_input, reply, callback, secrets,
// properties). The helpers above are unchanged.
// ---------------------------------------------------------------------------------------------

/// Asserts that `reply` acknowledges a delivery handled just now: 200 `success`, no error
/// to log, not a duplicate.
#[track_caller]
pub fn assert_handled(reply: &cregis_payout_callback::Reply) {
    assert_eq!(
        (
            reply.status_code(),
            reply.body(),
            reply.error(),
            reply.is_duplicate()
        ),
        (200, "success", None, false),
        "{reply:?}"
    );
}

/// A verifier for [`KEY`] with default settings.
#[track_caller]
pub fn verifier() -> cregis_payout_callback::Verifier {
    cregis_payout_callback::Verifier::new(key())
}

/// Owned copies of `(key, raw JSON value)` pairs, ready to edit.
pub fn owned<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect()
}

/// `pairs` with `key` set to the raw JSON `raw`: replaced in place if present, else appended.
pub fn with_field<K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    key: &str,
    raw: &str,
) -> Vec<(String, String)> {
    let mut out = owned(pairs);
    match out.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => raw.clone_into(&mut entry.1),
        None => out.push((key.to_owned(), raw.to_owned())),
    }
    out
}

/// `pairs` without any entry for `key`.
pub fn without_field<K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    key: &str,
) -> Vec<(String, String)> {
    owned(pairs).into_iter().filter(|(k, _)| k != key).collect()
}

/// `pairs` followed by a correct `sign` made with `api_key` (as pairs, so that the signed
/// callback can still be edited before it becomes a body).
#[track_caller]
pub fn signed_pairs<K: AsRef<str>, V: AsRef<str>>(
    pairs: &[(K, V)],
    api_key: &str,
) -> Vec<(String, String)> {
    let sign = oracle_sign(pairs, api_key);
    let mut out = owned(pairs);
    out.push(("sign".to_owned(), format!("\"{sign}\"")));
    out
}

/// The body of `pairs` written with unusual but legal whitespace: leading and trailing blank
/// lines, tabs, spaces around `:` and `,`, one field per line (CRLF line ends).
pub fn spaced_body_of<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "\t{} \t:\r\n  {} ",
                serde_json::to_string(k.as_ref()).unwrap(),
                v.as_ref()
            )
        })
        .collect();
    format!(" \r\n{{\r\n{}\r\n}}\n\t ", fields.join(" ,\r\n"))
}

/// Runs `future` to its end on a fresh current-thread runtime (timers on), for tests of the
/// async entry points that are not `#[tokio::test]`s.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A two-worker runtime, timers and I/O on: what a test's server (a child process's, or a
/// thread's) runs on.
pub fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Payout `cid`'s callback saying `status`, its `push`th push (a fresh nonce and timestamp),
/// with an empty `memo` and an unknown field, as Cregis sends them.
pub fn final_body(cid: i64, status: cregis_payout_callback::CallbackStatus, push: i64) -> String {
    CallbackBuilder::new()
        .cid(cid)
        .third_party_id(&format!("order-{cid}"))
        .status(status)
        .memo("")
        .raw("fee", r#""0.000001""#)
        .nonce(&format!("{:06}", cid * 31 + push))
        .timestamp(1_687_850_657_960 + push)
        .body(&key())
        .unwrap()
}

/// Cregis's final statuses exclude each other, through `process` (a verifier with a store and
/// a handler): payout 1's 6 is handled; its 7 is refused with 409 `ConflictingFinalStatus`
/// naming the 6; the 6 re-pushed is a duplicate. Then payouts 100 to 119 get a 6 and a 7 at
/// once: one of each pair is handled, the other refused. The caller checks that its handler
/// ran 21 times.
pub async fn final_statuses_exclude_each_other<F, Fut>(process: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = cregis_payout_callback::Reply>,
{
    use cregis_payout_callback::{CallbackStatus, Error};
    let (paid, failed) = (
        CallbackStatus::TransactionSuccessful,
        CallbackStatus::TransactionFailed,
    );
    assert_handled(&process(final_body(1, paid, 0)).await);
    let refused = process(final_body(1, failed, 1)).await;
    assert_eq!(refused.status_code(), 409, "{refused:?}");
    assert!(
        matches!(
            refused.error(),
            Some(Error::ConflictingFinalStatus { recorded, key })
                if *recorded == paid && key.fact.status() == Some(failed)
        ),
        "{refused:?}"
    );
    assert!(process(final_body(1, paid, 2)).await.is_duplicate());
    for cid in 100..120 {
        let (a, b) = tokio::join!(
            process(final_body(cid, paid, 0)),
            process(final_body(cid, failed, 0))
        );
        let mut codes = [a.status_code(), b.status_code()];
        codes.sort_unstable();
        assert_eq!(codes, [200, 409], "{a:?} {b:?}");
    }
}
