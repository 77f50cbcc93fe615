//! The API key: checked once, redacted in `Debug`, wiped when dropped.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::KeyError;

/// A Cregis API key, the secret that callbacks and requests are signed with.
///
/// It is checked once, when it is made: an empty key would let anyone forge a signature, and
/// one with whitespace around it (the newline at the end of a secrets file) would fail every
/// callback. After that nothing that takes a key can fail because of it.
///
/// It never shows itself: `Debug` prints `ApiKey([redacted])`, and there is no `Display`. Its
/// bytes are wiped ([`zeroize`](https://docs.rs/zeroize)) when the last clone is dropped, and
/// the copies verification makes on the stack are wiped once each signature is computed.
/// Clones are cheap and share one copy of the key.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::{ApiKey, error::KeyError};
///
/// let key = ApiKey::new("fake-api-key-for-docs")?;
/// assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
/// assert_eq!(ApiKey::new("").unwrap_err(), KeyError::Empty);
/// assert_eq!(ApiKey::new("fake-key\n").unwrap_err(), KeyError::Whitespace);
/// # Ok::<(), KeyError>(())
/// ```
#[derive(Clone)]
pub struct ApiKey(Arc<Zeroizing<String>>);

impl ApiKey {
    /// Checks `key` and keeps it. Read it from your secrets store, not from code; pass a
    /// `String` to hand over its buffer, which is then wiped with the key.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::ApiKey;
    ///
    /// // e.g. std::env::var("CREGIS_API_KEY")?
    /// let from_env = String::from("fake-api-key-for-docs");
    /// let key = ApiKey::new(from_env)?;
    /// # drop(key);
    /// # Ok::<(), cregis_payout_callback::error::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Empty`] if `key` is empty or only whitespace, [`KeyError::Whitespace`] if
    /// it has whitespace at its start or end.
    pub fn new(key: impl Into<String>) -> Result<ApiKey, KeyError> {
        let key = Zeroizing::new(key.into());
        let trimmed = key.trim();
        if trimmed.is_empty() {
            return Err(KeyError::Empty);
        }
        if trimmed.len() != key.len() {
            return Err(KeyError::Whitespace);
        }
        Ok(ApiKey(Arc::new(key)))
    }

    /// The key's bytes, for the digest only.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}
