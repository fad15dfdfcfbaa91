//! A configuration run on one core, as most engine tests run it: resolved against a registry
//! (the errors shown when it does not resolve), started, and its nodes' counters read.
//!
//! ```no_run
//! # let registry = otap_df_core::registry::Registry::new();
//! use otap_df_tests::engine;
//!
//! let yaml = "…"; // a pipeline that ends by itself (a generator with a `count`)
//! let telemetry = engine::run_to_end(engine::resolve(yaml, &registry));
//! assert_eq!(engine::totals(&telemetry, "out").counts.records_in, 1000);
//! ```

use std::sync::Arc;

use otap_df_core::registry::Registry;
use otap_df_core::resolve::{ResolvedConfig, load_with_env};
use otap_df_core::runtime::{
    Engine, EngineError, NodeTotals, ReloadHandle, RunOptions, RunPhase, ShutdownHandle, Telemetry,
};

/// Resolves `yaml` (named `test.yaml` in errors) against `registry`; `${env:…}` reads nothing.
///
/// # Panics
/// When it does not resolve, with every error and the text.
pub fn resolve(yaml: &str, registry: &Registry) -> ResolvedConfig {
    load_with_env(yaml, "test.yaml", registry, &|_| None)
        .unwrap_or_else(|errors| panic!("invalid test config: {errors}\n{yaml}"))
}

/// The options of a one-core run: one worker, the rest as configured by default.
pub fn one_core_options() -> RunOptions {
    RunOptions {
        cores: Some(1),
        ..RunOptions::default()
    }
}

/// An engine for `resolved` on one core, not started.
pub fn one_core(resolved: ResolvedConfig) -> Engine {
    Engine::new(resolved, one_core_options())
}

/// Runs `resolved` on one core until it ends by itself; its telemetry.
///
/// # Panics
/// When the run fails, with the error.
pub fn run_to_end(resolved: ResolvedConfig) -> Arc<Telemetry> {
    let engine = one_core(resolved);
    let telemetry = engine.telemetry();
    if let Err(error) = engine.run() {
        panic!("the run failed: {error}");
    }
    telemetry
}

/// An engine running on a thread of its own: what a test watches it with, and how it ends.
pub struct Started {
    /// Its telemetry, live.
    pub telemetry: Arc<Telemetry>,
    /// Asks it to shut down gracefully.
    pub shutdown: ShutdownHandle,
    /// Hands it a new configuration.
    pub reload: ReloadHandle,
    thread: std::thread::JoinHandle<Result<(), EngineError>>,
}

/// Starts `engine` on a thread of its own.
pub fn start(engine: Engine) -> Started {
    Started {
        telemetry: engine.telemetry(),
        shutdown: engine.shutdown_handle(),
        reload: engine.reload_handle(),
        thread: std::thread::spawn(move || engine.run()),
    }
}

impl Started {
    /// Shuts it down gracefully; how the run ended.
    ///
    /// # Panics
    /// When the engine's thread panicked.
    pub fn stop(self) -> Result<(), EngineError> {
        self.shutdown.request();
        self.join()
    }

    /// Waits, up to `bound`, until the run has started: every node built and counted in its
    /// telemetry (a receiver's socket accepts connections earlier, from the pipeline's build
    /// on). Whether it runs: false when it failed to start, ended, or is still starting at
    /// the bound.
    pub fn wait_running(&self, bound: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + bound;
        loop {
            match self.telemetry.phase() {
                RunPhase::Starting => {}
                RunPhase::Running => return true,
                _ => return false,
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            // Readiness poll, bounded by the deadline.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Whether the run has ended (a test waiting for readiness stops waiting then).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits until the run ends by itself; how it ended.
    ///
    /// # Panics
    /// When the engine's thread panicked.
    pub fn join(self) -> Result<(), EngineError> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => panic!("the engine's thread panicked"),
        }
    }
}

/// Node `node`'s counters summed over its instances.
///
/// # Panics
/// When no node has that id.
pub fn totals(telemetry: &Telemetry, node: &str) -> NodeTotals {
    telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == node)
        .unwrap_or_else(|| panic!("no node `{node}`"))
}

/// A node's own counter `name` (0 when it never counted).
pub fn named(totals: &NodeTotals, name: &str) -> u64 {
    totals
        .named
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}
