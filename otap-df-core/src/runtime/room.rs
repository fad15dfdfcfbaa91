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
use super::shared::{SharedLifecycle, SharedOf};
use super::telemetry::{RunPhase, Telemetry};
use super::worker::{CoreWorker, startup_timeout};
use crate::node::NodeShared;
use crate::resolve::{ResolvedConfig, ScopeKey};

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
    /// Shared instances by owner, in start order (outer scopes, then runs).
    pub(super) shared: Vec<SharedOf>,
    /// Shared lifecycles created and not started yet, by owner.
    pub(super) pending: Vec<(Owner, Vec<SharedLifecycle>)>,
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
    pub(super) fn run(
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
    pub(super) fn with_shared(&self, mut run: PipelineRun) -> PipelineRun {
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

    pub(super) fn spawn_cores(&mut self) {
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
