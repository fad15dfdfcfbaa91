//! Types of the bearer-token capabilities.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

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

/// Who a credential belongs to: a name for logs, metrics and routing, never the token.
///
/// Cloning one made from a `&'static str` ([`from_static`](Self::from_static),
/// [`interned`](Self::interned)) copies a pointer. One made from an `Arc<str>` or a `String`
/// counts a reference in the one allocation every core shares: with a decision per request on
/// every core, that cache line moves between the cores at each request (measured: ≈ 200 ns per
/// decision with two threads deciding at once, BENCHMARKS.md). An authorizer whose names are
/// known in advance (from its configuration) gives static ones.
#[derive(Clone)]
pub struct Identity(IdentityName);

#[derive(Clone)]
enum IdentityName {
    Static(&'static str),
    Shared(Arc<str>),
    Described(Arc<Described>),
}

/// A name and the attributes an authorizer read with it (a token's tenant, groups).
struct Described {
    name: Box<str>,
    attributes: Box<[(Box<str>, Box<str>)]>,
}

impl Identity {
    /// An identity named by a static string.
    pub const fn from_static(name: &'static str) -> Self {
        Self(IdentityName::Static(name))
    }

    /// An identity named `name`, kept once per distinct name for the life of the process: the
    /// second call with the same name allocates nothing, and clones copy a pointer. For names
    /// drawn from configuration (bounded by it), not from credentials (a token's subject),
    /// which would grow the set without bound.
    pub fn interned(name: &str) -> Self {
        static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
            std::sync::Mutex::new(std::collections::BTreeSet::new());
        let mut names = NAMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = match names.get(name) {
            Some(&kept) => kept,
            None => {
                let kept: &'static str = Box::leak(name.into());
                names.insert(kept);
                kept
            }
        };
        Self::from_static(name)
    }

    /// An identity named `name` with `attributes` (name, value; a name may repeat: one
    /// value each, as for a token's groups), in the order given. Built by an authorizer
    /// that reads more than a name from a credential (a JWT's tenant and groups claims);
    /// exporters and processors read the attributes ([`attribute`](Self::attribute)).
    pub fn with_attributes<K, V>(
        name: impl Into<Box<str>>,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<Box<str>>,
        V: Into<Box<str>>,
    {
        Self(IdentityName::Described(Arc::new(Described {
            name: name.into(),
            attributes: attributes
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        })))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            IdentityName::Static(name) => name,
            IdentityName::Shared(name) => name,
            IdentityName::Described(described) => &described.name,
        }
    }

    /// The first value of attribute `name`, if the identity has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Every value of attribute `name`, in order.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes()
            .filter(move |(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// Whether, for each attribute `rule` names, the identity has one of the values listed;
    /// the attribute `name` stands for the identity's name. What receivers' `permissions`
    /// and `processor:identity_filter` ask.
    pub fn matches<'r>(
        &self,
        rule: impl IntoIterator<Item = (&'r String, &'r Vec<String>)>,
    ) -> bool {
        rule.into_iter().all(|(attribute, accepted)| {
            if attribute == "name" {
                accepted.iter().any(|value| self.as_str() == value)
            } else {
                self.attribute_values(attribute)
                    .any(|value| accepted.iter().any(|a| a == value))
            }
        })
    }

    /// Every attribute (name, value), in order; none for an identity that is only a name.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        let attributes: &[(Box<str>, Box<str>)] = match &self.0 {
            IdentityName::Described(described) => &described.attributes,
            _ => &[],
        };
        attributes.iter().map(|(key, value)| (&**key, &**value))
    }
}

impl From<Arc<str>> for Identity {
    fn from(name: Arc<str>) -> Self {
        Self(IdentityName::Shared(name))
    }
}

impl From<String> for Identity {
    fn from(name: String) -> Self {
        Self(IdentityName::Shared(name.into()))
    }
}

impl From<&'static str> for Identity {
    fn from(name: &'static str) -> Self {
        Self::from_static(name)
    }
}

impl std::ops::Deref for Identity {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Two identities are equal when their names and attributes are, whatever holds them.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() && self.attributes().eq(other.attributes())
    }
}

impl Eq for Identity {}

impl PartialEq<str> for Identity {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Identity {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Identity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)?;
        if let IdentityName::Described(described) = &self.0 {
            f.debug_map()
                .entries(described.attributes.iter().map(|(k, v)| (k, v)))
                .finish()?;
        }
        Ok(())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    #[test]
    fn an_identity_compares_by_name_whatever_holds_it_and_interning_keeps_one_copy() {
        let shared = Identity::from(String::from("tokens:tokens[0]"));
        let interned = Identity::interned("tokens:tokens[0]");
        assert_eq!(shared, interned);
        assert_eq!(interned, "tokens:tokens[0]");
        assert_eq!(
            format!("{interned} {interned:?}"),
            "tokens:tokens[0] \"tokens:tokens[0]\""
        );
        // The same name interned twice is the same bytes: nothing was kept a second time.
        let again = Identity::interned(&String::from("tokens:tokens[0]"));
        assert!(std::ptr::eq(interned.as_str(), again.as_str()));
        assert!(!std::ptr::eq(
            interned.as_str(),
            Identity::interned("tokens:tokens[1]").as_str()
        ));
        assert_eq!(Identity::from_static("fixed").len(), 5);
    }

    #[test]
    fn an_identity_with_attributes_answers_each_and_compares_them_too() {
        let tenant = Identity::with_attributes(
            "client-a",
            [("tenant", "acme"), ("groups", "writers"), ("groups", "ops")],
        );
        assert_eq!(tenant, "client-a");
        assert_eq!(tenant.attribute("tenant"), Some("acme"));
        assert_eq!(tenant.attribute("region"), None);
        assert_eq!(
            tenant.attribute_values("groups").collect::<Vec<_>>(),
            ["writers", "ops"]
        );
        assert_eq!(
            format!("{tenant:?}"),
            r#""client-a"{"tenant": "acme", "groups": "writers", "groups": "ops"}"#
        );
        assert_ne!(tenant, Identity::from_static("client-a"));
        assert_eq!(tenant, tenant.clone());
        assert_eq!(Identity::from_static("x").attributes().count(), 0);
    }

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
