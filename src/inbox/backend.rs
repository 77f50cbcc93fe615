//! What only the author of a backend needs: the records an [`Inbox`](super::Inbox) passes to
//! and from its worker, and the [`Job`] a [`Worker`](super::Worker) runs. A host that uses
//! [`SqliteInbox`](super::SqliteInbox) or [`PgInbox`](super::PgInbox) never names them.

use std::time::Duration;

use super::EntryId;
pub use super::arrivals::{Announcer, Arrivals};
pub use super::worker::{Job, JobError, Ran};
use crate::idempotency::{DeliveryKey, Fingerprint};

/// An authentic, well-formed callback to record: what the handler needs (its raw body) and
/// what identifies it.
///
/// # Example
///
/// See [`Inbox::accept`](super::Inbox::accept).
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// The fact it reports; at most one entry per key.
    pub key: DeliveryKey,
    /// Its business content, to tell a duplicate from a conflict.
    pub fingerprint: Fingerprint,
    /// The body as received (verified already).
    pub body: &'a [u8],
    /// Who made the delivery (shown in the listing).
    pub origin: crate::Origin,
}

/// What [`Inbox::accept`](super::Inbox::accept) did with an entry.
///
/// # Example
///
/// See [`Inbox::accept`](super::Inbox::accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// A new entry, committed.
    New(EntryId),
    /// The key has an entry with the same content already (in any state): nothing written.
    Duplicate(EntryId),
    /// The key has an entry with other content: nothing written.
    Conflict(EntryId),
    /// The key's payout has an entry with another final status (Cregis's final statuses
    /// exclude each other): nothing written.
    OtherFinal {
        /// The entry of the final status recorded first.
        id: EntryId,
        /// Its status.
        recorded: crate::CallbackStatus,
    },
}

/// An entry a worker has taken, under a lease; the token of its operations.
///
/// # Example
///
/// See [`Inbox::take`](super::Inbox::take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The entry.
    pub id: EntryId,
    /// Its fact.
    pub key: DeliveryKey,
    /// The body as accepted.
    pub body: Vec<u8>,
    /// Which run of the entry this is, from 1; also the lease's token: the inbox refuses
    /// [`renew`](super::Inbox::renew), [`succeed`](super::Inbox::succeed) and [`fail`](super::Inbox::fail) from an
    /// older run.
    pub attempt: u32,
    /// How long ago the entry was accepted, on the inbox's clock.
    pub age: Duration,
    /// How many earlier runs of the entry ended without recording an outcome: their worker
    /// stopped (a crash, a kill) or lost the lease, or an operator
    /// [`release`](super::Inbox::release)d the entry. The inbox counts them at
    /// [`take`](super::Inbox::take) (a run whose lease is still set when the entry is taken
    /// again) and a [`replay`](super::Inbox::replay) starts the count again; the
    /// [`Worker`](super::Worker) makes the entry dead, instead of running it, once the runs
    /// counted reach its [`RetryPolicy`](super::RetryPolicy)'s limit.
    pub interrupted_runs: u32,
    /// Who made the delivery: Cregis, or the [reconciler](crate::reconcile).
    pub origin: crate::Origin,
}

/// What becomes of a failed run.
///
/// # Example
///
/// See [`Inbox::fail`](super::Inbox::fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Due again after this long.
    RetryAfter(Duration),
    /// Dead: kept for an operator.
    Dead,
}
