//! The inbox routes of both adapters over real HTTP on loopback: acknowledged once recorded,
//! duplicates acknowledged without a second entry, bad deliveries refused and never recorded.
#![cfg(all(feature = "sqlite", feature = "axum", feature = "actix-web"))]

mod common;
mod e2e;

use std::net::{SocketAddr, TcpListener};

use common::{DOC_EXAMPLE, KEY, signed_body};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::Verifier;
use cregis_payout_callback::inbox::{EntryState, Inbox, SqliteInbox};
use cregis_payout_callback::verifier::DEFAULT_MAX_BODY_BYTES;
use e2e::{checks, post, send_part_and_hang_up};

const ROUTE: &str = "/cregis/payout-callback";

async fn inbox() -> (SqliteInbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inbox = SqliteInbox::open(dir.path().join("inbox.db"))
        .await
        .unwrap();
    (inbox, dir)
}

/// What every inbox route must do, against a server at `addr`.
async fn the_route_records_what_it_acknowledges(addr: SocketAddr, inbox: &SqliteInbox) {
    let url = format!("http://{addr}{ROUTE}");
    let body = signed_body(DOC_EXAMPLE, KEY);
    for _ in 0..2 {
        let answer = post(&url, body.clone()).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    }
    checks::bad_deliveries_are_refused(addr, ROUTE, DEFAULT_MAX_BODY_BYTES).await;
    send_part_and_hang_up(addr, ROUTE, body.len(), &body.as_bytes()[..100]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let entries = inbox.list(&[EntryState::Pending]).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let taken = inbox
        .take(CallbackKind::Payout, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.body, body.as_bytes());
}

#[tokio::test]
async fn the_axum_inbox_route() {
    let (inbox, _dir) = inbox().await;
    let app = axum::Router::new().route(
        ROUTE,
        cregis_payout_callback::axum::inbox_route(Verifier::new(common::key()), inbox.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    the_route_records_what_it_acknowledges(addr, &inbox).await;
}

#[actix_web::test]
async fn the_actix_web_inbox_route() {
    let (inbox, _dir) = inbox().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (verifier, routed) = (Verifier::new(common::key()), inbox.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().route(
            ROUTE,
            cregis_payout_callback::actix_web::inbox_route(verifier.clone(), routed.clone()),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    the_route_records_what_it_acknowledges(addr, &inbox).await;
    e2e::stop_actix(handle).await;
}
