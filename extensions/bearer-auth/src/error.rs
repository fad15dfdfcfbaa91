//! What can go wrong when `extension:bearer_auth` starts: its kind, its context (the file or
//! variable), and the cause.

use otap_df_core::extension::{ClassifiedError, ErrorKind};

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
    /// A reload changed an option that the running instance cannot take in place (the
    /// engine gives the extension a new instance instead).
    #[error(
        "`{option}` cannot change in place (what reads the files and frames the header is set up at start); a new instance takes it"
    )]
    FixedAtStart {
        /// The option.
        option: &'static str,
    },
    /// `token_env` names a variable that holds only whitespace.
    #[error("environment variable `{name}` is empty")]
    EmptyVariable {
        /// The variable.
        name: String,
    },
}

impl ClassifiedError for BearerAuthError {
    /// A file or variable the configuration names is unusable: misconfigured; a change a
    /// running instance cannot take: refused.
    fn kind(&self) -> ErrorKind {
        match self {
            BearerAuthError::File(_)
            | BearerAuthError::UnsetVariable { .. }
            | BearerAuthError::EmptyVariable { .. } => ErrorKind::Misconfigured,
            BearerAuthError::FixedAtStart { .. } => ErrorKind::Refused,
        }
    }
}
