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
    /// The admin endpoint listens on an address other machines can reach.
    #[error("the admin endpoint listens on {listen}, beyond this machine: {reach}")]
    AdminReachable {
        /// Its address.
        listen: std::net::SocketAddr,
        /// Who can do what there, and how to narrow it.
        reach: String,
    },
    /// A processor or exporter that no receiver feeds: it never gets data.
    #[error(
        "{kind} `{node}` has no input from any receiver, so it never gets data; connect it or remove it"
    )]
    NoInput {
        /// The node.
        node: String,
        /// Its kind.
        kind: crate::config::ComponentKind,
    },
    /// An extension has the id of one in an enclosing scope: within its scope, bindings to
    /// that id reach it, not the outer one.
    #[error(
        "extension `{extension}` of {scope} shadows `{extension}` of {outer}{outer_at}: nodes of {scope} that bind `{extension}` get this one"
    )]
    Shadows {
        /// The extension id.
        extension: String,
        /// The inner scope (`pipeline \`g/p\``, `group \`g\``).
        scope: String,
        /// The outer scope (`group \`g\``, `the engine`).
        outer: String,
        /// ` (line L:C)` of the outer declaration, or empty.
        outer_at: String,
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
    /// The outer scopes: the engine's (always first), then one per group in document order,
    /// each with its bound extensions.
    pub scopes: Vec<ScopePlan>,
    /// One plan per pipeline, in document order.
    pub pipelines: Vec<PipelinePlan>,
    /// Warnings, in document order.
    pub warnings: Vec<ConfigWarning>,
    /// The document's source and positions.
    pub source: Source,
}

/// Where extensions are declared: the engine, a group, or a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `engine.extensions`: one instance for every pipeline.
    Engine,
    /// `groups.<group>.extensions`: one instance for every pipeline of the group.
    Group(String),
    /// A pipeline's `extensions` (`group`, `pipeline`).
    Pipeline(String, String),
}

impl Scope {
    /// How telemetry names the scope (the `pipeline` label of the extension metrics):
    /// `engine`, `group:<group>`, `<group>/<pipeline>`.
    pub fn label(&self) -> String {
        match self {
            Scope::Engine => "engine".to_owned(),
            Scope::Group(group) => format!("group:{group}"),
            Scope::Pipeline(group, pipeline) => format!("{group}/{pipeline}"),
        }
    }

    /// The words for a scope given by its [`label`](Self::label): `the engine`,
    /// ``group `g` ``, ``pipeline `g/p` ``.
    pub fn describe_label(label: &str) -> String {
        if label == "engine" {
            "the engine".to_owned()
        } else if let Some(group) = label.strip_prefix("group:").filter(|g| !g.contains('/')) {
            format!("group `{group}`")
        } else {
            format!("pipeline `{label}`")
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Engine => f.write_str("the engine"),
            Scope::Group(group) => write!(f, "group `{group}`"),
            Scope::Pipeline(group, pipeline) => write!(f, "pipeline `{group}/{pipeline}`"),
        }
    }
}

/// Which instances an extension belongs to, as the engine keys them: an outer scope (an index
/// into [`ResolvedConfig::scopes`]) or a pipeline (an index into
/// [`ResolvedConfig::pipelines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKey {
    /// The engine (`0`) or a group.
    Outer(usize),
    /// A pipeline.
    Pipeline(usize),
}

/// An outer scope (the engine or a group), resolved.
#[derive(Debug)]
pub struct ScopePlan {
    /// Which scope.
    pub scope: Scope,
    /// Its bound extensions, in document order; each runs one shared instance for the whole
    /// scope. Unbound ones are not here.
    pub extensions: Vec<ExtensionPlan>,
}

impl ResolvedConfig {
    /// The engine extension whose `bearer_token_authorizer` decides on the admin endpoint's
    /// token (`engine.admin.capabilities`), when one is bound.
    pub fn admin_authorizer(&self) -> Option<&str> {
        let (pipeline, node) = super::ADMIN_CONSUMER;
        self.scopes
            .iter()
            .find(|scope| scope.scope == Scope::Engine)?
            .extensions
            .iter()
            .find(|extension| {
                extension
                    .consumers
                    .iter()
                    .any(|c| c.pipeline == pipeline && c.node == node)
            })
            .map(|extension| extension.id.as_str())
    }

    /// The scope `key` names.
    pub fn scope(&self, key: ScopeKey) -> Scope {
        match key {
            ScopeKey::Outer(index) => self.scopes[index].scope.clone(),
            ScopeKey::Pipeline(index) => {
                let plan = &self.pipelines[index];
                Scope::Pipeline(plan.group.clone(), plan.name.clone())
            }
        }
    }

    /// The bound extensions of scope `key`.
    pub fn extensions_of(&self, key: ScopeKey) -> &[ExtensionPlan] {
        match key {
            ScopeKey::Outer(index) => &self.scopes[index].extensions,
            ScopeKey::Pipeline(index) => &self.pipelines[index].extensions,
        }
    }

    /// The scopes whose extensions the nodes of pipeline `pipeline` can bind, innermost first:
    /// the pipeline, its group, the engine.
    pub fn scopes_of(&self, pipeline: usize) -> [ScopeKey; 3] {
        let group = &self.pipelines[pipeline].group;
        let group_scope = self
            .scopes
            .iter()
            .position(|s| matches!(&s.scope, Scope::Group(g) if g == group))
            .unwrap_or(0);
        [
            ScopeKey::Pipeline(pipeline),
            ScopeKey::Outer(group_scope),
            ScopeKey::Outer(0),
        ]
    }

    /// The scope of the extension `extension` that the nodes of pipeline `pipeline` bind by
    /// that id: the innermost that has it, as resolution bound it.
    pub fn binding_scope(&self, pipeline: usize, extension: &str) -> Option<ScopeKey> {
        self.scopes_of(pipeline)
            .into_iter()
            .find(|&key| self.extensions_of(key).iter().any(|e| e.id == extension))
    }
}

/// A pipeline, resolved.
#[derive(Debug)]
pub struct PipelinePlan {
    /// Its group.
    pub group: String,
    /// Its name.
    pub name: String,
    /// Bound extensions, in document order but for those another binds, which come before it.
    /// Unbound ones are not here.
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
    /// Which variant runs: shared when a shared node binds it, it has no local variant, or it
    /// is declared at the engine or a group.
    pub execution: ExecutionModel,
    /// The readiness timeout.
    pub startup_timeout: Duration,
    /// Its `config:` block.
    pub config: Value,
    /// Its path.
    pub path: YamlPath,
    /// The capabilities it provides: its type's, or those its `config:` names
    /// ([`ExtensionFactory::provided_for`]).
    pub provides: Vec<CapabilityId>,
    /// Who binds it: nodes in document order, then the extensions that bind it.
    pub consumers: Vec<Consumer>,
    /// The capabilities of other extensions it binds (its `capabilities:`), in document
    /// order; the plans of a pipeline's extensions are ordered so that each comes after
    /// those it binds.
    pub bindings: Vec<Binding>,
}

/// A node, or an extension, that binds one of an extension's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The consumer's pipeline (`group/pipeline`).
    pub pipeline: String,
    /// The node's id, or the extension's for an extension consumer.
    pub node: String,
    /// The capability it binds.
    pub capability: CapabilityId,
    /// Whether the consumer is an extension of the pipeline rather than a node.
    pub extension: bool,
}

impl PipelinePlan {
    /// Whether node `id` hands on payloads whose acknowledgement a node downstream settles
    /// itself, later ([`NodeFactory::acknowledges_with`](crate::node::NodeFactory::acknowledges_with)):
    /// such a node reaches it along the edges, through processors that forward
    /// acknowledgements. A receiver for which this holds answers its senders only once its
    /// payloads are settled.
    pub fn awaits_acknowledgement(&self, id: &str) -> bool {
        let mut seen = vec![id];
        let mut next = vec![id];
        while let Some(from) = next.pop() {
            for (_, to) in self.edges.iter().filter(|(f, _)| f == from) {
                if seen.contains(&to.as_str()) {
                    continue;
                }
                seen.push(to);
                let Some(node) = self.nodes.iter().find(|n| n.id == *to) else {
                    continue;
                };
                if node.factory.acknowledges(&node.bindings) {
                    return true;
                }
                if node.factory.forwards_acknowledgement() {
                    next.push(to);
                }
            }
        }
        false
    }

    /// Every binding of its nodes and of its extensions.
    pub fn all_bindings(&self) -> impl Iterator<Item = &Binding> {
        self.nodes
            .iter()
            .flat_map(|node| &node.bindings)
            .chain(self.extensions.iter().flat_map(|e| &e.bindings))
    }
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
