//! `extension:azure_auth`: the factory and the instance, a [`RefreshingToken`] (the token
//! consumers read, renewed by the shared [`Refresher`]) whose source is `azure_identity`.
//!
//! One instance serves every core (shared), so N cores make one token request, not N.

use std::sync::Arc;
use std::time::Duration;

use otap_df_core::capability::{BearerTokenProvider, CapabilityId, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionError, ExtensionFactory, Readiness, SharedExtension,
};
use otap_df_core::refresh::{Refresher, RefreshingToken};

use crate::config::AzureAuthConfig;
use crate::credential::TokenSource;

/// The default `startup_timeout` of an `azure_auth` extension: managed identity endpoints
/// can be slow on a cold start, and a failed first attempt is retried within it.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `extension:azure_auth`.
pub static AZURE_AUTH: ExtensionFactory = ExtensionFactory::new(
    "azure_auth",
    env!("CARGO_PKG_NAME"),
)
.description(
    "Microsoft Entra ID tokens through azure_identity (managed identity, workload identity, \
     client secret, Azure CLI), renewed ahead of expiry",
)
.provides(&[CapabilityId::BearerTokenProvider])
.default_startup_timeout(DEFAULT_STARTUP_TIMEOUT)
.validate_config(|config| decode(config).map(drop))
.shared(create)
.updates_in_place()
.build();

fn decode(
    config: &ComponentConfig<'_>,
) -> Result<AzureAuthConfig, otap_df_core::config::ConfigError> {
    AzureAuthConfig::decode(config, &|name| std::env::var(name).ok())
}

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = decode(config)?;
    let auth = Arc::new(AzureAuth::build(
        context.extension_id(),
        &config,
        |tokens| {
            tokens.with_metrics(
                context.counter("renewals"),
                context.counter("renewal_failures"),
                context.gauge("token_expiry_unix_seconds"),
            )
        },
    )?);
    let provider: Arc<dyn shared::BearerTokenProvider> = auth.tokens.clone();
    Ok(context
        .shared_builder()
        .provide::<BearerTokenProvider>(provider)
        .updatable(auth.clone())
        .active(
            Box::new(Refresher::new(auth.tokens.clone())),
            Readiness::Probe,
        )?)
}

/// The state of one `azure_auth` instance: a [`RefreshingToken`] whose source is
/// `azure_identity`.
#[derive(Debug)]
pub struct AzureAuth {
    tokens: Arc<RefreshingToken>,
}

impl AzureAuth {
    /// Resolves the configuration; makes no request.
    pub fn new(id: &str, config: &AzureAuthConfig) -> Result<Self, ExtensionError> {
        Self::build(id, config, |tokens| tokens)
    }

    fn build(
        id: &str,
        config: &AzureAuthConfig,
        finish: impl FnOnce(RefreshingToken) -> RefreshingToken,
    ) -> Result<Self, ExtensionError> {
        // A config built in code is checked as a decoded one.
        config
            .validate()
            .map_err(|invalid| ExtensionError::typed(id, invalid))?;
        let source = TokenSource::new(config).map_err(|error| ExtensionError::typed(id, error))?;
        let tokens = RefreshingToken::new(id, Arc::new(source), config.refresh, config.retry);
        Ok(Self {
            tokens: Arc::new(finish(tokens)),
        })
    }

    /// The token and its refreshes: what consumers read and the [`Refresher`] supplies.
    pub fn tokens(&self) -> &Arc<RefreshingToken> {
        &self.tokens
    }

    /// The extension id.
    pub fn id(&self) -> &str {
        self.tokens.id()
    }

    /// Takes a changed configuration (a reload): the next token request — made at once —
    /// uses it; the current token is served until that request answers. A configuration
    /// that cannot be resolved (an unreadable `tls.ca_file`) is refused and the current one
    /// stays.
    pub fn update(&self, config: &AzureAuthConfig) -> Result<(), ExtensionError> {
        let source = TokenSource::new(config)
            .map_err(|error| ExtensionError::typed(self.tokens.id(), error))?;
        self.tokens
            .update(Arc::new(source), config.refresh, config.retry);
        Ok(())
    }

    /// Tokens received so far.
    pub fn renewals(&self) -> u64 {
        self.tokens.renewals()
    }
}

impl otap_df_core::extension::ConfigUpdater for AzureAuth {
    fn update(&self, config: &ComponentConfig<'_>) -> Result<(), ExtensionError> {
        AzureAuth::update(self, &decode(config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_provider_with_a_thirty_second_startup_timeout() {
        assert_eq!(AZURE_AUTH.name(), "azure_auth");
        assert_eq!(AZURE_AUTH.startup_timeout(), Duration::from_secs(30));
        assert_eq!(AZURE_AUTH.provided(), &[CapabilityId::BearerTokenProvider]);
        assert!(AZURE_AUTH.shared_constructor().is_some());
        assert!(AZURE_AUTH.local_constructor().is_none());
    }
}
