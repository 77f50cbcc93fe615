//! What the host recorded of a payout, and whether a callback agrees with it.

use super::{CallbackStatus, PayoutCallback};

/// What the host recorded of a payout when it created it, and the last status it applied:
/// what each of the payout's callbacks must agree with before it changes anything
/// ([`PayoutCallback::check_against`]).
///
/// A callback is authentic when its signature verifies; it is *about this payout as the host
/// made it* only when it names the same amount, currency and address. A handler that skips
/// this check would settle a payout on a callback for another amount.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{PayoutRecord, Verdict, testing::CallbackBuilder};
///
/// let ours = PayoutRecord {
///     amount: "1.1",
///     currency: "TRX",
///     address: "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///     cid: None,     // not known until the first callback (or the create response)
///     status: None,  // nothing applied yet
/// };
/// let callback = CallbackBuilder::new().callback()?;
/// assert_eq!(callback.check_against(&ours)?, Verdict::Apply);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutRecord<'a> {
    /// The amount, as the host sent it to Cregis (compared by [`same_amount`](crate::same_amount):
    /// `12.5` and `12.500000` are one amount).
    pub amount: &'a str,
    /// The currency (`TRX`, `USDT-TRC20`, ...).
    pub currency: &'a str,
    /// The address paid to.
    pub address: &'a str,
    /// Cregis's id of the payout, once the host knows it.
    pub cid: Option<i64>,
    /// The last status the host applied, if any.
    pub status: Option<CallbackStatus>,
}

/// What to do with a callback that agrees with the host's record
/// ([`PayoutCallback::check_against`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// A new status, forward in the payout's life: apply it.
    Apply,
    /// The status the host already applied: nothing to do (a re-push, say).
    AlreadyApplied,
    /// An older status arriving after a newer one: the payout has moved on; change nothing.
    Stale,
}

/// Why a callback must not change the host's payout: it disagrees with what the host recorded.
/// Refuse it loudly (a person must look at the payout); never apply it.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{PayoutRecord, error::Disagreement, testing::CallbackBuilder};
///
/// let ours = PayoutRecord {
///     amount: "11", currency: "TRX", address: "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///     cid: None, status: None,
/// };
/// let callback = CallbackBuilder::new().third_party_id("order-7").callback()?;
/// let refused = callback.check_against(&ours).unwrap_err();
/// assert_eq!(refused.to_string(), "payout order-7: the callback says amount 1.1, our record says 11");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Disagreement {
    /// The callback's amount, currency, address or `cid` is not the host's.
    #[error(
        "payout {third_party_id}: the callback says {field} {callback}, our record says {ours}"
    )]
    Field {
        /// The payout.
        third_party_id: String,
        /// Which field: `amount`, `currency`, `address` or `cid`.
        field: &'static str,
        /// What the callback says.
        callback: String,
        /// What the host recorded.
        ours: String,
    },
    /// The payout already has a final status, and the callback reports another.
    #[error("payout {third_party_id} is already {ours}; the callback says {callback}")]
    AlreadyFinal {
        /// The payout.
        third_party_id: String,
        /// The final status the host applied.
        ours: CallbackStatus,
        /// What the callback reports.
        callback: CallbackStatus,
    },
}

impl PayoutCallback {
    /// Whether this callback agrees with the host's record of its payout, and if so what to
    /// do with it: [`Verdict::Apply`] a new status forward in the payout's life,
    /// [`AlreadyApplied`](Verdict::AlreadyApplied) the current one, leave a
    /// [`Stale`](Verdict::Stale) one. Never from one final status to another
    /// ([`CallbackStatus::can_move_to`]).
    ///
    /// # Example
    ///
    /// See [`PayoutRecord`] and [`Disagreement`].
    ///
    /// # Errors
    ///
    /// [`Disagreement`]: the amount (by [`same_amount`](crate::same_amount)), currency,
    /// address or a known `cid` differ (the others compared exactly, as text), or the
    /// callback would change a final status.
    pub fn check_against(&self, ours: &PayoutRecord<'_>) -> Result<Verdict, Disagreement> {
        let differs = |field: &'static str, callback: &str, ours: &str| {
            let same = if field == "amount" {
                super::same_amount(callback, ours)
            } else {
                callback == ours
            };
            (!same).then(|| Disagreement::Field {
                third_party_id: self.third_party_id.clone(),
                field,
                callback: callback.to_owned(),
                ours: ours.to_owned(),
            })
        };
        let fields = [
            ("amount", self.amount.as_str(), ours.amount),
            ("currency", self.currency.as_str(), ours.currency),
            ("address", self.address.as_str(), ours.address),
        ];
        if let Some(refused) = fields
            .into_iter()
            .find_map(|(field, callback, ours)| differs(field, callback, ours))
        {
            return Err(refused);
        }
        if let Some(cid) = ours.cid {
            if let Some(refused) = differs("cid", &self.cid.to_string(), &cid.to_string()) {
                return Err(refused);
            }
        }
        Ok(match ours.status {
            None => Verdict::Apply,
            Some(current) if current == self.status => Verdict::AlreadyApplied,
            Some(current) if current.is_final() => {
                return Err(Disagreement::AlreadyFinal {
                    third_party_id: self.third_party_id.clone(),
                    ours: current,
                    callback: self.status,
                });
            }
            Some(current) if current.can_move_to(self.status) => Verdict::Apply,
            Some(_) => Verdict::Stale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackStatus::*;
    use crate::testing::CallbackBuilder;

    const ADDRESS: &str = "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS";

    fn record(status: Option<CallbackStatus>) -> PayoutRecord<'static> {
        PayoutRecord {
            amount: "1.1",
            currency: "TRX",
            address: ADDRESS,
            cid: Some(1382688606330880),
            status,
        }
    }

    fn callback(status: CallbackStatus) -> PayoutCallback {
        CallbackBuilder::new()
            .cid(1382688606330880)
            .third_party_id("order-7")
            .status(status)
            .callback()
            .unwrap()
    }

    #[test]
    fn a_status_moves_forward_once_and_never_back() {
        let check = |ours, next| callback(next).check_against(&record(ours));
        assert_eq!(check(None, TransactionSuccessful), Ok(Verdict::Apply));
        assert_eq!(
            check(Some(PendingApproval), PendingSignature),
            Ok(Verdict::Apply)
        );
        assert_eq!(
            check(Some(PendingSignature), PendingApproval),
            Ok(Verdict::Stale)
        );
        assert_eq!(
            check(Some(TransactionSuccessful), TransactionSuccessful),
            Ok(Verdict::AlreadyApplied)
        );
        assert_eq!(
            check(Some(TransactionSuccessful), TransactionFailed),
            Err(Disagreement::AlreadyFinal {
                third_party_id: "order-7".into(),
                ours: TransactionSuccessful,
                callback: TransactionFailed,
            })
        );
        // A late non-final status after a final one is refused too: a final status stays.
        assert!(check(Some(TransactionFailed), PendingSignature).is_err());
    }

    #[test]
    fn the_amount_matches_as_a_number_the_other_fields_to_the_character() {
        let ok = callback(TransactionSuccessful);
        // The amount is compared as the number it denotes (`same_amount`).
        for same in ["1.1", "1.10", "1.100000", "01.1"] {
            let ours = PayoutRecord {
                amount: same,
                ..record(None)
            };
            assert_eq!(ok.check_against(&ours), Ok(Verdict::Apply), "{same}");
        }
        for (field, ours) in [
            (
                "amount",
                PayoutRecord {
                    amount: "11",
                    ..record(None)
                },
            ),
            (
                "amount",
                PayoutRecord {
                    amount: "1.1e0",
                    ..record(None)
                },
            ),
            (
                "currency",
                PayoutRecord {
                    currency: "USDT-TRC20",
                    ..record(None)
                },
            ),
            (
                "address",
                PayoutRecord {
                    address: "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FT",
                    ..record(None)
                },
            ),
            (
                "cid",
                PayoutRecord {
                    cid: Some(1),
                    ..record(None)
                },
            ),
        ] {
            let refused = ok.check_against(&ours).unwrap_err();
            assert!(
                matches!(&refused, Disagreement::Field { field: f, .. } if *f == field),
                "{refused}"
            );
        }
        // An unknown cid is not a disagreement.
        let unknown = PayoutRecord {
            cid: None,
            ..record(None)
        };
        assert_eq!(ok.check_against(&unknown), Ok(Verdict::Apply));
    }
}
