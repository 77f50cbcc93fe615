//! Verify, parse and acknowledge Cregis payout callbacks, exactly as the protocol defines them.
//!
//! When a payout reaches a final state, Cregis POSTs a JSON object signed with the project's
//! API key to the host's callback URL, and counts the delivery as done only if the answer is
//! the body `success`. This crate checks the signature on the raw body bytes, reads the body
//! into a typed [`PayoutCallback`], hands it to the host's [`CallbackHandler`], and says what
//! to answer ([`Reply`]).
//!
//! # Quickstart
//!
//! ```
//! use cregis_payout_callback::{Verifier, handler_fn};
//!
//! // Once, at startup (read the key from your secrets, not from code).
//! let verifier = Verifier::new("fake-api-key-for-docs")?;
//!
//! // For each POST to the callback URL: hand over the raw body bytes (here, a test body).
//! let body = cregis_payout_callback::testing::CallbackBuilder::new().body("fake-api-key-for-docs")?;
//! let reply = verifier.process(body.as_bytes(), &handler_fn(|callback| {
//!     println!("payout {} is now {}", callback.third_party_id, callback.status);
//!     Ok(())
//! }));
//! // Answer with reply.status_code() and reply.body().
//! assert_eq!((reply.status_code(), reply.body()), (200, "success"));
//! # Ok::<(), cregis_payout_callback::Error>(())
//! ```
//!
//! # What is checked
//!
//! - The signature, exactly as Cregis computes it (see [`sign`]): numbers from the exact text
//!   they were sent with, strings from their decoded value, unknown fields included, `null` and
//!   `""` left out; compared on the decoded bytes, in constant time.
//! - The body: one JSON object of flat values, each key once, within a size limit.
//! - The fields: every documented field with its documented type, and a documented status code.
//!
//! Each failure is a specific [`Error`], and tells whether the callback is not authentic (401),
//! malformed or not as documented (400), too large (413), being handled right now (409), or
//! the host's own fault (500).
//!
//! # Exactly once, async, and more
//!
//! - [`Verifier::idempotency`] with an [`IdempotencyStore`] (such as
//!   [`MemoryIdempotencyStore`]) handles each fact (`pid`, `cid`, `status`) once, however often
//!   it is delivered.
//! - [`AsyncCallbackHandler`] and [`Verifier::process_async`] for async services (axum,
//!   actix-web); the crate's repository has runnable examples for both, and for durable
//!   exactly-once ledgers on SQLite and PostgreSQL.
//! - [`Verifier::expected_pid`], opt-in freshness ([`Verifier::max_age`]) and key rotation
//!   ([`Verifier::also_accept`]).
//! - [`SigningText`] explains what a signature covers, for debugging a mismatch.
//!
//! # Optional features
//!
//! Off by default; the core needs no framework and no runtime.
//!
//! - `axum`: `axum::callback_route`, a ready axum route that refuses
//!   oversized bodies before reading them and runs the handler in a task of its own; an
//!   extractor; `IntoResponse for Reply`.
//! - `actix-web`: the same route for actix-web, and `Responder for Reply`.
//! - `tracing`: one structured event per delivery (outcome, HTTP status, error kind, `pid`,
//!   `cid`, `status`, duplicate or not), target `cregis_payout_callback`; never the key or an
//!   expected signature.
//! - `rust_decimal`: `PayoutCallback::amount_decimal`, the amount as an exact `Decimal`.
//!
//! # Scope
//!
//! This crate does no networking and needs no async runtime: any web framework hands it the
//! body bytes and sends back the [`Reply`]. It does not create payouts or call the Cregis API.
//! MD5 is Cregis's choice of signature hash; it is used here only to interoperate.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub mod actix_web;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod body;
mod callback;
mod error;
mod handler;
mod idempotency;
mod params;
mod reply;
mod sign;
mod status;
pub mod testing;
mod trace;
mod verifier;

pub use callback::PayoutCallback;
pub use error::{BoxError, Cause, Error, StoreOperation};
pub use handler::{
    AsyncCallbackHandler, AsyncHandlerFn, CallbackHandler, HandlerFn, async_handler_fn, handler_fn,
};
pub use idempotency::{
    AsyncIdempotencyStore, Attempt, Claim, ClaimInProgress, DEFAULT_CLAIM_LEASE,
    DEFAULT_MEMORY_STORE_CAPACITY, DeliveryKey, Fingerprint, IdempotencyStore,
    MemoryIdempotencyStore, StoreError,
};
pub use reply::{CONTENT_TYPE, Reply, SUCCESS_ACK};
pub use sign::{Omission, SigningText, sign, sign_body, verify_sign};
pub use status::CallbackStatus;
pub use verifier::{DEFAULT_FUTURE_SKEW, DEFAULT_MAX_BODY_BYTES, Verifier, verify_and_parse};
