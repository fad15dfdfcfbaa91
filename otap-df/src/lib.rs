#![doc = include_str!("../README.md")]

pub use otap_df_core as core;
pub use otap_df_core::binding::{Capabilities, ResolvedConfig, load};
pub use otap_df_core::capability::{Capability, CapabilityId};
pub use otap_df_core::config::{ConfigError, ConfigErrors};
pub use otap_df_core::extension::{ExtensionFactory, LocalExtension, SharedExtension};
pub use otap_df_core::node::NodeFactory;
pub use otap_df_core::registry::{Registry, RegistryError};
pub use otap_df_nodes as nodes;

use otap_df_core::config::ComponentKind;

/// A first-party extension crate: its type name and the cargo feature that compiles it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPartyExtension {
    /// The extension type name (`azure_auth`).
    pub name: &'static str,
    /// The `otap-df` feature that adds it (`extension-azure-auth`).
    pub feature: &'static str,
}

/// Every first-party extension, compiled in or not, so that a configuration naming one this
/// build leaves out is told which feature to enable.
pub const FIRST_PARTY_EXTENSIONS: &[FirstPartyExtension] = &[
    FirstPartyExtension {
        name: "azure_auth",
        feature: "extension-azure-auth",
    },
    FirstPartyExtension {
        name: "bearer_auth",
        feature: "extension-bearer-auth",
    },
    FirstPartyExtension {
        name: "redis_kv",
        feature: "extension-redis-kv",
    },
];

/// The registry of this build: core's built-ins, the built-in nodes, every enabled
/// extension feature, then whatever linked crates submitted through `linkme`.
pub fn registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    registry.register_linked();
    for extension in FIRST_PARTY_EXTENSIONS {
        registry.declare_not_compiled_in(
            ComponentKind::Extension,
            extension.name,
            extension.feature,
        );
    }
    registry.finish()
}
