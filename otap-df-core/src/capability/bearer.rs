//! Types of the bearer-token capabilities.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

pub use crate::identity::Identity;
use crate::secret::BearerToken;

/// The decision of a [`BearerTokenAuthorizer`](super::local::BearerTokenAuthorizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzDecision {
    /// The credential is accepted.
    Allow {
        /// Who the credential belongs to, as far as the authorizer knows (for logs and
        /// metrics; never the token itself).
        identity: Identity,
    },
    /// The credential is refused.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The request carried no credential.
    Missing,
    /// The credential is malformed or not one of the accepted tokens.
    Invalid,
    /// The credential was valid but has expired.
    Expired,
    /// The credential is valid and names its holder, who is not permitted here (a required
    /// claim, group or scope is missing): answered `403` / `PERMISSION_DENIED`, where the
    /// other reasons are `401` / `UNAUTHENTICATED`.
    Forbidden,
}

impl DenyReason {
    /// A stable lower-case name, for counters and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::Missing => "missing",
            DenyReason::Invalid => "invalid",
            DenyReason::Expired => "expired",
            DenyReason::Forbidden => "forbidden",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authorizer could not decide (its source of truth is unavailable). Callers fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authorizer `{authorizer}` could not decide: {message}")]
pub struct AuthorizeError {
    /// The extension id of the authorizer.
    pub authorizer: String,
    /// What went wrong (never contains a credential).
    pub message: String,
}

/// A token provider has no usable token to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token provider `{provider}` has no usable token: {message}")]
pub struct TokenError {
    /// The extension id of the provider.
    pub provider: String,
    /// What went wrong (never contains a token).
    pub message: String,
}

/// A provider's current token and its generation: what a `bearer_token_provider` keeps so
/// that `current_token` is one lock-free load (no lock, no allocation: an `arc-swap` load and
/// a reference-count increment) and `token_generation` one atomic read.
///
/// [`store`](Self::store) replaces the token, then advances the generation; consumers read
/// the generation first, then the token. So a consumer that sees a generation never pairs it
/// with a token older than the one stored before it.
#[derive(Debug, Default)]
pub struct TokenCell {
    token: ArcSwapOption<BearerToken>,
    generation: AtomicU64,
}

impl TokenCell {
    /// An empty cell (no token yet), at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current token.
    pub fn load(&self) -> Option<BearerToken> {
        self.token.load().as_deref().cloned()
    }

    /// Makes `token` (or none) the current token, and advances the generation.
    pub fn store(&self, token: Option<BearerToken>) {
        self.token.store(token.map(Arc::new));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every [`store`](Self::store).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A stream of tokens: the current one first, then each refreshed one.
///
/// Built on a `tokio::sync::watch` channel, so a slow subscriber skips intermediate tokens and
/// always gets the latest; it never holds up the provider.
#[derive(Debug)]
pub struct TokenSubscription {
    receiver: watch::Receiver<Option<BearerToken>>,
    // Keeps a fixed token's channel open, so that its subscription never ends.
    _fixed: Option<watch::Sender<Option<BearerToken>>>,
}

impl TokenSubscription {
    /// Subscribes to a provider's channel; the first [`next`](Self::next) yields the value
    /// already in it (if it is a token).
    pub fn new(mut receiver: watch::Receiver<Option<BearerToken>>) -> Self {
        receiver.mark_changed();
        Self {
            receiver,
            _fixed: None,
        }
    }

    /// A subscription to a token that never changes: yields it once, then waits forever.
    pub fn fixed(token: BearerToken) -> Self {
        let (sender, receiver) = watch::channel(Some(token));
        let mut subscription = Self::new(receiver);
        subscription._fixed = Some(sender);
        subscription
    }

    /// The next token: the current one on the first call (as soon as there is one), then
    /// each new one. `None` when the provider has shut down.
    pub async fn next(&mut self) -> Option<BearerToken> {
        loop {
            self.receiver.changed().await.ok()?;
            if let Some(token) = self.receiver.borrow_and_update().clone() {
                return Some(token);
            }
        }
    }

    /// The latest token without waiting.
    pub fn latest(&self) -> Option<BearerToken> {
        self.receiver.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscription_yields_current_then_each_refresh_then_ends() {
        let (sender, receiver) = watch::channel(None);
        let mut subscription = TokenSubscription::new(receiver);
        sender.send_replace(Some(BearerToken::new("first")));
        let first = subscription.next().await.expect("first token");
        assert_eq!(first.secret().expose(), "first");
        sender.send_replace(Some(BearerToken::new("second")));
        let second = subscription.next().await.expect("second token");
        assert_eq!(second.secret().expose(), "second");
        drop(sender);
        assert!(subscription.next().await.is_none());
    }

    #[tokio::test]
    async fn fixed_subscription_yields_its_token_at_once() {
        let mut subscription = TokenSubscription::fixed(BearerToken::new("static"));
        let token = subscription.next().await.expect("token");
        assert_eq!(token.secret().expose(), "static");
        assert_eq!(
            subscription
                .latest()
                .map(|t| t.secret().expose().to_owned()),
            Some("static".to_owned())
        );
    }
}
