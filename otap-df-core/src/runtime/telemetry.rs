//! What a run shows while it runs: node counters and extension states, readable from any
//! thread.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::extension::{
    ExtensionHandle, ExtensionHealth, ExtensionMetrics, ExtensionMetricsSnapshot,
};
use crate::node::{CounterSnapshot, NodeCounters};
use crate::resolve::ResolvedConfig;

/// `(pipeline, extension, core, generation)`: one extension instance. The generation tells
/// apart the instances of one pipeline's extension before and after a reload replaced the
/// pipeline: the newest one not retired is the one shown.
type InstanceId = (String, String, Option<usize>, usize);
/// An instance and its health. Not the handle: telemetry must not keep an extension's
/// control channel open.
type WatchedExtension = (InstanceId, ExtensionHealth);
/// An instance and its state.
type ExtensionStatus = (InstanceId, ExtensionState);

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

impl ExtensionState {
    /// Every state's name, as [`name`](Self::name) gives it.
    pub const NAMES: [&'static str; 8] = [
        "created",
        "passive",
        "starting",
        "ready",
        "degraded",
        "unclaimed",
        "stopped",
        "failed",
    ];

    /// The state's name: `ready`, `degraded`, ...
    pub fn name(&self) -> &'static str {
        match self {
            ExtensionState::Created => "created",
            ExtensionState::Passive => "passive",
            ExtensionState::Starting => "starting",
            ExtensionState::Ready => "ready",
            ExtensionState::Degraded(_) => "degraded",
            ExtensionState::Unclaimed => "unclaimed",
            ExtensionState::Stopped => "stopped",
            ExtensionState::Failed(_) => "failed",
        }
    }

    /// Why, for a degraded or failed extension.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ExtensionState::Degraded(why) | ExtensionState::Failed(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(why) => write!(f, "{}: {why}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// Where a run is, as its [`Telemetry`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunPhase {
    /// Extensions start and nodes are built; nothing runs yet.
    Starting,
    /// Every core was told to run its nodes.
    Running,
    /// A shutdown was requested, a pipeline finished or failed: the run drains.
    Stopping,
    /// The run is over.
    Stopped,
}

impl RunPhase {
    /// `starting`, `running`, `stopping` or `stopped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunPhase::Starting => "starting",
            RunPhase::Running => "running",
            RunPhase::Stopping => "stopping",
            RunPhase::Stopped => "stopped",
        }
    }

    const fn from_u8(value: u8) -> Self {
        match value {
            0 => RunPhase::Starting,
            1 => RunPhase::Running,
            2 => RunPhase::Stopping,
            _ => RunPhase::Stopped,
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
    /// The pipeline run it belongs to (its generation): once the run is retired, its counts
    /// are kept as sums and the instance is forgotten.
    pub run: usize,
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
    /// The node instances of the runs not retired.
    nodes: Mutex<Vec<NodeStats>>,
    /// The counts of the node instances of retired runs, summed per node in first-seen order:
    /// what a reload replaced still counts, and costs nothing per reload.
    settled: Mutex<Vec<NodeTotals>>,
    extensions: Mutex<Vec<ExtensionStatus>>,
    /// The lifecycle states extension instances were put in, in order: the newest
    /// [`MAX_TRANSITIONS`] (a degraded report is not a transition).
    transitions: Mutex<std::collections::VecDeque<ExtensionTransition>>,
    handles: Mutex<Vec<WatchedExtension>>,
    /// A [`RunPhase`], as its index.
    phase: std::sync::atomic::AtomicU8,
    /// Each extension instance's own counters and gauges.
    extension_metrics: Mutex<Vec<(InstanceId, Arc<ExtensionMetrics>)>>,
    /// The configuration the engine runs: the one it started with, then each reload's.
    config: Mutex<Option<Arc<ResolvedConfig>>>,
    /// Generations whose instances are gone (a replaced or discarded pipeline run, a
    /// replaced extension instance): what telemetry held of them is forgotten, and what
    /// comes for them later is not kept.
    retired: Mutex<BTreeSet<usize>>,
}

/// One extension instance's own counters and gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionMetricsOf {
    /// `group/pipeline`.
    pub pipeline: String,
    /// The extension's id.
    pub extension: String,
    /// Its core; `None` for a shared extension.
    pub core: Option<usize>,
    /// The values.
    pub metrics: ExtensionMetricsSnapshot,
}

/// The most transitions [`Telemetry::extension_transitions`] keeps: the newest.
pub const MAX_TRANSITIONS: usize = 1_000;

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
    pub(super) fn register_node(&self, stats: NodeStats) {
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
        generation: usize,
        state: ExtensionState,
    ) {
        {
            let mut transitions = self
                .transitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if transitions.len() == MAX_TRANSITIONS {
                transitions.pop_front();
            }
            transitions.push_back(ExtensionTransition {
                pipeline: pipeline.to_owned(),
                extension: extension.to_owned(),
                core,
                state: state.clone(),
            });
        }
        if self.is_retired(generation) {
            return;
        }
        let mut extensions = self
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (pipeline.to_owned(), extension.to_owned(), core, generation);
        match extensions.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = state,
            None => extensions.push((key, state)),
        }
    }

    /// Forgets the instances of `generation` (their pipeline run, or their extension
    /// instance, is gone), so that those of the run before or after it show again; its node
    /// instances' counts go into the settled sums.
    pub(super) fn retire(&self, generation: usize) {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(generation);
        let gone: Vec<NodeStats> = {
            let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
            let (gone, kept) = std::mem::take(&mut *nodes)
                .into_iter()
                .partition(|stats| stats.run == generation);
            *nodes = kept;
            gone
        };
        let mut settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        for stats in gone {
            add_to(&mut settled, &stats);
        }
        drop(settled);
        let of_generation = |key: &InstanceId| key.3 == generation;
        self.extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(key, _)| !of_generation(key));
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(key, _)| !of_generation(key));
        self.extension_metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(key, _)| !of_generation(key));
    }

    fn is_retired(&self, generation: usize) -> bool {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&generation)
    }

    /// Of `entries`, per instance key without generation, the one of the newest generation
    /// not retired; in first-registration order.
    fn current<T: Clone>(&self, entries: &[(InstanceId, T)]) -> Vec<(InstanceId, T)> {
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let mut current: Vec<(InstanceId, T)> = Vec::new();
        for (key, value) in entries.iter().filter(|(k, _)| !retired.contains(&k.3)) {
            let same = |k: &InstanceId| k.0 == key.0 && k.1 == key.1 && k.2 == key.2;
            match current.iter_mut().find(|(k, _)| same(k)) {
                Some(entry) if entry.0.3 <= key.3 => *entry = (key.clone(), value.clone()),
                Some(_) => {}
                None => current.push((key.clone(), value.clone())),
            }
        }
        current
    }

    pub(super) fn register_extension_metrics(
        &self,
        pipeline: &str,
        extension: &str,
        core: Option<usize>,
        generation: usize,
        metrics: Arc<ExtensionMetrics>,
    ) {
        if self.is_retired(generation) {
            return;
        }
        let key = (pipeline.to_owned(), extension.to_owned(), core, generation);
        self.extension_metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, metrics));
    }

    /// The configuration the engine runs (after the reloads it applied), once it started.
    pub fn config(&self) -> Option<Arc<ResolvedConfig>> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_config(&self, config: Arc<ResolvedConfig>) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = Some(config);
    }

    /// Every extension instance's own counters and gauges, in creation order.
    pub fn extension_metrics(&self) -> Vec<ExtensionMetricsOf> {
        let all = self
            .extension_metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.current(&all)
            .iter()
            .map(
                |((pipeline, extension, core, _), metrics)| ExtensionMetricsOf {
                    pipeline: pipeline.clone(),
                    extension: extension.clone(),
                    core: *core,
                    metrics: metrics.snapshot(),
                },
            )
            .collect()
    }

    /// Where the run is.
    pub fn phase(&self) -> RunPhase {
        RunPhase::from_u8(self.phase.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Moves the run to `phase`; a run never goes back to an earlier phase.
    pub(super) fn advance(&self, phase: RunPhase) {
        self.phase
            .fetch_max(phase as u8, std::sync::atomic::Ordering::AcqRel);
    }

    /// `Ok` when the run is ready to serve: it is running, and every extension instance that
    /// was started is ready (passive and unclaimed ones count as ready: they have nothing to
    /// start). Otherwise every reason, one per line's worth: the phase, and each extension
    /// starting, degraded, failed or stopped.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        let phase = self.phase();
        if phase != RunPhase::Running {
            reasons.push(format!("the engine is {}", phase.as_str()));
        }
        for (pipeline, extension, core, state) in self.extension_states() {
            let scope = crate::resolve::Scope::describe_label(&pipeline);
            let instance = match core {
                Some(core) => format!("extension `{extension}` of {scope} (core {core})"),
                None => format!("extension `{extension}` of {scope}"),
            };
            match state {
                ExtensionState::Ready | ExtensionState::Passive | ExtensionState::Unclaimed => {}
                ExtensionState::Created | ExtensionState::Starting => {
                    reasons.push(format!("{instance} is starting"));
                }
                other => reasons.push(format!("{instance} is {other}")),
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Per node, summed over cores and over the runs of its pipeline (those a reload
    /// replaced too), in registration order.
    pub fn node_totals(&self) -> Vec<NodeTotals> {
        let mut totals = self
            .settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for stats in self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            add_to(&mut totals, stats);
        }
        totals
    }

    pub(super) fn watch_extension(
        &self,
        pipeline: &str,
        extension: &str,
        core: Option<usize>,
        generation: usize,
        handle: &ExtensionHandle,
    ) {
        if self.is_retired(generation) {
            return;
        }
        let key = (pipeline.to_owned(), extension.to_owned(), core, generation);
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, handle.health()));
    }

    /// Every lifecycle state each extension instance was put in, in order: `created`, then
    /// `unclaimed`, `passive`, or `starting` → `ready` (or `failed: not ready`) → `stopped`;
    /// `failed: …` when its task ends early. The same for shared and local extensions.
    pub fn extension_transitions(&self) -> Vec<ExtensionTransition> {
        self.transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Every extension instance's state: `(pipeline, extension, core, state)`. A ready
    /// extension that reports itself degraded is [`ExtensionState::Degraded`].
    pub fn extension_states(&self) -> Vec<(String, String, Option<usize>, ExtensionState)> {
        let all = self
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let states = self.current(&all);
        let handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        states
            .into_iter()
            .map(|(key, mut state)| {
                if state == ExtensionState::Ready
                    && let Some(why) = handles
                        .iter()
                        .find(|(k, _)| *k == key)
                        .and_then(|(_, health)| health.degraded())
                {
                    state = ExtensionState::Degraded(why);
                }
                let (pipeline, extension, core, _) = key;
                (pipeline, extension, core, state)
            })
            .collect()
    }

    /// Records that nodes gave up without delivering or dead-lettering them: the sum of
    /// every node's [`LOST`](crate::node::LOST) counter.
    pub fn records_lost(&self) -> u64 {
        self.node_totals()
            .iter()
            .flat_map(|total| total.named.iter())
            .filter(|(name, _)| *name == crate::node::LOST)
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

    /// Adds `records` to what was lost at the shutdown deadline.
    pub(super) fn add_lost_at_deadline(&self, records: u64) {
        self.lost_at_deadline
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
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

/// Adds a node instance's counts to its node's sums in `totals` (a new entry at the end the
/// first time).
fn add_to(totals: &mut Vec<NodeTotals>, stats: &NodeStats) {
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

/// What one pipeline instance's nodes held when they were aborted, from their counters
/// (`counts` by node id): per node, what reached it (its upstream nodes' `out`) and it did
/// not take in (queued), plus what it took in and neither passed on, dropped nor failed
/// (held). Receivers hold nothing acknowledged.
pub(super) fn lost_in(
    plan: &crate::resolve::PipelinePlan,
    counts: impl Fn(&str) -> CounterSnapshot,
) -> u64 {
    let mut lost = 0;
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
    lost
}

#[cfg(test)]
mod tests {
    use super::ExtensionState;

    #[test]
    fn every_state_is_named_once_and_shows_its_reason() {
        let states = [
            ExtensionState::Created,
            ExtensionState::Passive,
            ExtensionState::Starting,
            ExtensionState::Ready,
            ExtensionState::Degraded("file gone".into()),
            ExtensionState::Unclaimed,
            ExtensionState::Stopped,
            ExtensionState::Failed("not ready".into()),
        ];
        let names: Vec<&str> = states.iter().map(ExtensionState::name).collect();
        assert_eq!(names, ExtensionState::NAMES);
        assert_eq!(states[4].to_string(), "degraded: file gone");
        assert_eq!(states[3].to_string(), "ready");
    }
}
