//! Live reconfiguration: what a new, already validated configuration changes against the
//! running one, and which of those changes a running engine takes.
//!
//! Taken in place: a changed `config:` of a shared extension whose type declares
//! [`ExtensionFactory::updates_in_place`](crate::extension::ExtensionFactory::updates_in_place)
//! (its instance's [`ConfigUpdater`](crate::extension::ConfigUpdater) gets the new block;
//! consumers keep their capabilities). Every other change — engine settings, extensions or
//! pipelines added, removed or retyped, a node, binding or connection changed, a per-core or
//! non-updatable extension's config — needs a restart: the reload is refused as a whole, with
//! each reason, and the running configuration stays.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::config::{ComponentConfig, YamlPath};
use crate::extension::{ExecutionModel, SharedProvisions};
use crate::resolve::{ExtensionPlan, ResolvedConfig, Scope, ScopeKey};

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Extensions that took their new `config:`: ``extension `tokens` of the engine``.
    pub updated: Vec<String>,
    /// Extensions whose update failed (they keep their configuration), each with why.
    pub failed: Vec<String>,
    /// Why nothing was applied: each change that needs a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadOutcome {
    /// Whether the new configuration is the running one.
    pub fn unchanged(&self) -> bool {
        self.updated.is_empty() && self.failed.is_empty() && self.needs_restart.is_empty()
    }
}

/// A changed `config:` to hand to a running instance.
#[derive(Debug)]
pub(super) struct Update {
    scope: ScopeKey,
    id: String,
    what: String,
    config: Value,
    path: YamlPath,
}

/// The `config:` each extension instance runs with, by scope and id: the plan's at start,
/// then whatever reloads applied.
pub(super) type LiveConfigs = HashMap<(ScopeKey, String), Value>;

/// The configs of `resolved`'s extensions.
pub(super) fn live_configs(resolved: &ResolvedConfig) -> LiveConfigs {
    let scopes = (0..resolved.scopes.len())
        .map(ScopeKey::Outer)
        .chain((0..resolved.pipelines.len()).map(ScopeKey::Pipeline));
    scopes
        .flat_map(|key| {
            resolved
                .extensions_of(key)
                .iter()
                .map(move |e| ((key, e.id.clone()), e.config.clone()))
        })
        .collect()
}

/// The changes from `running` (whose extensions run with `live`) to `new`: the updates to
/// apply, or every reason why it needs a restart.
pub(super) fn plan(
    running: &ResolvedConfig,
    live: &LiveConfigs,
    new: &ResolvedConfig,
) -> Result<Vec<Update>, Vec<String>> {
    let mut restart = Vec::new();
    if running.engine.cores != new.engine.cores {
        restart.push("`engine.cores` changed".to_owned());
    }
    if running.engine.admin != new.engine.admin {
        restart.push("`engine.admin` changed".to_owned());
    }
    let scopes = |resolved: &ResolvedConfig| -> Vec<Scope> {
        let outer = (0..resolved.scopes.len()).map(ScopeKey::Outer);
        let pipelines = (0..resolved.pipelines.len()).map(ScopeKey::Pipeline);
        outer.chain(pipelines).map(|k| resolved.scope(k)).collect()
    };
    let (old_scopes, new_scopes) = (scopes(running), scopes(new));
    for scope in new_scopes.iter().filter(|s| !old_scopes.contains(s)) {
        restart.push(format!("{scope} was added"));
    }
    for scope in old_scopes.iter().filter(|s| !new_scopes.contains(s)) {
        restart.push(format!("{scope} was removed"));
    }
    let key_in = |resolved: &ResolvedConfig, scope: &Scope| {
        let outer = (0..resolved.scopes.len()).map(ScopeKey::Outer);
        let pipelines = (0..resolved.pipelines.len()).map(ScopeKey::Pipeline);
        outer
            .chain(pipelines)
            .find(|&k| resolved.scope(k) == *scope)
    };
    let mut updates = Vec::new();
    for scope in old_scopes.iter().filter(|s| new_scopes.contains(s)) {
        let (Some(old_key), Some(new_key)) = (key_in(running, scope), key_in(new, scope)) else {
            continue;
        };
        extensions(
            scope,
            (old_key, running.extensions_of(old_key)),
            new.extensions_of(new_key),
            live,
            &mut updates,
            &mut restart,
        );
        if let (ScopeKey::Pipeline(old), ScopeKey::Pipeline(new_index)) = (old_key, new_key) {
            let (old, new) = (&running.pipelines[old], &new.pipelines[new_index]);
            let nodes = |plan: &crate::resolve::PipelinePlan| -> Vec<_> {
                plan.nodes
                    .iter()
                    .map(|n| {
                        (
                            n.id.clone(),
                            n.factory.kind(),
                            n.factory.name(),
                            n.config.clone(),
                            n.bindings.clone(),
                        )
                    })
                    .collect()
            };
            if nodes(old) != nodes(new) {
                restart.push(format!("the nodes of {scope} changed"));
            }
            if old.edges != new.edges {
                restart.push(format!("the connections of {scope} changed"));
            }
        }
    }
    if restart.is_empty() {
        Ok(updates)
    } else {
        Err(restart)
    }
}

/// Compares one scope's extensions: the same ids with the same types and variants, and for
/// each changed `config:` an update when the instance can take it.
fn extensions(
    scope: &Scope,
    (key, old): (ScopeKey, &[ExtensionPlan]),
    new: &[ExtensionPlan],
    live: &LiveConfigs,
    updates: &mut Vec<Update>,
    restart: &mut Vec<String>,
) {
    let shape = |plans: &[ExtensionPlan]| -> Vec<(String, &'static str, ExecutionModel)> {
        plans
            .iter()
            .map(|e| (e.id.clone(), e.factory.name(), e.execution))
            .collect()
    };
    if shape(old) != shape(new) {
        restart.push(format!(
            "the extensions of {scope} changed (added, removed, retyped or now bound differently)"
        ));
        return;
    }
    for plan in new {
        let running = live.get(&(key, plan.id.clone()));
        if running == Some(&plan.config) {
            continue;
        }
        let what = format!("extension `{}` of {scope}", plan.id);
        if !plan.factory.takes_updates() {
            restart.push(format!(
                "the config of {what} changed, and extension:{} does not take a new config while running",
                plan.factory.name()
            ));
        } else if plan.execution != ExecutionModel::Shared {
            restart.push(format!(
                "the config of {what} changed, and it runs one instance per core (only a shared instance is updated in place)"
            ));
        } else {
            updates.push(Update {
                scope: key,
                id: plan.id.clone(),
                what,
                config: plan.config.clone(),
                path: plan.path.key("config"),
            });
        }
    }
}

/// Applies `updates` to the running shared instances; what took them is recorded in `live`.
pub(super) fn apply(
    updates: Vec<Update>,
    new: &ResolvedConfig,
    shared: &HashMap<ScopeKey, Vec<SharedProvisions>>,
    live: &mut LiveConfigs,
) -> ReloadOutcome {
    let mut outcome = ReloadOutcome::default();
    for update in updates {
        let updater = shared
            .get(&update.scope)
            .and_then(|instances| instances.iter().find(|p| p.extension_id() == update.id))
            .and_then(|instance| instance.updater());
        let Some(updater) = updater else {
            outcome.failed.push(format!(
                "{}: the running instance takes no new config (its constructor gave no updater)",
                update.what
            ));
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
                tracing::warn!("reload: {} kept its config: {error}", update.what);
                outcome.failed.push(format!("{}: {error}", update.what));
            }
        }
    }
    outcome
}

/// A request to a running engine: the new configuration, and where to answer.
pub(super) type ReloadRequest = (ResolvedConfig, mpsc::Sender<ReloadOutcome>);

/// Hands a running engine a new configuration (see the module documentation).
#[derive(Debug, Clone)]
pub struct ReloadHandle(pub(super) mpsc::Sender<ReloadRequest>);

impl ReloadHandle {
    /// Applies `new` (already validated: `resolve::load*`) to the running engine and says what
    /// was done; `None` when the engine is not running (not started yet, or ended).
    pub fn reload(&self, new: ResolvedConfig) -> Option<ReloadOutcome> {
        let (answer, answered) = mpsc::channel();
        self.0.send((new, answer)).ok()?;
        // The engine answers between two of its checks (every 50 ms); an update reads at
        // most a few files.
        answered.recv_timeout(Duration::from_secs(30)).ok()
    }
}
