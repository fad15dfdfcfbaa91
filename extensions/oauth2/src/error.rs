//! What can go wrong when an extension of this crate starts: a file an option names, or the
//! TLS trust. Failures of requests at run time are reported in the extension's degraded
//! status instead.

use std::path::PathBuf;

use otap_df_core::extension::{ClassifiedError, ErrorKind};

/// Why an `oauth2_client` or `oidc_auth` instance could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuth2Error {
    /// A file an option names cannot be read.
    #[error("cannot read `{option}` `{}`: {source}", path.display())]
    Unreadable {
        /// The option (`client_secret_file`, `private_key_file`, `tls.ca_file`).
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file an option names holds something unusable.
    #[error("`{option}` `{}` {problem}", path.display())]
    File {
        /// The option.
        option: &'static str,
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

impl ClassifiedError for OAuth2Error {
    /// Every start-time failure is a file or setting the configuration names.
    fn kind(&self) -> ErrorKind {
        ErrorKind::Misconfigured
    }
}
