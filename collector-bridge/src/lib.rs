//! The Rust side of otap-df's OpenTelemetry Collector bridge: otap-df extensions and pipeline
//! fragments as Collector components, in the Collector's process.
//!
//! The Go module beside this crate (`collector-bridge/otapdf`) registers Collector factories
//! whose instances call this crate through a small C ABI ([`ffi`], declared in
//! `include/otapdf_bridge.h`): each component runs an otap-df engine of its own on its own
//! threads, from the document [`fragment::build`] writes out of the component's Collector
//! configuration. OTLP protobuf bytes cross the boundary: borrowed from Go without a copy
//! (Go waits for the outcome), copied into the Collector's data model on the way back (Rust
//! does not wait: the answer arrives later). See the crate's README for the configurations.
//!
//! Rust callers (tests, an embedding that is not Go) use [`host`]'s functions directly.

mod events;
#[allow(unsafe_code)]
pub mod ffi;
pub mod fragment;
pub mod host;
mod mailbox;
mod nodes;

pub use host::Refusal;

/// What the bridge knows: core's built-ins, the built-in nodes, every first-party extension
/// but `wasm` (with feature `extension-wasm`, that too), whatever linked crates submitted, and
/// the bridge's own nodes.
pub fn registry() -> Result<otap_df::Registry, otap_df::RegistryError> {
    let mut registry = otap_df::Registry::new();
    otap_df::core::register_builtins(&mut registry);
    otap_df::nodes::register(&mut registry);
    otap_df_extension_azure_auth::register(&mut registry);
    otap_df_extension_bearer_auth::register(&mut registry);
    otap_df_extension_disk_kv::register(&mut registry);
    otap_df_extension_disk_queue::register(&mut registry);
    otap_df_extension_oauth2::register(&mut registry);
    otap_df_extension_redis_kv::register(&mut registry);
    #[cfg(feature = "extension-wasm")]
    otap_df_extension_wasm::register(&mut registry);
    #[cfg(not(feature = "extension-wasm"))]
    registry.declare_not_compiled_in(
        otap_df::core::config::ComponentKind::Extension,
        "wasm",
        "otap-df-collector-bridge/extension-wasm",
    );
    registry.register_linked();
    registry.register_node(&nodes::COLLECTOR_IN);
    registry.register_node(&nodes::COLLECTOR_OUT);
    registry.register_node(&nodes::COLLECTOR_CAPABILITIES);
    registry.finish()
}
