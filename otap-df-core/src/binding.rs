//! Binding resolution: from a parsed [`Document`] and a [`Registry`] to a plan per pipeline,
//! and from instantiated extensions to each node's [`Capabilities`].
//!
//! Every `capabilities:` entry of a node is checked in this order, and the first failing check
//! is reported: the extension exists; the capability name is known; the extension provides
//! it; the node's type accepts it; the execution model fits (a local-only extension cannot
//! serve a shared node). Required capabilities left unbound are reported too. Extensions no
//! node binds are reported as warnings and left out of the plan, so they are never started.

use std::any::Any;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::capability::{Capability, CapabilityId};
use crate::config::error::{closest, did_you_mean, one_of};
use crate::config::{
    ComponentConfig, ComponentKind, ComponentUrn, ConfigError, ConfigErrorKind, ConfigErrors,
    Document, EngineConfig, Location, PipelineConfig, Source, YamlPath,
};
use crate::extension::{
    ExecutionModel, ExtensionContext, ExtensionError, ExtensionFactory, LocalExtension,
    LocalProvision, LocalProvisions, LocalSource, SharedExtension, SharedProvision,
    SharedProvisions, SharedSource,
};
use crate::node::NodeFactory;
use crate::registry::Registry;

/// A `capabilities:` entry that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// Check 1: the pipeline declares no such extension.
    #[error(
        "node `{node}` binds `{capability}` to extension `{extension}`, which this pipeline does \
         not declare; declared extensions: {}{}", one_of(.known), did_you_mean(.suggestion)
    )]
    UnknownExtension {
        /// The node.
        node: String,
        /// The capability name as written.
        capability: String,
        /// The extension id as written.
        extension: String,
        /// The pipeline's extension ids.
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
    /// Who binds it: `(node id, capability)`, in document order.
    pub consumers: Vec<(String, CapabilityId)>,
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
    /// Its bindings: `(capability, extension id)`.
    pub bindings: Vec<(CapabilityId, String)>,
}

/// Parses and resolves `text` against `registry`, reporting every error of both phases
/// together. `${env:NAME}` is read from the process environment.
pub fn load(
    text: &str,
    source_name: &str,
    registry: &Registry,
) -> Result<ResolvedConfig, ConfigErrors> {
    load_with_env(text, source_name, registry, &|name| {
        std::env::var(name).ok()
    })
}

/// [`load`] with an explicit variable lookup.
pub fn load_with_env(
    text: &str,
    source_name: &str,
    registry: &Registry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, ConfigErrors> {
    let (document, mut errors) = crate::config::parse_partial(text, source_name, lookup)?;
    let resolved = resolve_collecting(document, registry, &mut errors);
    into_result(resolved, errors)
}

fn into_result(
    resolved: ResolvedConfig,
    mut errors: Vec<ConfigError>,
) -> Result<ResolvedConfig, ConfigErrors> {
    crate::config::finish_errors(&resolved.source, &mut errors);
    if errors.is_empty() {
        Ok(resolved)
    } else {
        Err(ConfigErrors {
            source: resolved.source.name,
            errors,
        })
    }
}

/// Resolves a parsed document against `registry`.
pub fn resolve(document: Document, registry: &Registry) -> Result<ResolvedConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let resolved = resolve_collecting(document, registry, &mut errors);
    into_result(resolved, errors)
}

fn resolve_collecting(
    document: Document,
    registry: &Registry,
    errors: &mut Vec<ConfigError>,
) -> ResolvedConfig {
    let mut warnings = Vec::new();
    let mut pipelines = Vec::new();
    for group in &document.groups {
        for pipeline in &group.pipelines {
            let mut resolver = PipelineResolver {
                pipeline,
                registry,
                source: &document.source,
                errors: &mut *errors,
            };
            pipelines.push(resolver.resolve(&mut warnings));
        }
    }
    shared_listen_addresses(&pipelines, &document.source, errors);
    warnings.sort_by_key(|w| w.location);
    ResolvedConfig {
        engine: document.engine,
        pipelines,
        warnings,
        source: document.source,
    }
}

/// Two nodes anywhere in the configuration that would listen on one address: the second is
/// refused, naming the first. Addresses overlap on the same port when they are equal or one
/// of them is unspecified (`0.0.0.0`, `[::]`: every address of the machine); port 0 (any
/// free port) overlaps nothing.
fn shared_listen_addresses(
    pipelines: &[PipelinePlan],
    source: &Source,
    errors: &mut Vec<ConfigError>,
) {
    let mut seen: Vec<(SocketAddr, YamlPath, String)> = Vec::new();
    for pipeline in pipelines {
        for node in &pipeline.nodes {
            let config_path = node.path.key("config");
            let config = ComponentConfig::new(&node.config, &config_path, &source.positions);
            // Port 0 is any free port: never shared.
            let addresses = node.factory.listen_addresses(&config);
            for (field, address) in addresses.into_iter().filter(|(_, a)| a.port() != 0) {
                let path = field
                    .split('.')
                    .fold(config_path.clone(), |path, key| path.key(key));
                let owner = format!(
                    "node `{}` of pipeline `{}/{}`",
                    node.id, pipeline.group, pipeline.name
                );
                let overlapping = seen.iter().find(|(other, _, _)| {
                    other.port() == address.port()
                        && (other.ip() == address.ip()
                            || other.ip().is_unspecified()
                            || address.ip().is_unspecified())
                });
                if let Some((other, other_path, other_owner)) = overlapping {
                    let at = source
                        .positions
                        .locate(other_path)
                        .map(|l| format!(" (line {}:{})", l.line, l.column))
                        .unwrap_or_default();
                    errors.push(source.error(
                        &path,
                        ConfigErrorKind::InvalidValue {
                            message: format!(
                                "`{field}` {address} overlaps {other} of {other_owner}{at}; two nodes cannot listen on one address (give each its own port)"
                            ),
                        },
                    ));
                } else {
                    seen.push((address, path, owner));
                }
            }
        }
    }
}

fn unknown_type(registry: &Registry, urn: &ComponentUrn) -> ConfigErrorKind {
    match registry.feature_for(urn.kind, &urn.name) {
        Some(feature) => ConfigErrorKind::NotCompiledIn {
            kind: urn.kind,
            name: urn.name.clone(),
            feature: feature.to_owned(),
        },
        None => {
            let known = registry.names(urn.kind);
            let suggestion = closest(&urn.name, known.iter().map(String::as_str));
            ConfigErrorKind::UnknownType {
                kind: urn.kind,
                name: urn.name.clone(),
                known,
                suggestion,
            }
        }
    }
}

struct PipelineResolver<'a> {
    pipeline: &'a PipelineConfig,
    registry: &'a Registry,
    source: &'a Source,
    errors: &'a mut Vec<ConfigError>,
}

impl PipelineResolver<'_> {
    fn error(&mut self, path: &YamlPath, kind: impl Into<ConfigErrorKind>) {
        self.errors.push(self.source.error(path, kind));
    }

    fn resolve(&mut self, warnings: &mut Vec<ConfigWarning>) -> PipelinePlan {
        let pipeline = self.pipeline;
        let positions = &self.source.positions;
        // Ids whose declaration is already reported; references to them are not reported again.
        let mut broken: BTreeSet<&str> = pipeline.invalid_ids.iter().map(String::as_str).collect();

        let mut extensions = Vec::new();
        for decl in &pipeline.extensions {
            let Some(factory) = self.registry.extension(&decl.urn.name) else {
                let kind = unknown_type(self.registry, &decl.urn);
                self.error(&decl.path.key("type"), kind);
                broken.insert(&decl.id);
                continue;
            };
            let config_path = decl.path.key("config");
            if let Err(error) =
                factory.validate(&ComponentConfig::new(&decl.config, &config_path, positions))
            {
                self.errors.push(error);
            }
            extensions.push(ExtensionPlan {
                id: decl.id.clone(),
                factory,
                execution: ExecutionModel::Local,
                startup_timeout: decl.startup_timeout.unwrap_or(factory.startup_timeout()),
                config: decl.config.clone(),
                path: decl.path.clone(),
                consumers: Vec::new(),
            });
        }

        let extension_index: HashMap<String, usize> = extensions
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        let mut nodes = Vec::new();
        for decl in &pipeline.nodes {
            let factory = self.registry.node(decl.urn.kind, &decl.urn.name);
            match factory {
                None => {
                    let kind = unknown_type(self.registry, &decl.urn);
                    self.error(&decl.path.key("type"), kind);
                    broken.insert(&decl.id);
                }
                Some(factory) => {
                    let config_path = decl.path.key("config");
                    if let Err(error) = factory.validate(&ComponentConfig::new(
                        &decl.config,
                        &config_path,
                        positions,
                    )) {
                        self.errors.push(error);
                    }
                }
            }
            let bindings = self.bindings(decl, factory, &mut extensions, &extension_index, &broken);
            if let Some(factory) = factory {
                nodes.push(NodePlan {
                    id: decl.id.clone(),
                    factory,
                    config: decl.config.clone(),
                    path: decl.path.clone(),
                    bindings,
                });
            }
        }

        let shared_nodes: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.factory.execution_model() == ExecutionModel::Shared)
            .map(|n| n.id.as_str())
            .collect();
        for extension in &mut extensions {
            let shared_consumer = extension
                .consumers
                .iter()
                .any(|(node, _)| shared_nodes.contains(node.as_str()));
            let config_path = extension.path.key("config");
            let config = ComponentConfig::new(&extension.config, &config_path, positions);
            extension.execution = if shared_consumer {
                ExecutionModel::Shared
            } else {
                extension.factory.model_for(&config)
            };
        }
        let (bound, unbound): (Vec<_>, Vec<_>) = extensions
            .into_iter()
            .partition(|e| !e.consumers.is_empty());
        for extension in unbound {
            warnings.push(ConfigWarning {
                location: positions.locate(&extension.path),
                path: extension.path,
                kind: WarningKind::UnboundExtension {
                    extension: extension.id,
                },
            });
        }

        let edges = self.connections(&broken);
        PipelinePlan {
            group: pipeline.group.clone(),
            name: pipeline.name.clone(),
            extensions: bound,
            nodes,
            edges,
        }
    }

    fn bindings(
        &mut self,
        decl: &crate::config::NodeDecl,
        factory: Option<&'static NodeFactory>,
        extensions: &mut [ExtensionPlan],
        extension_index: &HashMap<String, usize>,
        broken: &BTreeSet<&str>,
    ) -> Vec<(CapabilityId, String)> {
        let node = &decl.id;
        let mut bound = Vec::new();
        for binding in &decl.capabilities {
            // 1. the extension exists
            let Some(extension) = extension_index
                .get(&binding.extension)
                .and_then(|&i| extensions.get_mut(i))
            else {
                if !broken.contains(binding.extension.as_str()) {
                    let known: Vec<String> = self
                        .pipeline
                        .extensions
                        .iter()
                        .map(|e| e.id.clone())
                        .collect();
                    let suggestion = closest(&binding.extension, known.iter().map(String::as_str));
                    self.error(
                        &binding.path,
                        BindingError::UnknownExtension {
                            node: node.clone(),
                            capability: binding.capability.clone(),
                            extension: binding.extension.clone(),
                            known,
                            suggestion,
                        },
                    );
                }
                continue;
            };
            // 2. the capability name is known
            let Some(capability) = CapabilityId::from_name(&binding.capability) else {
                let known: Vec<String> = CapabilityId::ALL
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect();
                let suggestion = closest(&binding.capability, known.iter().map(String::as_str));
                self.error(
                    &binding.path,
                    BindingError::UnknownCapability {
                        node: node.clone(),
                        capability: binding.capability.clone(),
                        known,
                        suggestion,
                    },
                );
                continue;
            };
            // 3. the extension provides it
            if !extension.factory.provides_capability(capability) {
                let error = BindingError::NotProvided {
                    node: node.clone(),
                    capability,
                    extension: extension.id.clone(),
                    extension_type: extension.factory.name().to_owned(),
                    provided: extension
                        .factory
                        .provided()
                        .iter()
                        .map(|c| c.name().to_owned())
                        .collect(),
                };
                self.error(&binding.path, error);
                continue;
            }
            let Some(factory) = factory else { continue };
            // 4. the node accepts it
            if factory.requirement(capability).is_none() {
                let error = BindingError::NotAccepted {
                    node: node.clone(),
                    node_type: format!("{}:{}", factory.kind(), factory.name()),
                    capability,
                    accepted: factory
                        .accepted()
                        .iter()
                        .map(|r| r.capability.name().to_owned())
                        .collect(),
                };
                self.error(&binding.path, error);
                continue;
            }
            // 5. the execution model fits
            if factory.execution_model() == ExecutionModel::Shared
                && extension.factory.shared_constructor().is_none()
            {
                let error = BindingError::ExecutionModelMismatch {
                    node: node.clone(),
                    capability,
                    extension: extension.id.clone(),
                    extension_type: extension.factory.name().to_owned(),
                };
                self.error(&binding.path, error);
                continue;
            }
            extension.consumers.push((node.clone(), capability));
            bound.push((capability, extension.id.clone()));
        }
        if let Some(factory) = factory {
            for requirement in factory.accepted().iter().filter(|r| r.required) {
                let capability = requirement.capability;
                let attempted = decl
                    .capabilities
                    .iter()
                    .any(|b| b.capability == capability.name());
                if !attempted {
                    let candidates = extensions
                        .iter()
                        .filter(|e| e.factory.provides_capability(capability))
                        .map(|e| e.id.clone())
                        .collect();
                    let error = BindingError::MissingRequired {
                        node: node.clone(),
                        node_type: format!("{}:{}", factory.kind(), factory.name()),
                        capability,
                        candidates,
                    };
                    self.error(&decl.path, error);
                }
            }
        }
        bound
    }

    fn connections(&mut self, broken: &BTreeSet<&str>) -> Vec<(String, String)> {
        let pipeline = self.pipeline;
        let known: Vec<String> = pipeline.nodes.iter().map(|n| n.id.clone()).collect();
        let kinds: HashMap<&str, ComponentKind> = pipeline
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.urn.kind))
            .collect();
        let kind_of = |id: &str| kinds.get(id).copied();
        let mut edges = Vec::new();
        for connection in &pipeline.connections {
            let mut ends_valid = true;
            for (field, names) in [("from", &connection.from), ("to", &connection.to)] {
                for name in names {
                    if kind_of(name).is_none() {
                        ends_valid = false;
                        if !broken.contains(name.as_str()) {
                            let suggestion = closest(name, known.iter().map(String::as_str));
                            self.error(
                                &connection.path.key(field),
                                ConfigErrorKind::UnknownNode {
                                    name: name.clone(),
                                    known: known.clone(),
                                    suggestion,
                                },
                            );
                        }
                    }
                }
            }
            if !ends_valid {
                continue;
            }
            for from in &connection.from {
                for to in &connection.to {
                    let reason = if kind_of(from) == Some(ComponentKind::Exporter) {
                        Some(format!(
                            "`{from}` is an exporter, and exporters have no output"
                        ))
                    } else if kind_of(to) == Some(ComponentKind::Receiver) {
                        Some(format!("`{to}` is a receiver, and receivers have no input"))
                    } else if from == to {
                        Some("a node cannot feed itself".to_owned())
                    } else {
                        None
                    };
                    match reason {
                        Some(reason) => self.error(
                            &connection.path,
                            ConfigErrorKind::InvalidConnection {
                                from: from.clone(),
                                to: to.clone(),
                                reason,
                            },
                        ),
                        None => edges.push((from.clone(), to.clone())),
                    }
                }
            }
        }
        edges
    }
}

/// A node's bound capabilities could not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The node asked for a capability its configuration does not bind.
    #[error(
        "node `{node}` has no `{capability}` binding; add `capabilities: {{ {capability}: \
         <extension id> }}` to its configuration"
    )]
    NotBound {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
    },
    /// The node claimed the same binding before.
    #[error(
        "node `{node}` already claimed `{capability}` (from extension `{extension}`); claim each binding once"
    )]
    AlreadyClaimed {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
    /// A shared capability was asked of a local extension instance.
    #[error(
        "node `{node}` asked for a shared `{capability}`, but extension `{extension}` runs local; \
         ask for the local variant or bind an extension with a shared variant"
    )]
    LocalOnly {
        /// The node.
        node: String,
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
    /// The extension instance does not carry the capability under the expected type (an
    /// inconsistent extension build; not caused by configuration).
    #[error("extension `{extension}` does not carry `{capability}` as the capability's type")]
    TypeMismatch {
        /// The capability.
        capability: CapabilityId,
        /// The extension bound to it.
        extension: String,
    },
}

enum Provision {
    Local(LocalProvision),
    Shared(SharedProvision),
}

struct Bound {
    capability: CapabilityId,
    extension: String,
    provision: Provision,
    claimed: bool,
}

/// The capabilities bound to one node, handed to its constructor. Each binding can be claimed
/// once; after construction, [`unclaimed`](Self::unclaimed) tells which were not.
pub struct Capabilities {
    node: String,
    bound: Vec<Bound>,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("node", &self.node)
            .field(
                "bound",
                &self
                    .bound
                    .iter()
                    .map(|b| (b.capability, &b.extension, b.claimed))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Capabilities {
    /// Capabilities for `node` from instantiated extensions, following its plan's bindings.
    /// Shared instances take precedence for an id present in both (an extension runs in one
    /// variant per plan, so this does not happen in a consistent engine).
    pub fn for_node(
        node: &NodePlan,
        local: &[impl AsRef<LocalProvisions>],
        shared: &[impl AsRef<SharedProvisions>],
    ) -> Self {
        let mut bound = Vec::new();
        for (capability, extension_id) in &node.bindings {
            let from_shared = shared
                .iter()
                .map(AsRef::as_ref)
                .find(|e| &e.extension_id == extension_id)
                .and_then(|e| e.provisions.iter().find(|(c, _)| c == capability))
                .map(|(_, p)| Provision::Shared(p.clone()));
            let provision = from_shared.or_else(|| {
                local
                    .iter()
                    .map(AsRef::as_ref)
                    .find(|e| &e.extension_id == extension_id)
                    .and_then(|e| e.provisions.iter().find(|(c, _)| c == capability))
                    .map(|(_, p)| Provision::Local(p.clone()))
            });
            if let Some(provision) = provision {
                bound.push(Bound {
                    capability: *capability,
                    extension: extension_id.clone(),
                    provision,
                    claimed: false,
                });
            }
        }
        Self {
            node: node.id.clone(),
            bound,
        }
    }

    /// The node these capabilities belong to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn claim(&mut self, capability: CapabilityId) -> Result<Option<&mut Bound>, CapabilityError> {
        let node = &self.node;
        match self.bound.iter_mut().find(|b| b.capability == capability) {
            None => Ok(None),
            Some(bound) if bound.claimed => Err(CapabilityError::AlreadyClaimed {
                node: node.clone(),
                capability,
                extension: bound.extension.clone(),
            }),
            Some(bound) => {
                bound.claimed = true;
                Ok(Some(bound))
            }
        }
    }

    /// The local variant of `C`; a shared extension serves it through
    /// [`SharedAsLocal`](crate::capability::SharedAsLocal). `Ok(None)` when not bound.
    pub fn optional_local<C: Capability>(
        &mut self,
    ) -> Result<Option<Rc<C::Local>>, CapabilityError> {
        let Some(bound) = self.claim(C::ID)? else {
            return Ok(None);
        };
        let mismatch = || CapabilityError::TypeMismatch {
            capability: C::ID,
            extension: bound.extension.clone(),
        };
        match &bound.provision {
            Provision::Local(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<LocalSource<C::Local>>()
                    .ok_or_else(mismatch)?;
                Ok(Some(source.get()))
            }
            Provision::Shared(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<SharedSource<C::Shared>>()
                    .ok_or_else(mismatch)?;
                Ok(Some(C::shared_as_local(source.get())))
            }
        }
    }

    /// The shared variant of `C`. `Ok(None)` when not bound; an error when the bound
    /// extension runs local.
    pub fn optional_shared<C: Capability>(
        &mut self,
    ) -> Result<Option<Arc<C::Shared>>, CapabilityError> {
        let node = self.node.clone();
        let Some(bound) = self.claim(C::ID)? else {
            return Ok(None);
        };
        match &bound.provision {
            Provision::Shared(provision) => {
                let source = (provision.as_ref() as &dyn Any)
                    .downcast_ref::<SharedSource<C::Shared>>()
                    .ok_or_else(|| CapabilityError::TypeMismatch {
                        capability: C::ID,
                        extension: bound.extension.clone(),
                    })?;
                Ok(Some(source.get()))
            }
            Provision::Local(_) => {
                bound.claimed = false;
                Err(CapabilityError::LocalOnly {
                    node,
                    capability: C::ID,
                    extension: bound.extension.clone(),
                })
            }
        }
    }

    /// The local variant of `C`, which the configuration must bind.
    pub fn require_local<C: Capability>(&mut self) -> Result<Rc<C::Local>, CapabilityError> {
        self.optional_local::<C>()?
            .ok_or_else(|| CapabilityError::NotBound {
                node: self.node.clone(),
                capability: C::ID,
            })
    }

    /// The shared variant of `C`, which the configuration must bind.
    pub fn require_shared<C: Capability>(&mut self) -> Result<Arc<C::Shared>, CapabilityError> {
        self.optional_shared::<C>()?
            .ok_or_else(|| CapabilityError::NotBound {
                node: self.node.clone(),
                capability: C::ID,
            })
    }

    /// Bindings the node did not claim: `(capability, extension id)`. The engine reports them
    /// and does not start an extension nobody claimed.
    pub fn unclaimed(&self) -> Vec<(CapabilityId, &str)> {
        self.bound
            .iter()
            .filter(|b| !b.claimed)
            .map(|b| (b.capability, b.extension.as_str()))
            .collect()
    }
}

/// An extension's constructor failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot create extension `{extension}` of pipeline `{group}/{pipeline}`: {source}")]
pub struct InstantiateError {
    /// The pipeline group.
    pub group: String,
    /// The pipeline.
    pub pipeline: String,
    /// The extension id.
    pub extension: String,
    /// What went wrong.
    #[source]
    pub source: ExtensionError,
}

impl PipelinePlan {
    fn instantiate_error(
        &self,
        extension: &ExtensionPlan,
        source: ExtensionError,
    ) -> InstantiateError {
        InstantiateError {
            group: self.group.clone(),
            pipeline: self.name.clone(),
            extension: extension.id.clone(),
            source,
        }
    }

    /// Creates the pipeline's shared extensions (once for all cores).
    pub fn create_shared_extensions(
        &self,
        source: &Source,
    ) -> Result<Vec<SharedExtension>, InstantiateError> {
        let mut created = Vec::new();
        for plan in self
            .extensions
            .iter()
            .filter(|e| e.execution == ExecutionModel::Shared)
        {
            let context =
                ExtensionContext::new(plan.factory, &plan.id, &self.group, &self.name, None);
            let config_path = plan.path.key("config");
            let config = ComponentConfig::new(&plan.config, &config_path, &source.positions);
            let constructor = plan.factory.shared_constructor().ok_or_else(|| {
                self.instantiate_error(
                    plan,
                    context.error("the extension type has no shared variant"),
                )
            })?;
            created
                .push(constructor(&context, &config).map_err(|e| self.instantiate_error(plan, e))?);
        }
        Ok(created)
    }

    /// Creates the pipeline's local extensions for pipeline instance `core`.
    pub fn create_local_extensions(
        &self,
        core: usize,
        source: &Source,
    ) -> Result<Vec<LocalExtension>, InstantiateError> {
        let mut created = Vec::new();
        for plan in self
            .extensions
            .iter()
            .filter(|e| e.execution == ExecutionModel::Local)
        {
            let context =
                ExtensionContext::new(plan.factory, &plan.id, &self.group, &self.name, Some(core));
            let config_path = plan.path.key("config");
            let config = ComponentConfig::new(&plan.config, &config_path, &source.positions);
            let constructor = plan.factory.local_constructor().ok_or_else(|| {
                self.instantiate_error(
                    plan,
                    context.error("the extension type has no local variant"),
                )
            })?;
            created
                .push(constructor(&context, &config).map_err(|e| self.instantiate_error(plan, e))?);
        }
        Ok(created)
    }
}
