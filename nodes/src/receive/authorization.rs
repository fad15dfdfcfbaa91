//! The bound `bearer_token_authorizer` asked about a request's credential. It fails closed:
//! an authorizer that cannot decide refuses the request.

use std::rc::Rc;

use http::{HeaderName, HeaderValue};
use otap_df_core::capability::{AuthzDecision, DenyReason, local};
use otap_df_core::node::{NodeContext, NodeError};

use super::{Reason, Refusal};

/// The bound authorizer and the header (HTTP) or metadata key (gRPC) it reads, parsed once
/// rather than per request.
#[derive(Clone)]
pub(crate) struct Authorization {
    pub(crate) authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    pub(crate) header: HeaderName,
}

impl Authorization {
    pub(crate) fn of(
        context: &NodeContext,
        authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    ) -> Result<Self, NodeError> {
        let name = authorizer.header().name();
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            context.error(format!(
                "the bound authorizer reads the header `{name}`, which is not a valid HTTP \
                 header name (letters, digits and !#$%&'*+-.^_`|~); configure the extension \
                 with a header such as `authorization` or `x-api-key`"
            ))
        })?;
        Ok(Self { authorizer, header })
    }

    /// The scheme a `401` names (`WWW-Authenticate`): the authorizer's, or `Bearer`.
    pub(crate) fn scheme(&self) -> &str {
        Some(self.authorizer.header().scheme())
            .filter(|s| !s.is_empty())
            .unwrap_or("Bearer")
    }

    /// Whether the credential in `values` (every value of the header in the request) is
    /// accepted.
    pub(crate) fn check<'h>(
        &self,
        mut values: impl Iterator<Item = &'h HeaderValue>,
    ) -> Result<(), Refusal> {
        let not_accepted = |reason| Refusal::new(reason, "the credential is not accepted");
        let Some(value) = values.next() else {
            return Err(Refusal::new(
                Reason::AuthMissing,
                "no credential; send a bearer token",
            ));
        };
        // HTTP allows one credential header (RFC 9110 §11.6.2); with two, which one a proxy
        // or the authorizer would look at is ambiguous: refuse rather than pick.
        if values.next().is_some() {
            return Err(Refusal::new(
                Reason::BadRequest,
                format!(
                    "more than one `{}` header; send one credential",
                    self.header
                ),
            ));
        }
        // Borrowed from the request's header: authorizing allocates nothing.
        let credential = value
            .to_str()
            .ok()
            .and_then(|value| self.authorizer.header().credential(value).ok())
            .ok_or_else(|| not_accepted(Reason::AuthInvalid))?;
        match self.authorizer.authorize(credential) {
            Ok(AuthzDecision::Allow { .. }) => Ok(()),
            Ok(AuthzDecision::Deny { reason }) => Err(not_accepted(match reason {
                DenyReason::Missing => Reason::AuthMissing,
                DenyReason::Invalid => Reason::AuthInvalid,
                DenyReason::Expired => Reason::AuthExpired,
            })),
            Err(error) => {
                tracing::warn!(error = %error, "authorizer could not decide; request refused");
                Err(Refusal::new(
                    Reason::AuthUnavailable,
                    "authorization is unavailable; retry later",
                ))
            }
        }
    }
}
