//! What telemetry reports: extension states, the run's phase, node counters and their sums,
//! extension metrics and lifecycle transitions.

use std::fmt;
use std::sync::Arc;

use crate::extension::ExtensionMetricsSnapshot;
use crate::node::{CounterSnapshot, NodeCounters};

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

/// Where a run is, as its [`Telemetry`](super::Telemetry) reports it.
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

    pub(super) const fn from_u8(value: u8) -> Self {
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
