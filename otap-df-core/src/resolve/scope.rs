//! Extension declarations of every scope: each checked once (its type known, its config
//! valid), and the outer scopes' own rule: an engine- or group-scoped extension runs one
//! shared instance for its whole scope.

use std::collections::BTreeSet;

use super::plan::{ConfigWarning, ExtensionPlan, Scope, WarningKind};
use super::unknown_type;
use crate::config::{
    ComponentConfig, ConfigError, ConfigErrorKind, ExtensionDecl, ScopeExtensions, Source,
};
use crate::extension::ExecutionModel;
use crate::registry::Registry;

/// The plan of a declared extension whose type is known, its config validated (errors
/// reported); `None` (reported) when its type is unknown.
pub(super) fn declare(
    decl: &ExtensionDecl,
    registry: &Registry,
    source: &Source,
    errors: &mut Vec<ConfigError>,
) -> Option<ExtensionPlan> {
    let Some(factory) = registry.extension(&decl.urn.name) else {
        errors.push(source.error(&decl.path.key("type"), unknown_type(registry, &decl.urn)));
        return None;
    };
    let config_path = decl.path.key("config");
    let config = ComponentConfig::new(&decl.config, &config_path, &source.positions);
    if let Err(error) = factory.validate(&config) {
        errors.push(error);
    }
    Some(ExtensionPlan {
        id: decl.id.clone(),
        factory,
        execution: ExecutionModel::Local,
        startup_timeout: decl.startup_timeout.unwrap_or(factory.startup_timeout()),
        config: decl.config.clone(),
        path: decl.path.clone(),
        provides: factory.provided_for(&config),
        consumers: Vec::new(),
        bindings: Vec::new(),
    })
}

/// The engine's or a group's extensions while pipelines bind them.
pub(super) struct OuterScope {
    pub(super) scope: Scope,
    /// Usable declarations, in document order.
    pub(super) extensions: Vec<ExtensionPlan>,
    /// Ids whose declaration is already reported as wrong.
    pub(super) broken: BTreeSet<String>,
}

impl OuterScope {
    /// Checks `declared`: every usual check, and that each extension can be one instance for
    /// the whole scope — its type has a shared variant and its config does not ask for one
    /// instance per core.
    pub(super) fn resolve(
        scope: Scope,
        declared: &ScopeExtensions,
        registry: &Registry,
        source: &Source,
        errors: &mut Vec<ConfigError>,
    ) -> Self {
        let mut outer = Self {
            scope,
            extensions: Vec::new(),
            broken: declared.invalid_ids.iter().cloned().collect(),
        };
        for decl in &declared.declared {
            let Some(mut plan) = declare(decl, registry, source, errors) else {
                outer.broken.insert(decl.id.clone());
                continue;
            };
            if !decl.capabilities.is_empty() {
                errors.push(source.error(
                    &decl.path.key("capabilities"),
                    ConfigErrorKind::InvalidValue {
                        message: format!(
                            "extension `{}` of {} binds capabilities, and only an extension of a pipeline (its `extensions:`) can bind another extension's capabilities; declare it in the pipeline that uses it",
                            decl.id, outer.scope
                        ),
                    },
                ));
                outer.broken.insert(decl.id.clone());
                continue;
            }
            let config_path = decl.path.key("config");
            let config = ComponentConfig::new(&decl.config, &config_path, &source.positions);
            if let Err(error) = plan.factory.check_bindings(&config, &[]) {
                errors.push(error);
            }
            if plan.factory.per_core_only(&config) {
                let why = if plan.factory.shared_constructor().is_none() {
                    "has a local variant only (one instance per core)".to_owned()
                } else {
                    "runs one instance per core with this configuration".to_owned()
                };
                errors.push(source.error(
                    &decl.path.key("type"),
                    ConfigErrorKind::InvalidValue {
                        message: format!(
                            "extension `{}` (extension:{}) {why}, and an extension of {} is one instance for all of its pipelines and cores; declare it in each pipeline's `extensions:` instead",
                            decl.id,
                            plan.factory.name(),
                            outer.scope
                        ),
                    },
                ));
                outer.broken.insert(decl.id.clone());
                continue;
            }
            plan.execution = ExecutionModel::Shared;
            outer.extensions.push(plan);
        }
        outer
    }

    /// Whether this scope declares `id` (usable or not).
    pub(super) fn declares(&self, id: &str) -> bool {
        self.broken.contains(id) || self.extensions.iter().any(|e| e.id == id)
    }

    /// The usable declaration of `id`, for a warning's ` (line L:C)`.
    pub(super) fn at(&self, id: &str, source: &Source) -> String {
        self.extensions
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| source.positions.locate(&e.path))
            .map(|l| format!(" (line {}:{})", l.line, l.column))
            .unwrap_or_default()
    }
}

/// Warns about each of `declared` whose id an enclosing scope (`outer`, innermost first)
/// declares too, naming the nearest.
pub(super) fn shadowing(
    scope: &Scope,
    declared: &ScopeExtensions,
    outer: &[&OuterScope],
    source: &Source,
    warnings: &mut Vec<ConfigWarning>,
) {
    for decl in &declared.declared {
        if let Some(shadowed) = outer.iter().find(|o| o.declares(&decl.id)) {
            warnings.push(ConfigWarning {
                path: decl.path.clone(),
                location: source.positions.locate(&decl.path),
                kind: WarningKind::Shadows {
                    extension: decl.id.clone(),
                    scope: scope.to_string(),
                    outer: shadowed.scope.to_string(),
                    outer_at: shadowed.at(&decl.id, source),
                },
            });
        }
    }
}
