//! What resolution produces: a plan per pipeline, and warnings.

use std::fmt;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::capability::Binding;
use crate::capability::CapabilityId;
use crate::config::{EngineConfig, Location, Source, YamlPath};
use crate::extension::{ExecutionModel, ExtensionFactory};
use crate::node::NodeFactory;

/// Something worth knowing that does not stop the configuration from running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where.
    pub path: YamlPath,
    /// Where in the text.
    pub location: Option<Location>,
    /// What.
    pub kind: WarningKind,
}

/// What a [`ConfigWarning`] is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    /// No node binds the extension: it is not created or started.
    #[error("extension `{extension}` is not bound by any node and will not be started")]
    UnboundExtension {
        /// The extension id.
        extension: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "at `{}`: {}", self.path, self.kind)
    }
}

/// A configuration that passed every check.
#[derive(Debug)]
pub struct ResolvedConfig {
    /// Engine settings.
    pub engine: EngineConfig,
    /// One plan per pipeline, in document order.
    pub pipelines: Vec<PipelinePlan>,
    /// Warnings, in document order.
    pub warnings: Vec<ConfigWarning>,
    /// The document's source and positions.
    pub source: Source,
}

/// A pipeline, resolved.
#[derive(Debug)]
pub struct PipelinePlan {
    /// Its group.
    pub group: String,
    /// Its name.
    pub name: String,
    /// Bound extensions, in document order. Unbound ones are not here.
    pub extensions: Vec<ExtensionPlan>,
    /// Nodes, in document order.
    pub nodes: Vec<NodePlan>,
    /// Data edges `(from, to)`, in document order.
    pub edges: Vec<(String, String)>,
}

/// A bound extension, resolved.
#[derive(Debug)]
pub struct ExtensionPlan {
    /// Its id.
    pub id: String,
    /// Its type.
    pub factory: &'static ExtensionFactory,
    /// Which variant runs: shared when a shared node binds it or it has no local variant.
    pub execution: ExecutionModel,
    /// The readiness timeout.
    pub startup_timeout: Duration,
    /// Its `config:` block.
    pub config: Value,
    /// Its path.
    pub path: YamlPath,
    /// Who binds it, in document order.
    pub consumers: Vec<Consumer>,
}

/// A node that binds one of an extension's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The node's id.
    pub node: String,
    /// The capability it binds.
    pub capability: CapabilityId,
}

/// A node, resolved.
#[derive(Debug)]
pub struct NodePlan {
    /// Its id.
    pub id: String,
    /// Its type.
    pub factory: &'static NodeFactory,
    /// Its `config:` block.
    pub config: Value,
    /// Its path.
    pub path: YamlPath,
    /// Its bindings, in document order.
    pub bindings: Vec<Binding>,
}
