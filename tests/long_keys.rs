//! Keys are read before any authentication: a body with a 60 KiB repeated key or a 60 KiB key
//! holding a nested value must not write 60 KiB into the reply (which Cregis shows) or into
//! the host's logs. The error keeps the key's beginning and its length.

mod common;

use cregis_payout_callback::{Error, PayoutCallback, Reply, Verifier, error::KeyExcerpt};

const LONG: usize = 60 * 1024;

fn long_key() -> String {
    format!("x_{}", "k".repeat(LONG - 2))
}

/// A verifier with room for a 60 KiB key twice.
fn refused(body: &str) -> Reply {
    let verifier = Verifier::builder(common::key())
        .max_body_bytes(256 * 1024)
        .build();
    verifier.process(body.as_bytes(), &|_: &PayoutCallback| {
        Err::<(), _>("never called: the body is refused first")
    })
}

#[track_caller]
fn assert_excerpt(key: &KeyExcerpt) {
    assert_eq!(key.len(), LONG);
    assert_eq!(key.prefix(), &long_key()[..KeyExcerpt::MAX_PREFIX]);
    assert!(key.is_cut());
}

#[test]
fn a_60_kib_duplicate_key_is_cut_in_the_error_and_the_reply() {
    let key = long_key();
    let body = format!(r#"{{"pid":1,"{key}":"a","{key}":"b","sign":"0"}}"#);
    let reply = refused(&body);
    let Some(Error::DuplicateKey { key: excerpt }) = reply.error() else {
        panic!("{reply:?}")
    };
    assert_excerpt(excerpt);
    assert_eq!(reply.status_code(), 400);
    assert_eq!(
        reply.body(),
        r#"key "x_kkkkkkkkkkkkkkkkkk"... (61440 bytes) appears more than once"#
    );
    assert!(reply.body().len() < 200);
    assert!(format!("{reply:?}").len() < 400, "{reply:?}");
}

#[test]
fn a_60_kib_key_with_a_nested_value_is_cut_in_the_error_and_the_reply() {
    let key = long_key();
    let body = format!(r#"{{"pid":1,"{key}":{{"a":[1,2]}},"sign":"0"}}"#);
    let reply = refused(&body);
    let Some(Error::NestedValue { key: excerpt }) = reply.error() else {
        panic!("{reply:?}")
    };
    assert_excerpt(excerpt);
    assert_eq!(
        reply.body(),
        r#"field "x_kkkkkkkkkkkkkkkkkk"... (61440 bytes) holds an object or array, which cannot be signed"#
    );
    assert!(reply.body().len() < 200);
}

#[test]
fn short_keys_stay_whole() {
    let reply = refused(r#"{"pid":1,"pid":2}"#);
    assert_eq!(reply.body(), r#"key "pid" appears more than once"#);
    assert_eq!(
        reply.error(),
        Some(&Error::DuplicateKey { key: "pid".into() })
    );
}

#[test]
fn excerpts_cut_on_a_character_boundary_and_escape_what_they_keep() {
    // 19 ASCII bytes, then a 3-byte character across the 20-byte boundary: left out whole.
    let key = format!("{}€tail", "a".repeat(19));
    let excerpt = KeyExcerpt::new(&key);
    assert_eq!(excerpt.prefix(), "a".repeat(19));
    assert_eq!(excerpt.len(), key.len());
    // Control characters are escaped, and the escaped text stays short.
    let controls = KeyExcerpt::new(&"\u{1}".repeat(LONG));
    let shown = controls.to_string();
    assert!(shown.starts_with(r#""\u{1}\u{1}"#), "{shown}");
    assert!(shown.len() < 200, "{shown}");
    assert_eq!(KeyExcerpt::new("").to_string(), r#""""#);
}
