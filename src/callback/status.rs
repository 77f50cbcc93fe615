//! The payout's lifecycle status.

use std::fmt;

use serde_repr::{Deserialize_repr, Serialize_repr};

use crate::Error;

/// The status of a payout, as the integer code Cregis sends in `status`.
///
/// Cregis's callback page lists four outcomes a payout callback reports
/// ([`SignatureRejected`](Self::SignatureRejected), [`ApprovalRejected`](Self::ApprovalRejected),
/// [`TransactionSuccessful`](Self::TransactionSuccessful),
/// [`TransactionFailed`](Self::TransactionFailed)), but its own example carries
/// [`PendingApproval`](Self::PendingApproval), so every documented code is accepted.
/// [`is_final`](Self::is_final) counts a fifth final state, the payout lifecycle's
/// [`ApprovalCancelled`](Self::ApprovalCancelled), which that page does not list.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::CallbackStatus;
///
/// let status = CallbackStatus::try_from(6)?;
/// assert_eq!(status, CallbackStatus::TransactionSuccessful);
/// assert!(status.is_final() && status.is_success());
/// assert_eq!(status.to_string(), "transaction successful");
/// # Ok::<(), cregis_payout_callback::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(i32)]
#[non_exhaustive]
pub enum CallbackStatus {
    /// `0`: waiting for approval in the Cregis console.
    PendingApproval = 0,
    /// `1`: the signers approved the payout.
    SignatureApproved = 1,
    /// `2`: the signers rejected the payout. Final.
    SignatureRejected = 2,
    /// `3`: the approval was cancelled. Final.
    ApprovalCancelled = 3,
    /// `4`: the approvers rejected the payout. Final.
    ApprovalRejected = 4,
    /// `5`: waiting for signatures.
    PendingSignature = 5,
    /// `6`: the transaction succeeded on chain. Final; the only success.
    TransactionSuccessful = 6,
    /// `7`: the transaction failed. Final.
    TransactionFailed = 7,
}

impl CallbackStatus {
    /// Every documented status, in code order. A slice: a status Cregis documents later is
    /// added to it, as to the enum, without a breaking change.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackStatus;
    ///
    /// assert_eq!(CallbackStatus::ALL.len(), 8);
    /// assert_eq!(CallbackStatus::ALL[7].code(), 7);
    /// ```
    pub const ALL: &'static [CallbackStatus] = &[
        CallbackStatus::PendingApproval,
        CallbackStatus::SignatureApproved,
        CallbackStatus::SignatureRejected,
        CallbackStatus::ApprovalCancelled,
        CallbackStatus::ApprovalRejected,
        CallbackStatus::PendingSignature,
        CallbackStatus::TransactionSuccessful,
        CallbackStatus::TransactionFailed,
    ];

    /// The integer code Cregis uses for this status.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackStatus;
    ///
    /// assert_eq!(CallbackStatus::ApprovalRejected.code(), 4);
    /// ```
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// Whether a payout whose last known status is `self` may move to `next`: forward through
    /// its life (pending approval, then signature approved, then pending signature, then a final
    /// status), never back, and never away from a final status. A host applying callbacks
    /// checks it so that a late callback (an older status arriving after a newer one) cannot
    /// move a payout backwards, and a contradictory one (failed after successful) is refused.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackStatus::*;
    ///
    /// assert!(PendingApproval.can_move_to(TransactionSuccessful));
    /// assert!(!PendingSignature.can_move_to(SignatureApproved)); // backwards: a late callback
    /// assert!(!TransactionSuccessful.can_move_to(TransactionFailed)); // final: it stays
    /// assert!(!TransactionSuccessful.can_move_to(TransactionSuccessful)); // nothing new
    /// ```
    pub fn can_move_to(self, next: CallbackStatus) -> bool {
        let stage = |status: CallbackStatus| match status {
            CallbackStatus::PendingApproval => 0,
            CallbackStatus::SignatureApproved => 1,
            CallbackStatus::PendingSignature => 2,
            _ => 3,
        };
        !self.is_final() && stage(next) > stage(self)
    }

    /// Whether the payout can no longer change: codes 2, 3, 4, 6 and 7.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackStatus;
    ///
    /// assert!(CallbackStatus::TransactionFailed.is_final());
    /// assert!(!CallbackStatus::PendingApproval.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallbackStatus::SignatureRejected
                | CallbackStatus::ApprovalCancelled
                | CallbackStatus::ApprovalRejected
                | CallbackStatus::TransactionSuccessful
                | CallbackStatus::TransactionFailed
        )
    }

    /// Whether the funds left: only [`TransactionSuccessful`](Self::TransactionSuccessful).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::CallbackStatus;
    ///
    /// assert!(CallbackStatus::TransactionSuccessful.is_success());
    /// assert!(!CallbackStatus::SignatureApproved.is_success());
    /// ```
    pub fn is_success(self) -> bool {
        self == CallbackStatus::TransactionSuccessful
    }

    fn words(self) -> &'static str {
        match self {
            CallbackStatus::PendingApproval => "pending approval",
            CallbackStatus::SignatureApproved => "signature approved",
            CallbackStatus::SignatureRejected => "signature rejected",
            CallbackStatus::ApprovalCancelled => "approval cancelled",
            CallbackStatus::ApprovalRejected => "approval rejected",
            CallbackStatus::PendingSignature => "pending signature",
            CallbackStatus::TransactionSuccessful => "transaction successful",
            CallbackStatus::TransactionFailed => "transaction failed",
        }
    }
}

impl TryFrom<i32> for CallbackStatus {
    type Error = Error;

    /// Maps a code to its status.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStatus`] for any code other than 0 to 7.
    fn try_from(code: i32) -> Result<Self, Error> {
        CallbackStatus::try_from(i64::from(code))
    }
}

impl TryFrom<i64> for CallbackStatus {
    type Error = Error;

    /// Maps a code to its status, whatever the width of the integer it came in.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownStatus`] for any code other than 0 to 7.
    fn try_from(code: i64) -> Result<Self, Error> {
        // Not `ok_or`: it would build (and drop) the error on every call.
        match usize::try_from(code)
            .ok()
            .and_then(|index| CallbackStatus::ALL.get(index).copied())
        {
            Some(status) => Ok(status),
            None => Err(Error::UnknownStatus { code }),
        }
    }
}

impl From<CallbackStatus> for i32 {
    fn from(status: CallbackStatus) -> i32 {
        status.code()
    }
}

impl fmt::Display for CallbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}
