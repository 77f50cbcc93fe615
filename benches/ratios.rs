//! The ratio report for the performance goals, one line each.
//!
//! `cargo bench --bench ratios` times every contender in interleaved rounds on the same
//! ~470-byte callback (fields in Cregis's wire order) and prints the ratios of their medians.
//! Under `cargo test --benches` it runs each contender once and times nothing. It never
//! asserts a time.
//!
//! `ratios --instructions NAME N` runs one contender `N` times inside [`measured`] and nothing
//! else, for counting instructions under callgrind (`benches/callgrind.sh` does it for all).
//! `--sorted` swaps in the same callback with its keys sorted; `--print-body` prints the body.

// Sizes and counts here are small: converting them to `f64` for the report is exact.
#![allow(clippy::cast_precision_loss)]

mod fixtures;

use std::hint::black_box;
use std::time::Instant;

use cregis_payout_callback::{PayoutCallback, Verifier};

const ROUNDS: usize = 2000;
const BATCH: usize = 50;

/// The median time of one call of each contender, in nanoseconds, measured in interleaved
/// rounds so that drift in machine load hits every contender alike.
fn medians(contenders: &mut [(&str, &mut dyn FnMut())]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(ROUNDS); contenders.len()];
    for _ in 0..ROUNDS {
        for ((_, run), samples) in contenders.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            for _ in 0..BATCH {
                run();
            }
            samples.push(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

/// Runs `run` `n` times: the one function callgrind collects in (`--toggle-collect`).
#[inline(never)]
fn measured(run: &mut dyn FnMut(), n: usize) {
    for _ in 0..n {
        run();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let timing = args.iter().any(|arg| arg == "--bench");
    let instructions = args
        .iter()
        .position(|arg| arg == "--instructions")
        .map(|at| {
            let name = args.get(at + 1).expect("--instructions NAME N").clone();
            let n: usize = args.get(at + 2).and_then(|n| n.parse().ok()).expect("N");
            (name, n)
        });
    let make_body = if args.iter().any(|arg| arg == "--sorted") {
        fixtures::sorted_body
    } else {
        fixtures::signed_body
    };
    let body = make_body(460);
    if args.iter().any(|arg| arg == "--print-body") {
        println!("{}", String::from_utf8_lossy(&body));
        return;
    }
    let key_and_text = fixtures::key_and_signing_text(&body);
    let verifier = Verifier::new(fixtures::api_key());
    let noop = |_: &PayoutCallback| Ok::<(), std::convert::Infallible>(());
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        Some(hex::encode(fixtures::limit(&body, &key_and_text)).as_str()),
        sent["sign"].as_str(),
        "the limit must hash the real signing text"
    );

    let mut limit = || {
        black_box(fixtures::limit(black_box(&body), black_box(&key_and_text)));
    };
    let mut straightforward = || {
        assert!(fixtures::straightforward(black_box(&body), fixtures::KEY));
    };
    let mut verify = || {
        black_box(verifier.verify(black_box(&body)).unwrap());
    };
    let mut verify_and_parse = || {
        black_box(verifier.verify_and_parse(black_box(&body)).unwrap());
    };
    let mut process = || assert!(verifier.process(black_box(&body), &noop).is_ack());
    let mut contenders: [(&str, &mut dyn FnMut()); 5] = [
        ("limit", &mut limit),
        ("straightforward", &mut straightforward),
        ("Verifier::verify", &mut verify),
        ("Verifier::verify_and_parse", &mut verify_and_parse),
        ("Verifier::process", &mut process),
    ];
    if let Some((name, n)) = instructions {
        if let Some((_, run)) = contenders.iter_mut().find(|(c, _)| *c == name) {
            measured(*run, n);
            return;
        }
        let size: usize = name
            .strip_prefix("verify_")
            .and_then(|s| s.parse().ok())
            .expect("a contender's name, or verify_SIZE");
        let body = make_body(size);
        let big_verifier = Verifier::builder(fixtures::api_key())
            .max_body_bytes(1 << 20)
            .build();
        measured(
            &mut || {
                black_box(big_verifier.verify(black_box(&body)).unwrap());
            },
            n,
        );
        return;
    }
    if !timing {
        for (_, run) in &mut contenders {
            run();
        }
        println!("ratios: smoke run only (use `cargo bench --bench ratios` to time)");
        return;
    }

    let t = medians(&mut contenders);
    println!(
        "body: {} bytes; medians of {ROUNDS} rounds of {BATCH} calls",
        body.len()
    );
    for ((name, _), ns) in contenders.iter().zip(&t) {
        println!("  {name:<28} {ns:>8.0} ns");
    }
    println!(
        "Verifier::verify / limit            = {:.2}  (goal <= 1.3)",
        t[2] / t[0]
    );
    println!(
        "Verifier::verify_and_parse / limit  = {:.2}  (goal <= 1.6)",
        t[3] / t[0]
    );
    println!(
        "straightforward / verify_and_parse  = {:.2}  (goal >= 2.5)",
        t[1] / t[3]
    );

    by_size(make_body);
}

/// Times `Verifier::verify` on bodies of 0.5, 8 and 64 KiB.
fn by_size(make_body: fn(usize) -> Vec<u8>) {
    let big_verifier = Verifier::builder(fixtures::api_key())
        .max_body_bytes(1 << 20)
        .build();
    let bodies: Vec<Vec<u8>> = [512, 8 * 1024, 64 * 1024]
        .into_iter()
        .map(make_body)
        .collect();
    let mut runs: Vec<Box<dyn FnMut()>> = bodies
        .iter()
        .map(|b| -> Box<dyn FnMut()> {
            Box::new(|| {
                black_box(big_verifier.verify(black_box(b)).unwrap());
            })
        })
        .collect();
    let mut sized: Vec<(&str, &mut dyn FnMut())> = runs
        .iter_mut()
        .map(|run| -> (&str, &mut dyn FnMut()) { ("", &mut **run) })
        .collect();
    let t = medians(&mut sized);
    let line: Vec<String> = bodies
        .iter()
        .zip(&t)
        .map(|(b, ns)| {
            format!(
                "{:.1} KiB: {:.1} us ({:.0} ns/KiB)",
                b.len() as f64 / 1024.0,
                ns / 1e3,
                ns / (b.len() as f64 / 1024.0)
            )
        })
        .collect();
    println!("Verifier::verify by body size: {}", line.join("; "));
}
