//! The checks of one pipeline: extension and node types, bindings, connections.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::plan::{ConfigWarning, Consumer, ExtensionPlan, NodePlan, PipelinePlan, WarningKind};
use super::unknown_type;
use crate::capability::Binding;
use crate::capability::CapabilityId;
use crate::config::error::BindingError;
use crate::config::error::closest;
use crate::config::{
    ComponentConfig, ComponentKind, ConfigError, ConfigErrorKind, PipelineConfig, Source, YamlPath,
};
use crate::extension::ExecutionModel;
use crate::node::NodeFactory;
use crate::registry::Registry;

pub(super) struct PipelineResolver<'a> {
    pub(super) pipeline: &'a PipelineConfig,
    pub(super) registry: &'a Registry,
    pub(super) source: &'a Source,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl PipelineResolver<'_> {
    fn error(&mut self, path: &YamlPath, kind: impl Into<ConfigErrorKind>) {
        self.errors.push(self.source.error(path, kind));
    }

    pub(super) fn resolve(&mut self, warnings: &mut Vec<ConfigWarning>) -> PipelinePlan {
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
                .any(|consumer| shared_nodes.contains(consumer.node.as_str()));
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
    ) -> Vec<Binding> {
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
            extension.consumers.push(Consumer {
                node: node.clone(),
                capability,
            });
            bound.push(Binding {
                capability,
                extension: extension.id.clone(),
            });
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
