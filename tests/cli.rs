//! The `cregis-inbox` command line (feature `cli`) on a real SQLite inbox: what it prints,
//! what it changes, and its exit codes.

mod common;
mod faults;
mod production;

use std::process::Command;
use std::time::Duration;

use cregis_payout_callback::Verifier;
use cregis_payout_callback::inbox::{EntryState, SqliteInbox, Worker};
use serde_json::Value;

/// Runs `cregis-inbox <path> <args>`: its exit code and its output, as JSON when it is.
fn cli(path: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_cregis-inbox"))
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::String(stdout));
    (out.status.code().unwrap(), json)
}

/// An inbox file holding payout 1 done, payout 2 dead (its handler failed) and 3 pending.
async fn inbox_file(path: &std::path::Path) {
    let inbox = SqliteInbox::open(path).await.unwrap();
    let verifier = Verifier::new(common::key());
    for cid in [1, 2] {
        let body = faults::delivery(cid, 0);
        assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    }
    let worker = Worker::new(
        inbox.clone(),
        production::failing_for(2, "no payout row for order-2"),
    )
    .retry(production::policy(1))
    .poll_interval(Duration::from_millis(10));
    let running = tokio::spawn(worker.run(std::future::pending()));
    production::wait_for_one(&inbox, EntryState::Dead).await;
    production::wait_for_one(&inbox, EntryState::Done).await;
    running.abort();
    let _ = running.await;
    production::accept(&inbox, 3).await;
    inbox.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_shows_replays_and_discards_with_exit_codes_a_script_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.sqlite3");
    inbox_file(&path).await;

    let (code, stats) = cli(&path, &["--json", "stats"]);
    assert_eq!(code, 0);
    let mut by_state: Vec<(String, u64)> = stats
        .as_array()
        .unwrap()
        .iter()
        .map(|count| {
            (
                count["state"].as_str().unwrap().to_owned(),
                count["entries"].as_u64().unwrap(),
            )
        })
        .collect();
    by_state.sort();
    assert_eq!(
        by_state,
        [
            ("dead".into(), 1),
            ("done".into(), 1),
            ("pending".into(), 1)
        ]
    );

    let (code, dead) = cli(&path, &["list", "--state", "dead", "--json"]);
    assert_eq!(code, 0);
    let dead = &dead["entries"][0];
    assert_eq!(
        (dead["cid"].as_i64(), dead["state"].as_str()),
        (Some(2), Some("dead"))
    );
    assert_eq!(dead["last_error"], "no payout row for order-2");
    let dead_id = dead["id"].as_i64().unwrap().to_string();

    let (code, shown) = cli(&path, &["show", &dead_id]);
    assert_eq!(code, 0);
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains("last error: no payout row"),
        "{shown}"
    );
    assert_eq!(cli(&path, &["show", "999999"]).0, 1, "not there");

    // Replay the dead one: pending again; a second replay finds nothing dead.
    assert_eq!(cli(&path, &["replay", &dead_id]).0, 0);
    assert_eq!(cli(&path, &["replay", &dead_id]).0, 1);
    let (_, shown) = cli(&path, &["show", &dead_id, "--json"]);
    assert_eq!(shown["state"], "pending");
    assert_eq!(
        cli(&path, &["replay", "--all-dead", "--json"]).1["replayed"],
        0
    );

    // Discard payout 3 with a reason: gone.
    let (_, pending) = cli(
        &path,
        &["list", "--state", "pending", "--kind", "payout", "--json"],
    );
    let third = pending["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["cid"] == 3)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
        .to_string();
    assert_eq!(
        cli(&path, &["discard", &third, "--reason", "settled by hand"]).0,
        0
    );
    assert_eq!(cli(&path, &["show", &third]).0, 1);

    // Usage errors and an inbox that is not there.
    assert_eq!(
        cli(&path, &["discard", &third]).0,
        2,
        "a reason is required"
    );
    assert_eq!(cli(&path, &["list", "--state", "lost"]).0, 2);
    assert_eq!(cli(&dir.path().join("missing.sqlite3"), &["stats"]).0, 3);
}

/// The same command line on a PostgreSQL URL. Needs a server: `.ci/run`, or by hand
/// `.ci/with-postgres cargo test --test cli -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: DATABASE_URL, or .ci/with-postgres"]
async fn a_postgres_url_is_an_inbox_too() {
    use cregis_payout_callback::inbox::PgInbox;
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (see .ci/with-postgres)");
    let inbox = PgInbox::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM cregis_inbox WHERE cid = 424242")
        .execute(inbox.pool())
        .await
        .unwrap();
    production::accept(&inbox, 424_242).await;
    let (code, listed) = cli(
        std::path::Path::new(&url),
        &["list", "--state", "pending", "--json"],
    );
    assert_eq!(code, 0, "{listed}");
    let entry = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["cid"] == 424_242)
        .expect("the entry is listed")
        .clone();
    let id = entry["id"].as_i64().unwrap().to_string();
    assert_eq!(
        cli(
            std::path::Path::new(&url),
            &["discard", &id, "--reason", "test"]
        )
        .0,
        0
    );
    assert_eq!(cli(std::path::Path::new(&url), &["show", &id]).0, 1);
}
