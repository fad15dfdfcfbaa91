//! The runtime: the engine that runs resolved pipelines, by job — `engine` (entry and the run's
//! order of events), `room` (what a run owns, and its steps), `shared` (the engine's shared
//! extension instances), `protocol` (the engine's commands to its cores and their reports),
//! `worker` (one core's thread, construction and node tasks), `extensions` (one start and one
//! stop routine for extension tasks), `instantiate` (extension creation), `run` (pipeline
//! runs), `reload` (live reconfiguration: planning, then execution), `options`, `failure`,
//! `telemetry`.
//!
//! Everything a user of the runtime needs is re-exported here.

mod engine;
mod extensions;
mod failure;
pub mod instantiate;
mod options;
mod protocol;
mod reload;
mod room;
mod run;
mod shared;
mod telemetry;
mod worker;

pub use engine::Engine;
pub use failure::{EngineError, Failure};
pub use options::{AdminAuthorizer, RunOptions, ShutdownHandle};
pub use reload::{ReloadHandle, ReloadOutcome};
pub use telemetry::{
    ExtensionMetricsOf, ExtensionState, ExtensionTransition, MAX_TRANSITIONS, NodeStats,
    NodeTotals, RunPhase, Telemetry,
};
