//! The route's half of the inbox: verify, record, acknowledge.

use super::{Accepted, Inbox, NewEntry};
use crate::error::{Cause, StoreOperation};
use crate::idempotency::NoStore;
use crate::{Error, Notification, Reply, Verifier};

impl<C: Notification> Verifier<NoStore, C> {
    /// Verifies and parses `body`, records it in `inbox`, and says what to answer: 200
    /// `success` once the entry is committed (or the same delivery was recorded before, as a
    /// [duplicate](Reply::is_duplicate)), 409
    /// [`ConflictingDelivery`](Error::ConflictingDelivery) when the fact was recorded with
    /// other content, 500 [`Store`](Error::Store) (operation
    /// [`Accept`](StoreOperation::Accept)) when the write failed, and every refusal of
    /// [`verify_and_parse`](Verifier::verify_and_parse) as [`process`](Verifier::process)
    /// answers it. No handler runs here: a [`Worker`](super::Worker) runs it.
    ///
    /// Only a verifier without an idempotency store has it: the inbox itself keeps each fact
    /// once.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")]
    /// # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use cregis_payout_callback::inbox::SqliteInbox;
    /// use cregis_payout_callback::{ApiKey, Verifier, testing::CallbackBuilder};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let (verifier, inbox) = (Verifier::new(key.clone()), SqliteInbox::open_in_memory().await?);
    /// let body = CallbackBuilder::new().body(&key)?;
    /// assert!(verifier.accept(body.as_bytes(), &inbox).await.is_ack());
    /// assert!(verifier.accept(body.as_bytes(), &inbox).await.is_duplicate());
    /// let forged = CallbackBuilder::new().body(&ApiKey::new("fake-attacker-key")?)?;
    /// assert_eq!(verifier.accept(forged.as_bytes(), &inbox).await.status_code(), 401);
    /// # Ok(())
    /// # }
    /// # #[cfg(feature = "sqlite")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(doc())?;
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub async fn accept<I: Inbox>(&self, body: &[u8], inbox: &I) -> Reply {
        let reply = match self.verified_entry(body) {
            Err(refused) => refused,
            Ok((callback, matched, fingerprint)) => {
                let key = callback.delivery_key();
                let entry = NewEntry {
                    key,
                    fingerprint,
                    body,
                    origin: callback.origin(),
                };
                #[cfg(feature = "metrics")]
                let began = std::time::Instant::now();
                let accepted = inbox.accept(&entry).await;
                #[cfg(feature = "metrics")]
                crate::meter::accepted(key.kind, began.elapsed());
                let reply = match accepted {
                    Ok(Accepted::New(_)) => Reply::ack(),
                    Ok(Accepted::Duplicate(_)) => Reply::duplicate(),
                    Ok(Accepted::Conflict(_)) => Error::ConflictingDelivery { key }.into(),
                    Ok(Accepted::OtherFinal { recorded, .. }) => {
                        Error::ConflictingFinalStatus { key, recorded }.into()
                    }
                    Err(cause) => Error::Store {
                        operation: StoreOperation::Accept,
                        cause: Cause::new(cause),
                    }
                    .into(),
                };
                reply.about(key).with_signer(matched)
            }
        };
        crate::trace::delivery(&reply);
        reply
    }
}
