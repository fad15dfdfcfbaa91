//! How an extension fails: at run time (its own error, or its crate's typed one) or by
//! breaking its factory's declaration.

use std::sync::Arc;

use crate::capability::CapabilityId;
use crate::config::ConfigError;

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
    /// Extension `extension` failed with its crate's typed `error`, kept as the source.
    pub fn typed(
        extension: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ExtensionError::Source {
            extension: extension.into(),
            source: SourceError(Arc::new(error)),
        }
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
