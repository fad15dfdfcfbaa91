#![doc = include_str!("../README.md")]

pub mod capability;
pub mod identity;
pub mod secret;

pub use async_trait::async_trait;
#[doc(hidden)]
pub use linkme;
pub mod config;
pub mod extension;
pub mod memory_kv;
pub mod node;
pub mod refresh;
pub mod registry;
pub mod resolve;

/// Registers the types every build has: `extension:memory_kv`.
pub fn register_builtins(registry: &mut registry::Registry) {
    registry.register_extension(&memory_kv::MEMORY_KV);
}
pub mod data;
pub mod runtime;
