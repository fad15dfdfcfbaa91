//! What can go wrong when `extension:bearer_auth` starts: its kind, its context (the file or
//! variable), and the cause.

use crate::token_source::FileError;

/// Why a `bearer_auth` instance could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BearerAuthError {
    /// A token file is missing, unreadable or empty.
    #[error(transparent)]
    File(#[from] FileError),
    /// `token_env` names a variable that is not set.
    #[error("environment variable `{name}` is not set")]
    UnsetVariable {
        /// The variable.
        name: String,
    },
    /// `token_env` names a variable that holds only whitespace.
    #[error("environment variable `{name}` is empty")]
    EmptyVariable {
        /// The variable.
        name: String,
    },
}
