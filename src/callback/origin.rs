//! Who made a delivery: Cregis, or this crate's reconciler.

use std::fmt;

use serde_json::{Map, Value};

/// Who made a delivery: Cregis's own callback, or the crate's
/// [reconciler](crate::reconcile), which asked Cregis about a payout whose callback never came
/// and delivered the answer the way the callback would have come.
///
/// A reconciled body carries one field of its own, [`Origin::FIELD`] = `"reconciler"`,
/// signed with the project's key like the rest (so only a holder of the key can write it), and
/// outside the [fingerprint](crate::idempotency::Fingerprint): the real callback arriving
/// later is still a duplicate. A host may treat reconciled deliveries differently (log them,
/// alert, ask a person): the fact is the same, but nobody at Cregis sent it.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Origin, testing::CallbackBuilder};
///
/// let callback = CallbackBuilder::new().callback()?;
/// assert_eq!(callback.origin(), Origin::Cregis);
/// let reconciled = CallbackBuilder::new().string(Origin::FIELD, "reconciler").callback()?;
/// assert_eq!(reconciled.origin(), Origin::Reconciler);
/// assert_eq!(reconciled.origin().to_string(), "reconciler");
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Origin {
    /// Cregis sent it: a callback, or its re-push from the console.
    #[default]
    Cregis,
    /// The reconciler made it from Cregis's answer to a query.
    Reconciler,
}

impl Origin {
    /// The field a reconciled body carries: `"cregis_sdk_origin": "reconciler"`.
    pub const FIELD: &'static str = "cregis_sdk_origin";

    /// The origin that the unknown fields `extra` of a callback say.
    ///
    /// # Example
    ///
    /// See [`Origin`].
    pub fn of(extra: &Map<String, Value>) -> Origin {
        match extra.get(Origin::FIELD).and_then(Value::as_str) {
            Some("reconciler") => Origin::Reconciler,
            _ => Origin::Cregis,
        }
    }

    /// The origin's name: `cregis` or `reconciler` (as the inbox stores it, and as
    /// `tracing` and the listing show it).
    ///
    /// # Example
    ///
    /// See [`Origin`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Cregis => "cregis",
            Origin::Reconciler => "reconciler",
        }
    }

    /// The origin named `name` (as [`as_str`](Self::as_str) writes it); an unknown name is
    /// [`Cregis`](Origin::Cregis), the origin that claims nothing.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::Origin;
    ///
    /// assert_eq!(Origin::from_name("reconciler"), Origin::Reconciler);
    /// assert_eq!(Origin::from_name("cregis"), Origin::Cregis);
    /// ```
    pub fn from_name(name: &str) -> Origin {
        if name == Origin::Reconciler.as_str() {
            Origin::Reconciler
        } else {
            Origin::Cregis
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
