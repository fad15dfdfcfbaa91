//! A core serving the engine's commands: build, start, discard and stop runs; following
//! their node and extension tasks until each run has ended (or the shutdown deadline
//! passed), and reporting each step.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::nodes::{NodeTasks, tick};
use super::{Built, Claims, CoreWorker, Running};
use crate::extension::LocalTask;
use crate::node::{ControlMessage, StopRequest};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll};
use crate::runtime::failure::Failure;
use crate::runtime::protocol::{CoreCommand, CoreReport, ReportSender};
use crate::runtime::run::{Owner, RunId};
use crate::runtime::telemetry::lost_in;

/// How a core's extension tasks are spawned: on its own thread.
const SPAWN: Spawn<Box<dyn LocalTask>> = |set, task, control, begun| {
    set.spawn_local(async move {
        after_first_poll(task.run(control), begun)
            .await
            .map_err(|e| e.to_string())
    })
    .id()
};

/// The runs of a core, and their tasks.
#[derive(Default)]
struct Serving {
    /// Built runs, with the extensions their nodes claimed (until they start).
    built: HashMap<RunId, (Built, Claims)>,
    running: HashMap<RunId, Running>,
    node_tasks: NodeTasks,
    tickers: JoinSet<()>,
    /// Set once a stop was requested: when whatever still runs is aborted.
    deadline: Option<Instant>,
    /// Until the first `Start` (or `Discard`), the core has nothing to run yet.
    started_once: bool,
}

impl CoreWorker {
    /// Serves the engine's commands until every run has ended.
    pub(super) async fn serve(
        mut self,
        mut commands: mpsc::UnboundedReceiver<CoreCommand>,
        reports: &ReportSender,
    ) {
        let mut at = Serving::default();
        loop {
            if at.started_once && at.running.is_empty() && at.built.is_empty() {
                break;
            }
            let until = at.deadline.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                changed = self.shutdown.changed(), if at.deadline.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        at.deadline = Some(self.request_stop(&mut at.running));
                    }
                }
                command = commands.recv() => match command {
                    // The engine is gone before anything started: nothing more will come.
                    None if !at.started_once => break,
                    // The engine is gone: keep running what runs until it ends.
                    None => std::future::pending::<()>().await,
                    Some(command) => self.command(command, &mut at, reports).await,
                },
                // A run's ticker ends once its nodes are gone: forgotten here.
                Some(_) = at.tickers.join_next(), if !at.tickers.is_empty() => {}
                Some(joined) = at.node_tasks.set.join_next_with_id() => {
                    let (run_id, failure) = at.node_tasks.ended(self.core, joined);
                    self.node_ended(run_id, failure, &mut at, reports).await;
                }
                (run_id, joined) = extension_exit(&mut at.running) => {
                    let failure = at.running.get(&run_id)
                        .and_then(|run| run.extensions.exited(&self.telemetry, joined));
                    if let Some(failure) = failure {
                        at.running.entry(run_id).and_modify(|run| run.failures.push(failure));
                        at.deadline = Some(self.request_stop(&mut at.running));
                    }
                }
                () = sleep_until(until) => self.deadline_passed(&mut at, reports).await,
            }
        }
        at.tickers.abort_all();
    }

    /// Does what the engine commands.
    async fn command(&self, command: CoreCommand, at: &mut Serving, reports: &ReportSender) {
        match command {
            CoreCommand::Build(runs) => {
                let mut failures = Vec::new();
                let mut claimed = Claims::new();
                for run in runs {
                    match self.build(run) {
                        Ok((run, claims)) => {
                            claimed.extend(claims.iter().cloned());
                            at.built.insert(run.run.id, (run, claims));
                        }
                        Err(f) => failures.extend(f),
                    }
                }
                let claims = claimed.into_iter().collect();
                let _ = reports.send((self.core, CoreReport::Built { failures, claims }));
            }
            CoreCommand::Discard(ids) => {
                for id in ids {
                    at.built.remove(&id);
                }
                at.started_once = true;
                let failures = Vec::new();
                let _ = reports.send((self.core, CoreReport::Started { failures }));
            }
            CoreCommand::Start(ids) => {
                at.started_once = true;
                let failures = self.start(&ids, at, reports).await;
                let _ = reports.send((self.core, CoreReport::Started { failures }));
            }
            CoreCommand::Stop(ids) => {
                let mut stopping: HashMap<RunId, Running> = ids
                    .iter()
                    .filter_map(|id| at.running.remove(id).map(|run| (*id, run)))
                    .collect();
                self.stop_receivers(&mut stopping);
                at.running.extend(stopping);
            }
        }
    }

    /// Starts the built runs `ids`; the failures. A run started during a shutdown stops at
    /// once; one whose nodes did not start ends here (its extensions stop).
    async fn start(&self, ids: &[RunId], at: &mut Serving, reports: &ReportSender) -> Vec<Failure> {
        let mut claimed = Claims::new();
        let runs: Vec<Built> = ids
            .iter()
            .filter_map(|id| at.built.remove(id))
            .map(|(run, claims)| {
                claimed.extend(claims);
                run
            })
            .collect();
        let (started, failures) = self
            .start_runs(runs, &claimed, &mut at.node_tasks, &mut at.tickers)
            .await;
        let mut started: HashMap<RunId, Running> =
            started.into_iter().map(|run| (run.run.id, run)).collect();
        if at.deadline.is_some() {
            self.stop_receivers(&mut started);
        }
        let idle: Vec<RunId> = started
            .iter()
            .filter(|(_, run)| run.nodes_left == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            if let Some(mut run) = started.remove(&id) {
                self.end_run(&mut run, reports).await;
            }
        }
        at.running.extend(started);
        failures
    }

    /// A node task of run `run_id` ended (`failure`: how, when that is a failure, which
    /// stops everything); the run ends with its last node.
    async fn node_ended(
        &self,
        run_id: RunId,
        failure: Option<Failure>,
        at: &mut Serving,
        reports: &ReportSender,
    ) {
        let Some(run) = at.running.get_mut(&run_id) else {
            return;
        };
        run.nodes_left = run.nodes_left.saturating_sub(1);
        let over = run.nodes_left == 0;
        if let Some(failure) = failure {
            run.failures.push(failure);
            at.deadline = Some(self.request_stop(&mut at.running));
        }
        if over && let Some(mut run) = at.running.remove(&run_id) {
            self.end_run(&mut run, reports).await;
        }
    }

    /// The shutdown deadline passed: every node task aborted, what they held counted as lost,
    /// every run ended, nothing built kept.
    async fn deadline_passed(&self, at: &mut Serving, reports: &ReportSender) {
        at.node_tasks.set.abort_all();
        while let Some(joined) = at.node_tasks.set.join_next_with_id().await {
            let (run_id, failure) = at.node_tasks.ended(self.core, joined);
            if let (Some(run), Some(failure)) = (at.running.get_mut(&run_id), failure) {
                run.failures.push(failure);
            }
        }
        let lost: u64 = at.running.values().map(held_by).sum();
        if lost > 0 {
            self.telemetry.add_lost_at_deadline(lost);
            tracing::error!(
                core = self.core,
                records = lost,
                "records held by nodes or queued between them were lost at the shutdown deadline"
            );
        }
        for (_, mut run) in std::mem::take(&mut at.running) {
            self.end_run(&mut run, reports).await;
        }
        at.built.clear();
    }

    /// Starts built runs: the claimed local extensions of all of them (each ready or not at
    /// all), then — only when every one is ready — their nodes. Returns the runs and the
    /// failures.
    async fn start_runs(
        &self,
        runs: Vec<Built>,
        claimed: &Claims,
        node_tasks: &mut NodeTasks,
        tickers: &mut JoinSet<()>,
    ) -> (Vec<Running>, Vec<Failure>) {
        let mut failures = Vec::new();
        let mut started = Vec::new();
        let mut pending_nodes = Vec::new();
        for built in runs {
            let Built {
                run,
                extensions,
                nodes,
                provisions,
            } = built;
            let mut tasks = ExtensionTasks::new(Some(self.core), run.id);
            let owner = Owner::Run(run.id);
            let to_start = extensions
                .into_iter()
                .map(|(id, lifecycle, timeout)| ToStart {
                    label: run.label.clone(),
                    claimed: claimed.contains(&(owner, id.clone())),
                    id,
                    lifecycle,
                    startup_timeout: timeout,
                })
                .collect();
            if failures.is_empty() {
                failures.extend(tasks.start(to_start, SPAWN, &self.telemetry).await);
            }
            started.push(Running {
                run,
                extensions: tasks,
                receivers: Vec::new(),
                nodes_left: 0,
                counters: Vec::new(),
                failures: Vec::new(),
                _provisions: provisions,
            });
            pending_nodes.push(nodes);
        }
        if failures.is_empty() {
            for (running, nodes) in started.iter_mut().zip(pending_nodes) {
                let controls = self.spawn_nodes(running, nodes, node_tasks);
                if let Some(every) = self
                    .options
                    .timer_interval
                    .filter(|every| !every.is_zero() && !controls.is_empty())
                {
                    tickers.spawn_local(tick(every, controls));
                }
            }
        }
        (started, failures)
    }

    /// Stops a run whose nodes are done: its local extensions, in reverse start order; reports
    /// it ended, with its failures.
    async fn end_run(&self, run: &mut Running, reports: &ReportSender) {
        let deadline = Instant::now() + self.options.shutdown_timeout;
        let mut failures = std::mem::take(&mut run.failures);
        failures.extend(run.extensions.stop(deadline, &self.telemetry).await);
        let _ = reports.send((
            self.core,
            CoreReport::RunEnded {
                run: run.run.id,
                failures,
            },
        ));
    }

    /// Starts a graceful stop of everything on this core: the stop request nodes read, and
    /// every receiver told. Returns the deadline.
    fn request_stop(&self, running: &mut HashMap<RunId, Running>) -> Instant {
        if let Some(request) = *self.stop.borrow() {
            return request.deadline;
        }
        let request = StopRequest::now(self.options.shutdown_timeout);
        self.stop.send_replace(Some(request));
        self.stop_receivers(running);
        request.deadline
    }

    /// Tells the receivers of `runs` to stop; the rest of each run drains after them.
    fn stop_receivers(&self, runs: &mut HashMap<RunId, Running>) {
        let deadline = Instant::now() + self.options.shutdown_timeout;
        for run in runs.values_mut() {
            for receiver in run.receivers.drain(..) {
                let _ = receiver.try_send(ControlMessage::Shutdown { deadline });
            }
        }
    }
}

/// The next extension task of any run that ended: its run and how it ended.
async fn extension_exit(
    running: &mut HashMap<RunId, Running>,
) -> (
    RunId,
    Result<(tokio::task::Id, Result<(), String>), tokio::task::JoinError>,
) {
    std::future::poll_fn(|cx| {
        for (id, run) in running.iter_mut() {
            if let std::task::Poll::Ready(Some(joined)) =
                run.extensions.set.poll_join_next_with_id(cx)
            {
                return std::task::Poll::Ready((*id, joined));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The records `run`'s nodes held or that were queued between them.
fn held_by(run: &Running) -> u64 {
    lost_in(run.run.plan(), |id| {
        run.counters
            .iter()
            .find(|(node, _)| node == id)
            .map(|(_, counters)| counters.snapshot())
            .unwrap_or_default()
    })
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
