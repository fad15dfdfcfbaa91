#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use otap_df_core as core;
pub use otap_df_core::capability::{Capability, CapabilityId};
pub use otap_df_core::config::{ConfigError, ConfigErrors};
pub use otap_df_core::extension::Capabilities;
pub use otap_df_core::extension::{ExtensionFactory, LocalExtension, SharedExtension};
pub use otap_df_core::node::NodeFactory;
pub use otap_df_core::registry::{Registry, RegistryError};
pub use otap_df_core::resolve::{ResolvedConfig, load};
pub use otap_df_nodes as nodes;
/// The test kit `otap-df-tests` (feature `testkit`): the behaviour suite of each capability,
/// the Redis and TLS harnesses, fixtures.
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub use otap_df_tests as testkit;

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod admin;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod node;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod reload;
#[cfg(feature = "cli")]
mod sources;

use otap_df_core::config::ComponentKind;

/// The enabled first-party extension crates, by type name.
pub mod extensions {
    /// `extension:azure_auth` (feature `extension-azure-auth`, off by default).
    #[cfg(feature = "extension-azure-auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-azure-auth")))]
    pub use otap_df_extension_azure_auth as azure_auth;
    /// `extension:bearer_auth` (feature `extension-bearer-auth`, on by default).
    #[cfg(feature = "extension-bearer-auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-bearer-auth")))]
    pub use otap_df_extension_bearer_auth as bearer_auth;
    /// `extension:disk_kv` (feature `extension-disk-kv`, off by default).
    #[cfg(feature = "extension-disk-kv")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-disk-kv")))]
    pub use otap_df_extension_disk_kv as disk_kv;
    /// `extension:disk_queue` (feature `extension-disk-queue`, on by default).
    #[cfg(feature = "extension-disk-queue")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-disk-queue")))]
    pub use otap_df_extension_disk_queue as disk_queue;
    /// `extension:oauth2_client` and `extension:oidc_auth` (feature `extension-oauth2`, off
    /// by default).
    #[cfg(feature = "extension-oauth2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-oauth2")))]
    pub use otap_df_extension_oauth2 as oauth2;
    /// `extension:redis_kv` (feature `extension-redis-kv`, off by default).
    #[cfg(feature = "extension-redis-kv")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-redis-kv")))]
    pub use otap_df_extension_redis_kv as redis_kv;
    /// `extension:wasm` (feature `extension-wasm`, off by default: it compiles wasmtime).
    #[cfg(feature = "extension-wasm")]
    #[cfg_attr(docsrs, doc(cfg(feature = "extension-wasm")))]
    pub use otap_df_extension_wasm as wasm;
}

/// A first-party extension crate: its type name, the cargo feature that compiles it in, and
/// its `register` function when this build has it.
#[derive(Debug, Clone, Copy)]
pub struct FirstPartyExtension {
    /// The extension type name (`azure_auth`).
    pub name: &'static str,
    /// The feature that adds it, named with the facade crate (`otap-df/extension-azure-auth`),
    /// as `cargo build --features` takes it from any package that depends on `otap-df`.
    pub feature: &'static str,
    /// Its `register`, or `None` when the feature is off.
    pub register: Option<fn(&mut Registry)>,
}

/// Every first-party extension, compiled in or not, so that a configuration naming one this
/// build leaves out is told which feature to enable.
pub const FIRST_PARTY_EXTENSIONS: &[FirstPartyExtension] = &[
    FirstPartyExtension {
        name: "azure_auth",
        feature: "otap-df/extension-azure-auth",
        #[cfg(feature = "extension-azure-auth")]
        register: Some(otap_df_extension_azure_auth::register),
        #[cfg(not(feature = "extension-azure-auth"))]
        register: None,
    },
    FirstPartyExtension {
        name: "bearer_auth",
        feature: "otap-df/extension-bearer-auth",
        #[cfg(feature = "extension-bearer-auth")]
        register: Some(otap_df_extension_bearer_auth::register),
        #[cfg(not(feature = "extension-bearer-auth"))]
        register: None,
    },
    FirstPartyExtension {
        name: "disk_kv",
        feature: "otap-df/extension-disk-kv",
        #[cfg(feature = "extension-disk-kv")]
        register: Some(otap_df_extension_disk_kv::register),
        #[cfg(not(feature = "extension-disk-kv"))]
        register: None,
    },
    FirstPartyExtension {
        name: "disk_queue",
        feature: "otap-df/extension-disk-queue",
        #[cfg(feature = "extension-disk-queue")]
        register: Some(otap_df_extension_disk_queue::register),
        #[cfg(not(feature = "extension-disk-queue"))]
        register: None,
    },
    FirstPartyExtension {
        name: "oauth2_client",
        feature: "otap-df/extension-oauth2",
        #[cfg(feature = "extension-oauth2")]
        register: Some(otap_df_extension_oauth2::register),
        #[cfg(not(feature = "extension-oauth2"))]
        register: None,
    },
    FirstPartyExtension {
        name: "oidc_auth",
        feature: "otap-df/extension-oauth2",
        #[cfg(feature = "extension-oauth2")]
        register: Some(otap_df_extension_oauth2::register),
        #[cfg(not(feature = "extension-oauth2"))]
        register: None,
    },
    FirstPartyExtension {
        name: "redis_kv",
        feature: "otap-df/extension-redis-kv",
        #[cfg(feature = "extension-redis-kv")]
        register: Some(otap_df_extension_redis_kv::register),
        #[cfg(not(feature = "extension-redis-kv"))]
        register: None,
    },
    FirstPartyExtension {
        name: "wasm",
        feature: "otap-df/extension-wasm",
        #[cfg(feature = "extension-wasm")]
        register: Some(otap_df_extension_wasm::register),
        #[cfg(not(feature = "extension-wasm"))]
        register: None,
    },
];

/// The registry of this build: core's built-ins, the built-in nodes, every enabled
/// extension feature, then whatever linked crates submitted through `linkme`.
pub fn registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    for extension in FIRST_PARTY_EXTENSIONS {
        match extension.register {
            Some(register) => register(&mut registry),
            None => registry.declare_not_compiled_in(
                ComponentKind::Extension,
                extension.name,
                extension.feature,
            ),
        }
    }
    registry.register_linked();
    registry.finish()
}
