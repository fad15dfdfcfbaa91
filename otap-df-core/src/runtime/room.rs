//! The engine's room: everything a run owns (its configuration, the runs of its pipelines,
//! the cores, the shared extension instances), and the steps of a run from the first start to
//! the last stop (see [`super::engine`] for their order).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::failure::{EngineError, Failure};
use super::options::{AdminAuthorizer, RunOptions};
use super::protocol::{CoreCommand, CoreReport, Cores, ReportSender};
use super::reload::{LiveConfigs, ReloadRequest};
use super::run::{OuterInstances, Owner, PipelineRun, RunId};
use super::shared::SharedInstances;
use super::telemetry::{RunPhase, Telemetry};
use super::worker::CoreWorker;
use crate::extension::SharedProvisions;
use crate::node::NodeShared;
use crate::resolve::{ADMIN_CONSUMER, ResolvedConfig, Scope};

/// What bringing runs up failed at: before their nodes started (building them, starting the
/// shared extensions they claimed: they were discarded), or at their start.
#[derive(Debug, Default)]
pub(super) struct BroughtUp {
    pub(super) before_start: Vec<Failure>,
    pub(super) at_start: Vec<Failure>,
}

/// Everything a run owns, and the steps of the run.
pub(super) struct EngineRoom {
    /// The configuration it runs (the one it started with, then each applied reload's).
    pub(super) resolved: Arc<ResolvedConfig>,
    /// The current instance of each extension of the engine and of the groups.
    pub(super) outer: OuterInstances,
    /// Outer instances a reload replaced or removed: each stops once no run binds it.
    pub(super) superseded: BTreeSet<Owner>,
    pub(super) options: RunOptions,
    pub(super) shutdown: Arc<watch::Sender<bool>>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) failures: Vec<Failure>,
    /// The shared extension instances of every owner.
    pub(super) shared: SharedInstances,
    /// The live run of each pipeline, by label.
    pub(super) runs: HashMap<String, PipelineRun>,
    /// The next run id or outer instance number (also their telemetry generation).
    pub(super) next_id: usize,
    /// Runs a reload stopped: how many cores have yet to report them ended, and the outer
    /// instances they bind.
    pub(super) retiring: HashMap<RunId, (usize, Vec<Owner>)>,
    pub(super) cores: Cores,
    /// Where the cores report, until they are spawned.
    pub(super) report_to: Option<ReportSender>,
    pub(super) live: LiveConfigs,
    pub(super) admin: AdminAuthorizer,
}

impl EngineRoom {
    /// The whole run, in the order of events of [`super::engine`]: everything created, the
    /// runs brought up on every core, served (reloads taken) until every core is done, then
    /// the shared extensions stopped last.
    pub(super) fn run(
        &mut self,
        reloads: &std::sync::mpsc::Receiver<ReloadRequest>,
    ) -> Result<(), EngineError> {
        let resolved = self.resolved.clone();
        let runs = self.create_all(&resolved);
        if !self.failures.is_empty() {
            return Err(EngineError(std::mem::take(&mut self.failures)));
        }
        self.spawn_cores();
        let owners = self.shared.pending_owners();
        let outer = self.outer.clone();
        let brought = self.bring_up(&runs, &owners, &resolved, &outer);
        let started = self.first_start(brought, &resolved);
        self.serve(reloads, started);
        self.finish()
    }

    /// Step 1: The shared extensions — the engine's, each group's, then each pipeline's — and a run
    /// of every pipeline, each with the shared instances its nodes can bind.
    fn create_all(&mut self, resolved: &Arc<ResolvedConfig>) -> Vec<PipelineRun> {
        for (index, scope) in resolved.scopes.iter().enumerate() {
            for extension in &scope.extensions {
                let owner = self.new_outer(resolved, index, &extension.id);
                self.outer
                    .insert((scope.scope.clone(), extension.id.clone()), owner);
            }
        }
        let outer = self.outer.clone();
        let runs: Vec<PipelineRun> = (0..resolved.pipelines.len())
            .map(|index| self.new_run(resolved.clone(), index, &outer, None))
            .collect();
        let runs: Vec<PipelineRun> = runs.into_iter().map(|run| self.with_shared(run)).collect();
        for run in &runs {
            self.runs.insert(run.label.clone(), run.clone());
        }
        runs
    }

    /// Step 2–3: Brings `runs` up on every core, for the first start and for a reload alike: the
    /// cores build them (local extensions, then nodes, which claim capabilities); the shared
    /// extensions of `owners` that a node — or the admin endpoint, by `resolved`'s binding to
    /// `outer`'s instances — claimed start, ready or not at all; then the cores start the runs,
    /// or discard them when anything failed before.
    pub(super) fn bring_up(
        &mut self,
        runs: &[PipelineRun],
        owners: &[Owner],
        resolved: &ResolvedConfig,
        outer: &OuterInstances,
    ) -> BroughtUp {
        let ids: Vec<RunId> = runs.iter().map(|run| run.id).collect();
        let mut brought = BroughtUp::default();
        let mut claimed = BTreeSet::new();
        if !runs.is_empty() {
            self.cores.send(|| CoreCommand::Build(runs.to_vec()));
            for report in self
                .cores
                .answers(|r| matches!(r, CoreReport::Built { .. }))
            {
                if let CoreReport::Built { failures, claims } = report {
                    brought.before_start.extend(failures);
                    claimed.extend(claims);
                }
            }
        }
        if brought.before_start.is_empty() {
            claimed.extend(self.admin_claim(resolved, outer));
            let failures = self.shared.start(owners, &claimed, &self.runtime);
            brought.before_start.extend(failures);
        }
        if runs.is_empty() {
            return brought;
        }
        let start = brought.before_start.is_empty();
        self.cores.send(|| match start {
            true => CoreCommand::Start(ids.clone()),
            false => CoreCommand::Discard(ids.clone()),
        });
        for report in self
            .cores
            .answers(|r| matches!(r, CoreReport::Started { .. }))
        {
            if let CoreReport::Started { failures } = report
                && start
            {
                brought.at_start.extend(failures);
            }
        }
        brought
    }

    /// What the first start brought up: its failures are the run's (one at the start of the
    /// nodes shuts everything down); the run is `running` (and ready) only once every core
    /// started its nodes. Whether the nodes were started.
    fn first_start(&mut self, brought: BroughtUp, resolved: &ResolvedConfig) -> bool {
        let started = brought.before_start.is_empty();
        self.failures.extend(brought.before_start);
        if !brought.at_start.is_empty() {
            self.failures.extend(brought.at_start);
            self.shutdown.send_replace(true);
        }
        if started {
            self.serve_admin(resolved);
        }
        self.telemetry
            .advance(if started && self.failures.is_empty() {
                RunPhase::Running
            } else {
                RunPhase::Stopping
            });
        started
    }

    /// Step 4: While the cores run: reloads taken (only while the nodes run: a request that comes
    /// earlier waits for that, one that comes later finds the channel closed when the run is
    /// over), the cores' reports read, the shared extensions watched.
    fn serve(&mut self, reloads: &std::sync::mpsc::Receiver<ReloadRequest>, started: bool) {
        while self.cores.finished.len() < self.cores.commands.len() {
            if started && !*self.shutdown.borrow() {
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
            let ended = self.shared.ended_early(&self.runtime);
            if !ended.is_empty() {
                self.failures.extend(ended);
                self.shutdown.send_replace(true);
            }
        }
    }

    /// Step 5: Every core done: their threads joined, the last ends of runs read, then the shared
    /// extensions stop — inner scopes first, each in reverse start order.
    fn finish(&mut self) -> Result<(), EngineError> {
        for (_, handle) in std::mem::take(&mut self.cores.threads) {
            if handle.join().is_err() {
                self.failures
                    .push(Failure::Start("a core thread panicked".into()));
            }
        }
        while let Some((_, report)) = self.cores.next(Duration::ZERO) {
            if let CoreReport::RunEnded { run, failures } = report {
                self.run_ended(run, failures);
            }
        }
        let deadline = Instant::now() + self.options.shutdown_timeout;
        let stopped = self.shared.stop_all(deadline, &self.runtime);
        self.failures.extend(stopped);
        self.telemetry.advance(RunPhase::Stopped);
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(EngineError(std::mem::take(&mut self.failures)))
        }
    }

    /// A new run of pipeline `index` of `resolved`, its shared extensions created, binding the
    /// outer instances of `outer`; `cells`: the node cells to take over (a replaced run's),
    /// fresh ones otherwise.
    pub(super) fn new_run(
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
        let created =
            resolved.pipelines[index].instantiate_shared(&resolved.source, &self.outer_of(&run));
        let failure = self
            .shared
            .created(Owner::Run(id), 2, run.label.clone(), id, created);
        self.failures.extend(failure);
        run
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
        let failure = self
            .shared
            .created(owner, rank, plan.scope.label(), number, created);
        self.failures.extend(failure);
        owner
    }

    /// The running shared instance of extension `id` of `scope`.
    pub(super) fn instance(&self, scope: &Scope, id: &str) -> Option<Arc<SharedProvisions>> {
        let owner = match scope {
            Scope::Pipeline(group, name) => {
                Owner::Run(self.runs.get(&format!("{group}/{name}"))?.id)
            }
            outer => *self.outer.get(&(outer.clone(), id.to_owned()))?,
        };
        self.shared.instance(owner, id)
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
        match self.shared.authorizer(owner, &id, ADMIN_CONSUMER.1) {
            Ok(Some(authorizer)) => self.admin.set(authorizer),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "the admin endpoint gets no authorizer"),
        }
    }

    /// `run` with the shared instances its nodes can bind: its own, then the outer ones it
    /// binds.
    pub(super) fn with_shared(&self, mut run: PipelineRun) -> PipelineRun {
        let own = self.shared.provisions_of(Owner::Run(run.id)).cloned();
        run.shared = own.chain(self.outer_of(&run)).collect();
        run
    }

    /// The outer instances `run` binds.
    fn outer_of(&self, run: &PipelineRun) -> Vec<Arc<SharedProvisions>> {
        run.outer
            .iter()
            .filter_map(|(id, owner)| self.shared.instance(*owner, id))
            .collect()
    }

    pub(super) fn spawn_cores(&mut self) {
        let cores = self
            .options
            .cores
            .unwrap_or(self.resolved.engine.cores)
            .max(1);
        let Some(report_tx) = self.report_to.take() else {
            return;
        };
        for core in 0..cores {
            let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel();
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

    /// A core reports run `run` ended there. A run a reload stopped ends for good once every
    /// core reported it: its shared extensions stop, and telemetry forgets its instances; so
    /// do the replaced outer instances it was the last to bind.
    pub(super) fn run_ended(&mut self, run: RunId, failures: Vec<Failure>) {
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

    /// Stops the shared instances of `owner` (those that started) and has telemetry forget
    /// them.
    fn stop_owner(&mut self, owner: Owner) {
        let deadline = Instant::now() + self.options.shutdown_timeout;
        if let Some(failure) = self.shared.stop_owner(owner, deadline, &self.runtime) {
            tracing::warn!("an extension instance a reload retired: {failure}");
        }
    }

    /// Forgets a run that never started: its shared extensions stop (those that started),
    /// and telemetry forgets its instances.
    pub(super) fn drop_run_now(&mut self, run: RunId) {
        self.stop_owner(Owner::Run(run));
    }

    /// Stops the replaced or removed outer instances that no run binds any more.
    pub(super) fn stop_unbound(&mut self) {
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
    pub(super) fn retire_runs(&mut self, runs: &[PipelineRun]) {
        let cores = self.cores.commands.len() - self.cores.finished.len();
        for run in runs {
            let binds = run.outer.values().copied().collect();
            self.retiring.insert(run.id, (cores, binds));
        }
    }

    /// `new` is the configuration that runs now.
    pub(super) fn keep(&mut self, new: Arc<ResolvedConfig>) {
        self.telemetry.set_config(new.clone());
        self.resolved = new;
    }
}
