//! Building a run on one core: its local extensions created, then its nodes constructed with
//! the capabilities bound to them; what the nodes claimed.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Built, Claims, CoreWorker, LocalLifecycle};
use crate::config::ComponentConfig;
use crate::extension::{Capabilities, LocalExtension, LocalProvisions};
use crate::node::{NodeContext, NodeCounters, NodeError, NodeInstance, ShutdownSignal};
use crate::resolve::NodePlan;
use crate::runtime::failure::Failure;
use crate::runtime::instantiate::Created;
use crate::runtime::run::PipelineRun;
use crate::runtime::telemetry::ExtensionState;

impl CoreWorker {
    /// Builds `run` on this core: its local extensions, then its nodes; the extensions the
    /// nodes claimed.
    pub(super) fn build(&self, run: PipelineRun) -> Result<(Built, Claims), Vec<Failure>> {
        let plan = run.plan();
        let local = plan
            .instantiate_local(self.core, &run.resolved.source, &run.shared)
            .map_err(|error| vec![Failure::from(error)])?;
        let (extensions, provisions): (Vec<_>, Vec<_>) = local
            .into_iter()
            .map(|created| self.record(&run, created))
            .unzip();
        let mut failures = Vec::new();
        let mut nodes = Vec::new();
        let mut claims = BTreeSet::new();
        for node in &plan.nodes {
            match self.build_node(&run, node, &provisions, &mut claims) {
                Ok(built) => nodes.push(built),
                Err(failure) => failures.push(failure),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        // What a claimed extension binds is claimed too; consumers come after what they
        // bind, so one pass from the last reaches every provider.
        for extension in plan.extensions.iter().rev() {
            let claimed = run
                .owner_of(&extension.id)
                .is_some_and(|owner| claims.contains(&(owner, extension.id.clone())));
            if !claimed {
                continue;
            }
            for binding in &extension.bindings {
                if let Some(owner) = run.owner_of(&binding.extension) {
                    claims.insert((owner, binding.extension.clone()));
                }
            }
        }
        let built = Built {
            run,
            extensions,
            nodes,
            provisions,
        };
        Ok((built, claims))
    }

    /// A created local extension of `run`, known to telemetry: its lifecycle and provisions.
    fn record(
        &self,
        run: &PipelineRun,
        Created {
            extension,
            startup_timeout,
        }: Created<LocalExtension>,
    ) -> (LocalLifecycle, LocalProvisions) {
        let (label, core) = (&run.label, Some(self.core));
        let id = extension.extension_id().to_owned();
        self.telemetry
            .register_extension_metrics(label, &id, core, run.id, extension.metrics());
        let (provision, lifecycle) = extension.into_parts();
        self.telemetry
            .set_extension(label, &id, core, run.id, ExtensionState::Created);
        ((id, lifecycle, startup_timeout), provision)
    }

    /// Constructs `node` of `run` with the capabilities bound to it; adds the extensions it
    /// claimed to `claims`.
    fn build_node(
        &self,
        run: &PipelineRun,
        node: &NodePlan,
        provisions: &[LocalProvisions],
        claims: &mut Claims,
    ) -> Result<(String, NodeInstance, Arc<NodeCounters>), Failure> {
        let plan = run.plan();
        let Some(constructor) = node.factory.constructor() else {
            return Err(Failure::NotRunnable {
                pipeline: run.label.clone(),
                node: node.id.clone(),
                node_type: format!("{}:{}", node.factory.kind(), node.factory.name()),
            });
        };
        let context = NodeContext {
            node_id: node.id.clone(),
            group: plan.group.clone(),
            pipeline: plan.name.clone(),
            core: self.core,
            cores: self.cores,
            counters: Arc::new(NodeCounters::default()),
            shutdown: ShutdownSignal::new(self.stop.subscribe()),
            shared: run.node_shared.get(&node.id).cloned().unwrap_or_default(),
            awaits_acknowledgement: plan.awaits_acknowledgement(&node.id),
        };
        let source = &run.resolved.source;
        let config_path = node.path.key("config");
        let config = ComponentConfig::new(&node.config, &config_path, &source.positions);
        let mut capabilities =
            Capabilities::for_node(&node.id, &node.bindings, provisions, &run.shared);
        let instance = constructor(&context, &config, &mut capabilities)
            .and_then(|instance| of_its_kind(&context, node, instance))
            .map_err(|error| Failure::NodeConstruction {
                pipeline: run.label.clone(),
                node: node.id.clone(),
                core: self.core,
                error,
            })?;
        let unclaimed = capabilities.unclaimed();
        for (capability, extension) in &unclaimed {
            tracing::warn!(pipeline = %run.label, node = %node.id, %capability, extension = %extension,
                "the node did not claim a capability bound to it");
        }
        for binding in &node.bindings {
            if !unclaimed.iter().any(|(_, e)| *e == binding.extension)
                && let Some(owner) = run.owner_of(&binding.extension)
            {
                claims.insert((owner, binding.extension.clone()));
            }
        }
        Ok((node.id.clone(), instance, context.counters.clone()))
    }
}

/// `instance`, when it is of the kind its node's type declares.
fn of_its_kind(
    context: &NodeContext,
    node: &NodePlan,
    instance: NodeInstance,
) -> Result<NodeInstance, NodeError> {
    if instance.kind_name() == node.factory.kind().as_str() {
        Ok(instance)
    } else {
        Err(context.error(format!(
            "its constructor built a {} for a {} type",
            instance.kind_name(),
            node.factory.kind()
        )))
    }
}
