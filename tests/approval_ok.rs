//! Every way the crate can answer `ok` (approve a payout), found by reading its sources: the
//! approval rule lives in `src/approval/`, and this test fails when a place elsewhere starts
//! to make, or spell, the approving answer.

use std::path::{Path, PathBuf};

/// What makes or spells the approving answer.
const PATTERNS: [&str; 4] = ["Reply::approved(", "Reply::APPROVE", "\"ok\"", "b\"ok\""];

/// Every place allowed, with why: `(file, the line's code, trimmed)`.
const ALLOWED: [(&str, &str); 7] = [
    // The approving body, defined once.
    ("src/reply.rs", "pub const APPROVE: &'static str = \"ok\";"),
    // Whether a reply approves: a reading, not an answer.
    (
        "src/reply.rs",
        "self.status == 200 && self.body == Reply::APPROVE",
    ),
    // How an approved fact is written (in a `DeliveryKey`'s text): a name, not an answer.
    (
        "src/idempotency/mod.rs",
        "Fact::Approved => f.write_str(\"ok\"),",
    ),
    // The one constructor of the approving reply.
    (
        "src/approval/reply.rs",
        "body: Cow::Borrowed(Reply::APPROVE),",
    ),
    // The only three calls: an authentic request its handler approved, without a store,
    // recorded in the store, and recorded before (the same request asked again).
    (
        "src/approval/decide.rs",
        "Ok(Decision::Approve) => about(Reply::approved(), true),",
    ),
    (
        "src/approval/decide.rs",
        "Ok(Claim::AlreadyDone) => return about(Reply::approved().into_duplicate(), true),",
    ),
    ("src/approval/decide.rs", "about(Reply::approved(), true)"),
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Every line of code (comments and doc comments left out) in `src/` that has a pattern,
/// as `(file, the line trimmed)`.
fn approving_lines() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("").trim();
            if PATTERNS.iter().any(|pattern| code.contains(pattern)) {
                found.push((name.clone(), code.to_owned()));
            }
        }
    }
    found
}

#[test]
fn only_the_approval_folder_answers_ok() {
    let found = approving_lines();
    let allowed: Vec<(String, String)> = ALLOWED
        .iter()
        .map(|(file, code)| ((*file).to_owned(), (*code).to_owned()))
        .collect();
    let unexpected: Vec<_> = found
        .iter()
        .filter(|line| !allowed.contains(line))
        .collect();
    assert!(
        unexpected.is_empty(),
        "a new way to answer `ok` (approve a payout): keep it in src/approval/, and list it \
         here with why: {unexpected:#?}"
    );
    let missing: Vec<_> = allowed
        .iter()
        .filter(|line| !found.contains(line))
        .collect();
    assert!(
        missing.is_empty(),
        "moved or gone, update the list: {missing:#?}"
    );
}

/// The answers themselves: only an authentic request its handler approved is `ok`.
#[test]
fn every_refusal_is_deny() {
    use cregis_payout_callback::approval::Decision;
    use cregis_payout_callback::testing::ApprovalBuilder;
    use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};

    let key = ApiKey::new("fake-approval-key").unwrap();
    let verifier = Verifier::new(key.clone()).for_kind::<ApprovalRequest>();
    let approve = |_: &ApprovalRequest| async { Ok::<_, std::io::Error>(Decision::Approve) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let asked = ApprovalBuilder::new().body(&key).unwrap();
    let reply = runtime.block_on(verifier.decide(asked.as_bytes(), &approve));
    assert_eq!((reply.status_code(), reply.body()), (200, "ok"));
    let forged = ApprovalBuilder::new()
        .body(&ApiKey::new("fake-attacker-key").unwrap())
        .unwrap();
    let bodies = [forged.as_str(), "", "{", "{}", &asked[..asked.len() - 1]];
    for body in bodies {
        let reply = runtime.block_on(verifier.decide(body.as_bytes(), &approve));
        assert_eq!(reply.body(), "deny", "{body}: {reply:?}");
        assert!(!reply.is_approved());
    }
}
