//! The bound `bearer_token_authorizer` asked about a request's credential. It fails closed:
//! an authorizer that cannot decide refuses the request.

use std::collections::BTreeMap;
use std::rc::Rc;

use http::{HeaderName, HeaderValue};
use otap_df_core::capability::{AuthorizeError, AuthzDecision, DenyReason, Identity, local};
use otap_df_core::data::Signal;
use otap_df_core::node::{NodeContext, NodeError};
use otap_df_core::secret::Credential;
use serde::Deserialize;

use super::{Reason, Refusal};

/// The bound authorizer and the header (HTTP) or metadata key (gRPC) it reads, parsed once
/// rather than per request.
#[derive(Clone)]
pub(crate) struct Authorization {
    pub(crate) authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    pub(crate) header: HeaderName,
    /// Whether its decisions wait (`authorize_waiting`): asked once. A receiver checks such a
    /// credential with [`check_waiting`](Self::check_waiting) once the request's head is
    /// checked, and with [`check`](Self::check) otherwise, on the head's first checks.
    pub(crate) waits: bool,
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
        let waits = authorizer.waits();
        Ok(Self {
            authorizer,
            header,
            waits,
        })
    }

    /// The scheme a `401` names (`WWW-Authenticate`): the authorizer's, or `Bearer`.
    pub(crate) fn scheme(&self) -> &str {
        Some(self.authorizer.header().scheme())
            .filter(|s| !s.is_empty())
            .unwrap_or("Bearer")
    }

    /// Whether the credential in `values` (every value of the header in the request) is
    /// accepted, decided at once, and whose it is (an authorizer that [`waits`](Self::waits)
    /// is asked by [`check_waiting`](Self::check_waiting) instead: `None` here).
    pub(crate) fn check<'h>(
        &self,
        values: impl Iterator<Item = &'h HeaderValue>,
    ) -> Result<Option<Identity>, Refusal> {
        if self.waits {
            return Ok(None);
        }
        let credential = self.credential(values)?;
        answer(self.authorizer.authorize(credential)).map(Some)
    }

    /// [`check`](Self::check) for an authorizer that waits: `None` for one that does not.
    pub(crate) async fn check_waiting<'h>(
        &self,
        values: impl Iterator<Item = &'h HeaderValue>,
    ) -> Result<Option<Identity>, Refusal> {
        if !self.waits {
            return Ok(None);
        }
        let credential = self.credential(values)?;
        answer(self.authorizer.authorize_waiting(credential).await).map(Some)
    }

    /// The one credential in `values`, borrowed from the request's header (authorizing
    /// allocates nothing).
    fn credential<'h>(
        &self,
        mut values: impl Iterator<Item = &'h HeaderValue>,
    ) -> Result<Credential<'h>, Refusal> {
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
        value
            .to_str()
            .ok()
            .and_then(|value| self.authorizer.header().credential(value).ok())
            .ok_or_else(|| not_accepted(Reason::AuthInvalid))
    }
}

fn not_accepted(reason: Reason) -> Refusal {
    Refusal::new(reason, "the credential is not accepted")
}

/// The authorizer's answer as the request's fate: whose it is, or why it is refused.
fn answer(decision: Result<AuthzDecision, AuthorizeError>) -> Result<Identity, Refusal> {
    match decision {
        Ok(AuthzDecision::Allow { identity }) => Ok(identity),
        Ok(AuthzDecision::Deny { reason }) => Err(match reason {
            DenyReason::Missing => not_accepted(Reason::AuthMissing),
            DenyReason::Invalid => not_accepted(Reason::AuthInvalid),
            DenyReason::Expired => not_accepted(Reason::AuthExpired),
            DenyReason::Forbidden => Refusal::new(
                Reason::AuthForbidden,
                "the caller is not permitted to send here",
            ),
        }),
        Err(error) => {
            tracing::warn!(error = %error, "authorizer could not decide; request refused");
            Err(Refusal::new(
                Reason::AuthUnavailable,
                "authorization is unavailable; retry later",
            ))
        }
    }
}

/// `permissions:` of an OTLP receiver: which callers may send each signal, by their
/// identity (the bound authorizer's decision). A signal without a rule is open to every
/// authorized caller; one with a rule takes a caller whose identity has, for each attribute
/// the rule names (`name`: the identity's name), one of the values listed. Anyone else is
/// refused with `403` / `PERMISSION_DENIED`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Who may send logs.
    #[serde(default)]
    pub logs: Option<Rule>,
    /// Who may send metrics.
    #[serde(default)]
    pub metrics: Option<Rule>,
    /// Who may send traces.
    #[serde(default)]
    pub traces: Option<Rule>,
}

/// One signal's rule: attribute (or `name`) → the values accepted.
pub type Rule = BTreeMap<String, Vec<String>>;

impl Permissions {
    /// Whether no signal has a rule.
    pub fn is_empty(&self) -> bool {
        self.logs.is_none() && self.metrics.is_none() && self.traces.is_none()
    }

    /// The first rule that lists no value, as `(signal, attribute)`: it would refuse
    /// everyone.
    pub fn empty_rule(&self) -> Option<(&'static str, &str)> {
        [
            ("logs", &self.logs),
            ("metrics", &self.metrics),
            ("traces", &self.traces),
        ]
        .into_iter()
        .find_map(|(signal, rule)| {
            rule.as_ref()?
                .iter()
                .find(|(_, values)| values.is_empty())
                .map(|(attribute, _)| (signal, attribute.as_str()))
        })
    }

    /// Whether `identity` may send `signal`.
    pub(crate) fn check(&self, signal: Signal, identity: Option<&Identity>) -> Result<(), Refusal> {
        let rule = match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
        };
        let Some(rule) = rule else {
            return Ok(());
        };
        if identity.is_some_and(|identity| identity.matches(rule)) {
            Ok(())
        } else {
            Err(Refusal::new(
                Reason::AuthForbidden,
                format!("the caller is not permitted to send {}", signal.as_str()),
            ))
        }
    }
}
