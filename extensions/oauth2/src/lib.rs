#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod client;
mod config;
mod error;
mod http;
pub mod jwt;
mod oidc;

pub use client::{DEFAULT_STARTUP_TIMEOUT, OAUTH2_CLIENT, OAuth2Client, TokenRequests};
pub use config::{
    ClientAuth, OAuth2ClientConfig, OidcAuthConfig, RefreshConfig, RetryConfig, TlsConfig,
};
pub use error::OAuth2Error;
pub use oidc::{KeyFetcher, MAX_TOKEN_LEN, OIDC_AUTH, OidcAuth};

use otap_df_core::registry::Registry;

/// The type name of the client: `type: extension:oauth2_client`.
pub const CLIENT_TYPE: &str = "extension:oauth2_client";

/// The type name of the authorizer: `type: extension:oidc_auth`.
pub const AUTHORIZER_TYPE: &str = "extension:oidc_auth";

/// Registers `extension:oauth2_client` and `extension:oidc_auth`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&OAUTH2_CLIENT);
    registry.register_extension(&OIDC_AUTH);
}

// Self-registration: a binary that names this crate finds both through
// `Registry::register_linked` without calling `register`.
otap_df_core::submit_extension!(client::OAUTH2_CLIENT);
otap_df_core::submit_extension!(oidc::OIDC_AUTH);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constants_name_the_registered_factories() {
        assert_eq!(
            super::CLIENT_TYPE,
            format!("extension:{}", super::OAUTH2_CLIENT.name())
        );
        assert_eq!(
            super::AUTHORIZER_TYPE,
            format!("extension:{}", super::OIDC_AUTH.name())
        );
    }
}
