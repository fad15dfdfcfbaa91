//! Waiting for a `bearer_token_provider`'s next token in a test: bounded, so a provider that
//! never yields fails the test with a message instead of hanging it.

use std::time::Duration;

use otap_df_core::capability::TokenSubscription;
use otap_df_core::secret::BearerToken;

/// The next token `subscription` yields, within `bound`.
///
/// # Panics
/// When none comes within `bound`, or the subscription ends (the provider shut down).
pub async fn next_within(subscription: &mut TokenSubscription, bound: Duration) -> BearerToken {
    match tokio::time::timeout(bound, subscription.next()).await {
        Ok(Some(token)) => token,
        Ok(None) => panic!("the token subscription ended (the provider shut down)"),
        Err(_) => panic!("no token within {bound:?}"),
    }
}

/// The token's value, for comparing in a test.
pub fn value(token: &BearerToken) -> String {
    token.secret().expose().to_owned()
}
