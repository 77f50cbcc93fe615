//! Criterion benchmarks: every entry point beside the two reference points.
//!
//! `cargo bench --bench verify`; `cargo bench --bench ratios` prints the ratios in one line each.

mod fixtures;

use std::hint::black_box;

use cregis_payout_callback::{
    PayoutCallback, Verifier,
    signature::{sign, verify_sign},
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};

fn entry_points(c: &mut Criterion) {
    let key = fixtures::api_key();
    let body = fixtures::signed_body(460);
    let key_and_text = fixtures::key_and_signing_text(&body);
    let map: Map<String, Value> = serde_json::from_slice(&body).unwrap();
    let verifier = Verifier::new(fixtures::api_key());
    let noop = |_: &PayoutCallback| Ok::<(), std::convert::Infallible>(());
    assert!(verifier.process(&body, &noop).is_ack());
    assert!(fixtures::straightforward(&body, fixtures::KEY));

    let mut group = c.benchmark_group("callback");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("limit", |b| {
        b.iter(|| fixtures::limit(black_box(&body), black_box(&key_and_text)));
    });
    group.bench_function("straightforward", |b| {
        b.iter(|| fixtures::straightforward(black_box(&body), fixtures::KEY));
    });
    group.bench_function("sign", |b| b.iter(|| sign(black_box(&map), &key)));
    group.bench_function("verify_sign", |b| {
        b.iter(|| verify_sign(black_box(&map), &key));
    });
    group.bench_function("Verifier::verify", |b| {
        b.iter(|| verifier.verify(black_box(&body)));
    });
    group.bench_function("Verifier::verify_and_parse", |b| {
        b.iter(|| verifier.verify_and_parse(black_box(&body)));
    });
    group.bench_function("Verifier::process", |b| {
        b.iter(|| verifier.process(black_box(&body), &noop));
    });
    group.finish();
}

fn body_sizes(c: &mut Criterion) {
    let verifier = Verifier::builder(fixtures::api_key())
        .max_body_bytes(1 << 20)
        .build();
    let mut group = c.benchmark_group("verify_by_size");
    for size in [512, 8 * 1024, 64 * 1024] {
        let body = fixtures::signed_body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| verifier.verify(black_box(body)));
        });
    }
    group.finish();
}

criterion_group!(benches, entry_points, body_sizes);
criterion_main!(benches);
