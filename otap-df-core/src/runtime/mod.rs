//! The runtime: the engine that runs resolved pipelines, by job — `engine` (entry and the run's
//! order of events), `options`, `instantiate` (extension creation), `worker` (one core's thread,
//! construction and node tasks), `extensions` (one start and one stop routine for extension
//! tasks), `run` (pipeline runs), `reload` (live reconfiguration), `failure`, `telemetry`.

pub mod engine;
mod extensions;
mod failure;
pub mod instantiate;
mod options;
mod reload;
mod run;
mod telemetry;
mod worker;
