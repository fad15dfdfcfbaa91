//! What can go wrong when `extension:azure_auth` starts: its kind, its context (the option
//! and file), and the cause. Failures of token requests at run time are reported in the
//! extension's degraded status instead (see the refresh loop).

use std::path::PathBuf;

use otap_df_core::extension::{ClassifiedError, ErrorKind};

/// Why an `azure_auth` instance could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AzureAuthError {
    /// A file an option names cannot be read.
    #[error("cannot read `{option}` `{}`: {source}", path.display())]
    Unreadable {
        /// The option (`client_secret_file`, `tls.ca_file`).
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The client secret file holds only whitespace.
    #[error("`client_secret_file` `{}` is empty", path.display())]
    EmptySecretFile {
        /// The file.
        path: PathBuf,
    },
    /// `tls.ca_file` holds no certificate, or one rustls cannot trust.
    #[error("`tls.ca_file` `{}` {problem}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS: {message}")]
    Tls {
        /// What rustls said.
        message: String,
    },
}

impl ClassifiedError for AzureAuthError {
    /// Every start-time failure is a file or setting the configuration names: misconfigured.
    fn kind(&self) -> ErrorKind {
        match self {
            AzureAuthError::Unreadable { .. }
            | AzureAuthError::EmptySecretFile { .. }
            | AzureAuthError::CaFile { .. }
            | AzureAuthError::Tls { .. } => ErrorKind::Misconfigured,
        }
    }
}
