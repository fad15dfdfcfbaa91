//! What a run shows while it runs: node counters and extension states, readable from any
//! thread (`records`: the values it reports; `counts`: sums of node counters).

mod counts;
mod records;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::extension::{ExtensionHandle, ExtensionHealth, ExtensionMetrics};
use crate::resolve::ResolvedConfig;

use counts::add_to;
pub(super) use counts::lost_in;
pub use records::{
    ExtensionMetricsOf, ExtensionState, ExtensionTransition, NodeStats, NodeTotals, RunPhase,
};

/// `(pipeline, extension, core, generation)`: one extension instance. The generation tells
/// apart the instances of one pipeline's extension before and after a reload replaced the
/// pipeline: the newest one not retired is the one shown.
type InstanceId = (String, String, Option<usize>, usize);
/// An instance and its health. Not the handle: telemetry must not keep an extension's
/// control channel open.
type WatchedExtension = (InstanceId, ExtensionHealth);
/// An instance and its state.
type ExtensionStatus = (InstanceId, ExtensionState);

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

/// The most transitions [`Telemetry::extension_transitions`] keeps: the newest.
pub const MAX_TRANSITIONS: usize = 1_000;

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
