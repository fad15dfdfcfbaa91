//! The runtime: the node model and the engine that runs resolved pipelines.

pub mod engine;
mod extensions;
pub mod node;
