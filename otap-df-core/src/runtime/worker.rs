//! One core: its thread and single-threaded runtime, the pipeline runs it builds (their
//! local extensions and node instances) on the engine's command, and the node tasks it
//! drives until every run has finished (the commands and reports: `protocol.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinSet, LocalSet};

use super::failure::Failure;
use super::instantiate::{Created, InstantiateError};
use super::options::RunOptions;
use super::protocol::{CoreCommand, CoreReport};
use super::run::{Owner, PipelineRun, RunId};
use super::telemetry::{ExtensionState, NodeStats, Telemetry, lost_in};
use crate::config::ComponentConfig;
use crate::extension::Capabilities;
use crate::extension::{Lifecycle, LocalProvisions, LocalTask};
use crate::node::{
    ControlMessage, NodeContext, NodeCounters, NodeError, NodeInstance, Outputs, ReceiverContext,
    ShutdownSignal, StopRequest,
};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll, panic_message};

type LocalLifecycle = (String, Lifecycle<Box<dyn LocalTask>>, Duration);
/// The extensions nodes claimed: whose instance, and its id.
type Claims = BTreeSet<(Owner, String)>;

pub(super) fn instantiate_failure(error: InstantiateError) -> Failure {
    Failure::Instantiate(error.to_string())
}

pub(super) struct CoreWorker {
    pub(super) core: usize,
    pub(super) cores: usize,
    pub(super) options: RunOptions,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) telemetry: Arc<Telemetry>,
    /// What this core's nodes see through [`ShutdownSignal`].
    pub(super) stop: watch::Sender<Option<StopRequest>>,
}

/// One run on this core, built and not yet started.
struct Built {
    run: PipelineRun,
    extensions: Vec<LocalLifecycle>,
    nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
    // Keeps the local capabilities alive as long as the pipeline instance.
    provisions: Vec<LocalProvisions>,
}

/// One run on this core, started.
struct Running {
    run: PipelineRun,
    extensions: ExtensionTasks,
    /// Receivers' control queues: told to stop.
    receivers: Vec<mpsc::Sender<ControlMessage>>,
    /// Its node tasks still running.
    nodes_left: usize,
    /// Each node's counters, by id (for what was lost at the deadline).
    counters: Vec<(String, Arc<NodeCounters>)>,
    failures: Vec<Failure>,
    _provisions: Vec<LocalProvisions>,
}

/// Every node task of this core, and which run and node each is.
#[derive(Default)]
struct NodeTasks {
    set: JoinSet<Result<(), NodeError>>,
    names: HashMap<tokio::task::Id, (RunId, String, String)>,
}

impl CoreWorker {
    pub(super) fn run(
        self,
        commands: mpsc::UnboundedReceiver<CoreCommand>,
        reports: std::sync::mpsc::Sender<(usize, CoreReport)>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = reports.send((
                    self.core,
                    CoreReport::Finished {
                        failures: vec![Failure::Start(e.to_string())],
                    },
                ));
                return;
            }
        };
        let core = self.core;
        LocalSet::new().block_on(&runtime, self.serve(commands, &reports));
        // Each run's failures went with its `RunEnded`.
        let _ = reports.send((
            core,
            CoreReport::Finished {
                failures: Vec::new(),
            },
        ));
    }

    /// Builds `run` on this core: its local extensions, then its nodes.
    fn build(&self, run: PipelineRun) -> Result<(Built, Claims), Vec<Failure>> {
        let mut failures = Vec::new();
        let plan = run.plan();
        let source = &run.resolved.source;
        let name = &run.label;
        let local = plan
            .instantiate_local(self.core, source)
            .map_err(|error| vec![instantiate_failure(error)])?;
        let mut provisions = Vec::new();
        let mut extensions = Vec::new();
        for Created {
            extension,
            startup_timeout,
        } in local
        {
            self.telemetry.register_extension_metrics(
                name,
                extension.extension_id(),
                Some(self.core),
                run.id,
                extension.metrics(),
            );
            let (provision, lifecycle) = extension.into_parts();
            let id = provision.extension_id().to_owned();
            self.telemetry.set_extension(
                name,
                &id,
                Some(self.core),
                run.id,
                ExtensionState::Created,
            );
            extensions.push((id.clone(), lifecycle, startup_timeout));
            provisions.push(provision);
        }
        let mut nodes = Vec::new();
        let mut claims = BTreeSet::new();
        for node in &plan.nodes {
            let Some(constructor) = node.factory.constructor() else {
                failures.push(Failure::NotRunnable {
                    pipeline: name.clone(),
                    node: node.id.clone(),
                    node_type: format!("{}:{}", node.factory.kind(), node.factory.name()),
                });
                continue;
            };
            let context = NodeContext {
                node_id: node.id.clone(),
                group: plan.group.clone(),
                pipeline: plan.name.clone(),
                core: self.core,
                cores: self.cores,
                counters: Arc::new(NodeCounters::default()),
                shutdown: ShutdownSignal::new(self.stop.subscribe()),
                shared: run.node_shared.get(&node.id).cloned().unwrap_or_default(),
            };
            let config_path = node.path.key("config");
            let config = ComponentConfig::new(&node.config, &config_path, &source.positions);
            let mut capabilities =
                Capabilities::for_node(&node.id, &node.bindings, &provisions, &run.shared);
            let instance = constructor(&context, &config, &mut capabilities).and_then(|instance| {
                if instance.kind_name() == node.factory.kind().as_str() {
                    Ok(instance)
                } else {
                    Err(context.error(format!(
                        "its constructor built a {} for a {} type",
                        instance.kind_name(),
                        node.factory.kind()
                    )))
                }
            });
            match instance {
                Ok(instance) => {
                    let unclaimed = capabilities.unclaimed();
                    for (capability, extension) in &unclaimed {
                        tracing::warn!(pipeline = %name, node = %node.id, %capability, extension = %extension,
                            "the node did not claim a capability bound to it");
                    }
                    for binding in &node.bindings {
                        if !unclaimed.iter().any(|(_, e)| *e == binding.extension)
                            && let Some(owner) = run.owner_of(&binding.extension)
                        {
                            claims.insert((owner, binding.extension.clone()));
                        }
                    }
                    nodes.push((node.id.clone(), instance, context.counters.clone()));
                }
                Err(error) => failures.push(Failure::NodeConstruction {
                    pipeline: name.clone(),
                    node: node.id.clone(),
                    core: self.core,
                    error,
                }),
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        Ok((
            Built {
                run,
                extensions,
                nodes,
                provisions,
            },
            claims,
        ))
    }

    async fn serve(
        mut self,
        mut commands: mpsc::UnboundedReceiver<CoreCommand>,
        reports: &std::sync::mpsc::Sender<(usize, CoreReport)>,
    ) {
        let deadline_after = self.options.shutdown_timeout;
        // Built runs, with the extensions their nodes claimed (until they start).
        let mut built: HashMap<RunId, (Built, Claims)> = HashMap::new();
        let mut running: HashMap<RunId, Running> = HashMap::new();
        let mut node_tasks = NodeTasks::default();
        let mut tickers = JoinSet::new();
        let mut shutdown_deadline: Option<Instant> = None;
        // Until the first `Start`, the core has nothing to run yet.
        let mut started_once = false;
        let spawn: Spawn<Box<dyn LocalTask>> = |set, task, control, begun| {
            set.spawn_local(async move {
                after_first_poll(task.run(control), begun)
                    .await
                    .map_err(|e| e.to_string())
            })
            .id()
        };

        loop {
            if started_once && running.is_empty() && built.is_empty() {
                break;
            }
            let until = shutdown_deadline.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                changed = self.shutdown.changed(), if shutdown_deadline.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        shutdown_deadline = Some(self.request_stop(&mut running, deadline_after));
                    }
                }
                command = commands.recv() => match command {
                    None => {
                        // The engine is gone: nothing more will come.
                        if !started_once {
                            break;
                        }
                        // Keep running what runs until it ends.
                        std::future::pending::<()>().await;
                    }
                    Some(CoreCommand::Build(runs)) => {
                        let mut build_failures = Vec::new();
                        let mut claimed = Claims::new();
                        for run in runs {
                            match self.build(run) {
                                Ok((run, claims)) => {
                                    claimed.extend(claims.iter().cloned());
                                    built.insert(run.run.id, (run, claims));
                                }
                                Err(f) => build_failures.extend(f),
                            }
                        }
                        let _ = reports.send((self.core, CoreReport::Built {
                            failures: build_failures,
                            claims: claimed.into_iter().collect(),
                        }));
                    }
                    Some(CoreCommand::Discard(ids)) => {
                        for id in ids {
                            built.remove(&id);
                        }
                        started_once = true;
                        let _ = reports.send((self.core, CoreReport::Started { failures: Vec::new() }));
                    }
                    Some(CoreCommand::Start(ids)) => {
                        started_once = true;
                        let mut claimed = Claims::new();
                        let runs: Vec<Built> = ids
                            .iter()
                            .filter_map(|id| built.remove(id))
                            .map(|(run, claims)| {
                                claimed.extend(claims);
                                run
                            })
                            .collect();
                        let (started, start_failures) = self
                            .start_runs(runs, &claimed, spawn, &mut node_tasks, &mut tickers)
                            .await;
                        let mut started: HashMap<RunId, Running> =
                            started.into_iter().map(|run| (run.run.id, run)).collect();
                        if shutdown_deadline.is_some() {
                            // Started during a shutdown: stops at once.
                            self.stop_receivers(&mut started, deadline_after);
                        }
                        // Runs whose nodes did not start end here (their extensions stop).
                        let idle: Vec<RunId> = started
                            .iter()
                            .filter(|(_, run)| run.nodes_left == 0)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in idle {
                            if let Some(mut run) = started.remove(&id) {
                                self.end_run(&mut run, deadline_after, reports).await;
                            }
                        }
                        running.extend(started);
                        let _ = reports.send((self.core, CoreReport::Started { failures: start_failures }));
                    }
                    Some(CoreCommand::Stop(ids)) => {
                        let mut stopping: HashMap<RunId, Running> = ids
                            .iter()
                            .filter_map(|id| running.remove(id).map(|run| (*id, run)))
                            .collect();
                        self.stop_receivers(&mut stopping, deadline_after);
                        running.extend(stopping);
                    }
                },
                // A run's ticker ends once its nodes are gone: forgotten here.
                Some(_) = tickers.join_next(), if !tickers.is_empty() => {}
                Some(joined) = node_tasks.set.join_next_with_id() => {
                    let (run_id, failure) = node_tasks.ended(self.core, joined);
                    if let Some(run) = running.get_mut(&run_id) {
                        run.nodes_left = run.nodes_left.saturating_sub(1);
                        if let Some(failure) = failure {
                            run.failures.push(failure);
                            shutdown_deadline = Some(self.request_stop(&mut running, deadline_after));
                        }
                    }
                    if running.get(&run_id).is_some_and(|run| run.nodes_left == 0)
                        && let Some(mut run) = running.remove(&run_id)
                    {
                        self.end_run(&mut run, deadline_after, reports).await;
                    }
                }
                (run_id, joined) = extension_exit(&mut running) => {
                    if let Some(run) = running.get(&run_id) {
                        let exited = run.extensions.exited(&self.telemetry, joined);
                        if let Some(failure) = exited {
                            if let Some(run) = running.get_mut(&run_id) {
                                run.failures.push(failure);
                            }
                            shutdown_deadline = Some(self.request_stop(&mut running, deadline_after));
                        }
                    }
                }
                () = sleep_until(until) => {
                    node_tasks.set.abort_all();
                    while let Some(joined) = node_tasks.set.join_next_with_id().await {
                        let (run_id, failure) = node_tasks.ended(self.core, joined);
                        if let (Some(run), Some(failure)) = (running.get_mut(&run_id), failure) {
                            run.failures.push(failure);
                        }
                    }
                    let lost: u64 = running.values().map(|run| {
                        lost_in(run.run.plan(), |id| {
                            run.counters
                                .iter()
                                .find(|(node, _)| node == id)
                                .map(|(_, counters)| counters.snapshot())
                                .unwrap_or_default()
                        })
                    }).sum();
                    if lost > 0 {
                        self.telemetry.add_lost_at_deadline(lost);
                        tracing::error!(
                            core = self.core,
                            records = lost,
                            "records held by nodes or queued between them were lost at the shutdown deadline"
                        );
                    }
                    let ids: Vec<RunId> = running.keys().copied().collect();
                    for id in ids {
                        if let Some(mut run) = running.remove(&id) {
                            self.end_run(&mut run, deadline_after, reports).await;
                        }
                    }
                    built.clear();
                }
            }
        }
        tickers.abort_all();
    }

    /// Starts built runs: the claimed local extensions of all of them (each ready or not at
    /// all), then — only when every one is ready — their nodes. Returns the runs and the
    /// failures.
    async fn start_runs(
        &self,
        runs: Vec<Built>,
        claimed: &BTreeSet<(Owner, String)>,
        spawn: Spawn<Box<dyn LocalTask>>,
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
                failures.extend(tasks.start(to_start, spawn, &self.telemetry).await);
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
    async fn end_run(
        &self,
        run: &mut Running,
        deadline_after: Duration,
        reports: &std::sync::mpsc::Sender<(usize, CoreReport)>,
    ) {
        let deadline = Instant::now() + deadline_after;
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
    fn request_stop(
        &self,
        running: &mut HashMap<RunId, Running>,
        deadline_after: Duration,
    ) -> Instant {
        if let Some(request) = *self.stop.borrow() {
            return request.deadline;
        }
        let request = StopRequest::now(deadline_after);
        self.stop.send_replace(Some(request));
        self.stop_receivers(running, deadline_after);
        request.deadline
    }

    /// Tells the receivers of `runs` to stop; the rest of each run drains after them.
    fn stop_receivers(&self, runs: &mut HashMap<RunId, Running>, deadline_after: Duration) {
        let deadline = Instant::now() + deadline_after;
        for run in runs.values_mut() {
            for receiver in run.receivers.drain(..) {
                let _ = receiver.try_send(ControlMessage::Shutdown { deadline });
            }
        }
    }

    /// Spawns a run's nodes; returns the control queues of its processors and exporters.
    fn spawn_nodes(
        &self,
        running: &mut Running,
        nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
        tasks: &mut NodeTasks,
    ) -> Vec<mpsc::Sender<ControlMessage>> {
        let mut others = Vec::new();
        let plan = running.run.plan();
        let name = running.run.label.clone();
        let capacity = self.options.channel_capacity.max(1);
        let mut senders = HashMap::new();
        let mut inputs = HashMap::new();
        for (id, instance, _) in &nodes {
            if !matches!(instance, NodeInstance::Receiver(_)) {
                let (tx, rx) = mpsc::channel(capacity);
                senders.insert(id.clone(), tx);
                inputs.insert(id.clone(), rx);
            }
        }
        let mut receivers = Vec::new();
        let mut counted = Vec::new();
        for (id, instance, counters) in nodes {
            self.telemetry.register_node(NodeStats {
                pipeline: name.clone(),
                node: id.clone(),
                core: self.core,
                run: running.run.id,
                counters: counters.clone(),
            });
            counted.push((id.clone(), counters.clone()));
            let targets = plan
                .edges
                .iter()
                .filter(|(from, _)| *from == id)
                .filter_map(|(_, to)| senders.get(to).cloned())
                .collect();
            let outputs = Outputs::new(id.clone(), targets, counters.clone());
            let (control_tx, control_rx) = mpsc::channel(16);
            let input = inputs.remove(&id);
            let handle = match instance {
                NodeInstance::Receiver(receiver) => {
                    receivers.push(control_tx);
                    tasks.set.spawn_local(async move {
                        receiver
                            .run(ReceiverContext::new(outputs, control_rx))
                            .await
                    })
                }
                // Processors and exporters get no shutdown message: they end when their
                // input closes, once every upstream node has finished and drained.
                NodeInstance::Processor(processor) => {
                    others.push(control_tx);
                    tasks.set.spawn_local(async move {
                        drive_processor(processor, input, control_rx, outputs, counters).await
                    })
                }
                NodeInstance::Exporter(exporter) => {
                    others.push(control_tx);
                    let counts_own_output = plan
                        .nodes
                        .iter()
                        .any(|node| node.id == id && node.factory.counts_own_output());
                    tasks.set.spawn_local(async move {
                        drive_exporter(exporter, input, control_rx, counters, counts_own_output)
                            .await
                    })
                }
            };
            tasks
                .names
                .insert(handle.id(), (running.run.id, name.clone(), id));
            running.nodes_left += 1;
        }
        running.receivers = receivers;
        running.counters = counted;
        others
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

/// Sends a timer tick to every node in `nodes` each `every`, skipping a node whose control
/// queue is full; ends when every node is gone.
async fn tick(every: Duration, mut nodes: Vec<mpsc::Sender<ControlMessage>>) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    while !nodes.is_empty() {
        interval.tick().await;
        nodes.retain(|node| {
            !matches!(
                node.try_send(ControlMessage::TimerTick),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}

impl NodeTasks {
    /// A finished node task, forgotten: its run, and the failure it represents, if any.
    fn ended(
        &mut self,
        core: usize,
        joined: Result<(tokio::task::Id, Result<(), NodeError>), tokio::task::JoinError>,
    ) -> (RunId, Option<Failure>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let (run, pipeline, node) =
            self.names
                .remove(&id)
                .unwrap_or((usize::MAX, "?".into(), "?".into()));
        let failure = match joined {
            Ok((_, Ok(()))) => None,
            Ok((_, Err(error))) => Some(Failure::Node {
                pipeline,
                node,
                core,
                reason: error.to_string(),
            }),
            Err(error) if error.is_panic() => Some(Failure::Node {
                pipeline,
                node,
                core,
                reason: format!("panicked: {}", panic_message(error.into_panic())),
            }),
            Err(_) => Some(Failure::ShutdownTimeout {
                pipeline,
                task: node,
            }),
        };
        (run, failure)
    }
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn drive_processor(
    mut processor: Box<dyn crate::node::LocalProcessor>,
    input: Option<mpsc::Receiver<crate::data::OtlpPayload>>,
    mut control: mpsc::Receiver<ControlMessage>,
    outputs: Outputs,
    counters: Arc<NodeCounters>,
) -> Result<(), NodeError> {
    let Some(mut input) = input else {
        return Ok(());
    };
    let mut control_open = true;
    loop {
        tokio::select! {
            biased;
            message = control.recv(), if control_open => match message {
                Some(message) => processor.control(message, &outputs).await?,
                None => control_open = false,
            },
            data = next_payload(&mut input) => match data {
                Some(data) => {
                    NodeCounters::add(&counters.records_in, data.records());
                    processor.process(data, &outputs).await?;
                }
                None => return Ok(()),
            },
        }
    }
}

/// The next payload of a processor's or exporter's input, outside tokio's budget (128
/// operations a poll): a consumer that yielded after 128 payloads would drain a busy queue
/// only once per round of the core's tasks and leave its senders waiting. The drain is
/// bounded by the queue's capacity; `process` and `export` still yield where they wait.
fn next_payload(
    input: &mut mpsc::Receiver<crate::data::OtlpPayload>,
) -> impl Future<Output = Option<crate::data::OtlpPayload>> + '_ {
    tokio::task::coop::unconstrained(input.recv())
}

/// Runs an exporter; `counts_own_output`: it counts `records_out` itself, on delivery
/// ([`NodeFactory::counts_delivered`](crate::node::NodeFactory::counts_delivered)).
async fn drive_exporter(
    mut exporter: Box<dyn crate::node::LocalExporter>,
    input: Option<mpsc::Receiver<crate::data::OtlpPayload>>,
    mut control: mpsc::Receiver<ControlMessage>,
    counters: Arc<NodeCounters>,
    counts_own_output: bool,
) -> Result<(), NodeError> {
    let Some(mut input) = input else {
        return exporter.finish().await;
    };
    let mut control_open = true;
    loop {
        tokio::select! {
            biased;
            message = control.recv(), if control_open => match message {
                Some(message) => exporter.control(message).await?,
                None => control_open = false,
            },
            data = next_payload(&mut input) => match data {
                Some(data) => {
                    let records = data.records();
                    NodeCounters::add(&counters.records_in, records);
                    match exporter.export(data).await {
                        Ok(()) if counts_own_output => {}
                        Ok(()) => NodeCounters::add(&counters.records_out, records),
                        Err(error) => {
                            NodeCounters::add(&counters.records_failed, records);
                            return Err(error);
                        }
                    }
                }
                None => return exporter.finish().await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::data::{Encoding, OtlpPayload, Signal};
    use crate::node::LocalExporter;

    struct Counting(Rc<Cell<usize>>);

    #[crate::async_trait(?Send)]
    impl LocalExporter for Counting {
        async fn export(&mut self, _: OtlpPayload) -> Result<(), NodeError> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    /// tokio lets a task do 128 budgeted operations a poll; an exporter that yielded there
    /// would leave the rest of a full queue, and its senders, waiting for a whole round of
    /// the core's tasks.
    #[test]
    fn an_exporter_drains_its_whole_queue_in_one_turn() {
        const QUEUED: usize = 300;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let local = LocalSet::new();
        let (input, queue) = mpsc::channel(QUEUED);
        for _ in 0..QUEUED {
            input
                .try_send(OtlpPayload::new(
                    Signal::Logs,
                    Encoding::Protobuf,
                    1,
                    &b""[..],
                ))
                .expect("room");
        }
        let (_control, control) = mpsc::channel(1);
        let exported = Rc::new(Cell::new(0));
        // Tasks run in the order they were spawned: the exporter takes its first turn, then
        // the check sees what that turn did.
        local.spawn_local(drive_exporter(
            Box::new(Counting(exported.clone())),
            Some(queue),
            control,
            Arc::new(NodeCounters::default()),
            false,
        ));
        let seen = local.spawn_local({
            let exported = exported.clone();
            async move { exported.get() }
        });
        let after_first_turn = local.block_on(&runtime, seen).expect("check ran");
        assert_eq!(after_first_turn, QUEUED);
        drop(input);
    }

    /// An exporter that delivers after `export` returns counts `out` itself; the engine
    /// counts only what came in. Another gets `out` counted by the engine.
    #[test]
    fn the_engine_counts_out_only_for_an_exporter_that_does_not_count_its_deliveries() {
        for (counts_own_output, out) in [(false, 5), (true, 0)] {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let (input, queue) = mpsc::channel(8);
            for _ in 0..5 {
                input
                    .try_send(OtlpPayload::new(
                        Signal::Logs,
                        Encoding::Protobuf,
                        1,
                        &b""[..],
                    ))
                    .expect("room");
            }
            drop(input);
            let (_control, control) = mpsc::channel(1);
            let counters = Arc::new(NodeCounters::default());
            let exporter = Box::new(Counting(Rc::new(Cell::new(0))));
            let local = LocalSet::new();
            local
                .block_on(
                    &runtime,
                    drive_exporter(
                        exporter,
                        Some(queue),
                        control,
                        counters.clone(),
                        counts_own_output,
                    ),
                )
                .expect("the exporter ends when its input closes");
            let counted = counters.snapshot();
            assert_eq!((counted.records_in, counted.records_out), (5, out));
        }
    }
}
