//! Instantiation: the extensions of a scope created — an outer scope's (the engine's or a
//! group's) once for everything in it, a pipeline's shared ones once for all cores and its
//! local ones once per core.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ComponentConfig, Source};
use crate::extension::{
    Capabilities, ExecutionModel, ExtensionContext, ExtensionError, LocalExtension,
    LocalProvisions, SharedExtension, SharedProvisions,
};
use crate::resolve::{ExtensionPlan, PipelinePlan, Scope, ScopePlan};

/// An extension's constructor failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot create extension `{extension}` of {scope}: {source}")]
pub struct InstantiateError {
    /// Where the extension is declared.
    pub scope: Scope,
    /// The extension id.
    pub extension: String,
    /// What went wrong.
    #[source]
    pub source: ExtensionError,
}

/// The context of an extension of `scope`: its group and pipeline, empty for an outer
/// scope that has none; the capabilities it binds, looked up innermost first as resolution
/// bound them: in `local` (the instances of the pipeline's local extensions created before it
/// on this core), then in `shared` (its shared ones created before it, then the outer ones).
fn context(
    scope: &Scope,
    plan: &ExtensionPlan,
    core: Option<usize>,
    local: &[&LocalProvisions],
    shared: &[&SharedProvisions],
) -> ExtensionContext {
    let (group, pipeline) = match scope {
        Scope::Engine => ("", ""),
        Scope::Group(group) => (group.as_str(), ""),
        Scope::Pipeline(group, pipeline) => (group.as_str(), pipeline.as_str()),
    };
    let context = ExtensionContext::new(plan.factory, &plan.id, group, pipeline, core);
    if plan.bindings.is_empty() {
        return context;
    }
    context.with_capabilities(Capabilities::for_node(
        &plan.id,
        &plan.bindings,
        local,
        shared,
    ))
}

/// Runs `constructor` for `plan` in `context`; reports the capabilities bound to the
/// extension that its constructor did not claim.
fn construct<E>(
    scope: &Scope,
    plan: &ExtensionPlan,
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
    constructor: fn(&ExtensionContext, &ComponentConfig<'_>) -> Result<E, ExtensionError>,
) -> Result<E, ExtensionError> {
    let extension = constructor(context, config)?;
    for (capability, provider) in context.capabilities().unclaimed() {
        tracing::warn!(scope = %scope, extension = %plan.id, %capability, provider = %provider,
            "the extension did not claim a capability bound to it");
    }
    Ok(extension)
}

/// An extension created, with the time its plan gives it to become ready.
pub(crate) struct Created<E> {
    pub(crate) extension: E,
    pub(crate) startup_timeout: Duration,
}

/// Creates the shared extensions among `plans` (once for all cores); those that bind
/// capabilities get them from the ones created before them and from `outer`.
fn create_shared(
    scope: &Scope,
    plans: &[ExtensionPlan],
    source: &Source,
    outer: &[Arc<SharedProvisions>],
) -> Result<Vec<Created<SharedExtension>>, InstantiateError> {
    let mut created: Vec<Created<SharedExtension>> = Vec::new();
    for plan in plans
        .iter()
        .filter(|e| e.execution == ExecutionModel::Shared)
    {
        let failed = |source| InstantiateError {
            scope: scope.clone(),
            extension: plan.id.clone(),
            source,
        };
        let shared: Vec<&SharedProvisions> = created
            .iter()
            .map(|c| c.extension.as_ref())
            .chain(outer.iter().map(AsRef::as_ref))
            .collect();
        let context = context(scope, plan, None, &[], &shared);
        let config_path = plan.path.key("config");
        let config = ComponentConfig::new(&plan.config, &config_path, &source.positions);
        let constructor = plan
            .factory
            .shared_constructor()
            .ok_or_else(|| failed(context.error("the extension type has no shared variant")))?;
        created.push(Created {
            extension: construct(scope, plan, &context, &config, constructor).map_err(failed)?,
            startup_timeout: plan.startup_timeout,
        });
    }
    Ok(created)
}

/// The extensions of `created`, without their timeouts.
fn extensions<E>(created: Vec<Created<E>>) -> Vec<E> {
    created
        .into_iter()
        .map(|created| created.extension)
        .collect()
}

impl ScopePlan {
    /// Creates the scope's extensions: one shared instance each for the whole scope.
    pub fn create_shared_extensions(
        &self,
        source: &Source,
    ) -> Result<Vec<SharedExtension>, InstantiateError> {
        create_shared(&self.scope, &self.extensions, source, &[]).map(extensions)
    }

    /// Creates the scope's extension `id` alone (a reload replaces or adds it); nothing when
    /// the scope has no such extension.
    pub fn create_shared_extension(
        &self,
        id: &str,
        source: &Source,
    ) -> Result<Option<SharedExtension>, InstantiateError> {
        Ok(self
            .instantiate(id, source)?
            .map(|created| created.extension))
    }

    /// [`create_shared_extension`](Self::create_shared_extension), with its timeout.
    pub(crate) fn instantiate(
        &self,
        id: &str,
        source: &Source,
    ) -> Result<Option<Created<SharedExtension>>, InstantiateError> {
        let Some(plan) = self.extensions.iter().find(|e| e.id == id) else {
            return Ok(None);
        };
        Ok(create_shared(&self.scope, std::slice::from_ref(plan), source, &[])?.pop())
    }
}

impl PipelinePlan {
    fn scope(&self) -> Scope {
        Scope::Pipeline(self.group.clone(), self.name.clone())
    }

    /// Creates the pipeline's shared extensions (once for all cores); `outer`: the instances
    /// of its group's and the engine's extensions that its extensions bind (innermost first).
    pub fn create_shared_extensions(
        &self,
        source: &Source,
        outer: &[Arc<SharedProvisions>],
    ) -> Result<Vec<SharedExtension>, InstantiateError> {
        self.instantiate_shared(source, outer).map(extensions)
    }

    /// [`create_shared_extensions`](Self::create_shared_extensions), with their timeouts.
    pub(crate) fn instantiate_shared(
        &self,
        source: &Source,
        outer: &[Arc<SharedProvisions>],
    ) -> Result<Vec<Created<SharedExtension>>, InstantiateError> {
        create_shared(&self.scope(), &self.extensions, source, outer)
    }

    /// Creates the pipeline's local extensions for pipeline instance `core`; `shared`: the
    /// shared instances they can bind, innermost first (the pipeline's, its group's, the
    /// engine's).
    pub fn create_local_extensions(
        &self,
        core: usize,
        source: &Source,
        shared: &[Arc<SharedProvisions>],
    ) -> Result<Vec<LocalExtension>, InstantiateError> {
        self.instantiate_local(core, source, shared).map(extensions)
    }

    /// [`create_local_extensions`](Self::create_local_extensions), with their timeouts.
    pub(crate) fn instantiate_local(
        &self,
        core: usize,
        source: &Source,
        shared: &[Arc<SharedProvisions>],
    ) -> Result<Vec<Created<LocalExtension>>, InstantiateError> {
        let scope = self.scope();
        let shared: Vec<&SharedProvisions> = shared.iter().map(AsRef::as_ref).collect();
        let mut created: Vec<Created<LocalExtension>> = Vec::new();
        for plan in self
            .extensions
            .iter()
            .filter(|e| e.execution == ExecutionModel::Local)
        {
            let failed = |source| InstantiateError {
                scope: scope.clone(),
                extension: plan.id.clone(),
                source,
            };
            let local: Vec<&LocalProvisions> =
                created.iter().map(|c| c.extension.as_ref()).collect();
            let context = context(&scope, plan, Some(core), &local, &shared);
            let config_path = plan.path.key("config");
            let config = ComponentConfig::new(&plan.config, &config_path, &source.positions);
            let constructor = plan
                .factory
                .local_constructor()
                .ok_or_else(|| failed(context.error("the extension type has no local variant")))?;
            created.push(Created {
                extension: construct(&scope, plan, &context, &config, constructor)
                    .map_err(failed)?,
                startup_timeout: plan.startup_timeout,
            });
        }
        Ok(created)
    }
}
