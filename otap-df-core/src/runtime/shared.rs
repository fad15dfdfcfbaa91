//! The engine's shared extension instances: each owner's (an outer scope's extension instance,
//! or a run's own), created, started when some node (or the admin endpoint) claimed them,
//! watched while they run, stopped when their owner goes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll};
use super::failure::Failure;
use super::instantiate::{Created, InstantiateError};
use super::run::Owner;
use super::telemetry::{ExtensionState, Telemetry};
use crate::capability::{self, Binding, CapabilityId};
use crate::extension::{
    Capabilities, Lifecycle, LocalProvisions, SharedExtension, SharedProvisions, SharedTask,
};

type SharedLifecycle = (String, Lifecycle<Box<dyn SharedTask>>, Duration);

/// The shared instances of one owner, and their tasks once started.
struct SharedOf {
    owner: Owner,
    /// How far in its scope is: the engine `0`, a group `1`, a pipeline `2` (inner ones stop
    /// first).
    rank: u8,
    label: String,
    provisions: Vec<Arc<SharedProvisions>>,
    tasks: ExtensionTasks,
}

/// Every owner's shared instances, in creation order (outer scopes, then runs), and the
/// lifecycles created and not started yet.
pub(super) struct SharedInstances {
    telemetry: Arc<Telemetry>,
    of: Vec<SharedOf>,
    pending: Vec<(Owner, Vec<SharedLifecycle>)>,
}

impl SharedInstances {
    pub(super) fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            telemetry,
            of: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Records the created shared extensions of `owner` (telemetry's generation
    /// `generation`); the failure to create them, if that is what `created` is.
    pub(super) fn created(
        &mut self,
        owner: Owner,
        rank: u8,
        label: String,
        generation: usize,
        created: Result<Vec<Created<SharedExtension>>, InstantiateError>,
    ) -> Option<Failure> {
        let mut provisions = Vec::new();
        let mut lifecycles = Vec::new();
        let failure = match created {
            Ok(extensions) => {
                for created in extensions {
                    let (provision, lifecycle) = self.record(&label, generation, created);
                    provisions.push(Arc::new(provision));
                    lifecycles.push(lifecycle);
                }
                None
            }
            Err(error) => Some(Failure::from(error)),
        };
        self.of.push(SharedOf {
            owner,
            rank,
            label,
            provisions,
            tasks: ExtensionTasks::new(None, generation),
        });
        self.pending.push((owner, lifecycles));
        failure
    }

    /// A created extension, known to telemetry: its provisions and its lifecycle.
    fn record(
        &self,
        label: &str,
        generation: usize,
        Created {
            extension,
            startup_timeout,
        }: Created<SharedExtension>,
    ) -> (SharedProvisions, SharedLifecycle) {
        let id = extension.extension_id().to_owned();
        self.telemetry.register_extension_metrics(
            label,
            &id,
            None,
            generation,
            extension.metrics(),
        );
        let (provision, lifecycle) = extension.into_parts();
        self.telemetry
            .set_extension(label, &id, None, generation, ExtensionState::Created);
        (provision, (id, lifecycle, startup_timeout))
    }

    /// The owners whose instances are created and not started yet.
    pub(super) fn pending_owners(&self) -> Vec<Owner> {
        self.pending.iter().map(|(owner, _)| *owner).collect()
    }

    /// Starts the pending shared extensions of `owners` that some node claimed, in order, on
    /// `runtime`; the failures (the first extension not ready stops the start).
    pub(super) fn start(
        &mut self,
        owners: &[Owner],
        claimed: &BTreeSet<(Owner, String)>,
        runtime: &tokio::runtime::Runtime,
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
            let Some(shared) = self.of.iter_mut().find(|s| s.owner == *owner) else {
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
            failures.extend(runtime.block_on(shared.tasks.start(to_start, spawn, &self.telemetry)));
        }
        failures
    }

    /// Joins the shared extension tasks that ended early: each a failure.
    pub(super) fn ended_early(&mut self, runtime: &tokio::runtime::Runtime) -> Vec<Failure> {
        let mut failures = Vec::new();
        for shared in &mut self.of {
            while let Some(joined) = runtime.block_on(async {
                tokio::time::timeout(Duration::ZERO, shared.tasks.set.join_next_with_id())
                    .await
                    .ok()
                    .flatten()
            }) {
                failures.extend(shared.tasks.exited(&self.telemetry, joined));
            }
        }
        failures
    }

    /// Stops the instances of `owner` (those that started) by `deadline` and has telemetry
    /// forget them; how the stop failed, if it did.
    pub(super) fn stop_owner(
        &mut self,
        owner: Owner,
        deadline: Instant,
        runtime: &tokio::runtime::Runtime,
    ) -> Option<Failure> {
        self.pending.retain(|(o, _)| *o != owner);
        let failure = match self.of.iter().position(|s| s.owner == owner) {
            Some(at) => {
                let mut shared = self.of.remove(at);
                runtime.block_on(shared.tasks.stop(deadline, &self.telemetry))
            }
            None => None,
        };
        let (Owner::Outer(generation) | Owner::Run(generation)) = owner;
        self.telemetry.retire(generation);
        failure
    }

    /// Stops every instance by `deadline`: inner scopes first, each in reverse start order.
    pub(super) fn stop_all(
        &mut self,
        deadline: Instant,
        runtime: &tokio::runtime::Runtime,
    ) -> Vec<Failure> {
        let mut order: Vec<usize> = (0..self.of.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.of[i].rank), std::cmp::Reverse(i)));
        let mut failures = Vec::new();
        for i in order {
            let shared = &mut self.of[i];
            failures.extend(runtime.block_on(shared.tasks.stop(deadline, &self.telemetry)));
        }
        failures
    }

    /// The instances of `owner`.
    pub(super) fn provisions_of(
        &self,
        owner: Owner,
    ) -> impl Iterator<Item = &Arc<SharedProvisions>> + '_ {
        self.of
            .iter()
            .filter(move |s| s.owner == owner)
            .flat_map(|s| s.provisions.iter())
    }

    /// The instance of extension `id` of `owner`.
    pub(super) fn instance(&self, owner: Owner, id: &str) -> Option<Arc<SharedProvisions>> {
        self.provisions_of(owner)
            .find(|p| p.extension_id() == id)
            .cloned()
    }

    /// The bearer-token authorizer of `owner`'s instance of extension `id`, as consumer
    /// `consumer` claims it.
    pub(super) fn authorizer(
        &self,
        owner: Owner,
        id: &str,
        consumer: &str,
    ) -> Result<Option<Arc<dyn capability::shared::BearerTokenAuthorizer>>, String> {
        let Some(shared) = self.of.iter().find(|shared| shared.owner == owner) else {
            return Ok(None);
        };
        let binding = Binding {
            capability: CapabilityId::BearerTokenAuthorizer,
            extension: id.to_owned(),
        };
        let no_local: &[LocalProvisions] = &[];
        let mut capabilities =
            Capabilities::for_node(consumer, &[binding], no_local, &shared.provisions);
        capabilities
            .require_shared::<capability::BearerTokenAuthorizer>()
            .map(Some)
            .map_err(|error| error.to_string())
    }
}
