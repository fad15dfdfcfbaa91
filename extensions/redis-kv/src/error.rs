//! What can go wrong when `extension:redis_kv` starts: its kind, its context (the option, the
//! file, the server), and the cause.

use std::path::PathBuf;

use otap_df_core::extension::{ClassifiedError, ErrorKind};

/// Why a `redis_kv` instance could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum RedisKvError {
    /// A reload changed an option that sets up the connection (the engine gives the
    /// extension a new instance, with its own connection, instead).
    #[error(
        "`{option}` cannot change in place (it sets up the connection); a new instance takes it"
    )]
    FixedAtStart {
        /// The option.
        option: &'static str,
    },
    /// `url` is not a Redis URL.
    #[error("invalid `url` ({kind:?})")]
    InvalidUrl {
        /// The client library's classification.
        kind: redis::ErrorKind,
    },
    /// A file an option names cannot be read.
    #[error("cannot read `{option}` `{}`: {}", path.display(), source.kind())]
    Unreadable {
        /// The option (`password_file`, `tls.ca_file`, ...).
        option: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `tls` file holds no certificate.
    #[error("`{option}` `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)", path.display())]
    NoCertificate {
        /// The option.
        option: String,
        /// The file.
        path: PathBuf,
    },
    /// A `tls` file is not PEM.
    #[error("`{option}` `{}` is not valid PEM: {problem}", path.display())]
    InvalidPem {
        /// The option.
        option: String,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        problem: String,
    },
    /// The client library refused the `tls` files.
    #[error("cannot use the `tls` files: {message}")]
    Tls {
        /// What the library said.
        message: String,
    },
    /// The client library refused the server address.
    #[error("cannot use `{target}` ({kind:?})")]
    Target {
        /// The server.
        target: String,
        /// The client library's classification.
        kind: redis::ErrorKind,
    },
    /// The server refused the readiness probe (a wrong password, an ACL): it will not pass by
    /// itself.
    #[error("Redis refused the readiness probe (permanent): {message}")]
    Refused {
        /// What the server said (never the password).
        message: String,
    },
}

impl ClassifiedError for RedisKvError {
    /// What the configuration names is unusable: misconfigured; the server refused the
    /// credentials, or a running instance cannot take a change: refused.
    fn kind(&self) -> ErrorKind {
        match self {
            RedisKvError::InvalidUrl { .. }
            | RedisKvError::Unreadable { .. }
            | RedisKvError::NoCertificate { .. }
            | RedisKvError::InvalidPem { .. }
            | RedisKvError::Tls { .. }
            | RedisKvError::Target { .. } => ErrorKind::Misconfigured,
            RedisKvError::Refused { .. } | RedisKvError::FixedAtStart { .. } => ErrorKind::Refused,
        }
    }
}
