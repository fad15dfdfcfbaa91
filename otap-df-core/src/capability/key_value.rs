//! Types of the key/value capability.

use std::time::Duration;

/// A key/value store call failed. Each variant says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached now (connection refused or lost). Transient.
    #[error("key/value store `{store}` is unavailable (transient, retry later): {message}")]
    Unavailable {
        /// The extension id of the store.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// The store did not answer in time. Transient.
    #[error("key/value store `{store}` did not answer within {timeout:?} (transient)")]
    Timeout {
        /// The extension id of the store.
        store: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The store refused the operation (authentication, wrong data type, value too large).
    /// Permanent: retrying the same call fails the same way.
    #[error("key/value store `{store}` refused the operation (permanent): {message}")]
    Refused {
        /// The extension id of the store.
        store: String,
        /// What went wrong.
        message: String,
    },
}

impl KvError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, KvError::Unavailable { .. } | KvError::Timeout { .. })
    }

    /// The extension id of the store the error comes from.
    pub fn store(&self) -> &str {
        match self {
            KvError::Unavailable { store, .. }
            | KvError::Timeout { store, .. }
            | KvError::Refused { store, .. } => store,
        }
    }
}
