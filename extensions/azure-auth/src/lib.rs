#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod config;
pub mod credential;
pub mod error;
pub mod extension;
pub mod provider;
pub mod schedule;

pub use config::{AzureAuthConfig, Method};
pub use error::AzureAuthError;
pub use extension::{AZURE_AUTH, AzureAuth};

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:azure_auth`.
pub const TYPE: &str = "extension:azure_auth";

/// Registers `extension:azure_auth`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&AZURE_AUTH);
}

// Self-registration: a binary that names this crate (`use otap_df_extension_azure_auth as _;`)
// finds the extension through `Registry::register_linked` without calling `register`.
otap_df_core::submit_extension!(extension::AZURE_AUTH);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::AZURE_AUTH.name())
        );
    }
}
