//! The bearer-token behaviour suites on the test fixture, so the suites themselves are known
//! to pass on a correct implementation.

use std::sync::Arc;

use otap_df_tests::bearer_suite::{self, AuthorizerUnderTest, ProviderUnderTest};
use otap_df_tests::fixtures::FixedToken;

#[test]
fn fixed_token_passes_the_provider_suite() {
    bearer_suite::run_provider("fixed_token", || {
        ProviderUnderTest::shared(
            Arc::new(FixedToken::new("s3cr3t-token")),
            "s3cr3t-token",
            None,
        )
    });
}

#[test]
fn fixed_token_passes_the_authorizer_suite() {
    bearer_suite::run_authorizer("fixed_token", || {
        AuthorizerUnderTest::shared(Arc::new(FixedToken::new("s3cr3t-token")), &["s3cr3t-token"])
    });
}

/// Accepts any non-empty token: the suite must catch it.
struct AcceptsAnything(otap_df_core::secret::AuthHeader);

impl otap_df_core::capability::shared::BearerTokenAuthorizer for AcceptsAnything {
    fn authorize(
        &self,
        credential: otap_df_core::secret::Credential<'_>,
    ) -> Result<otap_df_core::capability::AuthzDecision, otap_df_core::capability::AuthorizeError>
    {
        use otap_df_core::capability::{AuthzDecision, DenyReason, Identity};
        Ok(if credential.is_empty() {
            AuthzDecision::Deny {
                reason: DenyReason::Missing,
            }
        } else {
            AuthzDecision::Allow {
                identity: Identity::from_static("anyone"),
            }
        })
    }

    fn header(&self) -> &otap_df_core::secret::AuthHeader {
        &self.0
    }
}

#[test]
#[should_panic(expected = "near_misses_are_denied_invalid")]
fn the_authorizer_suite_catches_an_authorizer_that_accepts_near_misses() {
    bearer_suite::run_authorizer("accepts_anything", || {
        AuthorizerUnderTest::shared(
            Arc::new(AcceptsAnything(Default::default())),
            &["s3cr3t-token"],
        )
    });
}
