//! The settings of a verifier, set once at startup.

use std::sync::Arc;
use std::time::Duration;

use super::{Clock, DEFAULT_MAX_BODY_BYTES, Settings, SystemClock, Verifier};
use crate::ApiKey;
use crate::idempotency::{DEFAULT_CLAIM_LEASE, NoStore, Store};

/// Sets up a [`Verifier`]: made by [`Verifier::builder`], finished by
/// [`build`](Self::build). Every setting is infallible (the key was checked when it was made)
/// and has a documented default; a verifier built with none is [`Verifier::new`].
///
/// `S` is the store slot: [`NoStore`] until [`idempotency`](Self::idempotency) puts a store in
/// it. It decides which of [`Verifier::process`] and [`Verifier::process_async`] the verifier
/// has (see [`idempotency`](crate::idempotency)).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use cregis_payout_callback::{ApiKey, Verifier, idempotency::MemoryIdempotencyStore};
///
/// let verifier = Verifier::builder(ApiKey::new("fake-new-key")?)
///     .also_accept(ApiKey::new("fake-old-key")?) // during a key rotation
///     .expected_pid(1382528827416576)
///     .max_body_bytes(16 * 1024)
///     .idempotency(MemoryIdempotencyStore::default())
///     .claim_lease(Duration::from_secs(120))
///     .build();
/// assert_eq!(verifier.max_body_bytes(), 16 * 1024);
/// # Ok::<(), cregis_payout_callback::error::KeyError>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct VerifierBuilder<S = NoStore> {
    settings: Settings,
    store: S,
    /// Whether deliveries are claimed in a store, under `claim_lease`.
    claims: bool,
}

impl VerifierBuilder<NoStore> {
    pub(super) fn new(api_key: ApiKey) -> VerifierBuilder<NoStore> {
        VerifierBuilder {
            settings: Settings {
                api_keys: vec![api_key],
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                expected_pid: None,
                max_age: None,
                future_skew: None,
                claim_lease: DEFAULT_CLAIM_LEASE,
                approval_timeout: crate::approval::DEFAULT_APPROVAL_TIMEOUT,
                clock: Arc::new(SystemClock),
            },
            store: NoStore,
            claims: false,
        }
    }

    /// Handles each fact once, whatever the number of deliveries: the recommended setup.
    /// Once set, it cannot be set again.
    ///
    /// Before the handler runs, the delivery's
    /// [`DeliveryKey`](crate::idempotency::DeliveryKey) (`pid`, `cid`, `status`) is claimed in
    /// `store` for an [`Attempt`](crate::idempotency::Attempt) carrying the delivery's
    /// [`Fingerprint`](crate::idempotency::Fingerprint) and a lease
    /// ([`claim_lease`](VerifierBuilder::claim_lease)):
    /// - new: the handler runs; its success completes the claim, its failure releases it (so
    ///   that a re-push can be handled later); if it panics, or its future is dropped, the
    ///   outcome is unknown and the claim holds off re-deliveries until its lease ends;
    /// - already handled, same content: answered `success` without calling the handler
    ///   ([`Reply::is_duplicate`](crate::Reply::is_duplicate));
    /// - being handled under a live lease, same content: answered 409
    ///   ([`Error::DeliveryInProgress`](crate::Error::DeliveryInProgress)), and not handled;
    /// - known key, other content: answered 409
    ///   ([`Error::ConflictingDelivery`](crate::Error::ConflictingDelivery)), and not handled:
    ///   Cregis reported the same fact twice with different fields;
    /// - the store fails: answered 500, and the handler is not called.
    ///
    /// An [`IdempotencyStore`](crate::idempotency::IdempotencyStore) serves
    /// [`Verifier::process`]; an
    /// [`AsyncIdempotencyStore`](crate::idempotency::AsyncIdempotencyStore) serves
    /// [`Verifier::process_async`]; the compiler refuses the other pairings. Clones of the
    /// verifier share the store; [`Verifier::store`] reaches it (to list and release stuck
    /// claims, say).
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier, idempotency::MemoryIdempotencyStore};
    ///
    /// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
    ///     .idempotency(MemoryIdempotencyStore::default())
    ///     .build();
    /// assert!(verifier.store().claims_in_progress().is_empty());
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn idempotency<T>(self, store: T) -> VerifierBuilder<Store<T>> {
        VerifierBuilder {
            settings: self.settings,
            store: Store(store),
            claims: true,
        }
    }
}

impl<T> VerifierBuilder<Store<T>> {
    /// Sets how long a claim in progress holds off other deliveries of the same fact; once it
    /// has ended, the next delivery takes the claim over
    /// ([`Claim::TakenOver`](crate::idempotency::Claim::TakenOver)). Defaults to 5 minutes
    /// ([`DEFAULT_CLAIM_LEASE`]). Only a verifier with a store has a lease. It must outlast an
    /// approval's decision (the approval timeout plus
    /// [`APPROVAL_RECORD_GRACE`](crate::approval::APPROVAL_RECORD_GRACE)):
    /// [`try_build`](VerifierBuilder::try_build) refuses a shorter one, and approval decisions
    /// claim for that long when it is shorter.
    ///
    /// Make it longer than your handler can ever take: a delivery that takes over a claim
    /// whose handler is in fact still running would run the handler a second time. The axum
    /// and actix-web routes enforce it: a handler still running when its lease ends is stopped
    /// (answered 500 with [`PastLease`](crate::error::PastLease) as the cause, its claim
    /// released). With [`Verifier::process`](crate::Verifier::process) or your own glue
    /// around [`Verifier::process_async`](crate::Verifier::process_async), bound the handler
    /// yourself.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{ApiKey, Verifier, idempotency::MemoryIdempotencyStore};
    ///
    /// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
    ///     .idempotency(MemoryIdempotencyStore::default())
    ///     .claim_lease(Duration::from_secs(60))
    ///     .build();
    /// assert_eq!(verifier.claim_lease(), Duration::from_secs(60));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.settings.claim_lease = lease;
        self
    }
}

impl<S> VerifierBuilder<S> {
    /// Sets how long the framework routes (`approval_route` in the axum and actix-web
    /// integrations) let an [`ApprovalHandler`](crate::approval::ApprovalHandler) decide before
    /// they answer `deny` (status 500, [`PastTimeout`](crate::error::PastTimeout) in the
    /// cause). Defaults to 3 seconds
    /// ([`DEFAULT_APPROVAL_TIMEOUT`](crate::approval::DEFAULT_APPROVAL_TIMEOUT), and why).
    /// The whole decision, the idempotency store's claim and record included, is bounded by
    /// this and half a second more, so a store that hangs is denied too. Only approvals have
    /// one; with [`Verifier::decide`](crate::Verifier::decide) in your own glue, bound the
    /// future yourself (or use `service::CregisService::approvals`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{ApiKey, ApprovalRequest, Verifier};
    ///
    /// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
    ///     .approval_timeout(Duration::from_millis(1500))
    ///     .build()
    ///     .for_kind::<ApprovalRequest>();
    /// assert_eq!(verifier.approval_timeout(), Duration::from_millis(1500));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.settings.approval_timeout = timeout;
        self
    }

    /// Also accepts signatures made with `previous_key`, for the time a key change takes.
    ///
    /// During a rotation, callbacks signed with either key verify; call it again to accept
    /// more keys. Each key is tried on every callback, in constant time, and every verified
    /// reply says which key matched ([`Reply::signed_with`](crate::Reply::signed_with)), so
    /// that you can tell when the old key has gone quiet and drop it.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier, testing::CallbackBuilder, verifier::MatchedKey};
    ///
    /// let (new, old) = (ApiKey::new("fake-new-key")?, ApiKey::new("fake-old-key")?);
    /// let verifier = Verifier::builder(new.clone()).also_accept(old.clone()).build();
    /// let from_old = CallbackBuilder::new().body(&old)?;
    /// let from_new = CallbackBuilder::new().body(&new)?;
    /// assert_eq!(verifier.verify(from_old.as_bytes())?, MatchedKey::Previous { index: 0 });
    /// assert_eq!(verifier.verify(from_new.as_bytes())?, MatchedKey::Current);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn also_accept(mut self, previous_key: ApiKey) -> Self {
        self.settings.api_keys.push(previous_key);
        self
    }

    /// Sets the largest body accepted, in bytes; a longer one is refused with
    /// [`Error::BodyTooLarge`](crate::Error::BodyTooLarge) before any parsing. Defaults to
    /// 64 KiB ([`DEFAULT_MAX_BODY_BYTES`]); a real payout callback is under 1 KiB.
    ///
    /// The framework adapters refuse a longer body before reading it; give the same number
    /// ([`Verifier::max_body_bytes`]) to any other framework's body limit.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Error, Verifier};
    ///
    /// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?).max_body_bytes(16).build();
    /// assert_eq!(
    ///     verifier.verify(br#"{"pid":1382528827416576}"#),
    ///     Err(Error::BodyTooLarge { len: 24, limit: 16 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.settings.max_body_bytes = n;
        self
    }

    /// Refuses authentic callbacks whose `pid` is not `pid`, with
    /// [`Error::PidMismatch`](crate::Error::PidMismatch). Defaults to accepting any project.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::{ApiKey, Verifier};
    ///
    /// let verifier = Verifier::builder(ApiKey::new("fake-api-key-for-docs")?)
    ///     .expected_pid(1382528827416576)
    ///     .build();
    /// assert_eq!(verifier.expected_pid(), Some(1382528827416576));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn expected_pid(mut self, pid: i64) -> Self {
        self.settings.expected_pid = Some(pid);
        self
    }

    /// Refuses callbacks whose `timestamp` is older than `max_age`, with
    /// [`Error::TimestampTooOld`](crate::Error::TimestampTooOld) (a callback exactly `max_age`
    /// old is accepted). It also turns on the future check, with [`DEFAULT_FUTURE_SKEW`]
    /// unless [`future_skew`](Self::future_skew) says otherwise.
    ///
    /// Off by default, and think before turning it on: Cregis does not retry on its own, and
    /// an operator may re-push a failed callback from the console hours or days later,
    /// possibly with its original timestamp; this check would refuse it. Replays are better
    /// stopped by [`idempotency`](VerifierBuilder::idempotency), which acknowledges a repeated
    /// delivery without handling it again.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use cregis_payout_callback::{ApiKey, Error, Verifier, testing::ManualClock};
    ///
    /// // The published vector, signed at 1688004243314 ms.
    /// let body = br#"{"pid":1382528827416576,"currency":"195@195",
    ///   "address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS","amount":"1.1","remark":"payout",
    ///   "third_party_id":"c9231e604da54469a735af3f449c880f",
    ///   "callback_url":"http://192.168.2.29:9099/callback","nonce":"hwlkk6",
    ///   "timestamp":1688004243314,"sign":"d6eef2de79e39f434a38efb910213ba6"}"#;
    /// let sent = UNIX_EPOCH + Duration::from_millis(1688004243314);
    /// let clock = ManualClock::new(sent + Duration::from_secs(300));
    /// let verifier = Verifier::builder(ApiKey::new("f502a9ac9ca54327986f29c03b271491")?)
    ///     .max_age(Duration::from_secs(300))
    ///     .clock(clock.clone())
    ///     .build();
    /// verifier.verify(body)?;
    /// clock.advance(Duration::from_millis(1));
    /// assert_eq!(verifier.verify(body), Err(Error::TimestampTooOld { max_age: Duration::from_secs(300) }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.settings.max_age = Some(max_age);
        self
    }

    /// Refuses callbacks whose `timestamp` is more than `skew` ahead of the verifier's clock,
    /// with [`Error::TimestampInFuture`](crate::Error::TimestampInFuture). Off by default;
    /// [`DEFAULT_FUTURE_SKEW`] once [`max_age`](Self::max_age) is set.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{ApiKey, Verifier};
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let verifier = Verifier::builder(key.clone())
    ///     .max_age(Duration::from_secs(600))
    ///     .future_skew(Duration::from_secs(5))
    ///     .build();
    /// assert_eq!(verifier.future_skew(), Some(Duration::from_secs(5)));
    /// // With `max_age` alone, the default skew applies.
    /// let verifier = Verifier::builder(key).max_age(Duration::from_secs(600)).build();
    /// assert_eq!(verifier.future_skew(), Some(Duration::from_secs(60)));
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    pub fn future_skew(mut self, skew: Duration) -> Self {
        self.settings.future_skew = Some(skew);
        self
    }

    /// Sets where the verifier reads the time (for freshness and claims). Defaults to
    /// [`SystemClock`]; tests pass a [`ManualClock`](crate::testing::ManualClock).
    ///
    /// # Example
    ///
    /// See [`max_age`](Self::max_age).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// The verifier, with these settings.
    ///
    /// # Example
    ///
    /// See [`VerifierBuilder`].
    pub fn build(self) -> Verifier<S> {
        Verifier {
            settings: Arc::new(self.settings),
            store: Arc::new(self.store),
            kind: std::marker::PhantomData,
        }
    }

    /// The verifier, or an error if a setting cannot work: a claim lease (with a store) shorter
    /// than the approval timeout plus [`APPROVAL_RECORD_GRACE`](crate::approval::APPROVAL_RECORD_GRACE),
    /// where a second delivery of an approval request could take the claim over while the
    /// first is still deciding. [`build`](VerifierBuilder::build) accepts it (a verifier of
    /// payout callbacks may want a short lease), and its approval decisions claim for that sum
    /// instead.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use cregis_payout_callback::{ApiKey, Verifier};
    /// use cregis_payout_callback::idempotency::MemoryIdempotencyStore;
    ///
    /// let key = ApiKey::new("fake-api-key-for-docs")?;
    /// let refused = Verifier::builder(key)
    ///     .idempotency(MemoryIdempotencyStore::new(1000))
    ///     .approval_timeout(Duration::from_secs(3))
    ///     .claim_lease(Duration::from_secs(2))
    ///     .try_build();
    /// assert_eq!(
    ///     refused.unwrap_err().to_string(),
    ///     "the claim lease (2s) is shorter than the approval timeout (3s) plus 500ms to record \
    ///      the decision: a second delivery could take over the claim while the first decides"
    /// );
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`InvalidSetting`] says which setting and why.
    pub fn try_build(self) -> Result<Verifier<S>, InvalidSetting> {
        let least = self.least_claim_lease();
        if self.claims && self.settings.claim_lease < least {
            return Err(InvalidSetting {
                message: format!(
                    "the claim lease ({:?}) is shorter than the approval timeout ({:?}) plus \
                     {:?} to record the decision: a second delivery could take over the claim \
                     while the first decides",
                    self.settings.claim_lease,
                    self.settings.approval_timeout,
                    crate::approval::APPROVAL_RECORD_GRACE,
                ),
            });
        }
        Ok(self.build())
    }

    /// The shortest claim lease that outlasts an approval's decision.
    fn least_claim_lease(&self) -> Duration {
        self.settings
            .approval_timeout
            .saturating_add(crate::approval::APPROVAL_RECORD_GRACE)
    }
}

/// A verifier setting that cannot work, from [`VerifierBuilder::try_build`].
///
/// # Example
///
/// See [`VerifierBuilder::try_build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSetting {
    message: String,
}

/// The future skew allowed once [`VerifierBuilder::max_age`] is set, unless set otherwise:
/// 1 minute.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);
