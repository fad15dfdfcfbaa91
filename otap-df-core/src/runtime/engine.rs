//! The engine: runs every pipeline of a resolved configuration, `cores` instances of each, one
//! single-threaded runtime per core.
//!
//! Order of events, on every path (success, node error, node panic, readiness timeout,
//! extension exit, signal):
//! 1. Shared extensions are created: the engine's (`engine.extensions`), each group's, then
//!    each pipeline's, once for all cores; each core creates its pipelines' local extensions
//!    and constructs its nodes (which claim their capabilities, innermost scope first).
//! 2. Extensions that some node claimed are started — shared ones on a small engine runtime,
//!    local ones on their core — outer scopes first (engine, group, pipeline), in declaration
//!    order within a scope, shared before local, before any node:
//!    each task has run up to its first suspension point before the next one is spawned, and
//!    the engine waits for those that probe readiness, each within its `startup_timeout`.
//!    Unclaimed and passive extensions are not started.
//! 3. Nodes run. Shutdown (a request, a signal, a failure) tells receivers to stop;
//!    processors and exporters drain what is in flight and finish.
//! 4. When every node of a pipeline on a core has finished, that pipeline's local extensions
//!    on the core are shut down, in reverse start order, with a deadline; shared extensions
//!    go last, after every core, in reverse start order too: a pipeline's, then its group's,
//!    then the engine's.
//!
//! Each pipeline runs as a *run* (`runtime/run.rs`): a reload ([`ReloadHandle`]) that adds
//! or changes a pipeline builds and starts a new run beside the running ones through the same
//! steps (its shared extensions, then on every core its local ones and its nodes), and only
//! then stops the run it replaces, which drains; its shared extensions stop once every core
//! is done with it. A new run that does not start is dropped and the old one stays. Each
//! extension of the engine or of a group is an instance of its own: a reload that cannot
//! update one in place creates and starts its successor first, builds the runs that bind it
//! against the successor, and stops the old instance once the last run bound to it is gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::watch;

use super::failure::{EngineError, Failure};
use super::options::{AdminAuthorizer, RunOptions, ShutdownHandle};
use super::protocol::{CoreReport, Cores, ReportSender};
use super::reload::{ReloadHandle, ReloadRequest, live_configs};
use super::room::EngineRoom;
use super::run::OuterInstances;
use super::shared::SharedInstances;
use super::telemetry::Telemetry;
use crate::resolve::ResolvedConfig;

/// Runs a resolved configuration.
pub struct Engine {
    resolved: Arc<ResolvedConfig>,
    options: RunOptions,
    shutdown: Arc<watch::Sender<bool>>,
    telemetry: Arc<Telemetry>,
    reloads: (
        std::sync::mpsc::Sender<ReloadRequest>,
        std::sync::mpsc::Receiver<ReloadRequest>,
    ),
    /// What the cores report, and through which a reload request wakes the engine.
    reports: (ReportSender, std::sync::mpsc::Receiver<(usize, CoreReport)>),
    admin: AdminAuthorizer,
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
            reloads: std::sync::mpsc::channel(),
            reports: std::sync::mpsc::channel(),
            admin: AdminAuthorizer::default(),
        }
    }

    /// The authorizer of the engine extension the admin endpoint binds
    /// (`engine.admin.capabilities`): filled once that extension's instance started, kept
    /// current across reloads.
    pub fn admin_authorizer(&self) -> AdminAuthorizer {
        self.admin.clone()
    }

    /// A handle that hands the running engine a new configuration (see [`ReloadHandle`]).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            requests: self.reloads.0.clone(),
            wake: self.reports.0.clone(),
        }
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The configuration it runs.
    pub fn resolved(&self) -> &ResolvedConfig {
        &self.resolved
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
        let mut room = EngineRoom {
            resolved: self.resolved.clone(),
            outer: OuterInstances::new(),
            superseded: BTreeSet::new(),
            options: self.options.clone(),
            shutdown: self.shutdown.clone(),
            telemetry: self.telemetry.clone(),
            runtime,
            failures: Vec::new(),
            shared: SharedInstances::new(self.telemetry.clone()),
            runs: HashMap::new(),
            next_id: 0,
            retiring: HashMap::new(),
            cores: Cores {
                reports: Some(self.reports.1),
                ..Cores::default()
            },
            report_to: Some(self.reports.0),
            live: live_configs(&self.resolved),
            admin: self.admin.clone(),
        };
        self.telemetry.set_config(self.resolved.clone());
        let result = room.run(&self.reloads.1);
        drop(room);
        result
    }
}
