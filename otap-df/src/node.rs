#![doc = include_str!("../docs/nodes.md")]
#![doc = "```rust"]
#![doc = include_str!("../docs/examples/sample.rs")]
#![doc = "```"]

pub use otap_df_core::node::*;

pub use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, BearerTokenProvider, Capability,
    CapabilityId, DenyReason, Identity, KeyValueStore, KvError, TokenError, TokenSubscription,
    key_value, local, shared,
};
pub use otap_df_core::config::{
    ComponentConfig, ComponentKind, ConfigError, PositionIndex, YamlPath,
};
pub use otap_df_core::data::{Encoding, OtlpPayload, Signal};
pub use otap_df_core::extension::{Capabilities, CapabilityError, ExecutionModel};
pub use otap_df_core::registry::Registry;
pub use otap_df_core::secret::{AuthHeader, BearerToken, Secret};
pub use otap_df_core::{async_trait, submit_node};

/// The `serde` a node's config derives with: `#[serde(crate = "otap_df::node::serde")]`.
pub use serde;

/// Durations in configs (`10m`, `250ms`): `#[serde(with = "otap_df::node::humantime_serde")]`.
pub use humantime_serde;

/// The contract of each capability a node can bind: what every call returns, its errors,
/// cost, cancellation, sizes and threads.
pub mod contract {
    #[doc = include_str!("../docs/key_value_store.md")]
    pub mod key_value_store {}

    #[doc = include_str!("../docs/bearer_token_provider.md")]
    pub mod bearer_token_provider {}

    #[doc = include_str!("../docs/bearer_token_authorizer.md")]
    pub mod bearer_token_authorizer {}
}
