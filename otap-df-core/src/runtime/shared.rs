//! The engine's shared extension instances: each owner's (an outer scope's extension instance,
//! or a run's own), created, started when some node (or the admin endpoint) claimed them,
//! watched while they run, stopped when their owner goes; and the authorizer the admin endpoint
//! asks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll};
use super::failure::Failure;
use super::instantiate::{Created, InstantiateError};
use super::room::EngineRoom;
use super::run::{OuterInstances, Owner};
use super::telemetry::ExtensionState;
use super::worker::instantiate_failure;
use crate::extension::{Lifecycle, SharedExtension, SharedProvisions, SharedTask};
use crate::resolve::{ResolvedConfig, Scope};

pub(super) type SharedLifecycle = (String, Lifecycle<Box<dyn SharedTask>>, Duration);

/// The shared instances of one owner, and their tasks once started.
pub(super) struct SharedOf {
    pub(super) owner: Owner,
    /// How far in its scope is: the engine `0`, a group `1`, a pipeline `2` (inner ones stop
    /// first).
    pub(super) rank: u8,
    pub(super) label: String,
    pub(super) provisions: Vec<Arc<SharedProvisions>>,
    pub(super) tasks: ExtensionTasks,
}

impl EngineRoom {
    /// Records created shared extensions of `owner` (or the failure to create them).
    pub(super) fn created(
        &mut self,
        owner: Owner,
        rank: u8,
        label: String,
        generation: usize,
        created: Result<Vec<Created<SharedExtension>>, InstantiateError>,
    ) {
        let mut provisions = Vec::new();
        let mut lifecycles = Vec::new();
        match created {
            Ok(extensions) => {
                for Created {
                    extension,
                    startup_timeout,
                } in extensions
                {
                    self.telemetry.register_extension_metrics(
                        &label,
                        extension.extension_id(),
                        None,
                        generation,
                        extension.metrics(),
                    );
                    let (provision, lifecycle) = extension.into_parts();
                    let id = provision.extension_id().to_owned();
                    self.telemetry.set_extension(
                        &label,
                        &id,
                        None,
                        generation,
                        ExtensionState::Created,
                    );
                    lifecycles.push((id.clone(), lifecycle, startup_timeout));
                    provisions.push(Arc::new(provision));
                }
            }
            Err(error) => self.failures.push(instantiate_failure(error)),
        }
        self.shared.push(SharedOf {
            owner,
            rank,
            label,
            provisions,
            tasks: ExtensionTasks::new(None, generation),
        });
        self.pending.push((owner, lifecycles));
    }

    /// A new instance of extension `id` of outer scope `index` of `resolved`, created (or
    /// its failure recorded); its owner.
    pub(super) fn new_outer(&mut self, resolved: &ResolvedConfig, index: usize, id: &str) -> Owner {
        let number = self.next_id;
        self.next_id += 1;
        let owner = Owner::Outer(number);
        let plan = &resolved.scopes[index];
        let rank = if plan.scope == Scope::Engine { 0 } else { 1 };
        let created = plan
            .instantiate(id, &resolved.source)
            .map(|created| created.into_iter().collect());
        self.created(owner, rank, plan.scope.label(), number, created);
        owner
    }

    /// Starts the pending shared extensions of `owners` that some node claimed, in order;
    /// the failures (the first extension not ready stops the start).
    pub(super) fn start_shared(
        &mut self,
        owners: &[Owner],
        claimed: &BTreeSet<(Owner, String)>,
    ) -> Vec<Failure> {
        let spawn: Spawn<Box<dyn SharedTask>> = |set, task, control, begun| {
            set.spawn(async move {
                after_first_poll(task.run(control), begun)
                    .await
                    .map_err(|e| e.to_string())
            })
            .id()
        };
        let mut failures = Vec::new();
        for owner in owners {
            let Some(at) = self.pending.iter().position(|(o, _)| o == owner) else {
                continue;
            };
            let (_, lifecycles) = self.pending.remove(at);
            let Some(shared) = self.shared.iter_mut().find(|s| s.owner == *owner) else {
                continue;
            };
            if !failures.is_empty() {
                continue;
            }
            let to_start = lifecycles
                .into_iter()
                .map(|(id, lifecycle, timeout)| ToStart {
                    label: shared.label.clone(),
                    claimed: claimed.contains(&(*owner, id.clone())),
                    id,
                    lifecycle,
                    startup_timeout: timeout,
                })
                .collect();
            failures.extend(self.runtime.block_on(shared.tasks.start(
                to_start,
                spawn,
                &self.telemetry,
            )));
        }
        failures
    }

    /// Joins the shared extension tasks that ended early: each a failure, and a shutdown.
    pub(super) fn watch_shared(&mut self) {
        for shared in &mut self.shared {
            while let Some(joined) = self.runtime.block_on(async {
                tokio::time::timeout(Duration::ZERO, shared.tasks.set.join_next_with_id())
                    .await
                    .ok()
                    .flatten()
            }) {
                if let Some(failure) = shared.tasks.exited(&self.telemetry, joined) {
                    self.failures.push(failure);
                    self.shutdown.send_replace(true);
                }
            }
        }
    }

    /// Stops the shared instances of `owner` (those that started) and has telemetry forget
    /// them.
    pub(super) fn stop_owner(&mut self, owner: Owner) {
        self.pending.retain(|(o, _)| *o != owner);
        if let Some(at) = self.shared.iter().position(|s| s.owner == owner) {
            let mut shared = self.shared.remove(at);
            let deadline = Instant::now() + self.options.shutdown_timeout;
            if let Some(failure) = self
                .runtime
                .block_on(shared.tasks.stop(deadline, &self.telemetry))
            {
                tracing::warn!("an extension instance a reload retired: {failure}");
            }
        }
        let (Owner::Outer(generation) | Owner::Run(generation)) = owner;
        self.telemetry.retire(generation);
    }

    /// The running shared instance of extension `id` of `scope`.
    pub(super) fn instance(&self, scope: &Scope, id: &str) -> Option<Arc<SharedProvisions>> {
        let owner = match scope {
            Scope::Pipeline(group, name) => {
                Owner::Run(self.runs.get(&format!("{group}/{name}"))?.id)
            }
            outer => *self.outer.get(&(outer.clone(), id.to_owned()))?,
        };
        self.shared
            .iter()
            .filter(|s| s.owner == owner)
            .flat_map(|s| s.provisions.iter())
            .find(|p| p.extension_id() == id)
            .cloned()
    }

    /// The admin endpoint's claim on the instance of its extension in `outer`, when
    /// `resolved` binds one.
    pub(super) fn admin_claim(
        &self,
        resolved: &ResolvedConfig,
        outer: &OuterInstances,
    ) -> Option<(Owner, String)> {
        let id = resolved.admin_authorizer()?;
        let owner = outer.get(&(Scope::Engine, id.to_owned()))?;
        Some((*owner, id.to_owned()))
    }

    /// Hands the admin endpoint the authorizer of its extension's current instance.
    pub(super) fn serve_admin(&self, resolved: &ResolvedConfig) {
        let Some((owner, id)) = self.admin_claim(resolved, &self.outer) else {
            return;
        };
        let Some(shared) = self.shared.iter().find(|shared| shared.owner == owner) else {
            return;
        };
        let binding = crate::capability::Binding {
            capability: crate::capability::CapabilityId::BearerTokenAuthorizer,
            extension: id,
        };
        let no_local: &[crate::extension::LocalProvisions] = &[];
        let mut capabilities = crate::extension::Capabilities::for_node(
            crate::resolve::ADMIN_CONSUMER.1,
            &[binding],
            no_local,
            &shared.provisions,
        );
        match capabilities.require_shared::<crate::capability::BearerTokenAuthorizer>() {
            Ok(authorizer) => self.admin.set(authorizer),
            Err(error) => tracing::error!(%error, "the admin endpoint gets no authorizer"),
        }
    }
}
