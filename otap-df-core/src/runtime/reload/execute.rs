//! Executing a reload on the running engine: updates in place, new outer instances and runs
//! brought up beside the old ones, then the old ones stopped (see [`super`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::ReloadOutcome;
use super::plan::{apply, plan, record_live};
use crate::node::NodeShared;
use crate::resolve::{ResolvedConfig, Scope, ScopeKey};
use crate::runtime::protocol::{CoreCommand, CoreReport};
use crate::runtime::room::EngineRoom;
use crate::runtime::run::{Owner, PipelineRun, RunId};

impl EngineRoom {
    /// Applies a new configuration (see [`super::reload`]).
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
        let label = |plan: &crate::resolve::PipelinePlan| format!("{}/{}", plan.group, plan.name);

        // 1. Updates in place to outer instances; those not taken become new instances.
        let (outer_updates, pipeline_updates): (Vec<_>, Vec<_>) = change
            .updates
            .into_iter()
            .partition(|update| !matches!(update.scope, Scope::Pipeline(..)));
        let mut live = self.live.clone();
        let refused = apply(
            outer_updates,
            &new,
            |scope, id| self.instance(scope, id),
            &mut live,
            &mut outcome,
        );
        let mut create = change.create;
        create.extend(refused.into_iter().map(|update| (update.scope, update.id)));

        // 2. Pipelines: the changed ones, those bound to an outer extension that gets a new
        // instance, and those whose own extension refused its update in place.
        let mut start = change.start;
        let binds_created = |index: usize| {
            new.pipelines[index]
                .nodes
                .iter()
                .flat_map(|node| &node.bindings)
                .any(|binding| {
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
        let replaced_label = |scope: &Scope| match scope {
            Scope::Pipeline(group, name) => Some(format!("{group}/{name}")),
            _ => None,
        };
        let kept: Vec<_> = pipeline_updates
            .into_iter()
            .filter(|update| {
                !start.iter().any(|(index, _)| {
                    replaced_label(&update.scope) == Some(label(&new.pipelines[*index]))
                })
            })
            .collect();
        let refused = apply(
            kept,
            &new,
            |scope, id| self.instance(scope, id),
            &mut live,
            &mut outcome,
        );
        for update in refused {
            let Some(of) = replaced_label(&update.scope) else {
                continue;
            };
            let index = new.pipelines.iter().position(|plan| label(plan) == of);
            if let Some(index) = index
                && !start.iter().any(|(i, _)| *i == index)
            {
                start.push((index, Some(of)));
            }
        }
        self.live = live;
        if create.is_empty()
            && change.remove.is_empty()
            && start.is_empty()
            && change.stop.is_empty()
        {
            if outcome.failed.is_empty() {
                self.keep(new);
            }
            return outcome;
        }

        // 3. New outer instances (the engine's first, in declaration order), then new runs:
        // built and started beside the old ones.
        let before = self.failures.len();
        let mut outer = self.outer.clone();
        for key in &change.remove {
            outer.remove(key);
        }
        let mut created = Vec::new();
        for (index, scope) in new.scopes.iter().enumerate() {
            for extension in &scope.extensions {
                let key = (scope.scope.clone(), extension.id.clone());
                if create.contains(&key) {
                    let owner = self.new_outer(&new, index, &extension.id);
                    created.push(owner);
                    outer.insert(key, owner);
                }
            }
        }
        let mut started = Vec::new();
        for (index, replaces) in &start {
            let cells = replaces
                .as_ref()
                .and_then(|label| self.runs.get(label))
                .map(|old| takeover_cells(old, &new, *index));
            let run = self.new_run(new.clone(), *index, &outer, cells);
            started.push((self.with_shared(run), replaces.clone()));
        }
        // What failed for the new instances and runs (creating their shared extensions,
        // first) is the reload's, not the running engine's.
        let mut new_failures = self.failures.split_off(before);
        let runs: Vec<PipelineRun> = started.iter().map(|(run, _)| run.clone()).collect();
        let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
        let mut claimed = BTreeSet::new();
        if new_failures.is_empty() && !runs.is_empty() {
            self.cores.send(|| CoreCommand::Build(runs.clone()));
            for report in self
                .cores
                .answers(|r| matches!(r, CoreReport::Built { .. }))
            {
                if let CoreReport::Built { failures, claims } = report {
                    new_failures.extend(failures);
                    claimed.extend(claims);
                }
            }
        }
        if new_failures.is_empty() {
            let owners: Vec<Owner> = created
                .iter()
                .copied()
                .chain(ids.iter().map(|id| Owner::Run(*id)))
                .collect();
            claimed.extend(self.admin_claim(&new, &outer));
            new_failures.extend(self.start_shared(&owners, &claimed));
        }
        if new_failures.is_empty() && !runs.is_empty() {
            self.cores.send(|| CoreCommand::Start(ids.clone()));
            for report in self
                .cores
                .answers(|r| matches!(r, CoreReport::Started { .. }))
            {
                if let CoreReport::Started { failures } = report {
                    new_failures.extend(failures);
                }
            }
            if !new_failures.is_empty() {
                // Where they started, they drain; the old ones stay.
                self.retire_runs(&runs);
                self.cores.send(|| CoreCommand::Stop(ids.clone()));
            }
        } else if !runs.is_empty() {
            self.cores.send(|| CoreCommand::Discard(ids.clone()));
            self.cores
                .answers(|r| matches!(r, CoreReport::Started { .. }));
            for id in &ids {
                self.drop_run_now(*id);
            }
        }
        if !new_failures.is_empty() {
            // The new outer instances go once the new runs that bind them have drained.
            self.superseded.extend(created);
            self.stop_unbound();
            outcome.failed.extend(
                new_failures
                    .iter()
                    .map(|failure| format!("the new configuration did not start: {failure}")),
            );
            return outcome;
        }

        // 4. Then the old runs stop and drain, and the old outer instances stop after the
        // last run bound to them.
        for (scope, id) in &create {
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
        for key in &change.remove {
            if let Some(old) = self.outer.get(key) {
                self.superseded.insert(*old);
            }
            self.live.remove(key);
            outcome
                .removed
                .push(format!("extension `{}` of {}", key.1, key.0));
        }
        self.outer = outer;
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
        for label in &change.stop {
            if let Some(old) = self.runs.remove(label) {
                old_runs.push(old);
                outcome.removed.push(format!("pipeline `{label}`"));
            }
        }
        let old_ids: Vec<RunId> = old_runs.iter().map(|run| run.id).collect();
        self.retire_runs(&old_runs);
        if !old_ids.is_empty() {
            self.cores.send(|| CoreCommand::Stop(old_ids.clone()));
        }
        for (index, _) in &start {
            record_live(&new, ScopeKey::Pipeline(*index), &mut self.live);
        }
        for label in &change.stop {
            self.live.retain(|(scope, _), _| {
                !matches!(scope, Scope::Pipeline(g, p) if format!("{g}/{p}") == *label)
            });
        }
        // The admin endpoint asks the new instance of its extension from now on.
        self.serve_admin(&new);
        self.stop_unbound();
        self.keep(new);
        outcome
    }
}

/// The node cells a new run of pipeline `index` of `new` takes from the run it replaces: a
/// node with the same id, type and listen addresses keeps its cell (a receiver its bound
/// socket, so no connection is refused between the two); the others get fresh ones.
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
                    .find(|o| {
                        o.id == node.id
                            && std::ptr::eq(o.factory, node.factory)
                            && listens(&old.resolved, o) == listens(new, node)
                    })
                    .and_then(|_| old.node_shared.get(&node.id).cloned());
                (node.id.clone(), kept.unwrap_or_default())
            })
            .collect(),
    )
}
