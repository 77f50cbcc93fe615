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
//! use cregis_payout_callback::{ApiKey, Verifier, handler_fn, testing::CallbackBuilder};
//!
//! // Once, at startup (read the key from your secrets, not from code).
//! let key = ApiKey::new("fake-api-key-for-docs")?;
//! let verifier = Verifier::new(key.clone());
//!
//! // For each POST to the callback URL: hand over the raw body bytes (here, a test body).
//! let body = CallbackBuilder::new().body(&key)?;
//! let reply = verifier.process(body.as_bytes(), &handler_fn(|callback| {
//!     println!("payout {} is now {}", callback.third_party_id, callback.status);
//!     Ok(())
//! }));
//! // Answer with reply.status_code() and reply.body().
//! assert_eq!((reply.status_code(), reply.body()), (200, "success"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is checked
//!
//! - The signature, exactly as Cregis computes it (see [`signature`]): numbers from the exact text
//!   they were sent with, strings from their decoded value, unknown fields included, `null` and
//!   `""` left out; compared on the decoded bytes, in constant time.
//! - The body: one JSON object of flat values, each key once, within a size limit.
//! - The fields: every documented field with its documented type, and a documented status code.
//!
//! Each failure is a specific [`Error`], and tells whether the callback is not authentic (401),
//! malformed, cut short or not as documented (400), too large (413), being handled right now
//! or conflicting with an earlier delivery (409), the host's own fault (500), or cancelled by
//! a shutdown (503); [`Error::kind`] is a stable label for metrics.
//!
//! # The crate's parts
//!
//! The root holds what every host uses: [`ApiKey`], [`Verifier`], [`PayoutCallback`] and
//! [`CallbackStatus`], the handler traits with [`handler_fn`] and [`async_handler_fn`],
//! [`Reply`] and [`Error`]. The rest is in modules:
//!
//! - [`verifier`]: [`VerifierBuilder`](verifier::VerifierBuilder) for the settings (the
//!   project, freshness, key rotation, the body limit, the clock);
//! - [`idempotency`]: each fact (`pid`, `cid`, `status`) handled once, however often it is
//!   delivered, with [`MemoryIdempotencyStore`](idempotency::MemoryIdempotencyStore) or a
//!   store of your own;
//! - [`signature`]: signing and explaining signatures, for requests, tests and debugging;
//! - [`error`]: what errors carry; [`handler`]: the closure adapters;
//! - [`testing`]: signed callbacks shaped like Cregis's, and a clock to set by hand;
//! - [`approval`]: the payout external verification's handler and decision;
//! - [`request`]: signed requests to the Cregis API (create a payout, query one) and their
//!   responses, sent by your own HTTP client;
//! - `inbox` and `reconcile` (features): the durable inbox and its worker; the reconciler that
//!   asks Cregis about payouts whose callback never came;
//! - `service` (feature `http`): the framework-neutral core, a `tower::Service` with `tower`;
//! - `axum` and `actix_web` (features): ready routes for each framework.
//!
#![doc = include_str!("docs/guide.md")]
//!
//! # Scope
//!
//! This crate never opens a socket: any web framework hands it the body bytes and sends back
//! the [`Reply`]. Its core needs no async runtime; the inbox, the reconciler and the
//! framework adapters (features) run on tokio, the runtime of the frameworks they serve. For the Cregis API ([`request`]) it builds signed
//! request bodies and reads the responses; the host's own HTTP client sends them.
//! MD5 is Cregis's choice of signature hash; it is used here only to interoperate.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Some docs link to items of optional features (`SpawnBlocking`, the adapters); without those
// features the links have no target. The all-features build (docs.rs's) checks every link.
#![cfg_attr(
    not(all(
        feature = "axum",
        feature = "actix-web",
        feature = "rust_decimal",
        feature = "sqlite",
        feature = "postgres"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod approval;
mod callback;
#[cfg(any(feature = "http", feature = "inbox", feature = "reconcile"))]
mod deadline;
pub mod error;
pub mod handler;
pub mod idempotency;
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub mod inbox;
#[cfg(feature = "http")]
mod integrations;
#[cfg(feature = "metrics")]
mod meter;
#[cfg(feature = "reconcile")]
#[cfg_attr(docsrs, doc(cfg(feature = "reconcile")))]
pub mod reconcile;
mod reply;
pub mod request;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod schema;
pub mod signature;
pub mod testing;
mod trace;
pub mod verifier;
mod wire;

pub use callback::{
    ApprovalRequest, Callback, CallbackKind, CallbackStatus, Notification, Origin, PayoutCallback,
    PayoutRecord, Verdict, WithdrawalCallback, same_amount,
};
pub use error::Error;
pub use handler::{AsyncCallbackHandler, CallbackHandler, async_handler_fn, handler_fn};
#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub use integrations::actix_web;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use integrations::axum;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use integrations::service;
pub use reply::Reply;
pub use signature::ApiKey;
pub use verifier::Verifier;
