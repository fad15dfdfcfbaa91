#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod authorizer;
mod config;
mod error;
mod extension;
mod provider;
mod token_source;

pub use config::{BearerAuthConfig, MAX_RELOAD_INTERVAL, MIN_RELOAD_INTERVAL};
pub use error::BearerAuthError;
pub use extension::{BEARER_AUTH, BearerAuth};
pub use token_source::{FileError, FileProblem};

/// What this crate's own tests drive directly; not part of its API.
#[doc(hidden)]
pub mod testing {
    pub use crate::extension::Reloader;
}

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
