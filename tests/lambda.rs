//! The Lambda example's service, answering requests built as `lambda_http` builds them (the
//! Lambda runtime itself cannot run here): acknowledged, forged, oversized.
#![cfg(feature = "tower")]

mod common;
#[path = "../examples/lambda.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use common::{key, signed_body, signed_example};
use cregis_payout_callback::Error;
use http_body_util::BodyExt;
use lambda_http::{Body, Request};
use tower::ServiceExt;

/// Calls the example's service as `lambda_http::run` does, and returns the status and body.
async fn answer(request: Request) -> (u16, String, Option<Error>) {
    let response = example::service(key()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let error = response.extensions().get::<Error>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), error)
}

fn post(body: Body) -> Request {
    http::Request::post("/cregis/payout-callback")
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn the_lambda_service_acknowledges_refuses_forgeries_and_oversized_bodies() {
    // As API Gateway hands it over: text, or base64-decoded binary.
    for body in [
        Body::Text(signed_example()),
        Body::Binary(signed_example().into_bytes()),
    ] {
        assert_eq!(answer(post(body)).await, (200, "success".to_owned(), None));
    }
    let forged = signed_body(common::DOC_EXAMPLE, "fake-attacker-key");
    assert_eq!(
        answer(post(Body::Text(forged))).await,
        (
            401,
            "signature does not match".to_owned(),
            Some(Error::SignatureMismatch)
        )
    );
    let (status, _, error) = answer(post(Body::Binary(vec![b' '; 65 * 1024]))).await;
    assert_eq!(status, 413);
    assert!(
        matches!(error, Some(Error::BodyTooLarge { .. })),
        "{error:?}"
    );
    // Its Debug shows the kind and the body limit, never the key.
    let debug = format!("{:?}", example::service(key()));
    assert_eq!(
        debug,
        "CregisService { kind: Payout, max_body_bytes: 65536, .. }"
    );
    let (status, body, _) = answer(post(Body::Empty)).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "body is not valid json: empty body")
    );
}
