//! `bearer_token_authorizer`: decides on the token of an incoming request.

use std::hash::{BuildHasher, RandomState};

use otap_df_core::capability::{AuthorizeError, AuthzDecision, DenyReason, Identity, shared};
use otap_df_core::secret::{AuthHeader, Credential, Secret};

use crate::extension::BearerAuth;

/// One accepted token and the identity a request that carries it is given.
#[derive(Debug, Clone)]
pub struct Accepted {
    token: Secret,
    identity: Identity,
}

impl Accepted {
    /// `token`, known as `identity` (`<extension>:<option>`, never the token). The name is
    /// interned ([`Identity::interned`]): names come from the configuration (option, file
    /// and line), so they are bounded by it, and a decision's clone of one writes to no
    /// memory that other cores share.
    pub fn new(token: Secret, identity: &str) -> Self {
        Self {
            token,
            identity: Identity::interned(identity),
        }
    }
}

/// The accepted tokens as served, each with its keyed hash.
///
/// A candidate is hashed once with a key drawn at random for this list, and only an entry
/// whose hash is the candidate's is compared byte for byte: one constant-time comparison per
/// decision however many tokens are accepted, where comparing each token cost about 4 ns a
/// token (BENCHMARKS.md). Without the key nobody can choose a token that collides with an
/// accepted one, and every hash is looked at without stopping, so the time taken still says
/// nothing about which token matched, or how close a wrong one came; it says whether one
/// matched, which the answer says anyway.
#[derive(Debug, Default)]
pub(crate) struct AcceptedTokens {
    key: RandomState,
    entries: Vec<(u64, Accepted)>,
}

impl AcceptedTokens {
    pub(crate) fn new(accepted: Vec<Accepted>) -> Self {
        let key = RandomState::new();
        let entries = accepted
            .into_iter()
            .map(|entry| (key.hash_one(entry.token.expose().as_bytes()), entry))
            .collect();
        Self { key, entries }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The first entry whose token is `credential`.
    fn find(&self, credential: Credential<'_>) -> Option<&Accepted> {
        let hash = self.key.hash_one(credential.expose().as_bytes());
        let mut found = None;
        for (entry_hash, entry) in &self.entries {
            // A wrong candidate's hash matches an entry's by chance once in 2^64; a match is
            // still confirmed on the bytes, in constant time.
            if *entry_hash == hash && found.is_none() && credential.ct_eq(&entry.token) {
                found = Some(entry);
            }
        }
        found
    }
}

impl shared::BearerTokenAuthorizer for BearerAuth {
    /// Looks the candidate up among the accepted tokens by its keyed hash and confirms a match
    /// in constant time (see `AcceptedTokens`). An empty token is `Deny(missing)`.
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if credential.is_empty() {
            self.counters.denied_missing.add(1);
            return Ok(AuthzDecision::Deny {
                reason: DenyReason::Missing,
            });
        }
        Ok(match self.accepted.load().find(credential) {
            Some(entry) => {
                self.counters.authorized.add(1);
                AuthzDecision::Allow {
                    identity: entry.identity.clone(),
                }
            }
            None => {
                self.counters.denied_invalid.add(1);
                AuthzDecision::Deny {
                    reason: DenyReason::Invalid,
                }
            }
        })
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }
}
