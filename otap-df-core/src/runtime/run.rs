//! Pipeline runs: one pipeline of one configuration as the engine runs it on every core. The
//! engine starts with one run per pipeline; a reload that changes a pipeline starts a new run
//! of it (from the new configuration) beside the old one and then stops the old one, so runs
//! of several configurations can be alive at once. Likewise an extension of the engine or of a
//! group that a reload replaces: the runs built before keep the old instance, those built
//! after get the new one, and the old one stops once no run binds it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::extension::SharedProvisions;
use crate::node::NodeShared;
use crate::resolve::{PipelinePlan, ResolvedConfig, Scope, ScopeKey};

/// A run's number, unique for the engine's life.
pub(super) type RunId = usize;

/// What the engine's shared extension instances belong to: one instance of an outer scope's
/// extension (the engine's or a group's), or one pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Owner {
    /// One instance of an extension of `engine.extensions` or of a group's, by its number
    /// (drawn, like run ids, from one counter: a replacement gets a new one).
    Outer(usize),
    /// A pipeline run's own extensions.
    Run(RunId),
}

/// The instance of each extension of the engine and of the groups that new runs bind, by
/// scope and id.
pub(super) type OuterInstances = HashMap<(Scope, String), Owner>;

/// One pipeline of one configuration, as every core builds it.
#[derive(Clone)]
pub(super) struct PipelineRun {
    pub(super) id: RunId,
    /// The configuration it comes from.
    pub(super) resolved: Arc<ResolvedConfig>,
    /// Its index in `resolved.pipelines`.
    pub(super) index: usize,
    /// `group/pipeline`.
    pub(super) label: String,
    /// Each node's cell shared by all cores, by node id; a receiver's cell holds its bound
    /// socket, which the run that replaces it takes over.
    pub(super) node_shared: Arc<HashMap<String, NodeShared>>,
    /// The outer instance each of its bindings (its nodes' and its extensions') to an
    /// extension of its group or of the engine reaches, by extension id: the one current when
    /// the run was built.
    pub(super) outer: HashMap<String, Owner>,
    /// The shared instances its nodes can bind, innermost scope first (its own, its
    /// group's, the engine's).
    pub(super) shared: Vec<Arc<SharedProvisions>>,
}

impl PipelineRun {
    /// The run of pipeline `index` of `resolved`, binding the outer instances of `outer`;
    /// `node_shared` the node cells to use.
    pub(super) fn new(
        id: RunId,
        resolved: Arc<ResolvedConfig>,
        index: usize,
        outer: &OuterInstances,
        node_shared: Arc<HashMap<String, NodeShared>>,
    ) -> Self {
        let plan = &resolved.pipelines[index];
        let label = format!("{}/{}", plan.group, plan.name);
        let mut bound = HashMap::new();
        for binding in plan.all_bindings() {
            let Some(key) = resolved.binding_scope(index, &binding.extension) else {
                continue;
            };
            if key == ScopeKey::Pipeline(index) {
                continue;
            }
            let scope = resolved.scope(key);
            if let Some(owner) = outer.get(&(scope, binding.extension.clone())) {
                bound.insert(binding.extension.clone(), *owner);
            }
        }
        let outer = bound;
        Self {
            id,
            resolved,
            index,
            label,
            node_shared,
            outer,
            shared: Vec::new(),
        }
    }

    /// Its plan.
    pub(super) fn plan(&self) -> &PipelinePlan {
        &self.resolved.pipelines[self.index]
    }

    /// Fresh node cells for every node of pipeline `index` of `resolved`.
    pub(super) fn fresh_cells(
        resolved: &ResolvedConfig,
        index: usize,
    ) -> Arc<HashMap<String, NodeShared>> {
        Arc::new(
            resolved.pipelines[index]
                .nodes
                .iter()
                .map(|node| (node.id.clone(), NodeShared::default()))
                .collect(),
        )
    }

    /// Whose instance its nodes get when they bind extension `id` (as resolution bound it:
    /// innermost scope first).
    pub(super) fn owner_of(&self, id: &str) -> Option<Owner> {
        match self.resolved.binding_scope(self.index, id)? {
            ScopeKey::Pipeline(_) => Some(Owner::Run(self.id)),
            ScopeKey::Outer(_) => self.outer.get(id).copied(),
        }
    }

    /// Whether its nodes bind outer instance `owner`.
    pub(super) fn binds(&self, owner: Owner) -> bool {
        self.outer.values().any(|o| *o == owner)
    }
}
