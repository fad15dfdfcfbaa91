//! Planning a reload: what a new, already validated configuration changes against the
//! running one, and which of those changes the running instances take in place.

use std::collections::HashMap;
use std::sync::Arc;

use serde_yaml_ng::Value;

use super::handle::ReloadOutcome;
use crate::capability::Binding;
use crate::config::{ComponentConfig, ComponentKind, YamlPath};
use crate::extension::{ExecutionModel, SharedProvisions};
use crate::resolve::{ExtensionPlan, PipelinePlan, ResolvedConfig, Scope, ScopeKey};

/// What a reload changes, once checked.
#[derive(Debug, Default)]
pub(super) struct Change {
    /// Extension configs to hand to running instances.
    pub(super) updates: Vec<Update>,
    /// Extensions of the engine or of a group to create (added, retyped, or changed in a way
    /// their instance cannot take), by scope and id.
    pub(super) create: Vec<(Scope, String)>,
    /// Extensions of the engine or of a group removed, by scope and id.
    pub(super) remove: Vec<(Scope, String)>,
    /// Pipelines of the new configuration to start, by index; with the label of the one each
    /// replaces.
    pub(super) start: Vec<(usize, Option<String>)>,
    /// Labels of running pipelines to stop without a successor.
    pub(super) stop: Vec<String>,
}

/// A changed `config:` to hand to a running instance.
#[derive(Debug)]
pub(super) struct Update {
    /// Its scope.
    pub(super) scope: Scope,
    pub(super) id: String,
    pub(super) what: String,
    config: Value,
    path: YamlPath,
}

/// The `config:` each extension instance runs with, by scope and id: the plan's at start,
/// then whatever reloads applied.
pub(crate) type LiveConfigs = HashMap<(Scope, String), Value>;

/// The configs of the extensions of scope `key` of `resolved`, into `live`.
pub(super) fn record_live(resolved: &ResolvedConfig, key: ScopeKey, live: &mut LiveConfigs) {
    let scope = resolved.scope(key);
    for extension in resolved.extensions_of(key) {
        live.insert(
            (scope.clone(), extension.id.clone()),
            extension.config.clone(),
        );
    }
}

/// The configs of `resolved`'s extensions.
pub(crate) fn live_configs(resolved: &ResolvedConfig) -> LiveConfigs {
    let mut live = LiveConfigs::new();
    let scopes = (0..resolved.scopes.len())
        .map(ScopeKey::Outer)
        .chain((0..resolved.pipelines.len()).map(ScopeKey::Pipeline));
    for key in scopes {
        record_live(resolved, key, &mut live);
    }
    live
}

/// The changes from `running` (whose extensions run with `live`) to `new`, or every reason
/// why it needs a restart.
pub(super) fn plan(
    running: &ResolvedConfig,
    live: &LiveConfigs,
    new: &ResolvedConfig,
) -> Result<Change, Vec<String>> {
    let mut restart = Vec::new();
    if running.engine.cores != new.engine.cores {
        restart.push("`engine.cores` changed".to_owned());
    }
    if running.engine.admin != new.engine.admin {
        restart.push("`engine.admin` changed".to_owned());
    }
    if !restart.is_empty() {
        return Err(restart);
    }
    let mut change = Change::default();
    outer_changes(running, live, new, &mut change);
    for (index, plan) in new.pipelines.iter().enumerate() {
        match running
            .pipelines
            .iter()
            .position(|p| label(p) == label(plan))
        {
            None => change.start.push((index, None)),
            Some(old) => pipeline_change(running, old, live, new, index, &mut change),
        }
    }
    for plan in &running.pipelines {
        if !new.pipelines.iter().any(|p| label(p) == label(plan)) {
            change.stop.push(label(plan));
        }
    }
    Ok(change)
}

/// `group/pipeline`.
fn label(plan: &PipelinePlan) -> String {
    format!("{}/{}", plan.group, plan.name)
}

/// The changes to the extensions of the engine and of the groups, each extension compared
/// alone: removed, created (new, retyped, or a `config:` its instance cannot take), or
/// updated in place. A group that comes or goes without extensions changes nothing here.
fn outer_changes(
    running: &ResolvedConfig,
    live: &LiveConfigs,
    new: &ResolvedConfig,
    change: &mut Change,
) {
    let outer = |resolved: &ResolvedConfig, scope: &Scope| {
        resolved
            .scopes
            .iter()
            .position(|s| s.scope == *scope)
            .map(ScopeKey::Outer)
    };
    let mut scopes: Vec<&Scope> = running.scopes.iter().map(|s| &s.scope).collect();
    scopes.extend(
        new.scopes
            .iter()
            .map(|s| &s.scope)
            .filter(|s| !running.scopes.iter().any(|r| r.scope == **s)),
    );
    for scope in scopes {
        let old = outer(running, scope).map_or(&[][..], |k| running.extensions_of(k));
        let fresh = outer(new, scope).map_or(&[][..], |k| new.extensions_of(k));
        for plan in old {
            if !fresh.iter().any(|e| e.id == plan.id) {
                change.remove.push((scope.clone(), plan.id.clone()));
            }
        }
        for plan in fresh {
            let same_kind = old.iter().any(|e| {
                e.id == plan.id
                    && e.factory.name() == plan.factory.name()
                    && e.execution == plan.execution
            });
            if !same_kind {
                change.create.push((scope.clone(), plan.id.clone()));
                continue;
            }
            match compare(scope, plan, live) {
                Compared::Same => {}
                Compared::Update(update) => change.updates.push(update),
                Compared::Replace(why) => {
                    tracing::info!("reload: {why}; a new instance replaces it");
                    change.create.push((scope.clone(), plan.id.clone()));
                }
            }
        }
    }
}

/// Pipeline `old` of `running`, now pipeline `index` of `new`: replaced when its nodes, its
/// connections, the scopes its bindings reach or its own extensions (other than updates in
/// place) changed; otherwise its extensions' updates are taken in place.
fn pipeline_change(
    running: &ResolvedConfig,
    old: usize,
    live: &LiveConfigs,
    new: &ResolvedConfig,
    index: usize,
    change: &mut Change,
) {
    let (before, plan) = (&running.pipelines[old], &new.pipelines[index]);
    let scope = Scope::Pipeline(plan.group.clone(), plan.name.clone());
    let mut reasons = Vec::new();
    let mut updates = Vec::new();
    extensions(
        &scope,
        &before.extensions,
        &plan.extensions,
        live,
        &mut updates,
        &mut reasons,
    );
    fn nodes(plan: &PipelinePlan) -> Vec<(&String, ComponentKind, &str, &Value, &[Binding])> {
        plan.nodes
            .iter()
            .map(|n| {
                let (kind, name) = (n.factory.kind(), n.factory.name());
                (&n.id, kind, name, &n.config, &n.bindings[..])
            })
            .collect()
    }
    // Bindings that now reach another scope's instance change the pipeline too.
    let reach = |resolved: &ResolvedConfig, index: usize| -> Vec<Option<Scope>> {
        resolved.pipelines[index]
            .all_bindings()
            .map(|b| {
                resolved
                    .binding_scope(index, &b.extension)
                    .map(|k| resolved.scope(k))
            })
            .collect()
    };
    let rebuilt = !reasons.is_empty()
        || nodes(before) != nodes(plan)
        || before.edges != plan.edges
        || reach(running, old) != reach(new, index);
    if rebuilt {
        change.start.push((index, Some(label(plan))));
    } else {
        change.updates.extend(updates);
    }
}

/// How an extension's new `config:` compares with the one its instance runs with.
enum Compared {
    Same,
    /// Its instance can take it.
    Update(Update),
    /// It needs a new instance: why.
    Replace(String),
}

/// Compares extension `plan` of `scope` (same id, type and variant as the running one) with
/// the config its instance runs with.
fn compare(scope: &Scope, plan: &ExtensionPlan, live: &LiveConfigs) -> Compared {
    let running = live.get(&(scope.clone(), plan.id.clone()));
    if running == Some(&plan.config) {
        return Compared::Same;
    }
    let what = format!("extension `{}` of {scope}", plan.id);
    if !plan.factory.takes_updates() {
        Compared::Replace(format!(
            "the config of {what} changed, and extension:{} does not take a new config while running",
            plan.factory.name()
        ))
    } else if plan.execution != ExecutionModel::Shared {
        Compared::Replace(format!(
            "the config of {what} changed, and it runs one instance per core (only a shared instance is updated in place)"
        ))
    } else {
        Compared::Update(Update {
            scope: scope.clone(),
            id: plan.id.clone(),
            what,
            config: plan.config.clone(),
            path: plan.path.key("config"),
        })
    }
}

/// Compares one pipeline's extensions: the same ids with the same types and variants, and for
/// each changed `config:` an update when the instance can take it; otherwise a reason (which
/// replaces the pipeline).
fn extensions(
    scope: &Scope,
    old: &[ExtensionPlan],
    new: &[ExtensionPlan],
    live: &LiveConfigs,
    updates: &mut Vec<Update>,
    reasons: &mut Vec<String>,
) {
    let shape =
        |plans: &[ExtensionPlan]| -> Vec<(String, &'static str, ExecutionModel, Vec<Binding>)> {
            plans
                .iter()
                .map(|e| {
                    (
                        e.id.clone(),
                        e.factory.name(),
                        e.execution,
                        e.bindings.clone(),
                    )
                })
                .collect()
        };
    if shape(old) != shape(new) {
        reasons.push(format!(
            "the extensions of {scope} changed (added, removed, retyped or now bound differently)"
        ));
        return;
    }
    for plan in new {
        match compare(scope, plan, live) {
            Compared::Same => {}
            Compared::Update(update) => updates.push(update),
            Compared::Replace(why) => reasons.push(why),
        }
    }
}

/// Applies `updates` to the running shared instances (`instance` finds one by scope and id);
/// what took them is recorded in `live`, and in `outcome`. Returns the updates not taken (the
/// instance has no updater, or it refused this change): their instances are to be replaced.
pub(super) fn apply(
    updates: Vec<Update>,
    new: &ResolvedConfig,
    instance: impl Fn(&Scope, &str) -> Option<Arc<SharedProvisions>>,
    live: &mut LiveConfigs,
    outcome: &mut ReloadOutcome,
) -> Vec<Update> {
    let mut refused = Vec::new();
    for update in updates {
        let updater =
            instance(&update.scope, &update.id).and_then(|instance| instance.updater().cloned());
        let Some(updater) = updater else {
            tracing::info!(
                "reload: {}: the running instance takes no new config (its constructor gave no updater); a new instance replaces it",
                update.what
            );
            refused.push(update);
            continue;
        };
        let config = ComponentConfig::new(&update.config, &update.path, &new.source.positions);
        match updater.update(&config) {
            Ok(()) => {
                tracing::info!("reload: {} took its new config", update.what);
                live.insert((update.scope, update.id), update.config);
                outcome.updated.push(update.what);
            }
            Err(error) => {
                tracing::info!(
                    "reload: {} does not take this change in place ({error}); a new instance replaces it",
                    update.what
                );
                refused.push(update);
            }
        }
    }
    refused
}
