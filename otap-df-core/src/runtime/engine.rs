//! The engine: runs every pipeline of a resolved configuration, `cores` instances of each, one
//! single-threaded runtime per core.
//!
//! Order of events, on every path (success, node error, node panic, readiness timeout,
//! extension exit, signal):
//! 1. Shared extensions are created once per pipeline; each core creates its local
//!    extensions and constructs its nodes (which claim their capabilities).
//! 2. Extensions that some node claimed are started — shared ones on a small engine runtime,
//!    local ones on their core — in declaration order, shared before local, before any node:
//!    each task has run up to its first suspension point before the next one is spawned, and
//!    the engine waits for those that probe readiness, each within its `startup_timeout`.
//!    Unclaimed and passive extensions are not started.
//! 3. Nodes run. Shutdown (a request, a signal, a failure) tells receivers to stop;
//!    processors and exporters drain what is in flight and finish.
//! 4. Only when every node of a core has finished are its local extensions shut down, in
//!    reverse start order, with a deadline; shared extensions go last, after every core.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinSet, LocalSet};

use crate::binding::{Capabilities, InstantiateError, PipelinePlan, ResolvedConfig};
use crate::config::ComponentConfig;
use crate::extension::{
    ExtensionHandle, ExtensionHealth, Lifecycle, LocalProvisions, LocalTask, SharedProvisions,
    SharedTask,
};
use crate::runtime::extensions::{ExtensionTasks, Spawn, ToStart, after_first_poll, panic_message};
use crate::runtime::node::{
    ControlMessage, CounterSnapshot, NodeContext, NodeCounters, NodeError, NodeInstance,
    NodeShared, Outputs, ReceiverContext, ShutdownSignal, StopRequest,
};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Pipeline instances (one per core); the configuration's `engine.cores` when `None`.
    pub cores: Option<usize>,
    /// Payloads each node's input queue holds before senders wait (backpressure).
    pub channel_capacity: usize,
    /// How long nodes, then extensions, get to finish once shutdown starts.
    pub shutdown_timeout: Duration,
    /// How often processors and exporters get a [`ControlMessage::TimerTick`] (flush,
    /// expire state); never when `None`. A tick is skipped for a node whose control queue is
    /// full, so a busy node never accumulates ticks.
    pub timer_interval: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            cores: None,
            channel_capacity: 64,
            shutdown_timeout: Duration::from_secs(10),
            timer_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Asks a running engine to shut down gracefully. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts a graceful shutdown (idempotent).
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

/// The state of an extension instance, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionState {
    /// Created; not started (yet).
    Created,
    /// Passive: nothing to start.
    Passive,
    /// Started, waiting for its readiness probe.
    Starting,
    /// Running and ready.
    Ready,
    /// Running, serving its capabilities, but not as configured (the reason).
    Degraded(String),
    /// No node claimed it: never started.
    Unclaimed,
    /// Shut down.
    Stopped,
    /// Failed.
    Failed(String),
}

impl fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionState::Created => f.write_str("created"),
            ExtensionState::Passive => f.write_str("passive"),
            ExtensionState::Starting => f.write_str("starting"),
            ExtensionState::Ready => f.write_str("ready"),
            ExtensionState::Degraded(why) => write!(f, "degraded: {why}"),
            ExtensionState::Unclaimed => f.write_str("unclaimed"),
            ExtensionState::Stopped => f.write_str("stopped"),
            ExtensionState::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// One node instance's counters.
#[derive(Debug, Clone)]
pub struct NodeStats {
    /// `group/pipeline`.
    pub pipeline: String,
    /// Node id.
    pub node: String,
    /// Core.
    pub core: usize,
    /// Counters, updated live.
    pub counters: Arc<NodeCounters>,
}

/// One node's counters summed over its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTotals {
    /// `group/pipeline`.
    pub pipeline: String,
    /// Node id.
    pub node: String,
    /// The sums.
    pub counts: CounterSnapshot,
    /// The node's own counters ([`NodeCounters::named`]), summed, in first-use order.
    pub named: Vec<(&'static str, u64)>,
}

/// Live counters and states of a run, readable from any thread.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Records that nodes still held, or that sat in queues between them, when the shutdown
    /// deadline aborted them.
    lost_at_deadline: std::sync::atomic::AtomicU64,
    nodes: Mutex<Vec<NodeStats>>,
    extensions: Mutex<Vec<ExtensionStatus>>,
    /// Every lifecycle state an extension instance was put in, in order (at most
    /// [`MAX_TRANSITIONS`]; a degraded report is not a transition).
    transitions: Mutex<Vec<ExtensionTransition>>,
    handles: Mutex<Vec<WatchedExtension>>,
}

/// The most transitions [`Telemetry::extension_transitions`] keeps.
pub const MAX_TRANSITIONS: usize = 10_000;

/// One extension instance put in a lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionTransition {
    /// `group/pipeline`.
    pub pipeline: String,
    /// The extension's id.
    pub extension: String,
    /// Its core; `None` for a shared extension.
    pub core: Option<usize>,
    /// The state it was put in.
    pub state: ExtensionState,
}

impl Telemetry {
    fn register_node(&self, stats: NodeStats) {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stats);
    }

    pub(super) fn set_extension(
        &self,
        pipeline: &str,
        extension: &str,
        core: Option<usize>,
        state: ExtensionState,
    ) {
        {
            let mut transitions = self
                .transitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if transitions.len() < MAX_TRANSITIONS {
                transitions.push(ExtensionTransition {
                    pipeline: pipeline.to_owned(),
                    extension: extension.to_owned(),
                    core,
                    state: state.clone(),
                });
            }
        }
        let mut extensions = self
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match extensions
            .iter_mut()
            .find(|(p, e, c, _)| p == pipeline && e == extension && *c == core)
        {
            Some(entry) => entry.3 = state,
            None => extensions.push((pipeline.to_owned(), extension.to_owned(), core, state)),
        }
    }

    /// Per node, summed over cores, in registration order.
    pub fn node_totals(&self) -> Vec<NodeTotals> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut totals: Vec<NodeTotals> = Vec::new();
        for stats in nodes.iter() {
            let counts = stats.counters.snapshot();
            let named = stats.counters.named_snapshot();
            match totals
                .iter_mut()
                .find(|t| t.pipeline == stats.pipeline && t.node == stats.node)
            {
                Some(total) => {
                    total.counts += counts;
                    for (name, value) in named {
                        match total.named.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, sum)) => *sum += value,
                            None => total.named.push((name, value)),
                        }
                    }
                }
                None => totals.push(NodeTotals {
                    pipeline: stats.pipeline.clone(),
                    node: stats.node.clone(),
                    counts,
                    named,
                }),
            }
        }
        totals
    }

    pub(super) fn watch_extension(
        &self,
        pipeline: &str,
        extension: &str,
        core: Option<usize>,
        handle: &ExtensionHandle,
    ) {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                pipeline.to_owned(),
                extension.to_owned(),
                core,
                handle.health(),
            ));
    }

    /// Every lifecycle state each extension instance was put in, in order: `created`, then
    /// `unclaimed`, `passive`, or `starting` → `ready` (or `failed: not ready`) → `stopped`;
    /// `failed: …` when its task ends early. The same for shared and local extensions.
    pub fn extension_transitions(&self) -> Vec<ExtensionTransition> {
        self.transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every extension instance's state: `(pipeline, extension, core, state)`. A ready
    /// extension that reports itself degraded is [`ExtensionState::Degraded`].
    pub fn extension_states(&self) -> Vec<(String, String, Option<usize>, ExtensionState)> {
        let mut states = self
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        for (pipeline, extension, core, state) in &mut states {
            if *state != ExtensionState::Ready {
                continue;
            }
            let degraded = handles
                .iter()
                .find(|(p, e, c, _)| p == pipeline && e == extension && c == core)
                .and_then(|(_, _, _, health)| health.degraded());
            if let Some(why) = degraded {
                *state = ExtensionState::Degraded(why);
            }
        }
        states
    }

    /// Records that nodes gave up without delivering or dead-lettering them: the sum of
    /// every node's [`LOST`](crate::runtime::node::LOST) counter.
    pub fn records_lost(&self) -> u64 {
        self.node_totals()
            .iter()
            .flat_map(|total| total.named.iter())
            .filter(|(name, _)| *name == crate::runtime::node::LOST)
            .map(|(_, value)| value)
            .sum::<u64>()
            + self.records_lost_at_deadline()
    }

    /// Records that nodes still held, or that sat in the queues between them, when the
    /// shutdown deadline aborted them (included in [`records_lost`](Self::records_lost)).
    pub fn records_lost_at_deadline(&self) -> u64 {
        self.lost_at_deadline
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts what core `core`'s nodes held when they were aborted: per node, what reached
    /// it (its upstream nodes' `out`) and it did not take in (queued), plus what it took in
    /// and neither passed on, dropped nor failed (held). Receivers hold nothing acknowledged.
    fn count_lost_at_deadline(&self, core: usize, resolved: &ResolvedConfig) -> u64 {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lost = 0;
        for plan in &resolved.pipelines {
            let pipeline = pipeline_name(plan);
            let counts = |id: &str| {
                nodes
                    .iter()
                    .find(|n| n.core == core && n.pipeline == pipeline && n.node == id)
                    .map(|n| n.counters.snapshot())
                    .unwrap_or_default()
            };
            for node in &plan.nodes {
                let own = counts(&node.id);
                let reached: u64 = plan
                    .edges
                    .iter()
                    .filter(|(_, to)| *to == node.id)
                    .map(|(from, _)| counts(from).records_out)
                    .sum();
                let queued = reached.saturating_sub(own.records_in);
                let held = if node.factory.kind() == crate::config::ComponentKind::Receiver {
                    0
                } else {
                    own.records_in
                        .saturating_sub(own.records_out + own.records_dropped + own.records_failed)
                };
                lost += queued + held;
            }
        }
        drop(nodes);
        self.lost_at_deadline
            .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
        lost
    }

    /// One line: records in/out per node, drops, the nodes' own counters, and extension states.
    pub fn summary(&self) -> String {
        let totals = self.node_totals();
        // Nodes are named by id; with several pipelines, by `group/pipeline/id`.
        let qualify = totals.iter().any(|t| t.pipeline != totals[0].pipeline);
        let mut parts: Vec<String> = totals
            .into_iter()
            .map(|total| {
                let c = total.counts;
                let name = if qualify {
                    format!("{}/{}", total.pipeline, total.node)
                } else {
                    total.node.clone()
                };
                let mut part = format!("{name} in={} out={}", c.records_in, c.records_out);
                if c.records_dropped > 0 {
                    part.push_str(&format!(" dropped={}", c.records_dropped));
                }
                if c.records_failed > 0 {
                    part.push_str(&format!(" failed={}", c.records_failed));
                }
                if c.errors > 0 {
                    part.push_str(&format!(" errors={}", c.errors));
                }
                for (name, value) in total.named.iter().filter(|(_, v)| *v > 0) {
                    part.push_str(&format!(" {name}={value}"));
                }
                part
            })
            .collect();
        let mut seen = BTreeSet::new();
        for (_, extension, _, state) in self.extension_states() {
            if seen.insert((extension.clone(), state.to_string())) {
                parts.push(format!("{extension}={state}"));
            }
        }
        let lost = self.records_lost_at_deadline();
        if lost > 0 {
            parts.push(format!("lost at the shutdown deadline: {lost}"));
        }
        parts.join(" | ")
    }
}

/// Something that went wrong in a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// An extension could not be created.
    #[error("{0}")]
    Instantiate(String),
    /// A node type has no runtime implementation.
    #[error(
        "node `{node}` of pipeline `{pipeline}`: type `{node_type}` can be validated but not run"
    )]
    NotRunnable {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Node type.
        node_type: String,
    },
    /// A node could not be constructed.
    #[error("node `{node}` of pipeline `{pipeline}` (core {core}) could not be built: {error}")]
    NodeConstruction {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Core.
        core: usize,
        /// Why.
        error: NodeError,
    },
    /// An extension did not signal readiness in time.
    #[error(
        "extension `{extension}` of pipeline `{pipeline}` was not ready within its startup_timeout \
         of {timeout:?}{}; nodes were not started",
        last_report(.reason)
    )]
    ReadinessTimeout {
        /// `group/pipeline`.
        pipeline: String,
        /// Extension id.
        extension: String,
        /// The timeout.
        timeout: Duration,
        /// What the extension last reported while not ready (`set_degraded`), if anything.
        reason: Option<String>,
    },
    /// An active or background extension's task ended before shutdown.
    #[error("extension `{extension}` of pipeline `{pipeline}` stopped before shutdown: {reason}")]
    ExtensionExited {
        /// `group/pipeline`.
        pipeline: String,
        /// Extension id.
        extension: String,
        /// How it ended.
        reason: String,
    },
    /// A node returned an error or panicked.
    #[error("node `{node}` of pipeline `{pipeline}` (core {core}) failed: {reason}")]
    Node {
        /// `group/pipeline`.
        pipeline: String,
        /// Node id.
        node: String,
        /// Core.
        core: usize,
        /// The error or panic message.
        reason: String,
    },
    /// A task did not finish before the shutdown deadline and was aborted.
    #[error(
        "`{task}` of pipeline `{pipeline}` did not stop within the shutdown timeout and was aborted"
    )]
    ShutdownTimeout {
        /// `group/pipeline`.
        pipeline: String,
        /// Node or extension id.
        task: String,
    },
    /// The engine could not start a thread or runtime.
    #[error("cannot start the engine: {0}")]
    Start(String),
}

fn last_report(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|why| format!(" (it last reported: {why})"))
        .unwrap_or_default()
}

/// The failures of a run, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct EngineError(pub Vec<Failure>);

/// Runs a resolved configuration.
pub struct Engine {
    resolved: Arc<ResolvedConfig>,
    options: RunOptions,
    shutdown: Arc<watch::Sender<bool>>,
    telemetry: Arc<Telemetry>,
}

type SharedLifecycle = (String, Lifecycle<Box<dyn SharedTask>>, Duration);
type LocalLifecycle = (String, Lifecycle<Box<dyn LocalTask>>, Duration);
/// `(pipeline, extension, core, health)`. Not the handle: telemetry must not keep an
/// extension's control channel open.
type WatchedExtension = (String, String, Option<usize>, ExtensionHealth);
/// `(pipeline, extension, core, state)`.
type ExtensionStatus = (String, String, Option<usize>, ExtensionState);

enum CoreCommand {
    Start,
    Abort,
}

impl Engine {
    /// An engine for `resolved`.
    pub fn new(resolved: ResolvedConfig, options: RunOptions) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            resolved: Arc::new(resolved),
            options,
            shutdown: Arc::new(shutdown),
            telemetry: Arc::new(Telemetry::default()),
        }
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
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

        // 1. Shared extensions, created once per pipeline.
        let mut shared_provisions: Vec<Vec<SharedProvisions>> = Vec::new();
        let mut shared_lifecycles: Vec<Vec<SharedLifecycle>> = Vec::new();
        for plan in &self.resolved.pipelines {
            let mut provisions = Vec::new();
            let mut lifecycles = Vec::new();
            match plan.create_shared_extensions(&self.resolved.source) {
                Ok(extensions) => {
                    for extension in extensions {
                        let (provision, lifecycle) = extension.into_parts();
                        let id = provision.extension_id().to_owned();
                        let timeout = startup_timeout(plan, &id);
                        self.telemetry.set_extension(
                            &pipeline_name(plan),
                            &id,
                            None,
                            ExtensionState::Created,
                        );
                        provisions.push(provision);
                        lifecycles.push((id, lifecycle, timeout));
                    }
                }
                Err(error) => failures.push(instantiate_failure(error)),
            }
            shared_provisions.push(provisions);
            shared_lifecycles.push(lifecycles);
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
        let mut claimed: BTreeSet<(usize, String)> = BTreeSet::new();
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
                .enumerate()
                .flat_map(|(index, lifecycles)| {
                    let plan = &self.resolved.pipelines[index];
                    let claimed = &claimed;
                    lifecycles
                        .into_iter()
                        .map(move |(id, lifecycle, timeout)| ToStart {
                            pipeline_index: index,
                            pipeline: pipeline_name(plan),
                            claimed: claimed.contains(&(index, id.clone())),
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
        for tx in &commands {
            let _ = tx.send(match command {
                CoreCommand::Start => CoreCommand::Start,
                CoreCommand::Abort => CoreCommand::Abort,
            });
        }
        let mut remaining = threads.len();
        let mut shutting_down_extensions = false;
        while remaining > 0 {
            match report_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(CoreReport::Finished { failures: f }) => {
                    failures.extend(f);
                    remaining -= 1;
                }
                Ok(CoreReport::Constructed { .. }) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
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

fn startup_timeout(plan: &PipelinePlan, extension: &str) -> Duration {
    plan.extensions
        .iter()
        .find(|e| e.id == extension)
        .map(|e| e.startup_timeout)
        .unwrap_or(crate::extension::ExtensionFactory::DEFAULT_STARTUP_TIMEOUT)
}

fn instantiate_failure(error: InstantiateError) -> Failure {
    Failure::Instantiate(error.to_string())
}

enum CoreReport {
    Constructed { claims: Vec<(usize, String)> },
    Finished { failures: Vec<Failure> },
}

struct CoreWorker {
    core: usize,
    cores: usize,
    resolved: Arc<ResolvedConfig>,
    shared: Arc<Vec<Vec<SharedProvisions>>>,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
    telemetry: Arc<Telemetry>,
    /// What this core's nodes see through [`ShutdownSignal`].
    stop: watch::Sender<Option<StopRequest>>,
    /// Each node's cell shared by all cores, by `(pipeline index, node id)`.
    node_shared: Arc<HashMap<(usize, String), NodeShared>>,
}

/// One pipeline instance on one core, constructed and not yet started.
struct BuiltPipeline {
    index: usize,
    name: String,
    extensions: Vec<LocalLifecycle>,
    nodes: Vec<(String, NodeInstance, Arc<NodeCounters>)>,
    claims: BTreeSet<String>,
    // Keeps the local capabilities alive as long as the pipeline instance.
    _provisions: Vec<LocalProvisions>,
}

impl CoreWorker {
    fn run(
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
            .flat_map(|p| p.claims.iter().map(move |id| (p.index, id.clone())))
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
                let (provision, lifecycle) = extension.into_parts();
                let id = provision.extension_id().to_owned();
                self.telemetry
                    .set_extension(&name, &id, Some(self.core), ExtensionState::Created);
                extensions.push((id.clone(), lifecycle, startup_timeout(plan, &id)));
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
                    shared: self
                        .node_shared
                        .get(&(index, node.id.clone()))
                        .cloned()
                        .unwrap_or_default(),
                };
                let config_path = node.path.key("config");
                let config = ComponentConfig::new(&node.config, &config_path, &source.positions);
                let mut capabilities =
                    Capabilities::for_node(node, &provisions, &self.shared[index]);
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
                        for (_, extension) in &node.bindings {
                            if !unclaimed.iter().any(|(_, e)| e == extension) {
                                claims.insert(extension.clone());
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
                to_start.push(ToStart {
                    pipeline_index: pipeline.index,
                    pipeline: pipeline.name.clone(),
                    claimed: pipeline.claims.contains(&id),
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
    mut processor: Box<dyn crate::runtime::node::LocalProcessor>,
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
    mut exporter: Box<dyn crate::runtime::node::LocalExporter>,
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
