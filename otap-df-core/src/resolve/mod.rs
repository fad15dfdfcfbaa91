//! Resolution: from a parsed [`Document`] and a [`Registry`] to a plan per pipeline.
//!
//! Extensions are declared at three scopes: `engine.extensions`, `groups.<g>.extensions` and a
//! pipeline's `extensions`. A node's binding names an extension id, found innermost first (its
//! pipeline, its group, the engine); an id that hides one of an enclosing scope is a warning
//! naming both. An engine- or group-scoped extension is one shared instance for its whole
//! scope, so a type that can only run one instance per core is refused there.
//!
//! Every `capabilities:` entry of a node is checked in this order, and the first failing check
//! is reported: the extension exists; the capability name is known; the extension provides
//! it; the node's type accepts it; the execution model fits (a local-only extension cannot
//! serve a shared node). Required capabilities left unbound are reported too. Extensions no
//! node binds are reported as warnings and left out of the plan, so they are never started.
//! Across pipelines, two nodes that would listen on one address are refused.
//!
//! - [`plan`]: what resolution produces (the plan types and warnings);
//! - `scope`: each scope's declarations, the outer scopes' rule, shadowing;
//! - `pipeline`: the checks of one pipeline (bindings, connections);
//! - `admin`: the admin endpoint's binding (an engine extension's `bearer_token_authorizer`)
//!   and where it listens;

mod admin;
mod pipeline;
pub mod plan;
mod scope;

pub use admin::ADMIN_CONSUMER;

pub use crate::config::error::BindingError;
pub use plan::{
    ConfigWarning, Consumer, ExtensionPlan, NodePlan, PipelinePlan, ResolvedConfig, Scope,
    ScopeKey, ScopePlan, WarningKind,
};

use std::net::SocketAddr;

use pipeline::PipelineResolver;
use scope::OuterScope;

use crate::config::error::closest;
use crate::config::{
    AdminConfig, ComponentConfig, ComponentUrn, ConfigError, ConfigErrorKind, ConfigErrors,
    Document, Source, YamlPath,
};
use crate::registry::Registry;

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

/// [`load`] of a layered configuration: several files (and command-line overrides) merged
/// in order, later over earlier (mappings key by key; anything else replaced whole), each
/// error located in the source that gave the value.
pub fn load_layers(
    layers: &[crate::config::Layer<'_>],
    registry: &Registry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedConfig, ConfigErrors> {
    let (document, mut errors) = crate::config::parse_layers_partial(layers, lookup)?;
    let resolved = resolve_collecting(document, registry, &mut errors);
    into_result(resolved, errors)
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
            files: resolved.source.files,
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
    let source = &document.source;
    // The outer scopes first (the engine's, then each group's), so that pipelines bind them.
    let mut outer = vec![OuterScope::resolve(
        Scope::Engine,
        &document.extensions,
        registry,
        source,
        errors,
    )];
    for group in &document.groups {
        let scope = Scope::Group(group.name.clone());
        scope::shadowing(
            &scope,
            &group.extensions,
            &[&outer[0]],
            source,
            &mut warnings,
        );
        outer.push(OuterScope::resolve(
            scope,
            &group.extensions,
            registry,
            source,
            errors,
        ));
    }
    let mut pipelines = Vec::new();
    for (index, group) in document.groups.iter().enumerate() {
        for pipeline in &group.pipelines {
            let mut resolver = PipelineResolver {
                pipeline,
                registry,
                source,
                errors: &mut *errors,
                outer: &mut outer,
                enclosing: [index + 1, 0],
            };
            pipelines.push(resolver.resolve(&mut warnings));
        }
    }
    if let Some(admin) = &document.engine.admin {
        admin::resolve(admin, &mut outer[0], source, errors, &mut warnings);
    }
    let mut scopes = Vec::new();
    for outer in outer {
        let (bound, unbound): (Vec<_>, Vec<_>) = outer
            .extensions
            .into_iter()
            .partition(|e| !e.consumers.is_empty());
        warnings.extend(unbound.into_iter().map(|e| unbound_warning(e, source)));
        scopes.push(ScopePlan {
            scope: outer.scope,
            extensions: bound,
        });
    }
    shared_listen_addresses(
        document.engine.admin.as_ref(),
        &pipelines,
        &document.source,
        errors,
    );
    warnings.sort_by_key(|w| w.location);
    ResolvedConfig {
        engine: document.engine,
        scopes,
        pipelines,
        warnings,
        source: document.source,
    }
}

/// Two nodes anywhere in the configuration that would listen on one address, or a node on the
/// admin endpoint's: the second is refused, naming the first. Addresses overlap on the same port when they are equal or one
/// of them is unspecified (`0.0.0.0`, `[::]`: every address of the machine); port 0 (any
/// free port) overlaps nothing.
fn shared_listen_addresses(
    admin: Option<&AdminConfig>,
    pipelines: &[PipelinePlan],
    source: &Source,
    errors: &mut Vec<ConfigError>,
) {
    let mut seen: Vec<(SocketAddr, YamlPath, String)> = Vec::new();
    if let Some(admin) = admin.filter(|admin| admin.listen.port() != 0) {
        seen.push((
            admin.listen,
            YamlPath::root().key("engine").key("admin").key("listen"),
            "the admin endpoint (`engine.admin`)".to_owned(),
        ));
    }
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
                                "`{field}` {address} overlaps {other} of {other_owner}{at}; two listeners cannot share an address (give each its own port)"
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

/// The warning for an extension no node binds.
fn unbound_warning(extension: ExtensionPlan, source: &Source) -> ConfigWarning {
    ConfigWarning {
        location: source.positions.locate(&extension.path),
        path: extension.path,
        kind: WarningKind::UnboundExtension {
            extension: extension.id,
        },
    }
}

pub(super) fn unknown_type(registry: &Registry, urn: &ComponentUrn) -> ConfigErrorKind {
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
