//! Signed requests to the Cregis API and their responses: the published create vectors, a
//! query checked against the independent signer in `tests/common`, the `{code, msg, data}`
//! envelope, and ids above 2^53 kept exact.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{api_key, oracle_sign};
use cregis_payout_callback::request::{
    CreatePayout, CreateWithdrawal, Created, PayoutState, QueryPayout, QueryWithdrawal,
    RawResponse, Request, RequestError, Signer,
};
use cregis_payout_callback::testing::ManualClock;
use cregis_payout_callback::{CallbackKind, CallbackStatus};
use serde_json::{Map, Value};

const PUBLISHED_KEY: &str = "f502a9ac9ca54327986f29c03b271491";
const PID: i64 = 1382528827416576;

/// The body's members but `sign` (in key order), each value as the signature reads it, and
/// its `sign`.
fn pairs(body: &str) -> (Vec<(String, String)>, String) {
    let mut map: Map<String, Value> = serde_json::from_str(body).unwrap();
    let Some(Value::String(sign)) = map.remove("sign") else {
        panic!("no sign in {body}")
    };
    let pairs = map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    (pairs, sign)
}

#[test]
fn the_published_create_vectors_are_known_answers() {
    let requests = Signer::new(api_key(PUBLISHED_KEY), PID);
    let order = CreatePayout::new(
        "195@195",
        "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
        "1.1",
        "c9231e604da54469a735af3f449c880f",
    )
    .callback_url("http://192.168.2.29:9099/callback")
    .remark("payout");
    let signed = requests.sign_with(&order, "hwlkk6", 1688004243314);
    assert_eq!(signed.sign(), "d6eef2de79e39f434a38efb910213ba6");
    assert_eq!(signed.path(), "/api/v1/payout");
    assert_eq!(
        signed.body(),
        r#"{"pid":1382528827416576,"currency":"195@195","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","third_party_id":"c9231e604da54469a735af3f449c880f","callback_url":"http://192.168.2.29:9099/callback","remark":"payout","nonce":"hwlkk6","timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#
    );
    // The page's step-by-step values: a second valid vector.
    let mut order = order;
    "19faf9d3c8f34caf926f332f3021e887".clone_into(&mut order.third_party_id);
    let signed = requests.sign_with(&order, "mb8udu", 1688003966801);
    assert_eq!(signed.sign(), "c9bae061ae3f5f8d3bfde817f6966c36");
}

#[test]
fn every_request_is_signed_as_an_independent_signer_signs_it() {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(1687850657960));
    let requests = Signer::new(api_key("fake-test-key-not-a-secret"), PID).clock(clock);
    let withdrawal = CreateWithdrawal::new(
        "144@144",
        "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY",
        "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
        "12.500000",
        "withdrawal-7",
    )
    .memo("104917")
    .callback_url("https://api.example.com/cregis/withdrawal-callback");
    let requests_to_check: [&dyn Fn() -> cregis_payout_callback::request::SignedRequest; 3] = [
        &|| {
            requests.sign(&QueryPayout {
                cid: 9007199254740993,
            })
        },
        &|| {
            requests.sign(&QueryWithdrawal {
                cid: 1391751691788288,
            })
        },
        &|| requests.sign(&withdrawal),
    ];
    for sign in requests_to_check {
        let signed = sign();
        let body = signed.body();
        let (fields, sign) = pairs(body);
        assert_eq!(signed.sign(), sign);
        assert_eq!(
            oracle_sign(&fields, "fake-test-key-not-a-secret"),
            sign,
            "{body}"
        );
        // pid, the request's own parameters, then a fresh nonce, the clock's timestamp, sign.
        assert!(body.starts_with(r#"{"pid":1382528827416576,"#), "{body}");
        let tail = format!(r#","timestamp":1687850657960,"sign":"{sign}"}}"#);
        assert!(body.ends_with(&tail), "{body}");
        let nonce = &fields.iter().find(|(k, _)| k == "nonce").unwrap().1;
        assert!(nonce.len() == 6 && nonce.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(
            body.contains(&format!(r#","nonce":"{nonce}","timestamp""#)),
            "{body}"
        );
    }
    // A cid above 2^53 is written exactly.
    let query = requests.sign(&QueryPayout {
        cid: 9007199254740993,
    });
    assert!(query.body().contains(r#""cid":9007199254740993,"#));
    assert_eq!(query.path(), "/api/v1/payout/query");
    assert_eq!(
        QueryWithdrawal { cid: 1 }.path(),
        "/api/v1/sub_address_withdrawal/info"
    );
    assert_eq!(withdrawal.path(), "/api/v1/sub_address_withdrawal");
    // Two requests never share a nonce.
    let again = requests.sign(&QueryPayout {
        cid: 9007199254740993,
    });
    assert_ne!(pairs(query.body()).0, pairs(again.body()).0);
    // The key is in no Debug output.
    let debug = format!("{requests:?} {query:?}");
    assert!(
        !debug.contains("fake-test-key") && !debug.contains(query.sign()),
        "{debug}"
    );
}

fn ok(data: &str) -> RawResponse {
    RawResponse {
        status: 200,
        body: format!(r#"{{"code":"00000","msg":"ok","data":{data}}}"#),
    }
}

#[test]
fn a_create_response_gives_the_cid_exactly_or_a_typed_error() {
    for data in [
        r#"{"cid":9007199254740993}"#,
        r#"{"cid":"9007199254740993"}"#,
    ] {
        assert_eq!(
            Created::from_response(&ok(data)).unwrap().cid,
            9007199254740993
        );
    }
    let refused = RawResponse {
        status: 200,
        body: r#"{"code":"10004","msg":"insufficient balance","data":null}"#.to_owned(),
    };
    let error = Created::from_response(&refused).unwrap_err();
    let RequestError::Cregis { code, msg } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("10004", "insufficient balance")
    );
    assert_eq!(
        error.to_string(),
        "cregis refused the request: 10004 insufficient balance"
    );
    for (response, reason) in [
        (
            RawResponse {
                status: 502,
                body: "<html>bad gateway</html>".to_owned(),
            },
            "cregis answered http 502",
        ),
        (
            RawResponse {
                status: 200,
                body: "not json".to_owned(),
            },
            "the response is not as documented: the answer is not json (line 1, column 2)",
        ),
        (
            RawResponse {
                status: 200,
                body: r#"{"code":0,"msg":"ok","data":{"cid":1}}"#.to_owned(),
            },
            "the response is not as documented: code is 0, not a string",
        ),
        // An echoed value is cut to a short excerpt.
        (
            RawResponse {
                status: 200,
                body: format!(r#"{{"code":{{"x":"{}"}},"data":{{}}}}"#, "a".repeat(500)),
            },
            r#"the response is not as documented: code is {"x":"aaaaaaaaaaaaaaaaaaaaaaaaaa..., not a string"#,
        ),
        // Cregis's error envelope on a non-200 answer is kept.
        (
            RawResponse {
                status: 500,
                body: r#"{"code":"99999","msg":"system busy","data":null}"#.to_owned(),
            },
            "cregis answered http 500: 99999 system busy",
        ),
        (
            ok("null"),
            "the response is not as documented: data is not a json object (line 1, column 4)",
        ),
        (
            ok(r#"{"cid":1.5}"#),
            "the response is not as documented: cid is not an integer",
        ),
        (
            ok(r#"{"cid":9223372036854775808}"#),
            "the response is not as documented: cid is not an integer",
        ),
    ] {
        assert_eq!(
            Created::from_response(&response).unwrap_err().to_string(),
            reason
        );
    }
}

/// A query answer's `data`, as Cregis documents it, with `to` as the recipient's field name.
fn query_data(to: &str, status: &str) -> String {
    format!(
        r#"{{"pid":1382528827416576,"chain_id":"144","token_id":"144","currency":"XRP",
        "from_address":"rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY","{to}":"rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",
        "amount":"12.500000","status":{status},"third_party_id":"withdrawal-7","remark":"weekly",
        "memo":"104917","txid":"C1E2E5B1DDA3AB7B5B0A1F0D5E1D8A7E4C33C1D0A4F1E2B3C4D5E6F708192A3B",
        "block_height":86403311,"block_time":"1686814482000","network_fee":"0.000012"}}"#
    )
}

#[test]
fn a_query_response_reads_the_whole_lifecycle_exactly() {
    let cid = 9007199254740993;
    let state = PayoutState::from_response(
        CallbackKind::Withdrawal,
        cid,
        &ok(&query_data("to_address", "6")),
    )
    .unwrap();
    assert_eq!(state.kind, CallbackKind::Withdrawal);
    assert_eq!((state.pid, state.cid), (PID, cid));
    assert_eq!(state.status, CallbackStatus::TransactionSuccessful);
    assert_eq!(state.to_address, "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh");
    assert_eq!(
        state.from_address.as_deref(),
        Some("rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY")
    );
    assert_eq!(state.amount, "12.500000");
    assert_eq!(state.memo.as_deref(), Some("104917"));
    // A number where text is documented keeps its digits; an integer sent as a string reads.
    assert_eq!(state.block_height.as_deref(), Some("86403311"));
    assert_eq!(state.block_time, Some(1686814482000));

    // Every code 0 to 7, the wallet payout's `address`, the status sent as a string.
    for code in 0..8 {
        let data = query_data("address", &format!(r#""{code}""#));
        let state = PayoutState::from_response(CallbackKind::Payout, cid, &ok(&data)).unwrap();
        assert_eq!(state.status.code(), code);
        // Final: the four a callback reports, and 3 (cancelled), for which none comes.
        assert_eq!(state.status.is_final(), matches!(code, 2 | 3 | 4 | 6 | 7));
    }
    for (kind, data, reason) in [
        (
            CallbackKind::Payout,
            query_data("address", "9"),
            "status 9 is not documented",
        ),
        // A wallet payout's answer read as a sub-address one: no `to_address`.
        (
            CallbackKind::Withdrawal,
            query_data("address", "6"),
            "no to_address",
        ),
        (
            CallbackKind::Payout,
            query_data("address", "6").replace(r#""amount":"12.500000","#, ""),
            "no amount",
        ),
    ] {
        let error = PayoutState::from_response(kind, cid, &ok(&data)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("the response is not as documented: {reason}")
        );
    }
    let not_found = RawResponse {
        status: 200,
        body: r#"{"code":"20004","msg":"order not found"}"#.to_owned(),
    };
    assert!(matches!(
        PayoutState::from_response(CallbackKind::Payout, cid, &not_found),
        Err(RequestError::Cregis { code, .. }) if code == "20004"
    ));
}

#[test]
fn query_numbers_keep_their_exact_text_never_a_float() {
    // 2^53 + 1 and a decimal longer than an f64 holds, sent as JSON numbers.
    let data = query_data("address", "6")
        .replace(
            r#""amount":"12.500000""#,
            r#""amount":12.500000000000000000000001"#,
        )
        .replace(
            r#""block_height":86403311"#,
            r#""block_height":9007199254740993"#,
        )
        .replace(
            r#""block_time":"1686814482000""#,
            r#""block_time":9007199254740993"#,
        );
    let state = PayoutState::from_response(CallbackKind::Payout, 7, &ok(&data)).unwrap();
    assert_eq!(state.amount, "12.500000000000000000000001");
    assert_eq!(state.block_height.as_deref(), Some("9007199254740993"));
    assert_eq!(state.block_time, Some(9007199254740993));
    // A number in exponent form is kept as written, never rewritten.
    let data = query_data("address", "6").replace(r#""amount":"12.500000""#, r#""amount":1.25e1"#);
    let state = PayoutState::from_response(CallbackKind::Payout, 7, &ok(&data)).unwrap();
    assert_eq!(state.amount, "1.25e1");
}

#[tokio::test]
async fn asking_for_an_approval_is_a_usage_error_and_sends_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&sent);
    let transport = move |_: &'static str, _: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, std::io::Error>(RawResponse {
                status: 200,
                body: String::new(),
            })
        }
    };
    let client = cregis_payout_callback::request::Client::new(
        cregis_payout_callback::request::Signer::new(common::key(), PID),
        transport,
    );
    let error = client.query(CallbackKind::Approval, 1).await.unwrap_err();
    assert!(
        matches!(
            error,
            RequestError::NoQuery {
                kind: CallbackKind::Approval
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "approval requests have no query: only payouts and withdrawals are asked about"
    );
    assert_eq!(sent.load(Ordering::SeqCst), 0);
}
