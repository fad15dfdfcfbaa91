//! Instantiation: a pipeline plan's extensions created, shared ones once for all cores,
//! local ones once per core.

use crate::config::{ComponentConfig, Source};
use crate::extension::{
    ExecutionModel, ExtensionContext, ExtensionError, LocalExtension, SharedExtension,
};
use crate::resolve::{ExtensionPlan, PipelinePlan};

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
