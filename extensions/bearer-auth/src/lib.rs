#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod authorizer;
pub mod config;
pub mod error;
pub mod extension;
pub mod provider;
pub mod token_source;

pub use config::BearerAuthConfig;
pub use error::BearerAuthError;
pub use extension::{BEARER_AUTH, BearerAuth};

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:bearer_auth`.
pub const TYPE: &str = "extension:bearer_auth";

/// Registers `extension:bearer_auth`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&BEARER_AUTH);
}

// Self-registration: a binary that names this crate (`use otap_df_extension_bearer_auth as _;`)
// finds the extension through `Registry::register_linked` without calling `register`.
otap_df_core::submit_extension!(extension::BEARER_AUTH);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::BEARER_AUTH.name())
        );
    }
}
