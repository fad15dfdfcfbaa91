//! The `bearer_token_provider` and `bearer_token_authorizer` behaviour suites.
//!
//! Each runner takes a function that builds the implementation under test with what the suite
//! needs to know about it (the token it serves, the tokens it accepts, how to rotate its
//! source), runs every case on a fresh instance, and panics with the list of failed cases and
//! why. Shared implementations run through the shared-as-local adapter, as local nodes see
//! them.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use otap_df_core::capability::{
    AuthzDecision, BearerTokenAuthorizer, BearerTokenProvider, Capability, DenyReason, local,
    shared,
};
use otap_df_core::secret::{BearerToken, Credential};

/// How long a rotated token may take to reach subscribers before the suite calls it a
/// failure. Generous: it bounds a wait, it is not a measurement.
pub const ROTATION_DEADLINE: Duration = Duration::from_secs(10);

/// Makes a provider's source serve a new token (writes the file, ...).
pub type Rotate = Box<dyn Fn(&str)>;

/// A token provider and what the suite may assume of it.
pub struct ProviderUnderTest {
    /// The provider.
    pub provider: Rc<dyn local::BearerTokenProvider>,
    /// The token it serves now.
    pub token: String,
    /// Makes its source serve another token; `None` for a source that cannot change.
    pub rotate: Option<Rotate>,
    /// Whatever must live as long as the provider (the runtime its refresh task runs on).
    pub keep_alive: Option<Box<dyn std::any::Any>>,
}

impl ProviderUnderTest {
    /// A shared provider, seen through the shared-as-local adapter.
    pub fn shared(
        provider: Arc<dyn shared::BearerTokenProvider>,
        token: impl Into<String>,
        rotate: Option<Rotate>,
    ) -> Self {
        Self {
            provider: BearerTokenProvider::shared_as_local(provider),
            token: token.into(),
            rotate,
            keep_alive: None,
        }
    }

    /// Keeps `resource` alive while the cases run.
    pub fn keeping(mut self, resource: impl std::any::Any) -> Self {
        self.keep_alive = Some(Box::new(resource));
        self
    }
}

/// A token authorizer and the tokens it accepts.
pub struct AuthorizerUnderTest {
    /// The authorizer.
    pub authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    /// Every token it must accept (at least one).
    pub accepted: Vec<String>,
    /// Whatever must live as long as the authorizer (the runtime its key task runs on).
    pub keep_alive: Option<Box<dyn std::any::Any>>,
}

impl AuthorizerUnderTest {
    /// A local authorizer.
    pub fn local(authorizer: Rc<dyn local::BearerTokenAuthorizer>, accepted: &[&str]) -> Self {
        Self {
            authorizer,
            accepted: accepted.iter().map(|t| (*t).to_owned()).collect(),
            keep_alive: None,
        }
    }

    /// A shared authorizer, seen through the shared-as-local adapter.
    pub fn shared(authorizer: Arc<dyn shared::BearerTokenAuthorizer>, accepted: &[&str]) -> Self {
        Self::local(BearerTokenAuthorizer::shared_as_local(authorizer), accepted)
    }

    /// Keeps `resource` alive while the cases run.
    pub fn keeping(mut self, resource: impl std::any::Any) -> Self {
        self.keep_alive = Some(Box::new(resource));
        self
    }
}

type Outcome = Pin<Box<dyn Future<Output = Result<(), String>>>>;
/// A named case of a suite.
type Case<T> = (&'static str, fn(T) -> Outcome);

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn run_cases<T>(suite: &str, name: &str, make: impl Fn() -> T, cases: &[Case<T>]) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("{suite} suite: cannot start a runtime: {error}"),
    };
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(case, run)| {
            runtime
                .block_on(run(make()))
                .err()
                .map(|why| format!("  {case}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{suite} suite on `{name}`: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

async fn next_within(
    subscription: &mut otap_df_core::capability::TokenSubscription,
) -> Result<BearerToken, String> {
    match tokio::time::timeout(ROTATION_DEADLINE, subscription.next()).await {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err("the subscription ended".into()),
        Err(_) => Err(format!("no token within {ROTATION_DEADLINE:?}")),
    }
}

fn serves(token: &Option<BearerToken>, expected: &str) -> bool {
    token
        .as_ref()
        .is_some_and(|t| t.secret().expose() == expected)
}

fn provider_current_token(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        let generation = t.provider.token_generation();
        let current = t.provider.current_token();
        check(serves(&current, &t.token), || {
            "current_token() is not the configured token".into()
        })?;
        check(t.provider.token_generation() == generation, || {
            "token_generation() changed while the token did not".into()
        })?;
        check(current.is_some_and(|c| c.is_usable()), || {
            "current_token() is not usable".into()
        })
    })
}

fn provider_subscription_first(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        let mut subscription = t.provider.subscribe();
        let first = next_within(&mut subscription).await?;
        check(first.secret().expose() == t.token, || {
            "the subscription's first token is not the current one".into()
        })
    })
}

fn provider_fresh_token(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        let fresh = t
            .provider
            .fresh_token()
            .await
            .map_err(|e| format!("fresh_token() failed: {e}"))?;
        check(
            fresh.secret().expose() == t.token && fresh.is_usable(),
            || "fresh_token() is not the configured, usable token".into(),
        )
    })
}

fn provider_header_round_trip(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        let header = t.provider.header();
        check(
            !header.name().is_empty() && header.name() == header.name().to_ascii_lowercase(),
            || format!("header name `{}` is empty or not lower-case", header.name()),
        )?;
        let token = BearerToken::new(t.token.clone());
        let rendered = header.render(&token);
        let parsed = header
            .parse(rendered.expose())
            .map_err(|e| format!("the rendered header does not parse back: {e}"))?;
        check(parsed.matches(&token), || {
            "the rendered header parses back to another token".into()
        })
    })
}

fn provider_redacts(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        let current = t.provider.current_token();
        let header = current
            .as_ref()
            .map(|token| t.provider.header().render(token));
        let shown = format!(
            "{current:?} {} {header:?} {:?}",
            current
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            t.provider.header()
        );
        check(!shown.contains(&t.token), || {
            "the token appears in Debug or Display output".into()
        })
    })
}

fn provider_rotation(t: ProviderUnderTest) -> Outcome {
    Box::pin(async move {
        // Held to the end of the case: the source's refresh task may live in it.
        let _keep_alive = t.keep_alive;
        let Some(rotate) = t.rotate else {
            return Ok(());
        };
        let mut subscription = t.provider.subscribe();
        next_within(&mut subscription).await?;
        let before = t.provider.token_generation();
        let rotated = format!("{}-rotated", t.token);
        rotate(&rotated);
        let next = next_within(&mut subscription).await?;
        check(next.secret().expose() == rotated, || {
            "after a rotation the subscription yielded another token".into()
        })?;
        check(t.provider.token_generation() != before, || {
            "after a rotation token_generation() is unchanged: consumers keep the old token".into()
        })?;
        check(serves(&t.provider.current_token(), &rotated), || {
            "after a rotation current_token() is not the new token".into()
        })?;
        let again = format!("{}-again", t.token);
        rotate(&again);
        let fresh = t
            .provider
            .fresh_token()
            .await
            .map_err(|e| format!("fresh_token() after a rotation failed: {e}"))?;
        check(fresh.secret().expose() == again, || {
            "fresh_token() right after a rotation did not re-read the source".into()
        })
    })
}

/// Runs every `bearer_token_provider` case; panics listing the failures.
pub fn run_provider(name: &str, make: impl Fn() -> ProviderUnderTest) {
    run_cases(
        "bearer_token_provider",
        name,
        make,
        &[
            ("current_token_is_the_served_token", provider_current_token),
            (
                "subscription_yields_the_current_token_first",
                provider_subscription_first,
            ),
            ("fresh_token_is_the_served_token", provider_fresh_token),
            ("header_renders_and_parses_back", provider_header_round_trip),
            ("token_never_shown", provider_redacts),
            (
                "rotation_reaches_subscribers_current_and_fresh_token",
                provider_rotation,
            ),
        ],
    );
}

/// Near misses of `token`: a prefix, an extension, a changed last byte, another case.
fn near_misses(token: &str) -> Vec<String> {
    let mut misses = vec![format!("{token}x"), "x".repeat(token.len().max(1))];
    if token.len() > 1 {
        misses.push(token[..token.len() - 1].to_owned());
    }
    if let Some(last) = token.chars().last() {
        let flipped = if last == 'a' { 'b' } else { 'a' };
        misses.push(format!(
            "{}{flipped}",
            &token[..token.len() - last.len_utf8()]
        ));
    }
    let upper = token.to_ascii_uppercase();
    if upper != token {
        misses.push(upper);
    }
    misses
}

fn authorizer_allows(t: AuthorizerUnderTest) -> Outcome {
    Box::pin(async move {
        for (i, token) in t.accepted.iter().enumerate() {
            match t.authorizer.authorize(Credential::new(token)) {
                Ok(AuthzDecision::Allow { identity }) => check(
                    !identity.is_empty() && !identity.contains(token.as_str()),
                    || format!("accepted token #{i}: the identity is empty or holds the token"),
                )?,
                other => return Err(format!("accepted token #{i}: {other:?}")),
            }
        }
        Ok(())
    })
}

fn authorizer_denies_others(t: AuthorizerUnderTest) -> Outcome {
    Box::pin(async move {
        for token in &t.accepted {
            for miss in near_misses(token) {
                if t.accepted.contains(&miss) {
                    continue;
                }
                let decision = t.authorizer.authorize(Credential::new(&miss));
                check(
                    decision
                        == Ok(AuthzDecision::Deny {
                            reason: DenyReason::Invalid,
                        }),
                    || format!("a near miss of an accepted token: {decision:?}"),
                )?;
            }
        }
        Ok(())
    })
}

fn authorizer_missing(t: AuthorizerUnderTest) -> Outcome {
    Box::pin(async move {
        let decision = t.authorizer.authorize(Credential::new(""));
        check(
            decision
                == Ok(AuthzDecision::Deny {
                    reason: DenyReason::Missing,
                }),
            || format!("an empty token: {decision:?}, expected Deny(missing)"),
        )
    })
}

fn authorizer_stable(t: AuthorizerUnderTest) -> Outcome {
    Box::pin(async move {
        let token = Credential::new(&t.accepted[0]);
        let first = t.authorizer.authorize(token);
        for _ in 0..100 {
            let again = t.authorizer.authorize(token);
            check(again == first, || {
                format!("decisions differ: {first:?} then {again:?}")
            })?;
        }
        Ok(())
    })
}

/// Runs every `bearer_token_authorizer` case; panics listing the failures.
pub fn run_authorizer(name: &str, make: impl Fn() -> AuthorizerUnderTest) {
    run_cases(
        "bearer_token_authorizer",
        name,
        make,
        &[
            ("every_accepted_token_is_allowed", authorizer_allows),
            ("near_misses_are_denied_invalid", authorizer_denies_others),
            ("an_empty_token_is_denied_missing", authorizer_missing),
            ("decisions_are_stable", authorizer_stable),
        ],
    );
}
