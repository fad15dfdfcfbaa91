//! `bearer_token_provider`: the token a client sends.

use otap_df_core::capability::{TokenError, TokenSubscription, shared};
use otap_df_core::secret::{AuthHeader, BearerToken};

use crate::extension::BearerAuth;

#[otap_df_core::async_trait]
impl shared::BearerTokenProvider for BearerAuth {
    /// One lock-free load and a reference-count increment; no allocation.
    fn current_token(&self) -> Option<BearerToken> {
        self.client.load()
    }

    fn token_generation(&self) -> u64 {
        self.client.generation()
    }

    fn subscribe(&self) -> TokenSubscription {
        TokenSubscription::new(self.updates.subscribe())
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    /// Re-reads a token file now (a server may have rejected a token the file has since
    /// replaced). A broken file leaves the last good token, which is returned.
    async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
        if self.client_file() {
            for error in self.reload().await {
                tracing::warn!(extension = %self.id, "{error}; serving the last good token");
            }
        }
        self.current_token().ok_or_else(|| TokenError {
            provider: self.id.clone(),
            message: self.no_client_token().to_owned(),
        })
    }
}
