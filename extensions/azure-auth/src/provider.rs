//! `bearer_token_provider` on `azure_auth`: what consumers read — the current token (one
//! lock-free load), its generation, updates, and a fresh token on demand.

use otap_df_core::capability::{TokenError, TokenSubscription, shared};
use otap_df_core::secret::{AuthHeader, BearerToken};

#[cfg(doc)]
use otap_df_core::secret::EXPIRY_MARGIN;

use crate::extension::{AzureAuth, Trigger};

#[otap_df_core::async_trait]
impl shared::BearerTokenProvider for AzureAuth {
    /// One lock-free load and a reference-count increment, as `bearer_auth`'s; `None`
    /// before the first token. The refresh loop withdraws a token when it stops being
    /// usable ([`EXPIRY_MARGIN`] before its expiry), so none is handed out past its expiry.
    fn current_token(&self) -> Option<BearerToken> {
        self.stored()
    }

    fn token_generation(&self) -> u64 {
        self.token.generation()
    }

    fn subscribe(&self) -> TokenSubscription {
        TokenSubscription::new(self.updates.subscribe())
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    /// Asks the token service now, unless a request was made within `refresh.min_interval`
    /// or the extension is backing off after failures; then the current token, if usable.
    async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
        self.fetch(Trigger::Forced)
            .await
            .map_err(|message| TokenError {
                provider: self.id.clone(),
                message,
            })
    }
}
