#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod credential;
mod error;
mod extension;

pub use config::{
    AzureAuthConfig, AzureTls, MAX_DURATION, MIN_RETRY_INTERVAL, Method, RefreshConfig,
    RetryConfig, WORKLOAD_IDENTITY_ENV,
};
pub use error::AzureAuthError;
pub use extension::{AZURE_AUTH, AzureAuth, DEFAULT_STARTUP_TIMEOUT};

/// What this crate's own tests drive directly; not part of its API.
#[doc(hidden)]
pub mod testing {
    pub use otap_df_core::refresh::Refresher;
}

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
