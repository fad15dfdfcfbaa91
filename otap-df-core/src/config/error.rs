//! Configuration errors: what is wrong, where (YAML path, line and column), and what would be
//! valid.

use std::fmt;

use crate::capability::CapabilityId;
use crate::config::position::{Location, YamlPath};
use crate::config::urn::ComponentKind;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the document.
    pub path: YamlPath,
    /// Where in the text, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error at `path`, not yet located in the text.
    pub fn new(path: YamlPath, kind: ConfigErrorKind) -> Self {
        Self {
            path,
            location: None,
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "at `{}`: {}", self.path, self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// `a`, `b`, `c` for messages; `(none)` when empty.
pub(crate) fn one_of(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (did you mean `x`?)` when there is a suggestion.
pub(crate) fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// The close name, or else why a type a crate provides can be missing: a crate that only
/// self-registers (`linkme`) is linked only when the binary names it.
fn unknown_type_hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(_) => did_you_mean(suggestion),
        None => " (a type from a crate that registers itself is known only when the binary \
                  links that crate: `use the_crate as _;`)"
            .to_owned(),
    }
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The text is not valid YAML.
    #[error("invalid YAML: {message}")]
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// The text crosses one of the bounds of [`limits`](super::limits) (size, nesting,
    /// alias expansion, documents).
    #[error("{message}")]
    Limit {
        /// Which bound, and where.
        message: String,
    },
    /// The `version` is not one this build reads.
    #[error("unsupported version `{found}`: expected `{expected}`")]
    UnsupportedVersion {
        /// What the document says.
        found: String,
        /// What this build reads.
        expected: &'static str,
    },
    /// A required field is missing.
    #[error("missing required field `{field}`")]
    MissingField {
        /// The field.
        field: String,
    },
    /// A field that the section does not have.
    #[error("unknown field `{field}`; valid fields: {}{}", one_of(.expected), did_you_mean(.suggestion))]
    UnknownField {
        /// The field as written.
        field: String,
        /// The fields the section accepts.
        expected: Vec<String>,
        /// The closest valid field, if one is close.
        suggestion: Option<String>,
    },
    /// A value of the wrong type or out of range.
    #[error("{message}")]
    InvalidValue {
        /// What was expected and what was found.
        message: String,
    },
    /// A component type that is not `urn:otap:<kind>:<name>` or `<kind>:<name>`.
    #[error(
        "invalid component type `{value}`: expected `urn:otap:<kind>:<name>` or `<kind>:<name>`, \
         with <kind> one of `extension`, `receiver`, `processor`, `exporter`"
    )]
    InvalidTypeName {
        /// The type as written.
        value: String,
    },
    /// A component declared in the wrong section (a receiver under `extensions:`).
    #[error("`{type_name}` is {} {kind}; declare it under `{}:`", .kind.article(), .kind.section())]
    WrongSection {
        /// The type as written.
        type_name: String,
        /// The kind the type names.
        kind: ComponentKind,
    },
    /// No factory is registered under the name.
    #[error("unknown {kind} type `{name}`; registered {kind} types: {}{}", one_of(.known), unknown_type_hint(.suggestion))]
    UnknownType {
        /// The kind of component.
        kind: ComponentKind,
        /// The name as written.
        name: String,
        /// The registered names of that kind.
        known: Vec<String>,
        /// The closest registered name, if one is close.
        suggestion: Option<String>,
    },
    /// A first-party component that this build does not include.
    #[error("{kind} type `{name}` is not compiled in: enable cargo feature `{feature}`")]
    NotCompiledIn {
        /// The kind of component.
        kind: ComponentKind,
        /// Its name.
        name: String,
        /// The `otap-df` cargo feature that adds it.
        feature: String,
    },
    /// `${env:NAME}` names an unset variable.
    #[error("environment variable `{name}` is not set (referenced as `${{env:{name}}}`)")]
    UnsetEnvVar {
        /// The variable.
        name: String,
    },
    /// A `${...}` reference that is not `${env:NAME}`.
    #[error(
        "malformed reference `{reference}`: expected `${{env:NAME}}` with NAME made of letters, \
         digits and `_` (write `$${{` for a literal `${{`)"
    )]
    InvalidReference {
        /// The reference as written.
        reference: String,
    },
    /// A connection names a node that the pipeline does not have.
    #[error("unknown node `{name}`; nodes of this pipeline: {}{}", one_of(.known), did_you_mean(.suggestion))]
    UnknownNode {
        /// The name as written.
        name: String,
        /// The pipeline's nodes.
        known: Vec<String>,
        /// The closest node name, if one is close.
        suggestion: Option<String>,
    },
    /// A connection that data cannot flow along.
    #[error("invalid connection from `{from}` to `{to}`: {reason}")]
    InvalidConnection {
        /// Source node.
        from: String,
        /// Target node.
        to: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A receiver or processor from which no connection leads to an exporter: what it takes
    /// could not be delivered.
    #[error(
        "{kind} `{node}` reaches no exporter, so nothing it takes could be delivered; {}",
        reach_hint(.node, .exporters)
    )]
    NoExporterReached {
        /// The node.
        node: String,
        /// Its kind.
        kind: ComponentKind,
        /// The pipeline's exporters.
        exporters: Vec<String>,
    },
    /// A capability binding that cannot be resolved.
    #[error(transparent)]
    Binding(#[from] BindingError),
}

fn reach_hint(node: &str, exporters: &[String]) -> String {
    match exporters.first() {
        None => "the pipeline has no exporter: add one and connect it".to_owned(),
        Some(exporter) => format!(
            "connect it, for example `connections: [{{ from: {node}, to: {exporter} }}]` \
             (exporters of this pipeline: {})",
            one_of(exporters)
        ),
    }
}

/// Every error found in one configuration, in document order, with the source's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file (or other source) the configuration came from; for a layered configuration,
    /// every source, comma-separated.
    pub source: String,
    /// The sources of a layered configuration, in order, which each error's
    /// [`Location::file`](super::Location::file) indexes; empty for a single source.
    pub files: Vec<String>,
    /// The errors.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The errors of one kind, for tests and tools.
    pub fn kinds(&self) -> impl Iterator<Item = &ConfigErrorKind> {
        self.errors.iter().map(|e| &e.kind)
    }
}

/// The most errors [`ConfigErrors`] prints; the list itself keeps them all.
pub const SHOWN_ERRORS: usize = 50;

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(
            f,
            "{} error{} in {}",
            count,
            if count == 1 { "" } else { "s" },
            self.source
        )?;
        for error in self.errors.iter().take(SHOWN_ERRORS) {
            let file = error
                .location
                .and_then(|at| self.files.get(usize::from(at.file)))
                .unwrap_or(&self.source);
            match error.location {
                // A command-line override has no lines: its text is the place.
                Some(_) if file.starts_with("--set ") => {
                    write!(f, "\n  `{file}`: at `{}`: {}", error.path, error.kind)?
                }
                Some(_) => write!(f, "\n  {file}:{error}")?,
                None => write!(f, "\n  {file}: {error}")?,
            }
        }
        if count > SHOWN_ERRORS {
            write!(
                f,
                "\n  ... and {} more (the first {SHOWN_ERRORS} are shown; fix these and validate again)",
                count - SHOWN_ERRORS
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, c)| (*distance, *c))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_near_names_only() {
        let names = ["memory_kv", "redis_kv", "bearer_auth"];
        assert_eq!(closest("memroy_kv", names), Some("memory_kv".into()));
        assert_eq!(closest("redis", names), None);
        assert_eq!(closest("totally_else", names), None);
    }
}

/// A `capabilities:` entry that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// Check 1: no such extension in the node's scopes (its pipeline, its group, the engine).
    #[error(
        "node `{node}` binds `{capability}` to extension `{extension}`, which neither this \
         pipeline, its group nor the engine declares; declared extensions: {}{}", one_of(.known), did_you_mean(.suggestion)
    )]
    UnknownExtension {
        /// The node.
        node: String,
        /// The capability name as written.
        capability: String,
        /// The extension id as written.
        extension: String,
        /// The extension ids the node can bind (its pipeline's, its group's, the engine's).
        known: Vec<String>,
        /// The closest id, if one is close.
        suggestion: Option<String>,
    },
    /// Check 2: no capability has this name.
    #[error("unknown capability `{capability}`; known capabilities: {}{}", one_of(.known), did_you_mean(.suggestion))]
    UnknownCapability {
        /// The node.
        node: String,
        /// The capability name as written.
        capability: String,
        /// Every capability name.
        known: Vec<String>,
        /// The closest name, if one is close.
        suggestion: Option<String>,
    },
    /// Check 3: the extension does not provide the capability.
    #[error(
        "extension `{extension}` (type `{extension_type}`) does not provide `{capability}`; it \
         provides: {}", one_of(.provided)
    )]
    NotProvided {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension id.
        extension: String,
        /// The extension's type.
        extension_type: String,
        /// What it provides.
        provided: Vec<String>,
    },
    /// Check 4: the node's type does not accept the capability.
    #[error(
        "node `{node}` (type `{node_type}`) does not accept `{capability}`; it accepts: {}",
        one_of(.accepted)
    )]
    NotAccepted {
        /// The node.
        node: String,
        /// The node's type.
        node_type: String,
        /// The capability.
        capability: CapabilityId,
        /// What it accepts.
        accepted: Vec<String>,
    },
    /// Check 5: a local-only extension bound to a shared node.
    #[error(
        "extension `{extension}` (type `{extension_type}`) is local-only, but node `{node}` runs \
         shared and needs a shared `{capability}`; bind an extension type with a shared variant"
    )]
    ExecutionModelMismatch {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension id.
        extension: String,
        /// The extension's type.
        extension_type: String,
    },
    /// A capability the node's type requires is not bound.
    #[error(
        "node `{node}` (type `{node_type}`) requires `{capability}`; add `capabilities: {{ \
         {capability}: <extension id> }}`; extensions of this pipeline that provide it: {}",
        one_of(.candidates)
    )]
    MissingRequired {
        /// The node.
        node: String,
        /// The node's type.
        node_type: String,
        /// The capability.
        capability: CapabilityId,
        /// The pipeline's extensions that provide it.
        candidates: Vec<String>,
    },
}
