//! One core: its thread and single-threaded runtime, the pipeline runs it builds (their
//! local extensions and node instances) on the engine's command, and the node tasks it
//! drives until every run has finished (the commands and reports: `protocol.rs`).
//!
//! By job: this file holds what a core owns and its thread; `build` constructs a run's local
//! extensions and nodes; `serve` answers the engine's commands and follows the tasks until
//! every run has ended; `nodes` spawns and drives the node tasks.

mod build;
mod nodes;
mod serve;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

use super::extensions::ExtensionTasks;
use super::failure::Failure;
use super::options::RunOptions;
use super::protocol::{CoreCommand, CoreReport, ReportSender};
use super::run::{Owner, PipelineRun};
use super::telemetry::Telemetry;
use crate::extension::{Lifecycle, LocalProvisions, LocalTask};
use crate::node::{ControlMessage, NodeCounters, NodeInstance, StopRequest};

type LocalLifecycle = (String, Lifecycle<Box<dyn LocalTask>>, Duration);
/// The extensions nodes claimed: whose instance, and its id.
type Claims = BTreeSet<(Owner, String)>;

pub(super) struct CoreWorker {
    pub(super) core: usize,
    pub(super) cores: usize,
    pub(super) options: RunOptions,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) telemetry: Arc<Telemetry>,
    /// What this core's nodes see through [`ShutdownSignal`](crate::node::ShutdownSignal).
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

impl CoreWorker {
    /// The core's thread: serves the engine's commands until every run has ended, then
    /// reports it finished.
    pub(super) fn run(self, commands: mpsc::UnboundedReceiver<CoreCommand>, reports: ReportSender) {
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
}
