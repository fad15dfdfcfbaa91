//! The runtime: the node model and the engine that runs resolved pipelines.

pub mod engine;
mod extensions;
mod failure;
pub mod instantiate;
pub mod node;
mod options;
mod telemetry;
mod worker;
