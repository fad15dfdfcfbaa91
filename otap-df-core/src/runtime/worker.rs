//! One core: its thread and single-threaded runtime, the local extensions and node
//! instances it constructs, and the node tasks it drives until every node has finished.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinSet, LocalSet};

use super::engine::pipeline_name;
use super::failure::Failure;
use super::instantiate::InstantiateError;
use super::options::RunOptions;
use super::telemetry::{ExtensionState, NodeStats, Telemetry};
use crate::config::ComponentConfig;
use crate::extension::Capabilities;
use crate::extension::{Lifecycle, LocalProvisions, LocalTask, SharedProvisions};
use crate::node::{
    ControlMessage, NodeContext, NodeCounters, NodeError, NodeInstance, NodeShared, Outputs,
    ReceiverContext, ShutdownSignal, StopRequest,
};
use crate::resolve::{PipelinePlan, ResolvedConfig, ScopeKey};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll, panic_message};

type LocalLifecycle = (String, Lifecycle<Box<dyn LocalTask>>, Duration);

pub(super) enum CoreCommand {
    Start,
    Abort,
}

pub(super) fn startup_timeout(
    resolved: &ResolvedConfig,
    scope: ScopeKey,
    extension: &str,
) -> Duration {
    resolved
        .extensions_of(scope)
        .iter()
        .find(|e| e.id == extension)
        .map(|e| e.startup_timeout)
        .unwrap_or(crate::extension::ExtensionFactory::DEFAULT_STARTUP_TIMEOUT)
}

pub(super) fn instantiate_failure(error: InstantiateError) -> Failure {
    Failure::Instantiate(error.to_string())
}

pub(super) enum CoreReport {
    Constructed { claims: Vec<(ScopeKey, String)> },
    Finished { failures: Vec<Failure> },
}

pub(super) struct CoreWorker {
    pub(super) core: usize,
    pub(super) cores: usize,
    pub(super) resolved: Arc<ResolvedConfig>,
    /// Every shared instance, by scope.
    pub(super) shared: Arc<HashMap<ScopeKey, Vec<SharedProvisions>>>,
    pub(super) options: RunOptions,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) telemetry: Arc<Telemetry>,
    /// What this core's nodes see through [`ShutdownSignal`].
    pub(super) stop: watch::Sender<Option<StopRequest>>,
    /// Each node's cell shared by all cores, by `(pipeline index, node id)`.
    pub(super) node_shared: Arc<HashMap<(usize, String), NodeShared>>,
}

/// One pipeline instance on one core, constructed and not yet started.
struct BuiltPipeline {
    index: usize,
    name: String,
    extensions: Vec<LocalLifecycle>,
    nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
    /// The extensions its nodes claimed, by the scope they belong to.
    claims: BTreeSet<(ScopeKey, String)>,
    // Keeps the local capabilities alive as long as the pipeline instance.
    _provisions: Vec<LocalProvisions>,
}

impl CoreWorker {
    pub(super) fn run(
        self,
        commands: std::sync::mpsc::Receiver<CoreCommand>,
        reports: std::sync::mpsc::Sender<CoreReport>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = reports.send(CoreReport::Finished {
                    failures: vec![Failure::Start(e.to_string())],
                });
                return;
            }
        };
        let built = match self.construct() {
            Ok(built) => built,
            Err(failures) => {
                let _ = reports.send(CoreReport::Finished { failures });
                return;
            }
        };
        let claims = built
            .iter()
            .flat_map(|p| p.claims.iter().cloned())
            .collect();
        let _ = reports.send(CoreReport::Constructed { claims });
        let failures = match commands.recv() {
            Ok(CoreCommand::Start) => LocalSet::new().block_on(&runtime, self.run_pipelines(built)),
            Ok(CoreCommand::Abort) | Err(_) => Vec::new(),
        };
        let _ = reports.send(CoreReport::Finished { failures });
    }

    fn construct(&self) -> Result<Vec<BuiltPipeline>, Vec<Failure>> {
        let mut built = Vec::new();
        let mut failures = Vec::new();
        let source = &self.resolved.source;
        for (index, plan) in self.resolved.pipelines.iter().enumerate() {
            let name = pipeline_name(plan);
            let local = match plan.create_local_extensions(self.core, source) {
                Ok(local) => local,
                Err(error) => {
                    failures.push(instantiate_failure(error));
                    continue;
                }
            };
            let mut provisions = Vec::new();
            let mut extensions = Vec::new();
            for extension in local {
                self.telemetry.register_extension_metrics(
                    &name,
                    extension.extension_id(),
                    Some(self.core),
                    extension.metrics(),
                );
                let (provision, lifecycle) = extension.into_parts();
                let id = provision.extension_id().to_owned();
                self.telemetry
                    .set_extension(&name, &id, Some(self.core), ExtensionState::Created);
                let timeout = startup_timeout(&self.resolved, ScopeKey::Pipeline(index), &id);
                extensions.push((id.clone(), lifecycle, timeout));
                provisions.push(provision);
            }
            // The shared instances this pipeline's nodes can bind, innermost scope first.
            let shared_in_scope: Vec<&SharedProvisions> = self
                .resolved
                .scopes_of(index)
                .iter()
                .filter_map(|key| self.shared.get(key))
                .flatten()
                .collect();
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
                    shared: self
                        .node_shared
                        .get(&(index, node.id.clone()))
                        .cloned()
                        .unwrap_or_default(),
                };
                let config_path = node.path.key("config");
                let config = ComponentConfig::new(&node.config, &config_path, &source.positions);
                let mut capabilities =
                    Capabilities::for_node(&node.id, &node.bindings, &provisions, &shared_in_scope);
                let instance =
                    constructor(&context, &config, &mut capabilities).and_then(|instance| {
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
                                && let Some(scope) =
                                    self.resolved.binding_scope(index, &binding.extension)
                            {
                                claims.insert((scope, binding.extension.clone()));
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
            built.push(BuiltPipeline {
                index,
                name,
                extensions,
                nodes,
                claims,
                _provisions: provisions,
            });
        }
        if failures.is_empty() {
            Ok(built)
        } else {
            Err(failures)
        }
    }

    async fn run_pipelines(mut self, built: Vec<BuiltPipeline>) -> Vec<Failure> {
        let mut failures = Vec::new();
        let deadline_after = self.options.shutdown_timeout;

        // Local extensions some node claimed start first, ready or not at all.
        let mut extension_tasks = ExtensionTasks::new(Some(self.core));
        let mut to_start = Vec::new();
        let mut pipelines = Vec::new();
        for pipeline in built {
            for (id, lifecycle, timeout) in pipeline.extensions {
                let scope = ScopeKey::Pipeline(pipeline.index);
                to_start.push(ToStart {
                    scope,
                    label: pipeline.name.clone(),
                    claimed: pipeline.claims.contains(&(scope, id.clone())),
                    id,
                    lifecycle,
                    startup_timeout: timeout,
                });
            }
            pipelines.push((pipeline.index, pipeline.name, pipeline.nodes));
        }
        let spawn: Spawn<Box<dyn LocalTask>> = |set, task, control, begun| {
            set.spawn_local(async move {
                after_first_poll(task.run(control), begun)
                    .await
                    .map_err(|e| e.to_string())
            })
            .id()
        };
        failures.extend(
            extension_tasks
                .start(to_start, spawn, &self.resolved, &self.telemetry)
                .await,
        );

        // Nodes.
        let mut receivers: Vec<mpsc::Sender<ControlMessage>> = Vec::new();
        let mut tickable: Vec<mpsc::Sender<ControlMessage>> = Vec::new();
        let mut node_tasks = NodeTasks::default();
        if failures.is_empty() {
            for (index, name, nodes) in pipelines {
                let plan = &self.resolved.pipelines[index];
                let controls = self.spawn_nodes(index, &name, plan, nodes, &mut node_tasks);
                receivers.extend(controls.receivers);
                tickable.extend(controls.others);
            }
        }
        let ticker = self
            .options
            .timer_interval
            .filter(|every| !every.is_zero() && !tickable.is_empty())
            .map(|every| tokio::task::spawn_local(tick(every, tickable)));
        let mut shutdown_deadline: Option<Instant> = None;
        let request_shutdown = |receivers: &mut Vec<mpsc::Sender<ControlMessage>>,
                                deadline: &mut Option<Instant>| {
            if deadline.is_none() {
                let request = StopRequest::now(deadline_after);
                let at = request.deadline;
                *deadline = Some(at);
                self.stop.send_replace(Some(request));
                for receiver in receivers.drain(..) {
                    let _ = receiver.try_send(ControlMessage::Shutdown { deadline: at });
                }
            }
        };
        if *self.shutdown.borrow() {
            request_shutdown(&mut receivers, &mut shutdown_deadline);
        }
        while !node_tasks.set.is_empty() {
            let until = shutdown_deadline.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                changed = self.shutdown.changed(), if shutdown_deadline.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        request_shutdown(&mut receivers, &mut shutdown_deadline);
                    }
                }
                Some(joined) = node_tasks.set.join_next_with_id() => {
                    if let Some(failure) = node_tasks.failure(self.core, &self.resolved, joined) {
                        failures.push(failure);
                        request_shutdown(&mut receivers, &mut shutdown_deadline);
                    }
                }
                Some(joined) = extension_tasks.set.join_next_with_id() => {
                    let exited = extension_tasks.exited(&self.resolved, &self.telemetry, joined);
                    if let Some(failure) = exited {
                        failures.push(failure);
                        request_shutdown(&mut receivers, &mut shutdown_deadline);
                    }
                }
                () = sleep_until(until) => {
                    node_tasks.set.abort_all();
                    while let Some(joined) = node_tasks.set.join_next_with_id().await {
                        failures.extend(node_tasks.failure(self.core, &self.resolved, joined));
                    }
                    let lost = self.telemetry.count_lost_at_deadline(self.core, &self.resolved);
                    if lost > 0 {
                        tracing::error!(
                            core = self.core,
                            records = lost,
                            "records held by nodes or queued between them were lost at the shutdown deadline"
                        );
                    }
                }
            }
        }

        if let Some(ticker) = ticker {
            ticker.abort();
        }

        // Local extensions go after every node of this core, in reverse start order.
        let deadline = Instant::now() + deadline_after;
        failures.extend(
            extension_tasks
                .stop(deadline, &self.resolved, &self.telemetry)
                .await,
        );
        failures
    }

    fn spawn_nodes(
        &self,
        index: usize,
        name: &str,
        plan: &PipelinePlan,
        nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
        tasks: &mut NodeTasks,
    ) -> NodeControls {
        let mut controls = NodeControls::default();
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
        for (id, instance, counters) in nodes {
            self.telemetry.register_node(NodeStats {
                pipeline: name.to_owned(),
                node: id.clone(),
                core: self.core,
                counters: counters.clone(),
            });
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
                    controls.receivers.push(control_tx);
                    tasks.set.spawn_local(async move {
                        receiver
                            .run(ReceiverContext::new(outputs, control_rx))
                            .await
                    })
                }
                // Processors and exporters get no shutdown message: they end when their
                // input closes, once every upstream node has finished and drained.
                NodeInstance::Processor(processor) => {
                    controls.others.push(control_tx);
                    tasks.set.spawn_local(async move {
                        drive_processor(processor, input, control_rx, outputs, counters).await
                    })
                }
                NodeInstance::Exporter(exporter) => {
                    controls.others.push(control_tx);
                    tasks.set.spawn_local(async move {
                        drive_exporter(exporter, input, control_rx, counters).await
                    })
                }
            };
            tasks.names.insert(handle.id(), (index, id));
        }
        controls
    }
}

/// The control queues of a core's nodes.
#[derive(Default)]
struct NodeControls {
    /// Receivers: told to stop on shutdown.
    receivers: Vec<mpsc::Sender<ControlMessage>>,
    /// Processors and exporters: ticked.
    others: Vec<mpsc::Sender<ControlMessage>>,
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

/// The node tasks of one core, and which node each task runs.
#[derive(Default)]
struct NodeTasks {
    set: JoinSet<Result<(), NodeError>>,
    names: HashMap<tokio::task::Id, (usize, String)>,
}

impl NodeTasks {
    /// The failure a finished task represents, if any.
    fn failure(
        &self,
        core: usize,
        resolved: &ResolvedConfig,
        joined: Result<(tokio::task::Id, Result<(), NodeError>), tokio::task::JoinError>,
    ) -> Option<Failure> {
        let (id, reason) = match joined {
            Ok((_, Ok(()))) => return None,
            Ok((id, Err(error))) => (id, error.to_string()),
            Err(error) if error.is_panic() => (
                error.id(),
                format!("panicked: {}", panic_message(error.into_panic())),
            ),
            Err(error) => {
                let (index, node) = self
                    .names
                    .get(&error.id())
                    .cloned()
                    .unwrap_or((0, "?".into()));
                return Some(Failure::ShutdownTimeout {
                    pipeline: pipeline_name(&resolved.pipelines[index]),
                    task: node,
                });
            }
        };
        let (index, node) = self.names.get(&id).cloned().unwrap_or((0, "?".into()));
        Some(Failure::Node {
            pipeline: pipeline_name(&resolved.pipelines[index]),
            node,
            core,
            reason,
        })
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
            data = input.recv() => match data {
                Some(data) => {
                    NodeCounters::add(&counters.records_in, data.records());
                    processor.process(data, &outputs).await?;
                }
                None => return Ok(()),
            },
        }
    }
}

async fn drive_exporter(
    mut exporter: Box<dyn crate::node::LocalExporter>,
    input: Option<mpsc::Receiver<crate::data::OtlpPayload>>,
    mut control: mpsc::Receiver<ControlMessage>,
    counters: Arc<NodeCounters>,
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
            data = input.recv() => match data {
                Some(data) => {
                    let records = data.records();
                    NodeCounters::add(&counters.records_in, records);
                    match exporter.export(data).await {
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
