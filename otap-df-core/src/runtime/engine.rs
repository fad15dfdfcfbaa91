//! The engine: runs every pipeline of a resolved configuration, `cores` instances of each, one
//! single-threaded runtime per core.
//!
//! Order of events, on every path (success, node error, node panic, readiness timeout,
//! extension exit, signal):
//! 1. Shared extensions are created: the engine's (`engine.extensions`), each group's, then
//!    each pipeline's, once for all cores; each core creates its pipelines' local extensions
//!    and constructs its nodes (which claim their capabilities, innermost scope first).
//! 2. Extensions that some node claimed are started — shared ones on a small engine runtime,
//!    local ones on their core — outer scopes first (engine, group, pipeline), in declaration
//!    order within a scope, shared before local, before any node:
//!    each task has run up to its first suspension point before the next one is spawned, and
//!    the engine waits for those that probe readiness, each within its `startup_timeout`.
//!    Unclaimed and passive extensions are not started.
//! 3. Nodes run. Shutdown (a request, a signal, a failure) tells receivers to stop;
//!    processors and exporters drain what is in flight and finish.
//! 4. Only when every node of a core has finished are its local extensions shut down, in
//!    reverse start order, with a deadline; shared extensions go last, after every core, in
//!    reverse start order too: a pipeline's, then its group's, then the engine's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::extension::{Lifecycle, SharedProvisions, SharedTask};
use crate::node::NodeShared;
use crate::resolve::{PipelinePlan, ResolvedConfig, ScopeKey};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll};

pub use super::failure::{EngineError, Failure};
pub use super::options::{RunOptions, ShutdownHandle};
pub use super::reload::{ReloadHandle, ReloadOutcome};
use super::reload::{ReloadRequest, live_configs};
pub use super::telemetry::{
    ExtensionMetricsOf, ExtensionState, ExtensionTransition, MAX_TRANSITIONS, NodeStats,
    NodeTotals, RunPhase, Telemetry,
};
use super::worker::{CoreCommand, CoreReport, CoreWorker, instantiate_failure, startup_timeout};

/// Runs a resolved configuration.
pub struct Engine {
    resolved: Arc<ResolvedConfig>,
    options: RunOptions,
    shutdown: Arc<watch::Sender<bool>>,
    telemetry: Arc<Telemetry>,
    reloads: (
        std::sync::mpsc::Sender<ReloadRequest>,
        std::sync::mpsc::Receiver<ReloadRequest>,
    ),
}

type SharedLifecycle = (String, Lifecycle<Box<dyn SharedTask>>, Duration);

impl Engine {
    /// An engine for `resolved`.
    pub fn new(resolved: ResolvedConfig, options: RunOptions) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            resolved: Arc::new(resolved),
            options,
            shutdown: Arc::new(shutdown),
            telemetry: Arc::new(Telemetry::default()),
            reloads: std::sync::mpsc::channel(),
        }
    }

    /// A handle that hands the running engine a new configuration (see [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reloads.0.clone())
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The configuration it runs.
    pub fn resolved(&self) -> &ResolvedConfig {
        &self.resolved
    }

    /// Live counters and extension states.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    /// How many pipeline instances run.
    pub fn cores(&self) -> usize {
        self.options
            .cores
            .unwrap_or(self.resolved.engine.cores)
            .max(1)
    }

    /// Runs until every receiver has finished and everything drained, or until shutdown.
    /// Blocks the calling thread.
    pub fn run(self) -> Result<(), EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otap-df-extensions")
            .enable_all()
            .build()
            .map_err(|e| EngineError(vec![Failure::Start(e.to_string())]))?;
        let mut failures = Vec::new();

        // 1. Shared extensions: the engine's, each group's, then each pipeline's shared ones,
        //    once for all cores; they start in this order and stop in the reverse one.
        let resolved = &self.resolved;
        let keys = (0..resolved.scopes.len())
            .map(ScopeKey::Outer)
            .chain((0..resolved.pipelines.len()).map(ScopeKey::Pipeline));
        let mut shared_provisions: HashMap<ScopeKey, Vec<SharedProvisions>> = HashMap::new();
        let mut shared_lifecycles: Vec<(ScopeKey, Vec<SharedLifecycle>)> = Vec::new();
        for key in keys {
            let created = match key {
                ScopeKey::Outer(index) => {
                    resolved.scopes[index].create_shared_extensions(&resolved.source)
                }
                ScopeKey::Pipeline(index) => {
                    resolved.pipelines[index].create_shared_extensions(&resolved.source)
                }
            };
            let label = resolved.scope(key).label();
            let mut provisions = Vec::new();
            let mut lifecycles = Vec::new();
            match created {
                Ok(extensions) => {
                    for extension in extensions {
                        self.telemetry.register_extension_metrics(
                            &label,
                            extension.extension_id(),
                            None,
                            extension.metrics(),
                        );
                        let (provision, lifecycle) = extension.into_parts();
                        let id = provision.extension_id().to_owned();
                        let timeout = startup_timeout(resolved, key, &id);
                        self.telemetry
                            .set_extension(&label, &id, None, ExtensionState::Created);
                        provisions.push(provision);
                        lifecycles.push((id, lifecycle, timeout));
                    }
                }
                Err(error) => failures.push(instantiate_failure(error)),
            }
            shared_provisions.insert(key, provisions);
            shared_lifecycles.push((key, lifecycles));
        }
        if !failures.is_empty() {
            return Err(EngineError(failures));
        }
        let shared_provisions = Arc::new(shared_provisions);
        // One cell per node for all its cores.
        let node_shared: Arc<HashMap<(usize, String), NodeShared>> = Arc::new(
            self.resolved
                .pipelines
                .iter()
                .enumerate()
                .flat_map(|(index, plan)| {
                    plan.nodes
                        .iter()
                        .map(move |node| ((index, node.id.clone()), NodeShared::default()))
                })
                .collect(),
        );

        // 2. Cores create their local extensions and construct their nodes.
        let cores = self.cores();
        let (report_tx, report_rx) = std::sync::mpsc::channel::<CoreReport>();
        let mut commands = Vec::new();
        let mut threads = Vec::new();
        for core in 0..cores {
            let (command_tx, command_rx) = std::sync::mpsc::channel();
            commands.push(command_tx);
            let worker = CoreWorker {
                core,
                cores,
                resolved: self.resolved.clone(),
                shared: shared_provisions.clone(),
                options: self.options.clone(),
                shutdown: self.shutdown.subscribe(),
                telemetry: self.telemetry.clone(),
                stop: watch::Sender::new(None),
                node_shared: node_shared.clone(),
            };
            let report_tx = report_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("otap-df-core-{core}"))
                .spawn(move || worker.run(command_rx, report_tx));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => failures.push(Failure::Start(e.to_string())),
            }
        }
        drop(report_tx);
        let mut claimed: BTreeSet<(ScopeKey, String)> = BTreeSet::new();
        for _ in 0..threads.len() {
            match report_rx.recv() {
                Ok(CoreReport::Constructed { claims }) => claimed.extend(claims),
                Ok(CoreReport::Finished { failures: f }) => failures.extend(f),
                Err(_) => failures.push(Failure::Start(
                    "a core thread ended during construction".into(),
                )),
            }
        }

        // 3. Shared extensions some node claimed start before any node, ready or not at all.
        let mut shared_tasks = ExtensionTasks::new(None);
        if failures.is_empty() {
            let to_start = shared_lifecycles
                .into_iter()
                .flat_map(|(key, lifecycles)| {
                    let label = self.resolved.scope(key).label();
                    let claimed = &claimed;
                    lifecycles
                        .into_iter()
                        .map(move |(id, lifecycle, timeout)| ToStart {
                            scope: key,
                            label: label.clone(),
                            claimed: claimed.contains(&(key, id.clone())),
                            id,
                            lifecycle,
                            startup_timeout: timeout,
                        })
                })
                .collect();
            let spawn: Spawn<Box<dyn SharedTask>> = |set, task, control, begun| {
                set.spawn(async move {
                    after_first_poll(task.run(control), begun)
                        .await
                        .map_err(|e| e.to_string())
                })
                .id()
            };
            failures.extend(runtime.block_on(shared_tasks.start(
                to_start,
                spawn,
                &self.resolved,
                &self.telemetry,
            )));
        }

        // 4. Nodes run on every core; the engine watches shared extensions meanwhile.
        let command = if failures.is_empty() {
            CoreCommand::Start
        } else {
            CoreCommand::Abort
        };
        self.telemetry.advance(match command {
            CoreCommand::Start => RunPhase::Running,
            CoreCommand::Abort => RunPhase::Stopping,
        });
        for tx in &commands {
            let _ = tx.send(match command {
                CoreCommand::Start => CoreCommand::Start,
                CoreCommand::Abort => CoreCommand::Abort,
            });
        }
        let mut remaining = threads.len();
        let mut shutting_down_extensions = false;
        // Reloads are taken while nodes run; a request that comes earlier waits for that, one
        // that comes later finds the channel closed when the run is over.
        let running = matches!(command, CoreCommand::Start);
        let mut live = live_configs(&self.resolved);
        while remaining > 0 {
            if running {
                while let Ok((new, answer)) = self.reloads.1.try_recv() {
                    let outcome = match super::reload::plan(&self.resolved, &live, &new) {
                        Ok(updates) => {
                            super::reload::apply(updates, &new, &shared_provisions, &mut live)
                        }
                        Err(needs_restart) => ReloadOutcome {
                            needs_restart,
                            ..ReloadOutcome::default()
                        },
                    };
                    let _ = answer.send(outcome);
                }
            }
            match report_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(CoreReport::Finished { failures: f }) => {
                    failures.extend(f);
                    remaining -= 1;
                    self.telemetry.advance(RunPhase::Stopping);
                }
                Ok(CoreReport::Constructed { .. }) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if *self.shutdown.borrow() {
                self.telemetry.advance(RunPhase::Stopping);
            }
            if !shutting_down_extensions {
                while let Some(joined) = runtime.block_on(async {
                    tokio::time::timeout(Duration::ZERO, shared_tasks.set.join_next_with_id())
                        .await
                        .ok()
                        .flatten()
                }) {
                    let exited = shared_tasks.exited(&self.resolved, &self.telemetry, joined);
                    if let Some(failure) = exited {
                        failures.push(failure);
                        self.shutdown.send_replace(true);
                    }
                }
            }
            if remaining == 0 {
                shutting_down_extensions = true;
            }
        }
        for handle in threads {
            if handle.join().is_err() {
                failures.push(Failure::Start("a core thread panicked".into()));
            }
        }

        // 5. Shared extensions go last, in reverse start order.
        let deadline = Instant::now() + self.options.shutdown_timeout;
        failures.extend(runtime.block_on(shared_tasks.stop(
            deadline,
            &self.resolved,
            &self.telemetry,
        )));
        runtime.shutdown_timeout(Duration::from_millis(100));
        self.telemetry.advance(RunPhase::Stopped);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError(failures))
        }
    }
}

pub(super) fn pipeline_name(plan: &PipelinePlan) -> String {
    format!("{}/{}", plan.group, plan.name)
}
