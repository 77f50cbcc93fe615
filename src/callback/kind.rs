//! The kinds of callback Cregis sends, and what every kind has in common.

use std::fmt;

use super::fields::Fields;
use crate::Error;
use crate::idempotency::DeliveryKey;
use crate::{CallbackStatus, PayoutCallback};

/// Which callback a body is: each has its own model, its own route and its own
/// [`DeliveryKey`] space.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Callback, CallbackKind, PayoutCallback, WithdrawalCallback};
///
/// assert_eq!(PayoutCallback::KIND, CallbackKind::Payout);
/// assert_eq!(WithdrawalCallback::KIND.as_str(), "withdrawal");
/// assert_eq!("approval".parse::<CallbackKind>(), Ok(CallbackKind::Approval));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CallbackKind {
    /// The wallet payout callback ([`PayoutCallback`]): the final status of a payout made
    /// with `POST /api/v1/payout`.
    Payout,
    /// The sub-address payout callback ([`WithdrawalCallback`](crate::WithdrawalCallback)):
    /// the final status of a payout made with `POST /api/v1/sub_address_withdrawal`.
    Withdrawal,
    /// The payout external verification ([`ApprovalRequest`](crate::ApprovalRequest)):
    /// Cregis asks the host to approve a payout before it goes ahead.
    Approval,
}

impl CallbackKind {
    /// Every kind, in the order of their codes.
    pub const ALL: [CallbackKind; 3] = [
        CallbackKind::Payout,
        CallbackKind::Withdrawal,
        CallbackKind::Approval,
    ];

    /// A short lowercase name, stable: for a database column, a metric label or a log line.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackKind;
    ///
    /// assert_eq!(CallbackKind::Payout.as_str(), "payout");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Payout => "payout",
            CallbackKind::Withdrawal => "withdrawal",
            CallbackKind::Approval => "approval",
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`CallbackKind`] from a name that is not one.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::CallbackKind;
///
/// let error = "deposit".parse::<CallbackKind>().unwrap_err();
/// assert_eq!(error.to_string(), "not a callback kind (payout, withdrawal, approval)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a callback kind (payout, withdrawal, approval)")]
#[non_exhaustive]
pub struct UnknownKind;

impl std::str::FromStr for CallbackKind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        CallbackKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or(UnknownKind)
    }
}

pub(crate) mod sealed {
    use super::{DeliveryKey, Error, Fields};

    /// Only this crate's models are callbacks: the verifier reads them from verified
    /// parameters, which no other type can.
    pub trait Sealed: Sized {
        /// The model, from the fields of verified parameters.
        fn from_fields(fields: &Fields<'_, '_>) -> Result<Self, Error>;

        /// The key a reply about this callback names: the fact it reports, or, for an
        /// approval, its denial.
        fn reply_key(&self) -> DeliveryKey;

        /// The fields this kind documents, one bit per place in `KNOWN`: what its
        /// fingerprint covers.
        const DOCUMENTED_PLACES: u32;
    }
}

/// A kind of callback Cregis signs: [`PayoutCallback`],
/// [`WithdrawalCallback`](crate::WithdrawalCallback) or
/// [`ApprovalRequest`](crate::ApprovalRequest).
///
/// A [`Verifier`](crate::Verifier) is made for one kind (`Verifier<S, C>`, payouts unless
/// [`for_kind`](crate::Verifier::for_kind) says otherwise) and refuses a body of another kind
/// with [`Error::WrongKind`]. The signature and body rules are the same for every kind. The
/// trait is sealed: the models are this crate's.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Callback, CallbackKind, testing::CallbackBuilder};
///
/// fn describe<C: Callback>(callback: &C) -> String {
///     format!("{} {}/{}", C::KIND, callback.pid(), callback.cid())
/// }
/// let callback = CallbackBuilder::new().pid(1).cid(2).callback()?;
/// assert_eq!(describe(&callback), "payout 1/2");
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
pub trait Callback: sealed::Sealed + fmt::Debug + Clone + Send + Sync + 'static {
    /// Which kind this is.
    const KIND: CallbackKind;

    /// Project id.
    fn pid(&self) -> i64;

    /// Cregis's id of the payout.
    fn cid(&self) -> i64;
}

/// A callback that reports a payout's status: [`PayoutCallback`] and
/// [`WithdrawalCallback`](crate::WithdrawalCallback). Its host acknowledges it with `success`,
/// and it goes through the delivery machinery: idempotency, the inbox, the routes.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{Notification, testing::WithdrawalBuilder};
///
/// let callback = WithdrawalBuilder::new().pid(1).cid(2).callback()?;
/// assert_eq!(callback.delivery_key().to_string(), "withdrawal/1/2/6");
/// assert!(callback.status().is_success());
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
pub trait Notification: Callback {
    /// The key of the fact this callback reports: this kind's payout reached this status.
    fn delivery_key(&self) -> DeliveryKey;

    /// The status the payout reached.
    fn status(&self) -> CallbackStatus;

    /// Who made this delivery: Cregis, or the [reconciler](crate::reconcile).
    fn origin(&self) -> super::Origin;
}

impl sealed::Sealed for PayoutCallback {
    const DOCUMENTED_PLACES: u32 = PayoutCallback::DOCUMENTED;

    #[inline]
    fn from_fields(fields: &Fields<'_, '_>) -> Result<Self, Error> {
        PayoutCallback::from_fields(fields)
    }

    fn reply_key(&self) -> DeliveryKey {
        self.delivery_key()
    }
}

impl Callback for PayoutCallback {
    const KIND: CallbackKind = CallbackKind::Payout;

    fn pid(&self) -> i64 {
        self.pid
    }

    fn cid(&self) -> i64 {
        self.cid
    }
}

impl Notification for PayoutCallback {
    fn delivery_key(&self) -> DeliveryKey {
        PayoutCallback::delivery_key(self)
    }

    fn status(&self) -> CallbackStatus {
        self.status
    }

    fn origin(&self) -> super::Origin {
        PayoutCallback::origin(self)
    }
}
