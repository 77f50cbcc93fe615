//! The approval's answers. [`Reply::approved`] is the only way the crate answers `ok`
//! (`tests/approval_ok.rs` checks that no other place does).

use std::borrow::Cow;

use crate::Reply;

impl Reply {
    /// The answer to an approval request the handler approved.
    pub(crate) fn approved() -> Reply {
        Reply {
            body: Cow::Borrowed(Reply::APPROVE),
            ..Reply::ack()
        }
    }

    /// The answer to an approval request the handler denied, for `reason`.
    pub(crate) fn denied(reason: Option<String>) -> Reply {
        Reply {
            body: Cow::Borrowed(Reply::DENY),
            denial: reason.map(Box::new),
            ..Reply::ack()
        }
    }

    /// This reply, as the answer to an approval request: its status code and error kept, its
    /// body `deny` unless it approves.
    pub(crate) fn for_approval(self) -> Reply {
        if self.is_approved() {
            return self;
        }
        Reply {
            body: Cow::Borrowed(Reply::DENY),
            ..self
        }
    }
}
