//! `bearer_token_authorizer`: decides on the token of an incoming request.

use std::sync::Arc;

use otap_df_core::capability::{AuthorizeError, AuthzDecision, DenyReason, shared};
use otap_df_core::secret::{AuthHeader, Credential, Secret};

use crate::extension::{BearerAuth, Counters};

/// One accepted token and the identity a request that carries it is given.
#[derive(Debug, Clone)]
pub struct Accepted {
    token: Secret,
    identity: Arc<str>,
}

impl Accepted {
    /// `token`, known as `identity` (`<extension>:<option>`, never the token).
    pub fn new(token: Secret, identity: String) -> Self {
        Self {
            token,
            identity: Arc::from(identity),
        }
    }
}

impl shared::BearerTokenAuthorizer for BearerAuth {
    /// Compares the candidate with every accepted token, each in constant time and without
    /// stopping at a match, so the time taken says nothing about which token, or which
    /// prefix, matched. An empty token is `Deny(missing)`.
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if credential.is_empty() {
            Counters::add(&self.counters.denied_missing);
            return Ok(AuthzDecision::Deny {
                reason: DenyReason::Missing,
            });
        }
        let accepted = self.accepted.load();
        let mut allowed: Option<&Accepted> = None;
        for entry in accepted.iter() {
            if credential.ct_eq(&entry.token) && allowed.is_none() {
                allowed = Some(entry);
            }
        }
        Ok(match allowed {
            Some(entry) => {
                Counters::add(&self.counters.authorized);
                AuthzDecision::Allow {
                    identity: entry.identity.clone(),
                }
            }
            None => {
                Counters::add(&self.counters.denied_invalid);
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
