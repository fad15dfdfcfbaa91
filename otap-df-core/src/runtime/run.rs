//! Pipeline runs: one pipeline of one configuration as the engine runs it on every core. The
//! engine starts with one run per pipeline; a reload that changes a pipeline starts a new run
//! of it (from the new configuration) beside the old one and then stops the old one, so runs
//! of several configurations can be alive at once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::extension::SharedProvisions;
use crate::node::NodeShared;
use crate::resolve::{PipelinePlan, ResolvedConfig, ScopeKey};

/// A run's number, unique for the engine's life.
pub(super) type RunId = usize;

/// What the engine's extension instances belong to: an outer scope (the engine's or a
/// group's, by its index in the configuration the engine started with — outer scopes do not
/// change while it runs) or one pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Owner {
    /// `engine.extensions` (`0`) or a group's.
    Outer(usize),
    /// A pipeline run's own extensions.
    Run(RunId),
}

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
    /// Where the outer scopes its nodes see are among the engine's: its group's (when the
    /// engine has that scope) and the engine's.
    pub(super) outer: [Option<usize>; 2],
    /// The shared instances its nodes can bind, innermost scope first (its own, its
    /// group's, the engine's).
    pub(super) shared: Vec<Arc<SharedProvisions>>,
}

impl PipelineRun {
    /// The run of pipeline `index` of `resolved`; `outer_scopes` are the engine's (from the
    /// configuration it started with), `node_shared` the node cells to use.
    pub(super) fn new(
        id: RunId,
        resolved: Arc<ResolvedConfig>,
        index: usize,
        outer_scopes: &ResolvedConfig,
        node_shared: Arc<HashMap<String, NodeShared>>,
    ) -> Self {
        let plan = &resolved.pipelines[index];
        let label = format!("{}/{}", plan.group, plan.name);
        let [_, group, engine] = resolved.scopes_of(index);
        let find = |key: ScopeKey| {
            let scope = resolved.scope(key);
            outer_scopes
                .scopes
                .iter()
                .position(|outer| outer.scope == scope)
        };
        let outer = [find(group), find(engine)];
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
        let [own, group, _] = self.resolved.scopes_of(self.index);
        match self.resolved.binding_scope(self.index, id)? {
            key if key == own => Some(Owner::Run(self.id)),
            key if key == group => self.outer[0].map(Owner::Outer),
            _ => self.outer[1].map(Owner::Outer),
        }
    }

    /// The owners whose shared instances its nodes can bind, innermost first.
    pub(super) fn owners(&self) -> Vec<Owner> {
        std::iter::once(Owner::Run(self.id))
            .chain(self.outer.iter().flatten().map(|&i| Owner::Outer(i)))
            .collect()
    }
}
