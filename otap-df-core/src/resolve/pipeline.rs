//! The checks of one pipeline: extension and node types, bindings, connections.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::plan::{ConfigWarning, Consumer, ExtensionPlan, NodePlan, PipelinePlan, Scope};
use super::scope::{OuterScope, declare};
use super::{unbound_warning, unknown_type};
use crate::capability::Binding;
use crate::capability::CapabilityId;
use crate::config::error::BindingError;
use crate::config::error::closest;
use crate::config::{
    CapabilityBinding, ComponentConfig, ComponentKind, ConfigError, ConfigErrorKind, NodeDecl,
    PipelineConfig, Source, YamlPath,
};
use crate::extension::{ExecutionModel, ExtensionFactory};
use crate::node::NodeFactory;
use crate::registry::Registry;

pub(super) struct PipelineResolver<'a> {
    pub(super) pipeline: &'a PipelineConfig,
    pub(super) registry: &'a Registry,
    pub(super) source: &'a Source,
    pub(super) errors: &'a mut Vec<ConfigError>,
    /// Every outer scope (the engine's first, then the groups').
    pub(super) outer: &'a mut [OuterScope],
    /// The outer scopes this pipeline's nodes see, innermost first: its group's, the engine's.
    pub(super) enclosing: [usize; 2],
}

/// Where a binding's extension id leads, innermost scope first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The pipeline's own extension at this index.
    Pipeline(usize),
    /// Outer scope `.0`'s extension at index `.1`.
    Outer(usize, usize),
    /// A declaration already reported as wrong.
    Broken,
    /// Nothing in any scope.
    Missing,
}

impl<'a> PipelineResolver<'a> {
    fn error(&mut self, path: &YamlPath, kind: impl Into<ConfigErrorKind>) {
        self.errors.push(self.source.error(path, kind));
    }

    pub(super) fn resolve(&mut self, warnings: &mut Vec<ConfigWarning>) -> PipelinePlan {
        let pipeline = self.pipeline;
        // Ids whose declaration is already reported; references to them are not reported again.
        let mut broken: BTreeSet<&str> = pipeline
            .invalid_node_ids
            .iter()
            .chain(&pipeline.extensions.invalid_ids)
            .map(String::as_str)
            .collect();

        let extensions = self.extensions(warnings, &mut broken);
        let mut extensions = self.order_extensions(extensions, &broken);
        let nodes = self.nodes(&mut extensions, &mut broken);
        self.claim_for_extensions(&mut extensions);
        self.settle_execution(&nodes, &mut extensions);
        let (bound, unbound): (Vec<_>, Vec<_>) = extensions
            .into_iter()
            .partition(|e| !e.consumers.is_empty());
        warnings.extend(unbound.into_iter().map(|e| unbound_warning(e, self.source)));

        let edges = self.connections(&broken);
        // Where data can go is checked in a pipeline that is otherwise right: a node or
        // connection already reported as wrong leaves the graph unreliable, and a pipeline
        // being written gets its other errors first.
        let sound = !self
            .errors
            .iter()
            .any(|e| e.path.starts_with(&pipeline.path));
        if sound && pipeline.invalid_node_ids.is_empty() {
            self.reach(&edges, warnings);
        }
        PipelinePlan {
            group: pipeline.group.clone(),
            name: pipeline.name.clone(),
            extensions: bound,
            nodes,
            edges,
        }
    }

    /// The pipeline's own extensions, each checked; one that is wrong joins `broken`. Warns
    /// where one shadows an outer scope's extension of the same id.
    fn extensions(
        &mut self,
        warnings: &mut Vec<ConfigWarning>,
        broken: &mut BTreeSet<&'a str>,
    ) -> Vec<ExtensionPlan> {
        let pipeline = self.pipeline;
        let scope = Scope::Pipeline(pipeline.group.clone(), pipeline.name.clone());
        let enclosing: Vec<&OuterScope> = self.enclosing.iter().map(|&i| &self.outer[i]).collect();
        super::scope::shadowing(
            &scope,
            &pipeline.extensions,
            &enclosing,
            self.source,
            warnings,
        );
        let mut extensions = Vec::new();
        for decl in &pipeline.extensions.declared {
            match declare(decl, self.registry, self.source, self.errors) {
                Some(plan) => extensions.push(plan),
                None => {
                    broken.insert(&decl.id);
                }
            }
        }
        extensions
    }

    /// The pipeline's nodes, each type and config checked and its bindings resolved; a node
    /// of an unknown type joins `broken`.
    fn nodes(
        &mut self,
        extensions: &mut [ExtensionPlan],
        broken: &mut BTreeSet<&'a str>,
    ) -> Vec<NodePlan> {
        let mut nodes = Vec::new();
        for decl in &self.pipeline.nodes {
            let factory = self.registry.node(decl.urn.kind, &decl.urn.name);
            match factory {
                None => {
                    let kind = unknown_type(self.registry, &decl.urn);
                    self.error(&decl.path.key("type"), kind);
                    broken.insert(&decl.id);
                }
                Some(factory) => {
                    let config_path = decl.path.key("config");
                    let config =
                        ComponentConfig::new(&decl.config, &config_path, &self.source.positions);
                    if let Err(error) = factory.validate(&config) {
                        self.errors.push(error);
                    }
                }
            }
            let bindings = self.bindings(decl, factory, extensions, broken);
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
        nodes
    }

    /// An extension a shared node or a shared extension binds runs shared; any other runs as
    /// its factory chooses for its config. Consumers come after what they bind, so the
    /// extensions are settled last first.
    fn settle_execution(&mut self, nodes: &[NodePlan], extensions: &mut [ExtensionPlan]) {
        let shared_nodes: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.factory.execution_model() == ExecutionModel::Shared)
            .map(|n| n.id.as_str())
            .collect();
        let mut shared_extensions: HashSet<String> = HashSet::new();
        for extension in extensions.iter_mut().rev() {
            let shared_node = extension
                .consumers
                .iter()
                .any(|c| !c.extension && shared_nodes.contains(c.node.as_str()));
            let shared_extension = extension
                .consumers
                .iter()
                .find(|c| c.extension && shared_extensions.contains(&c.node));
            let config_path = extension.path.key("config");
            let config =
                ComponentConfig::new(&extension.config, &config_path, &self.source.positions);
            extension.execution = if shared_node || shared_extension.is_some() {
                ExecutionModel::Shared
            } else {
                let bound: Vec<CapabilityId> =
                    extension.bindings.iter().map(|b| b.capability).collect();
                extension.factory.model_for(&config, &bound)
            };
            if let Some(consumer) = shared_extension
                && extension.factory.shared_constructor().is_none()
            {
                let message = format!(
                    "extension `{}` (extension:{}) is local-only, but extension `{}`, which binds its `{}`, runs shared (a shared node binds it); bind an extension type with a shared variant",
                    extension.id,
                    extension.factory.name(),
                    consumer.node,
                    consumer.capability
                );
                let path = extension.path.key("type");
                self.error(&path, ConfigErrorKind::InvalidValue { message });
            }
            if extension.execution == ExecutionModel::Shared {
                shared_extensions.insert(extension.id.clone());
            }
        }
    }

    /// The pipeline's extensions with their own bindings (`capabilities:`) resolved, each
    /// checked (the extension exists, the capability is known, the extension provides it, the
    /// binding type uses it, it is not itself), and ordered so that each comes after those it
    /// binds (document order otherwise); a cycle is an error.
    fn order_extensions(
        &mut self,
        mut extensions: Vec<ExtensionPlan>,
        broken: &BTreeSet<&str>,
    ) -> Vec<ExtensionPlan> {
        let declared = &self.pipeline.extensions.declared;
        // Per extension: its bindings, and the indexes of the pipeline's own it binds.
        let mut depends: Vec<Vec<(usize, YamlPath)>> = Vec::new();
        for index in 0..extensions.len() {
            let Some(decl) = declared.iter().find(|d| d.id == extensions[index].id) else {
                depends.push(Vec::new());
                continue;
            };
            let mut own = Vec::new();
            let mut bindings = Vec::new();
            for binding in &decl.capabilities {
                if let Some((bound, target)) =
                    self.bind_extension(index, binding, &extensions, broken)
                {
                    if let Target::Pipeline(provider) = target {
                        own.push((provider, binding.path.clone()));
                    }
                    bindings.push(bound);
                }
            }
            if bindings.len() == decl.capabilities.len() {
                let plan = &extensions[index];
                let bound: Vec<CapabilityId> = bindings.iter().map(|b| b.capability).collect();
                let config_path = plan.path.key("config");
                let config =
                    ComponentConfig::new(&plan.config, &config_path, &self.source.positions);
                if let Err(error) = plan.factory.check_bindings(&config, &bound) {
                    self.errors.push(error);
                }
            }
            extensions[index].bindings = bindings;
            depends.push(own);
        }
        // Kahn's order, the earliest declared first among those ready.
        let mut order = Vec::with_capacity(extensions.len());
        let mut placed = vec![false; extensions.len()];
        while order.len() < extensions.len() {
            let ready = (0..extensions.len())
                .find(|&i| !placed[i] && depends[i].iter().all(|(provider, _)| placed[*provider]));
            let next = match ready {
                Some(next) => next,
                None => {
                    let stuck = (0..extensions.len()).find(|&i| !placed[i]).unwrap_or(0);
                    let cycle = depends[stuck]
                        .iter()
                        .find(|(provider, _)| !placed[*provider]);
                    if let Some((provider, path)) = cycle {
                        let message = format!(
                            "extension `{}` binds extension `{}`, which binds `{}` in turn (directly or through others): extensions cannot bind each other in a cycle",
                            extensions[stuck].id, extensions[*provider].id, extensions[stuck].id
                        );
                        let path = path.clone();
                        self.error(&path, ConfigErrorKind::InvalidValue { message });
                    }
                    depends[stuck].clear();
                    stuck
                }
            };
            placed[next] = true;
            order.push(next);
        }
        let mut slots: Vec<Option<ExtensionPlan>> = extensions.into_iter().map(Some).collect();
        order
            .into_iter()
            .filter_map(|index| slots[index].take())
            .collect()
    }

    /// One of extension `index`'s bindings, checked: its target and the binding, or `None`
    /// (reported, unless its target is already reported as wrong).
    fn bind_extension(
        &mut self,
        index: usize,
        binding: &CapabilityBinding,
        extensions: &[ExtensionPlan],
        broken: &BTreeSet<&str>,
    ) -> Option<(Binding, Target)> {
        let consumer = &extensions[index];
        let target = self.target(&binding.extension, extensions, broken);
        let provider = match target {
            Target::Pipeline(provider) if provider == index => {
                let message = format!(
                    "extension `{}` binds itself; bind another extension's `{}`",
                    consumer.id, binding.capability
                );
                self.error(&binding.path, ConfigErrorKind::InvalidValue { message });
                return None;
            }
            Target::Pipeline(provider) => &extensions[provider],
            Target::Outer(scope, provider) => &self.outer[scope].extensions[provider],
            Target::Broken => return None,
            Target::Missing => {
                let known: Vec<String> = self
                    .visible(extensions)
                    .iter()
                    .map(|e| e.id.clone())
                    .filter(|id| *id != consumer.id)
                    .collect();
                let suggestion = closest(&binding.extension, known.iter().map(String::as_str));
                let message = format!(
                    "extension `{}` binds `{}` to extension `{}`, which neither this pipeline, its group nor the engine declares; declared extensions: {}{}",
                    consumer.id,
                    binding.capability,
                    binding.extension,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                    suggestion
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default()
                );
                self.error(&binding.path, ConfigErrorKind::InvalidValue { message });
                return None;
            }
        };
        let Some(capability) = CapabilityId::from_name(&binding.capability) else {
            self.error(&binding.path, unknown_capability(&consumer.id, binding));
            return None;
        };
        if !provider.provides.contains(&capability) {
            let error = BindingError::NotProvided {
                node: consumer.id.clone(),
                capability,
                extension: provider.id.clone(),
                extension_type: provider.factory.name().to_owned(),
                provided: provider
                    .provides
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect(),
            };
            self.error(&binding.path, error);
            return None;
        }
        let consumed = consumer.factory.consumed();
        if !consumed.contains(&capability) {
            let uses = if consumed.is_empty() {
                "it binds no other extension's capabilities".to_owned()
            } else {
                let names: Vec<&str> = consumed.iter().map(|c| c.name()).collect();
                format!("it uses: {}", names.join(", "))
            };
            let message = format!(
                "extension `{}` (extension:{}) does not use `{capability}`; {uses}",
                consumer.id,
                consumer.factory.name()
            );
            self.error(&binding.path, ConfigErrorKind::InvalidValue { message });
            return None;
        }
        let bound = Binding {
            capability,
            extension: provider.id.clone(),
        };
        Some((bound, target))
    }

    /// Records each extension that something binds as the consumer of the extensions it binds
    /// in turn (an extension nothing binds is not started, and neither is what only it binds).
    /// Consumers come after what they bind: last first, one pass reaches every provider.
    fn claim_for_extensions(&mut self, extensions: &mut [ExtensionPlan]) {
        let pipeline = format!("{}/{}", self.pipeline.group, self.pipeline.name);
        let broken = BTreeSet::new();
        for index in (0..extensions.len()).rev() {
            if extensions[index].consumers.is_empty() {
                continue;
            }
            for binding in extensions[index].bindings.clone() {
                let consumer = Consumer {
                    pipeline: pipeline.clone(),
                    node: extensions[index].id.clone(),
                    capability: binding.capability,
                    extension: true,
                };
                match self.target(&binding.extension, extensions, &broken) {
                    Target::Pipeline(provider) => extensions[provider].consumers.push(consumer),
                    Target::Outer(scope, provider) => {
                        self.outer[scope].extensions[provider]
                            .consumers
                            .push(consumer);
                    }
                    Target::Broken | Target::Missing => {}
                }
            }
        }
    }

    /// Where `id` leads from this pipeline: its own extensions, then its group's, then the
    /// engine's.
    fn target(&self, id: &str, extensions: &[ExtensionPlan], broken: &BTreeSet<&str>) -> Target {
        if let Some(index) = extensions.iter().position(|e| e.id == id) {
            return Target::Pipeline(index);
        }
        if broken.contains(id) {
            return Target::Broken;
        }
        for &scope in &self.enclosing {
            let outer = &self.outer[scope];
            if let Some(index) = outer.extensions.iter().position(|e| e.id == id) {
                return Target::Outer(scope, index);
            }
            if outer.broken.contains(id) {
                return Target::Broken;
            }
        }
        Target::Missing
    }

    /// Every extension this pipeline's nodes can bind, innermost first, each id once.
    fn visible<'e>(&'e self, extensions: &'e [ExtensionPlan]) -> Vec<&'e ExtensionPlan> {
        let mut visible: Vec<&ExtensionPlan> = extensions.iter().collect();
        for &scope in &self.enclosing {
            for extension in &self.outer[scope].extensions {
                if !visible.iter().any(|e| e.id == extension.id) {
                    visible.push(extension);
                }
            }
        }
        visible
    }

    /// The node's bindings that hold; each that does not is reported, and so is a required
    /// capability the node does not bind.
    fn bindings(
        &mut self,
        decl: &NodeDecl,
        factory: Option<&'static NodeFactory>,
        extensions: &mut [ExtensionPlan],
        broken: &BTreeSet<&str>,
    ) -> Vec<Binding> {
        let bound = decl
            .capabilities
            .iter()
            .filter_map(|binding| self.bind(&decl.id, binding, factory, extensions, broken))
            .collect();
        if let Some(factory) = factory {
            self.missing_required(decl, factory, extensions);
        }
        bound
    }

    /// One binding, checked in order: the extension exists (innermost scope first), the
    /// capability name is known, the extension provides it, the node accepts it, the
    /// execution models fit. The extension that holds records the node as its consumer.
    fn bind(
        &mut self,
        node: &str,
        binding: &CapabilityBinding,
        factory: Option<&'static NodeFactory>,
        extensions: &mut [ExtensionPlan],
        broken: &BTreeSet<&str>,
    ) -> Option<Binding> {
        let target = self.target(&binding.extension, extensions, broken);
        let (extension_id, extension_factory, provided) = match target {
            Target::Pipeline(index) => {
                let plan = &extensions[index];
                (plan.id.clone(), plan.factory, plan.provides.clone())
            }
            Target::Outer(scope, index) => {
                let plan = &self.outer[scope].extensions[index];
                (plan.id.clone(), plan.factory, plan.provides.clone())
            }
            Target::Broken => return None,
            Target::Missing => {
                let error = self.unknown_extension(node, binding, extensions);
                self.error(&binding.path, error);
                return None;
            }
        };
        let Some(capability) = CapabilityId::from_name(&binding.capability) else {
            self.error(&binding.path, unknown_capability(node, binding));
            return None;
        };
        let fit = fits(
            node,
            capability,
            (&extension_id, extension_factory, &provided),
            factory,
        );
        if let Err(error) = fit {
            self.error(&binding.path, error);
            return None;
        }
        // A node of an unknown type (already reported) binds nothing.
        factory?;
        let consumer = Consumer {
            pipeline: format!("{}/{}", self.pipeline.group, self.pipeline.name),
            node: node.to_owned(),
            capability,
            extension: false,
        };
        match target {
            Target::Pipeline(index) => extensions[index].consumers.push(consumer),
            Target::Outer(scope, index) => {
                self.outer[scope].extensions[index].consumers.push(consumer);
            }
            Target::Broken | Target::Missing => {}
        }
        Some(Binding {
            capability,
            extension: extension_id,
        })
    }

    /// The error for a binding to an id no scope declares, with the ids it could have meant.
    fn unknown_extension(
        &self,
        node: &str,
        binding: &CapabilityBinding,
        extensions: &[ExtensionPlan],
    ) -> BindingError {
        let known: Vec<String> = self
            .visible(extensions)
            .iter()
            .map(|e| e.id.clone())
            .chain(self.pipeline.extensions.invalid_ids.iter().cloned())
            .collect();
        let suggestion = closest(&binding.extension, known.iter().map(String::as_str));
        BindingError::UnknownExtension {
            node: node.to_owned(),
            capability: binding.capability.clone(),
            extension: binding.extension.clone(),
            known,
            suggestion,
        }
    }

    /// Reports each capability the node requires and does not try to bind, with the visible
    /// extensions that provide it.
    fn missing_required(
        &mut self,
        decl: &NodeDecl,
        factory: &'static NodeFactory,
        extensions: &[ExtensionPlan],
    ) {
        for requirement in factory.accepted().iter().filter(|r| r.required) {
            let capability = requirement.capability;
            let attempted = decl
                .capabilities
                .iter()
                .any(|b| b.capability == capability.name());
            if attempted {
                continue;
            }
            let candidates = self
                .visible(extensions)
                .iter()
                .filter(|e| e.provides.contains(&capability))
                .map(|e| e.id.clone())
                .collect();
            let error = BindingError::MissingRequired {
                node: decl.id.clone(),
                node_type: format!("{}:{}", factory.kind(), factory.name()),
                capability,
                candidates,
            };
            self.error(&decl.path, error);
        }
    }

    /// Every receiver and processor must reach an exporter (an error: what it takes could
    /// not be delivered); every processor and exporter should be reached from a receiver (a
    /// warning: it never gets data).
    fn reach(&mut self, edges: &[(String, String)], warnings: &mut Vec<ConfigWarning>) {
        let pipeline = self.pipeline;
        let kind_of = |id: &str| {
            pipeline
                .nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.urn.kind)
        };
        let mut downstream: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut upstream: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, to) in edges {
            downstream.entry(from).or_default().push(to);
            upstream.entry(to).or_default().push(from);
        }
        // Every node reachable from `start` along `next`.
        let closure = |start: Vec<&'_ str>, next: &HashMap<&str, Vec<&str>>| -> HashSet<String> {
            let mut seen: HashSet<String> = start.iter().map(|s| (*s).to_owned()).collect();
            let mut queue = start;
            while let Some(node) = queue.pop() {
                for &neighbour in next.get(node).into_iter().flatten() {
                    if seen.insert(neighbour.to_owned()) {
                        queue.push(neighbour);
                    }
                }
            }
            seen
        };
        let of_kind = |kind: ComponentKind| -> Vec<&str> {
            pipeline
                .nodes
                .iter()
                .filter(|n| n.urn.kind == kind)
                .map(|n| n.id.as_str())
                .collect()
        };
        let exporters = of_kind(ComponentKind::Exporter);
        let delivering = closure(exporters.clone(), &upstream);
        let fed = closure(of_kind(ComponentKind::Receiver), &downstream);
        for decl in &pipeline.nodes {
            let Some(kind) = kind_of(&decl.id) else {
                continue;
            };
            if kind != ComponentKind::Exporter && !delivering.contains(&decl.id) {
                self.error(
                    &decl.path,
                    ConfigErrorKind::NoExporterReached {
                        node: decl.id.clone(),
                        kind,
                        exporters: exporters.iter().map(|e| (*e).to_owned()).collect(),
                    },
                );
            } else if kind != ComponentKind::Receiver && !fed.contains(&decl.id) {
                warnings.push(ConfigWarning {
                    location: self.source.positions.locate(&decl.path),
                    path: decl.path.clone(),
                    kind: super::plan::WarningKind::NoInput {
                        node: decl.id.clone(),
                        kind,
                    },
                });
            }
        }
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

/// The error for `consumer`'s binding of a capability name that is none, with the names there
/// are and the closest.
fn unknown_capability(consumer: &str, binding: &CapabilityBinding) -> BindingError {
    let known: Vec<String> = CapabilityId::ALL
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let suggestion = closest(&binding.capability, known.iter().map(String::as_str));
    BindingError::UnknownCapability {
        node: consumer.to_owned(),
        capability: binding.capability.clone(),
        known,
        suggestion,
    }
}

/// Whether a capability the extension is known to hold can go to the node: the extension
/// provides it (its type, or its `config:` for a type whose instances say), the node accepts it, and a shared node gets a shared instance (an outer
/// scope's extension is always shared). Of a node of an unknown type, only the first is
/// checked.
fn fits(
    node: &str,
    capability: CapabilityId,
    (extension, extension_factory, provided): (&str, &'static ExtensionFactory, &[CapabilityId]),
    factory: Option<&'static NodeFactory>,
) -> Result<(), BindingError> {
    if !provided.contains(&capability) {
        return Err(BindingError::NotProvided {
            node: node.to_owned(),
            capability,
            extension: extension.to_owned(),
            extension_type: extension_factory.name().to_owned(),
            provided: provided.iter().map(|c| c.name().to_owned()).collect(),
        });
    }
    let Some(factory) = factory else {
        return Ok(());
    };
    if factory.requirement(capability).is_none() {
        return Err(BindingError::NotAccepted {
            node: node.to_owned(),
            node_type: format!("{}:{}", factory.kind(), factory.name()),
            capability,
            accepted: factory
                .accepted()
                .iter()
                .map(|r| r.capability.name().to_owned())
                .collect(),
        });
    }
    if factory.execution_model() == ExecutionModel::Shared
        && extension_factory.shared_constructor().is_none()
    {
        return Err(BindingError::ExecutionModelMismatch {
            node: node.to_owned(),
            capability,
            extension: extension.to_owned(),
            extension_type: extension_factory.name().to_owned(),
        });
    }
    Ok(())
}
