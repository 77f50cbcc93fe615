//! The README stays the entrance (issue 30): short, the inbox setup near its top, and the
//! two commands a newcomer needs. What it leaves out lives in the module docs.

const README: &str = include_str!("../README.md");

#[test]
fn the_readme_is_short_and_leads_to_the_inbox_early() {
    let lines: Vec<&str> = README.lines().collect();
    assert!(
        lines.len() <= 250,
        "README.md has {} lines; keep it to 250 and move detail into the module docs",
        lines.len()
    );
    let inbox = lines
        .iter()
        .position(|line| line.starts_with("## Quickstart: the inbox"))
        .expect("README.md has a \"## Quickstart: the inbox\" section");
    assert!(
        inbox < 100,
        "the inbox setup starts at line {}, after the first 100",
        inbox + 1
    );
    let setup = lines[inbox..]
        .iter()
        .position(|line| line.contains("inbox_route("))
        .expect("the quickstart mounts inbox_route");
    assert!(
        inbox + setup < 100,
        "the inbox route is set up at line {}",
        inbox + setup + 1
    );
}

#[test]
fn the_readme_holds_the_two_commands_in_order() {
    let run = README
        .find("\ncargo run --example quickstart\n")
        .expect("the quickstart command");
    let test = README.find("\ncargo test\n").expect("the test command");
    assert!(run < test, "the quickstart comes first");
}

#[test]
fn every_feature_of_the_manifest_is_in_the_readme_table_with_its_rust_version() {
    let manifest = include_str!("../Cargo.toml");
    let features = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("a [features] table");
    let features = features.split("\n[").next().unwrap_or_default();
    for name in features
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.trim()))
    {
        if name.starts_with('#') {
            continue;
        }
        let row = README
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("feature `{name}` has no row in the README's feature table"));
        assert!(
            row.trim_end().ends_with("1.85 |") || row.trim_end().ends_with("**1.94** |"),
            "feature `{name}`'s row ends with its minimum Rust: {row}"
        );
    }
}
