//! Verification allocates a fixed number of times, not once per field, for a body without
//! string escapes. Allocations are counted (deterministic), not timed.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cregis_payout_callback::Verifier;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting allocations made by the current thread.
struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations_of(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The documented example plus `extra` unknown fields, signed.
fn body_with_extra_fields(extra: usize) -> String {
    let mut pairs: Vec<(String, String)> = common::DOC_EXAMPLE
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.extend((0..extra).map(|i| (format!("x{i:04}"), format!("\"value {i}\""))));
    common::signed_body(&pairs, common::KEY)
}

#[test]
fn verify_allocates_once_for_a_real_callback() {
    let verifier = Verifier::new(common::key());
    let body = common::signed_example();
    let count = allocations_of(|| {
        verifier.verify(body.as_bytes()).unwrap();
    });
    assert!(count <= 1, "verify made {count} allocations");
}

#[test]
fn verify_allocations_do_not_grow_per_field() {
    let verifier = Verifier::new(common::key());
    let small = body_with_extra_fields(0);
    let large = body_with_extra_fields(400);
    let small_count = allocations_of(|| {
        verifier.verify(small.as_bytes()).unwrap();
    });
    let large_count = allocations_of(|| {
        verifier.verify(large.as_bytes()).unwrap();
    });
    // 400 more fields: at most the few reallocations of one growing list, never one per field.
    assert!(
        large_count <= small_count + 5,
        "{small_count} allocations for 15 fields, {large_count} for 415"
    );
}

#[test]
fn verify_allocates_for_escaped_strings_only() {
    let verifier = Verifier::new(common::key());
    let mut pairs: Vec<(&str, &str)> = common::DOC_EXAMPLE.to_vec();
    pairs.push(("note", r#""caf\u00e9""#));
    let body = common::signed_body(&pairs, common::KEY);
    let count = allocations_of(|| {
        verifier.verify(body.as_bytes()).unwrap();
    });
    // The list of fields, then the decoded string and the decoder's scratch buffer.
    assert!(count <= 3, "verify made {count} allocations");
}
