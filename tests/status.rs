//! `CallbackStatus`: codes, conversions, classification, words and JSON form.

use std::collections::HashSet;

use cregis_payout_callback::{CallbackStatus, Error};

/// Every documented status with its code, words, finality and success, from SPEC.md.
const TABLE: [(CallbackStatus, i32, &str, bool, bool); 8] = [
    (
        CallbackStatus::PendingApproval,
        0,
        "pending approval",
        false,
        false,
    ),
    (
        CallbackStatus::SignatureApproved,
        1,
        "signature approved",
        false,
        false,
    ),
    (
        CallbackStatus::SignatureRejected,
        2,
        "signature rejected",
        true,
        false,
    ),
    (
        CallbackStatus::ApprovalCancelled,
        3,
        "approval cancelled",
        true,
        false,
    ),
    (
        CallbackStatus::ApprovalRejected,
        4,
        "approval rejected",
        true,
        false,
    ),
    (
        CallbackStatus::PendingSignature,
        5,
        "pending signature",
        false,
        false,
    ),
    (
        CallbackStatus::TransactionSuccessful,
        6,
        "transaction successful",
        true,
        true,
    ),
    (
        CallbackStatus::TransactionFailed,
        7,
        "transaction failed",
        true,
        false,
    ),
];

#[test]
fn code_is_the_documented_number() {
    for (status, code, ..) in TABLE {
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(i32::from(status), code, "{status:?}");
    }
}

#[test]
fn try_from_maps_every_documented_code() {
    for (status, code, ..) in TABLE {
        assert_eq!(CallbackStatus::try_from(code), Ok(status));
        let via_into: Result<CallbackStatus, Error> = code.try_into();
        assert_eq!(via_into, Ok(status));
    }
}

#[test]
fn try_from_refuses_every_other_code() {
    for code in [8, 9, -1, 10, 100, 255, 256, i32::MAX, i32::MIN, -8] {
        assert_eq!(
            CallbackStatus::try_from(code),
            Err(Error::UnknownStatus {
                code: i64::from(code)
            }),
            "{code}"
        );
    }
    for code in [i64::from(i32::MAX) + 1, i64::MAX, i64::MIN] {
        assert_eq!(
            CallbackStatus::try_from(code),
            Err(Error::UnknownStatus { code }),
            "{code}"
        );
    }
}

#[test]
fn try_from_accepts_exactly_0_to_7_in_a_wide_range() {
    let accepted: Vec<i32> = (-1000..1000)
        .filter(|&code| CallbackStatus::try_from(code).is_ok())
        .collect();
    assert_eq!(accepted, (0..=7).collect::<Vec<_>>());
}

#[test]
fn is_final_is_exactly_2_3_4_6_7() {
    for (status, code, _, is_final, _) in TABLE {
        assert_eq!(status.is_final(), is_final, "{code}");
    }
    let finals: Vec<i32> = TABLE
        .iter()
        .filter(|row| row.0.is_final())
        .map(|row| row.1)
        .collect();
    assert_eq!(finals, [2, 3, 4, 6, 7]);
}

#[test]
fn is_success_is_only_6() {
    for (status, code, _, _, is_success) in TABLE {
        assert_eq!(status.is_success(), is_success, "{code}");
    }
    let successes: Vec<CallbackStatus> = TABLE
        .iter()
        .map(|row| row.0)
        .filter(|status| status.is_success())
        .collect();
    assert_eq!(successes, [CallbackStatus::TransactionSuccessful]);
    // A success is always final.
    assert!(CallbackStatus::TransactionSuccessful.is_final());
}

#[test]
fn display_is_in_words() {
    for (status, code, words, ..) in TABLE {
        assert_eq!(status.to_string(), words, "{code}");
        assert_eq!(format!("{status}"), words);
    }
}

#[test]
fn serializes_as_an_integer() {
    assert_eq!(
        serde_json::to_string(&CallbackStatus::TransactionSuccessful).unwrap(),
        "6"
    );
    for (status, code, ..) in TABLE {
        assert_eq!(serde_json::to_string(&status).unwrap(), code.to_string());
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!(code)
        );
    }
}

#[test]
fn deserializes_from_an_integer() {
    assert_eq!(
        serde_json::from_str::<CallbackStatus>("6").unwrap(),
        CallbackStatus::TransactionSuccessful
    );
    for (status, code, ..) in TABLE {
        assert_eq!(
            serde_json::from_str::<CallbackStatus>(&code.to_string()).unwrap(),
            status
        );
    }
}

#[test]
fn deserializing_anything_else_fails() {
    for text in [
        "8",
        "-1",
        "\"6\"",
        "6.0",
        "null",
        "\"transaction successful\"",
        "[]",
    ] {
        assert!(
            serde_json::from_str::<CallbackStatus>(text).is_err(),
            "{text} should not parse"
        );
    }
}

#[test]
fn all_lists_the_eight_statuses_in_code_order() {
    let codes: Vec<i32> = CallbackStatus::ALL.iter().map(|s| s.code()).collect();
    assert_eq!(codes, (0..=7).collect::<Vec<_>>());
    let from_table: Vec<CallbackStatus> = TABLE.iter().map(|row| row.0).collect();
    assert_eq!(CallbackStatus::ALL.to_vec(), from_table);
}

#[test]
fn statuses_are_distinct_copy_and_hashable() {
    let set: HashSet<CallbackStatus> = TABLE.iter().map(|row| row.0).collect();
    assert_eq!(set.len(), 8);
    let status = CallbackStatus::TransactionFailed;
    let copy = status;
    assert_eq!(status, copy);
    assert_ne!(status, CallbackStatus::TransactionSuccessful);
    assert_eq!(format!("{status:?}"), "TransactionFailed");
}

#[test]
fn a_payout_moves_only_forward_and_never_leaves_a_final_status() {
    use CallbackStatus::*;
    for &from in CallbackStatus::ALL {
        for &to in CallbackStatus::ALL {
            let expected = match (from, to) {
                (from, _) if from.is_final() => false,
                (PendingApproval, SignatureApproved | PendingSignature)
                | (SignatureApproved, PendingSignature) => true,
                (_, to) => to.is_final(),
            };
            assert_eq!(from.can_move_to(to), expected, "{from} -> {to}");
        }
    }
}
