//! How an extension fails: at run time (its own error, or its crate's typed one) or by
//! breaking its factory's declaration; and, whatever the crate, what kind of failure it is
//! ([`ErrorKind`]): whether fixing the configuration, someone's action, or time (a retry)
//! can help.

use std::sync::Arc;

use crate::capability::CapabilityId;
use crate::config::ConfigError;

/// What kind of failure an extension's error is, the same for every extension crate: what
/// can make it pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Its configuration, or something it names (a file, a variable, a URL), is wrong: fixing
    /// the configuration helps; retrying cannot.
    Misconfigured,
    /// What was asked was refused — by a service it relies on (credentials, permissions) or by
    /// the extension itself (a change it cannot take in place): someone has to change
    /// something; retrying the same cannot help.
    Refused,
    /// A service it relies on cannot be reached, or is not ready, now: retrying can help.
    Unavailable,
    /// A failure of the extension itself (or a broken declaration): report it.
    Failed,
}

impl ErrorKind {
    /// Whether trying again, unchanged, can succeed.
    pub const fn retry_can_help(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    /// `misconfigured`, `refused`, `unavailable` or `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Misconfigured => "misconfigured",
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extension crate's error type, which says of each of its values what kind of failure it
/// is: what [`ExtensionError::typed`] keeps.
pub trait ClassifiedError: std::error::Error + Send + Sync + 'static {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;
}

/// A config struct's own check failed (built in code, the constructor that takes it says
/// so): the configuration is wrong, and retrying cannot help.
impl ClassifiedError for crate::config::InvalidOption {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Misconfigured
    }
}

/// An extension failed at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The extension reported a failure.
    #[error("extension `{extension}` failed: {message}")]
    Failed {
        /// Extension id.
        extension: String,
        /// What went wrong.
        message: String,
    },
    /// The extension crate's own typed error, kept as the source (its kind and context).
    #[error("extension `{extension}` failed: {source}")]
    Source {
        /// Extension id.
        extension: String,
        /// What kind of failure it is, as the crate's error says.
        kind: ErrorKind,
        /// The crate's error.
        #[source]
        source: SourceError,
    },
    /// Its value broke the factory's declaration.
    #[error(transparent)]
    Build(#[from] ExtensionBuildError),
    /// Its `config:` block is invalid (normally caught by validation before construction).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ExtensionError {
    /// Extension `extension` failed with its crate's typed `error`, kept as the source with
    /// its kind.
    pub fn typed(extension: impl Into<String>, error: impl ClassifiedError) -> Self {
        ExtensionError::Source {
            extension: extension.into(),
            kind: error.kind(),
            source: SourceError(Arc::new(error)),
        }
    }

    /// What kind of failure this is: a crate's typed error says; an invalid `config:` block
    /// is [`ErrorKind::Misconfigured`]; a message or a broken declaration is
    /// [`ErrorKind::Failed`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExtensionError::Source { kind, .. } => *kind,
            ExtensionError::Config(_) => ErrorKind::Misconfigured,
            ExtensionError::Failed { .. } | ExtensionError::Build(_) => ErrorKind::Failed,
        }
    }

    /// Whether trying again, unchanged, can succeed ([`ErrorKind::retry_can_help`]).
    pub fn retry_can_help(&self) -> bool {
        self.kind().retry_can_help()
    }
}

/// An extension crate's error inside [`ExtensionError::Source`]: shared (the engine's errors
/// are `Clone`), compared by what it says.
#[derive(Debug, Clone)]
pub struct SourceError(Arc<dyn std::error::Error + Send + Sync>);

impl SourceError {
    /// The crate's error, to downcast to its type.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for SourceError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SourceError {}

/// A constructor built an extension that does not match its factory's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionBuildError {
    /// It provides a capability the factory does not declare.
    #[error(
        "extension `{extension}` (type `{extension_type}`) provides `{capability}`, which its \
         factory does not declare; declared: {declared:?}"
    )]
    Undeclared {
        /// Extension id.
        extension: String,
        /// Extension type.
        extension_type: &'static str,
        /// The capability.
        capability: CapabilityId,
        /// What the factory declares.
        declared: Vec<&'static str>,
    },
    /// The factory declares a capability the instance does not provide.
    #[error(
        "extension `{extension}` (type `{extension_type}`) does not provide `{capability}`, \
         which its factory declares"
    )]
    Missing {
        /// Extension id.
        extension: String,
        /// Extension type.
        extension_type: &'static str,
        /// The capability.
        capability: CapabilityId,
    },
    /// The same capability was provided twice.
    #[error("extension `{extension}` (type `{extension_type}`) provides `{capability}` twice")]
    Duplicate {
        /// Extension id.
        extension: String,
        /// Extension type.
        extension_type: &'static str,
        /// The capability.
        capability: CapabilityId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the service is down")]
    struct Down;

    impl ClassifiedError for Down {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }
    }

    #[test]
    fn every_error_has_a_kind_and_only_an_unavailable_service_is_worth_a_retry() {
        let typed = ExtensionError::typed("store", Down);
        assert_eq!(typed.kind(), ErrorKind::Unavailable);
        assert!(typed.retry_can_help());
        assert_eq!(
            typed.to_string(),
            "extension `store` failed: the service is down"
        );
        let message = ExtensionError::Failed {
            extension: "x".into(),
            message: "broke".into(),
        };
        assert_eq!(message.kind(), ErrorKind::Failed);
        let config = ExtensionError::Config(ConfigError::new(
            crate::config::YamlPath::root(),
            crate::config::ConfigErrorKind::MissingField {
                field: "url".into(),
            },
        ));
        assert_eq!(config.kind(), ErrorKind::Misconfigured);
        let kinds = [
            ErrorKind::Misconfigured,
            ErrorKind::Refused,
            ErrorKind::Unavailable,
            ErrorKind::Failed,
        ];
        let names: Vec<String> = kinds.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["misconfigured", "refused", "unavailable", "failed"]);
        let retry: Vec<bool> = kinds.iter().map(|k| k.retry_can_help()).collect();
        assert_eq!(retry, [false, false, true, false]);
    }
}
