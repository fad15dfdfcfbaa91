//! Executing a reload on the running engine: updates in place, new outer instances and runs
//! brought up beside the old ones, then the old ones stopped (see [`super`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::handle::ReloadOutcome;
use super::plan::{Change, apply, plan, record_live};
use crate::node::NodeShared;
use crate::resolve::{ResolvedConfig, Scope, ScopeKey};
use crate::runtime::failure::Failure;
use crate::runtime::protocol::CoreCommand;
use crate::runtime::room::EngineRoom;
use crate::runtime::run::{OuterInstances, Owner, PipelineRun, RunId};

/// What a reload still has to do once the running instances took what they could in place.
struct Steps {
    /// Extensions of the engine or of a group to create, by scope and id (added, retyped, or
    /// changed in a way their instance cannot take).
    create: Vec<(Scope, String)>,
    /// Extensions of the engine or of a group removed, by scope and id.
    remove: Vec<(Scope, String)>,
    /// Pipelines of the new configuration to start, by index, with the run each replaces.
    start: Vec<(usize, Option<String>)>,
    /// Running pipelines to stop without a successor, by label.
    stop: Vec<String>,
}

impl Steps {
    fn none(&self) -> bool {
        self.create.is_empty()
            && self.remove.is_empty()
            && self.start.is_empty()
            && self.stop.is_empty()
    }
}

/// The new outer instances and runs, brought up beside the old ones.
struct Brought {
    /// The outer instances new runs bind: the running ones, then the new ones.
    outer: OuterInstances,
    /// Each new run, with the label of the run it replaces.
    started: Vec<(PipelineRun, Option<String>)>,
}

/// `group/pipeline` of a pipeline plan.
fn label(plan: &crate::resolve::PipelinePlan) -> String {
    format!("{}/{}", plan.group, plan.name)
}

/// `group/pipeline` of a pipeline's scope.
fn pipeline_label(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Pipeline(group, name) => Some(format!("{group}/{name}")),
        _ => None,
    }
}

impl EngineRoom {
    /// Applies a new configuration (see [`super`]): what the running instances take in
    /// place, then new instances and runs brought up beside the old ones, then the old ones
    /// stopped. Nothing changes when the new ones do not come up.
    pub(in crate::runtime) fn reload(&mut self, new: ResolvedConfig) -> ReloadOutcome {
        let change = match plan(&self.resolved, &self.live, &new) {
            Ok(change) => change,
            Err(needs_restart) => {
                return ReloadOutcome {
                    needs_restart,
                    ..ReloadOutcome::default()
                };
            }
        };
        let new = Arc::new(new);
        let mut outcome = ReloadOutcome::default();
        let steps = self.take_in_place(change, &new, &mut outcome);
        if steps.none() {
            if outcome.failed.is_empty() {
                self.keep(new);
            }
            return outcome;
        }
        match self.bring_up_new(&new, &steps) {
            Ok(brought) => self.switch(new, steps, brought, &mut outcome),
            Err(failures) => outcome.failed.extend(
                failures
                    .iter()
                    .map(|failure| format!("the new configuration did not start: {failure}")),
            ),
        }
        outcome
    }

    /// Step 1–2: The updates the running instances take in place; what remains to do: outer
    /// extensions to create (those whose instance refused its update too), pipelines to
    /// start (the changed ones, those bound to an outer extension that gets a new instance,
    /// those whose own extension refused its update).
    fn take_in_place(
        &mut self,
        change: Change,
        new: &Arc<ResolvedConfig>,
        outcome: &mut ReloadOutcome,
    ) -> Steps {
        let (outer_updates, pipeline_updates): (Vec<_>, Vec<_>) = change
            .updates
            .into_iter()
            .partition(|update| !matches!(update.scope, Scope::Pipeline(..)));
        let mut live = self.live.clone();
        let refused = apply(
            outer_updates,
            new,
            |scope, id| self.instance(scope, id),
            &mut live,
            outcome,
        );
        let mut create = change.create;
        create.extend(refused.into_iter().map(|update| (update.scope, update.id)));
        let mut start = change.start;
        self.bound_to_created(new, &create, &mut start);
        // A pipeline that is replaced takes its extensions' new configs with its new run.
        let kept: Vec<_> = pipeline_updates
            .into_iter()
            .filter(|update| {
                !start.iter().any(|(index, _)| {
                    pipeline_label(&update.scope) == Some(label(&new.pipelines[*index]))
                })
            })
            .collect();
        let refused = apply(
            kept,
            new,
            |scope, id| self.instance(scope, id),
            &mut live,
            outcome,
        );
        for of in refused
            .iter()
            .filter_map(|update| pipeline_label(&update.scope))
        {
            let index = new.pipelines.iter().position(|plan| label(plan) == of);
            if let Some(index) = index
                && !start.iter().any(|(i, _)| *i == index)
            {
                start.push((index, Some(of)));
            }
        }
        self.live = live;
        Steps {
            create,
            remove: change.remove,
            start,
            stop: change.stop,
        }
    }

    /// Adds to `start` the running pipelines of `new` that bind an outer extension getting a
    /// new instance (`create`): their new runs bind it.
    fn bound_to_created(
        &self,
        new: &ResolvedConfig,
        create: &[(Scope, String)],
        start: &mut Vec<(usize, Option<String>)>,
    ) {
        let binds_created = |index: usize| {
            new.pipelines[index].all_bindings().any(|binding| {
                matches!(
                    new.binding_scope(index, &binding.extension),
                    Some(key @ ScopeKey::Outer(_))
                        if create.contains(&(new.scope(key), binding.extension.clone()))
                )
            })
        };
        for (index, plan) in new.pipelines.iter().enumerate() {
            if !start.iter().any(|(i, _)| *i == index)
                && self.runs.contains_key(&label(plan))
                && binds_created(index)
            {
                start.push((index, Some(label(plan))));
            }
        }
    }

    /// Step 3: New outer instances (the engine's first, in declaration order), then new runs,
    /// brought up beside the old ones. When they do not come up, the new runs go (where they
    /// started, they drain) and so do the new instances, once those runs are gone; the
    /// failures, which are the reload's and not the running engine's.
    fn bring_up_new(
        &mut self,
        new: &Arc<ResolvedConfig>,
        steps: &Steps,
    ) -> Result<Brought, Vec<Failure>> {
        let before = self.failures.len();
        let mut outer = self.outer.clone();
        for key in &steps.remove {
            outer.remove(key);
        }
        let mut created = Vec::new();
        for (index, scope) in new.scopes.iter().enumerate() {
            for extension in &scope.extensions {
                let key = (scope.scope.clone(), extension.id.clone());
                if steps.create.contains(&key) {
                    let owner = self.new_outer(new, index, &extension.id);
                    created.push(owner);
                    outer.insert(key, owner);
                }
            }
        }
        let mut started = Vec::new();
        for (index, replaces) in &steps.start {
            let cells = replaces
                .as_ref()
                .and_then(|label| self.runs.get(label))
                .map(|old| takeover_cells(old, new, *index));
            let run = self.new_run(new.clone(), *index, &outer, cells);
            started.push((self.with_shared(run), replaces.clone()));
        }
        let mut failures = self.failures.split_off(before);
        let runs: Vec<PipelineRun> = started.iter().map(|(run, _)| run.clone()).collect();
        let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
        if failures.is_empty() {
            let owners: Vec<Owner> = created
                .iter()
                .copied()
                .chain(ids.iter().map(|id| Owner::Run(*id)))
                .collect();
            let brought = self.bring_up(&runs, &owners, new, &outer);
            if brought.before_start.is_empty() && !brought.at_start.is_empty() {
                self.retire_runs(&runs);
                self.cores.send(|| CoreCommand::Stop(ids.clone()));
            }
            failures.extend(brought.before_start);
            failures.extend(brought.at_start);
        }
        if failures.is_empty() {
            return Ok(Brought { outer, started });
        }
        // Runs that never started: their shared extensions stop now (those that started
        // drain first).
        let never_started: Vec<RunId> = ids
            .into_iter()
            .filter(|id| !self.retiring.contains_key(id))
            .collect();
        for id in never_started {
            self.drop_run_now(id);
        }
        self.superseded.extend(created);
        self.stop_unbound();
        Err(failures)
    }

    /// Step 4: The new instances and runs take over: the old runs stop and drain, and the old outer
    /// instances stop after the last run bound to them.
    fn switch(
        &mut self,
        new: Arc<ResolvedConfig>,
        steps: Steps,
        brought: Brought,
        outcome: &mut ReloadOutcome,
    ) {
        for (scope, id) in &steps.create {
            let what = format!("extension `{id}` of {scope}");
            match self.outer.get(&(scope.clone(), id.clone())) {
                Some(old) => {
                    self.superseded.insert(*old);
                    outcome.replaced.push(what);
                }
                None => outcome.added.push(what),
            }
            let plan = new
                .scopes
                .iter()
                .filter(|s| s.scope == *scope)
                .flat_map(|s| &s.extensions)
                .find(|e| e.id == *id);
            if let Some(plan) = plan {
                self.live
                    .insert((scope.clone(), id.clone()), plan.config.clone());
            }
        }
        for key in &steps.remove {
            if let Some(old) = self.outer.get(key) {
                self.superseded.insert(*old);
            }
            self.live.remove(key);
            outcome
                .removed
                .push(format!("extension `{}` of {}", key.1, key.0));
        }
        self.outer = brought.outer;
        let old_runs = self.take_runs(brought.started, &steps.stop, outcome);
        let old_ids: Vec<RunId> = old_runs.iter().map(|run| run.id).collect();
        self.retire_runs(&old_runs);
        if !old_ids.is_empty() {
            self.cores.send(|| CoreCommand::Stop(old_ids.clone()));
        }
        for (index, _) in &steps.start {
            record_live(&new, ScopeKey::Pipeline(*index), &mut self.live);
        }
        for label in &steps.stop {
            self.live
                .retain(|(scope, _), _| pipeline_label(scope).as_deref() != Some(label.as_str()));
        }
        // The admin endpoint asks the new instance of its extension from now on.
        self.serve_admin(&new);
        self.stop_unbound();
        self.keep(new);
    }

    /// The new runs become the pipelines' runs; the runs they replace, and those of the
    /// pipelines `stop` names, are returned (to stop).
    fn take_runs(
        &mut self,
        started: Vec<(PipelineRun, Option<String>)>,
        stop: &[String],
        outcome: &mut ReloadOutcome,
    ) -> Vec<PipelineRun> {
        let mut old_runs = Vec::new();
        for (run, replaces) in started {
            let what = format!("pipeline `{}`", run.label);
            match replaces {
                Some(label) => {
                    if let Some(old) = self.runs.insert(label, run) {
                        old_runs.push(old);
                    }
                    outcome.replaced.push(what);
                }
                None => {
                    self.runs.insert(run.label.clone(), run);
                    outcome.added.push(what);
                }
            }
        }
        for label in stop {
            if let Some(old) = self.runs.remove(label) {
                old_runs.push(old);
                outcome.removed.push(format!("pipeline `{label}`"));
            }
        }
        old_runs
    }
}

/// The node cells a new run of pipeline `index` of `new` takes from the run it replaces: a
/// node with the same id and type carries over what belongs to the listen addresses it keeps
/// (a receiver its bound socket, so no connection is refused between the two), and the rest
/// of its cell when it keeps them all ([`NodeShared::carried_over`]); the others get fresh
/// ones.
fn takeover_cells(
    old: &PipelineRun,
    new: &ResolvedConfig,
    index: usize,
) -> Arc<HashMap<String, NodeShared>> {
    let listens = |resolved: &ResolvedConfig, node: &crate::resolve::NodePlan| {
        let path = node.path.key("config");
        let config =
            crate::config::ComponentConfig::new(&node.config, &path, &resolved.source.positions);
        node.factory.listen_addresses(&config)
    };
    let old_plan = old.plan();
    Arc::new(
        new.pipelines[index]
            .nodes
            .iter()
            .map(|node| {
                let kept = old_plan
                    .nodes
                    .iter()
                    .find(|o| o.id == node.id && std::ptr::eq(o.factory, node.factory))
                    .and_then(|o| {
                        let cell = old.node_shared.get(&node.id)?;
                        Some(cell.carried_over(&listens(&old.resolved, o), &listens(new, node)))
                    });
                (node.id.clone(), kept.unwrap_or_default())
            })
            .collect(),
    )
}
