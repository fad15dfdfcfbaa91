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
//! 4. When every node of a pipeline on a core has finished, that pipeline's local extensions
//!    on the core are shut down, in reverse start order, with a deadline; shared extensions
//!    go last, after every core, in reverse start order too: a pipeline's, then its group's,
//!    then the engine's.
//!
//! Each pipeline runs as a *run* (`runtime/run.rs`): a reload ([`ReloadHandle`]) that adds
//! or changes a pipeline builds and starts a new run beside the running ones through the same
//! steps (its shared extensions, then on every core its local ones and its nodes), and only
//! then stops the run it replaces, which drains; its shared extensions stop once every core
//! is done with it. A new run that does not start is dropped and the old one stays. Each
//! extension of the engine or of a group is an instance of its own: a reload that cannot
//! update one in place creates and starts its successor first, builds the runs that bind it
//! against the successor, and stops the old instance once the last run bound to it is gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::extension::{Lifecycle, SharedProvisions, SharedTask};
use crate::node::NodeShared;
use crate::resolve::{ResolvedConfig, Scope, ScopeKey};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll};

pub use super::failure::{EngineError, Failure};
pub use super::options::{AdminAuthorizer, RunOptions, ShutdownHandle};
pub use super::reload::{ReloadHandle, ReloadOutcome};
use super::reload::{ReloadRequest, live_configs};
use super::run::{OuterInstances, Owner, PipelineRun, RunId};
pub use super::telemetry::{
    ExtensionMetricsOf, ExtensionState, ExtensionTransition, MAX_TRANSITIONS, NodeStats,
    NodeTotals, RunPhase, Telemetry,
};
use super::worker::{
    CoreCommand, CoreReport, CoreWorker, ReportSender, instantiate_failure, startup_timeout,
};

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
    /// What the cores report, and through which a reload request wakes the engine.
    reports: (ReportSender, std::sync::mpsc::Receiver<(usize, CoreReport)>),
    admin: AdminAuthorizer,
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
            reports: std::sync::mpsc::channel(),
            admin: AdminAuthorizer::default(),
        }
    }

    /// The authorizer of the engine extension the admin endpoint binds
    /// (`engine.admin.capabilities`): filled once that extension's instance started, kept
    /// current across reloads.
    pub fn admin_authorizer(&self) -> AdminAuthorizer {
        self.admin.clone()
    }

    /// A handle that hands the running engine a new configuration (see [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            requests: self.reloads.0.clone(),
            wake: self.reports.0.clone(),
        }
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
        let mut room = EngineRoom {
            resolved: self.resolved.clone(),
            outer: OuterInstances::new(),
            superseded: BTreeSet::new(),
            options: self.options.clone(),
            shutdown: self.shutdown.clone(),
            telemetry: self.telemetry.clone(),
            runtime,
            failures: Vec::new(),
            shared: Vec::new(),
            pending: Vec::new(),
            runs: HashMap::new(),
            next_id: 0,
            retiring: HashMap::new(),
            cores: Cores {
                reports: Some(self.reports.1),
                ..Cores::default()
            },
            report_to: Some(self.reports.0),
            live: live_configs(&self.resolved),
            admin: self.admin.clone(),
        };
        self.telemetry.set_config(self.resolved.clone());
        let result = room.run(&self.reloads.1);
        drop(room);
        result
    }
}

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

/// The cores: their command queues, and the reports they send back (with the core's
/// number).
#[derive(Default)]
struct Cores {
    commands: Vec<tokio::sync::mpsc::UnboundedSender<CoreCommand>>,
    reports: Option<std::sync::mpsc::Receiver<(usize, CoreReport)>>,
    /// Each core's thread, by core.
    threads: Vec<(usize, thread::JoinHandle<()>)>,
    /// Cores whose thread is done.
    finished: BTreeSet<usize>,
    /// Reports set aside while waiting for others.
    pending: std::collections::VecDeque<(usize, CoreReport)>,
}

impl Cores {
    fn send(&self, command: impl Fn() -> CoreCommand) {
        for (core, tx) in self.commands.iter().enumerate() {
            if !self.finished.contains(&core) {
                let _ = tx.send(command());
            }
        }
    }

    /// The next report: one set aside first, else one within `wait`.
    fn next(&mut self, wait: Duration) -> Option<(usize, CoreReport)> {
        if let Some(report) = self.pending.pop_front() {
            return Some(report);
        }
        self.reports.as_ref()?.recv_timeout(wait).ok()
    }

    /// The answer of every core still running to the last command: `Built` or `Started`
    /// reports (`is_answer`), setting the others aside. A core that finishes meanwhile answers
    /// nothing; its `Finished` report is set aside too.
    fn answers(&mut self, is_answer: fn(&CoreReport) -> bool) -> Vec<CoreReport> {
        let mut waiting: BTreeSet<usize> = (0..self.commands.len())
            .filter(|core| !self.finished.contains(core))
            .collect();
        let mut answers = Vec::new();
        let mut set_aside = Vec::new();
        while !waiting.is_empty() {
            let Some(reports) = self.reports.as_ref() else {
                break;
            };
            let (core, report) = match reports.recv_timeout(Duration::from_millis(50)) {
                Ok(report) => report,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                // A core whose thread ended without answering (it panicked) answers nothing.
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    for (core, thread) in &self.threads {
                        if thread.is_finished() {
                            waiting.remove(core);
                        }
                    }
                    continue;
                }
            };
            if is_answer(&report) {
                waiting.remove(&core);
                answers.push(report);
            } else {
                if matches!(report, CoreReport::Finished { .. }) {
                    waiting.remove(&core);
                }
                set_aside.push((core, report));
            }
        }
        self.pending.extend(set_aside);
        answers
    }
}

/// Everything a run owns, and the steps of the run.
struct EngineRoom {
    /// The configuration it runs (the one it started with, then each applied reload's).
    resolved: Arc<ResolvedConfig>,
    /// The current instance of each extension of the engine and of the groups.
    outer: OuterInstances,
    /// Outer instances a reload replaced or removed: each stops once no run binds it.
    superseded: BTreeSet<Owner>,
    options: RunOptions,
    shutdown: Arc<watch::Sender<bool>>,
    telemetry: Arc<Telemetry>,
    runtime: tokio::runtime::Runtime,
    failures: Vec<Failure>,
    /// Shared instances by owner, in start order (outer scopes, then runs).
    shared: Vec<SharedOf>,
    /// Shared lifecycles created and not started yet, by owner.
    pending: Vec<(Owner, Vec<SharedLifecycle>)>,
    /// The live run of each pipeline, by label.
    runs: HashMap<String, PipelineRun>,
    /// The next run id or outer instance number (also their telemetry generation).
    next_id: usize,
    /// Runs a reload stopped: how many cores have yet to report them ended, and the outer
    /// instances they bind.
    retiring: HashMap<RunId, (usize, Vec<Owner>)>,
    cores: Cores,
    /// Where the cores report, until they are spawned.
    report_to: Option<ReportSender>,
    live: super::reload::LiveConfigs,
    admin: AdminAuthorizer,
}

impl EngineRoom {
    fn run(
        &mut self,
        reloads: &std::sync::mpsc::Receiver<ReloadRequest>,
    ) -> Result<(), EngineError> {
        let resolved = self.resolved.clone();
        // 1. Shared extensions: the engine's, each group's, then each pipeline's.
        for (index, scope) in resolved.scopes.iter().enumerate() {
            for extension in &scope.extensions {
                let owner = self.new_outer(&resolved, index, &extension.id);
                self.outer
                    .insert((scope.scope.clone(), extension.id.clone()), owner);
            }
        }
        let mut initial = Vec::new();
        let outer = self.outer.clone();
        for index in 0..resolved.pipelines.len() {
            let run = self.new_run(resolved.clone(), index, &outer, None);
            initial.push(run);
        }
        if !self.failures.is_empty() {
            return Err(EngineError(std::mem::take(&mut self.failures)));
        }
        let initial: Vec<PipelineRun> = initial
            .into_iter()
            .map(|run| self.with_shared(run))
            .collect();
        for run in &initial {
            self.runs.insert(run.label.clone(), run.clone());
        }

        // 2. Cores build their runs.
        self.spawn_cores();
        let built = self
            .cores
            .answers(|r| matches!(r, CoreReport::Built { .. }));
        let mut claimed = BTreeSet::new();
        for report in built {
            if let CoreReport::Built { failures, claims } = report {
                self.failures.extend(failures);
                claimed.extend(claims);
            }
        }

        // 3. Shared extensions some node (or the admin endpoint) claimed start before any
        // node, ready or not at all.
        let ids: Vec<RunId> = initial.iter().map(|run| run.id).collect();
        claimed.extend(self.admin_claim(&resolved, &self.outer));
        if self.failures.is_empty() {
            let owners: Vec<Owner> = self.pending.iter().map(|(owner, _)| *owner).collect();
            let failures = self.start_shared(&owners, &claimed);
            self.failures.extend(failures);
            self.serve_admin(&resolved);
        }

        // 4. Nodes run on every core; the engine watches shared extensions meanwhile. The run
        // is `running` (and ready) only once every core started its nodes.
        let start = self.failures.is_empty();
        if !start {
            self.telemetry.advance(RunPhase::Stopping);
        }
        if start {
            self.cores.send(|| CoreCommand::Start(ids.clone()));
        } else {
            self.cores.send(|| CoreCommand::Discard(ids.clone()));
        }
        for report in self
            .cores
            .answers(|r| matches!(r, CoreReport::Started { .. }))
        {
            if let CoreReport::Started { failures } = report
                && !failures.is_empty()
            {
                self.failures.extend(failures);
                self.shutdown.send_replace(true);
            }
        }
        if start {
            self.telemetry.advance(if self.failures.is_empty() {
                RunPhase::Running
            } else {
                RunPhase::Stopping
            });
        }
        // Reloads are taken while nodes run; a request that comes earlier waits for that, one
        // that comes later finds the channel closed when the run is over.
        while self.cores.finished.len() < self.cores.commands.len() {
            if start && !*self.shutdown.borrow() {
                while let Ok((new, answer)) = reloads.try_recv() {
                    let outcome = self.reload(new);
                    let _ = answer.send(outcome);
                }
            }
            match self.cores.next(Duration::from_millis(50)) {
                Some((core, CoreReport::Finished { failures })) => {
                    self.failures.extend(failures);
                    self.cores.finished.insert(core);
                    self.telemetry.advance(RunPhase::Stopping);
                }
                Some((_, CoreReport::RunEnded { run, failures })) => self.run_ended(run, failures),
                Some(_) => {}
                None if self.cores.reports.is_none() => break,
                None => {}
            }
            if *self.shutdown.borrow() {
                self.telemetry.advance(RunPhase::Stopping);
            }
            self.watch_shared();
        }
        for (_, handle) in std::mem::take(&mut self.cores.threads) {
            if handle.join().is_err() {
                self.failures
                    .push(Failure::Start("a core thread panicked".into()));
            }
        }
        // Ends of runs reported last.
        while let Some((_, report)) = self.cores.next(Duration::ZERO) {
            if let CoreReport::RunEnded { run, failures } = report {
                self.run_ended(run, failures);
            }
        }

        // 5. Shared extensions go last, inner scopes first, each in reverse start order.
        let deadline = Instant::now() + self.options.shutdown_timeout;
        let mut order: Vec<usize> = (0..self.shared.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.shared[i].rank), std::cmp::Reverse(i)));
        for i in order {
            let shared = &mut self.shared[i];
            let stopped = self
                .runtime
                .block_on(shared.tasks.stop(deadline, &self.telemetry));
            self.failures.extend(stopped);
        }
        self.telemetry.advance(RunPhase::Stopped);
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError(std::mem::take(&mut self.failures)))
        }
    }

    /// Records created shared extensions of `owner` (or the failure to create them).
    fn created(
        &mut self,
        owner: Owner,
        rank: u8,
        label: String,
        generation: usize,
        created: Result<
            Vec<crate::extension::SharedExtension>,
            super::instantiate::InstantiateError,
        >,
        timeout: impl Fn(&str) -> Duration,
    ) {
        let mut provisions = Vec::new();
        let mut lifecycles = Vec::new();
        match created {
            Ok(extensions) => {
                for extension in extensions {
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
                    lifecycles.push((id.clone(), lifecycle, timeout(&id)));
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
    fn new_outer(&mut self, resolved: &ResolvedConfig, index: usize, id: &str) -> Owner {
        let number = self.next_id;
        self.next_id += 1;
        let owner = Owner::Outer(number);
        let plan = &resolved.scopes[index];
        let rank = if plan.scope == Scope::Engine { 0 } else { 1 };
        let created = plan
            .create_shared_extension(id, &resolved.source)
            .map(|created| created.into_iter().collect());
        self.created(owner, rank, plan.scope.label(), number, created, |id| {
            startup_timeout(resolved, ScopeKey::Outer(index), id)
        });
        owner
    }

    /// A new run of pipeline `index` of `resolved`, its shared extensions created, binding the
    /// outer instances of `outer`; `cells`: the node cells to take over (a replaced run's),
    /// fresh ones otherwise.
    fn new_run(
        &mut self,
        resolved: Arc<ResolvedConfig>,
        index: usize,
        outer: &OuterInstances,
        cells: Option<Arc<HashMap<String, NodeShared>>>,
    ) -> PipelineRun {
        let id = self.next_id;
        self.next_id += 1;
        let cells = cells.unwrap_or_else(|| PipelineRun::fresh_cells(&resolved, index));
        let run = PipelineRun::new(id, resolved.clone(), index, outer, cells);
        let created = resolved.pipelines[index].create_shared_extensions(&resolved.source);
        self.created(
            Owner::Run(id),
            2,
            run.label.clone(),
            id,
            created,
            |extension| startup_timeout(&resolved, ScopeKey::Pipeline(index), extension),
        );
        run
    }

    /// `run` with the shared instances its nodes can bind: its own, then the outer ones it
    /// binds.
    fn with_shared(&self, mut run: PipelineRun) -> PipelineRun {
        let of = |owner: Owner| self.shared.iter().filter(move |s| s.owner == owner);
        let own = of(Owner::Run(run.id)).flat_map(|s| s.provisions.iter().cloned());
        let outer = run.outer.iter().filter_map(|(id, owner)| {
            of(*owner)
                .flat_map(|s| s.provisions.iter())
                .find(|p| p.extension_id() == id)
                .cloned()
        });
        run.shared = own.chain(outer).collect();
        run
    }

    fn spawn_cores(&mut self) {
        let cores = self
            .options
            .cores
            .unwrap_or(self.resolved.engine.cores)
            .max(1);
        let Some(report_tx) = self.report_to.take() else {
            return;
        };
        let initial: Vec<PipelineRun> = {
            let mut runs: Vec<PipelineRun> = self.runs.values().cloned().collect();
            runs.sort_by_key(|run| run.id);
            runs
        };
        for core in 0..cores {
            let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = command_tx.send(CoreCommand::Build(initial.clone()));
            self.cores.commands.push(command_tx);
            let worker = CoreWorker {
                core,
                cores,
                options: self.options.clone(),
                shutdown: self.shutdown.subscribe(),
                telemetry: self.telemetry.clone(),
                stop: watch::Sender::new(None),
            };
            let reports = report_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("otap-df-core-{core}"))
                .spawn(move || worker.run(command_rx, reports));
            match spawned {
                Ok(handle) => self.cores.threads.push((core, handle)),
                Err(e) => {
                    self.failures.push(Failure::Start(e.to_string()));
                    self.cores.finished.insert(core);
                }
            }
        }
    }

    /// Starts the pending shared extensions of `owners` that some node claimed, in order;
    /// the failures (the first extension not ready stops the start).
    fn start_shared(
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
    fn watch_shared(&mut self) {
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

    /// A core reports run `run` ended there. A run a reload stopped ends for good once every
    /// core reported it: its shared extensions stop, and telemetry forgets its instances; so
    /// do the replaced outer instances it was the last to bind.
    fn run_ended(&mut self, run: RunId, failures: Vec<Failure>) {
        let Some((left, _)) = self.retiring.get_mut(&run) else {
            self.failures.extend(failures);
            return;
        };
        for failure in failures {
            tracing::warn!("a pipeline a reload stopped ended with: {failure}");
        }
        *left = left.saturating_sub(1);
        if *left > 0 {
            return;
        }
        self.retiring.remove(&run);
        self.stop_owner(Owner::Run(run));
        self.stop_unbound();
    }

    /// Forgets a run that never started: its shared extensions stop (those that started),
    /// and telemetry forgets its instances.
    fn drop_run_now(&mut self, run: RunId) {
        self.stop_owner(Owner::Run(run));
    }

    /// Stops the shared instances of `owner` (those that started) and has telemetry forget
    /// them.
    fn stop_owner(&mut self, owner: Owner) {
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

    /// Stops the replaced or removed outer instances that no run binds any more.
    fn stop_unbound(&mut self) {
        let unbound: Vec<Owner> = self
            .superseded
            .iter()
            .copied()
            .filter(|owner| {
                !self.runs.values().any(|run| run.binds(*owner))
                    && !self
                        .retiring
                        .values()
                        .any(|(_, binds)| binds.contains(owner))
            })
            .collect();
        for owner in unbound {
            self.superseded.remove(&owner);
            self.stop_owner(owner);
        }
    }

    /// `runs` are going away on every core still running.
    fn retire_runs(&mut self, runs: &[PipelineRun]) {
        let cores = self.cores.commands.len() - self.cores.finished.len();
        for run in runs {
            let binds = run.outer.values().copied().collect();
            self.retiring.insert(run.id, (cores, binds));
        }
    }

    /// The running shared instance of extension `id` of `scope`.
    fn instance(&self, scope: &Scope, id: &str) -> Option<Arc<SharedProvisions>> {
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

    /// Applies a new configuration (see [`super::reload`]).
    fn reload(&mut self, new: ResolvedConfig) -> ReloadOutcome {
        let change = match super::reload::plan(&self.resolved, &self.live, &new) {
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
        let refused = super::reload::apply(
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
        let refused = super::reload::apply(
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
            super::reload::record_live(&new, ScopeKey::Pipeline(*index), &mut self.live);
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

    /// The admin endpoint's claim on the instance of its extension in `outer`, when
    /// `resolved` binds one.
    fn admin_claim(
        &self,
        resolved: &ResolvedConfig,
        outer: &OuterInstances,
    ) -> Option<(Owner, String)> {
        let id = resolved.admin_authorizer()?;
        let owner = outer.get(&(Scope::Engine, id.to_owned()))?;
        Some((*owner, id.to_owned()))
    }

    /// Hands the admin endpoint the authorizer of its extension's current instance.
    fn serve_admin(&self, resolved: &ResolvedConfig) {
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

    /// `new` is the configuration that runs now.
    fn keep(&mut self, new: Arc<ResolvedConfig>) {
        self.telemetry.set_config(new.clone());
        self.resolved = new;
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
