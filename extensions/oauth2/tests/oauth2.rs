//! Both extensions against a real OAuth2/OIDC server (the published `oauth2-mock-server`,
//! see `otap_df_tests::oidc_server`): tokens issued and renewed with each client
//! authentication, JWTs accepted with the identity their claims give, bad tokens refused, a
//! rotated key followed without a restart, and the kit's provider and authorizer suites.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use otap_df_core::capability::{AuthzDecision, DenyReason, Identity, shared};
use otap_df_core::secret::Credential;
use otap_df_tests::bearer_suite::{
    AuthorizerUnderTest, ProviderUnderTest, run_authorizer, run_provider,
};
use otap_df_tests::oidc_server::OidcServer;
use otap_df_tests::temp::TempDir;
use support::{DEADLINE, client, node_key, oidc, public_jwk, server, server_with};

/// The token endpoint's requests, parsed.
fn requests(server: &OidcServer) -> Vec<serde_json::Value> {
    serde_json::from_str(&server.requests()).unwrap()
}

/// The claims of a JWT (not verified: the authorizer tests do that).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn client_yaml(server: &OidcServer, auth: &str) -> String {
    format!(
        "{{ token_url: '{}', client_id: a, {auth}, scopes: [telemetry.write, logs.read], \
         audience: otap-df, retry: {{ initial_interval: 50ms, max_interval: 200ms }}, \
         refresh: {{ min_interval: 50ms }} }}",
        server.token_url()
    )
}

fn oidc_yaml(server: &OidcServer, more: &str) -> String {
    format!(
        "{{ issuer: '{}', audience: otap-df, algorithms: [RS256, ES256], \
         attributes: {{ tenant: tenant, groups: groups }}{more} }}",
        server.issuer()
    )
}

#[test]
fn client_secret_basic_and_post_get_tokens_with_the_scopes_and_audience() {
    let Some(server) = server("client_secret_basic_and_post") else {
        return;
    };
    let basic = client(&client_yaml(&server, "client_secret: secret-a")).ready();
    let token = basic.current().expect("a token once ready");
    let issued = claims(token.secret().expose());
    assert_eq!(issued["sub"], "a");
    assert_eq!(issued["aud"], "otap-df");
    assert_eq!(issued["scope"], "telemetry.write logs.read");
    assert!(token.is_usable());

    let dir = TempDir::new("oauth2-post");
    let secret_file = dir.path("secret");
    std::fs::write(&secret_file, "secret-a\n").unwrap();
    let post = client(&format!(
        "{{ token_url: '{}', client_id: a, client_secret_file: '{}', \
         client_auth: client_secret_post, extra_params: {{ resource: 'https://api.example' }} }}",
        server.token_url(),
        secret_file.display()
    ))
    .ready();
    assert!(post.current().is_some());

    let seen = requests(&server);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["method"], "client_secret_basic");
    assert_eq!(seen[0]["grant_type"], "client_credentials");
    assert_eq!(seen[0]["scope"], "telemetry.write logs.read");
    assert_eq!(seen[0]["audience"], "otap-df");
    assert_eq!(seen[1]["method"], "client_secret_post");
    assert_eq!(seen[1]["resource"], "https://api.example");
    assert_eq!(seen[1]["scope"], serde_json::Value::Null);
    assert!(seen.iter().all(|r| r["error"].is_null()), "{seen:?}");
}

#[test]
fn private_key_jwt_assertions_signed_with_rsa_and_ec_keys_are_accepted() {
    let rsa = node_key("rsa");
    let ec = node_key("ec");
    let clients = format!(
        r#""rs":{{"jwk":{},"kid":"rs-client"}},"es":{{"jwk":{}}}"#,
        public_jwk(&rsa),
        public_jwk(&ec)
    );
    let Some(server) = server_with("private_key_jwt", &clients) else {
        return;
    };
    let dir = TempDir::new("oauth2-jwt");
    for (id, key, more) in [("rs", &rsa, ", key_id: rs-client"), ("es", &ec, "")] {
        let key_file = dir.path(&format!("{id}.pem"));
        std::fs::write(&key_file, key).unwrap();
        let running = client(&format!(
            "{{ token_url: '{}', client_id: {id}, private_key_file: '{}'{more} }}",
            server.token_url(),
            key_file.display()
        ))
        .ready();
        let token = running.current().expect("a token");
        assert_eq!(claims(token.secret().expose())["sub"], id);
    }
    let seen = requests(&server);
    assert_eq!(
        seen.iter()
            .map(|r| (
                r["client_id"].as_str().unwrap(),
                r["method"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("rs", "private_key_jwt"), ("es", "private_key_jwt")],
        "{seen:?}"
    );
}

#[test]
fn a_token_is_renewed_before_it_expires_and_subscribers_get_the_new_one() {
    let Some(server) = server("renewal") else {
        return;
    };
    // 33 s: usable for 3 s (tokens are not sent within 30 s of their expiry), renewed at 80 %
    // of that.
    server.set_token_lifetime(33);
    let running = client(&client_yaml(&server, "client_secret: secret-a")).ready();
    let mut subscription = running.provider().subscribe();
    let first = running
        .runtime
        .block_on(async { tokio::time::timeout(DEADLINE, subscription.next()).await })
        .unwrap()
        .unwrap();
    let second = running
        .runtime
        .block_on(async { tokio::time::timeout(DEADLINE, subscription.next()).await })
        .expect("a renewed token within the deadline")
        .unwrap();
    assert_ne!(first.secret().expose(), second.secret().expose());
    assert!(second.is_usable());
    assert!(running.instance.tokens().renewals() >= 2);
    assert!(requests(&server).len() >= 2);
}

#[test]
fn refusals_are_misconfigured_and_outages_unavailable_and_no_secret_is_shown() {
    let Some(server) = server("classified_errors") else {
        return;
    };
    let wrong = client(&client_yaml(&server, "client_secret: not-the-secret"));
    let why = wrong.degraded_until(|why| why.contains("invalid_client"));
    assert!(
        why.starts_with("token request failed (misconfigured; "),
        "{why}"
    );
    assert!(!why.contains("not-the-secret"), "{why}");
    assert!(wrong.current().is_none());

    server.fail_next(503, 1);
    let flaky = client(&client_yaml(&server, "client_secret: secret-a"));
    let why = flaky.degraded_until(|why| why.contains("503"));
    assert!(
        why.starts_with("token request failed (unavailable; "),
        "{why}"
    );
    // The retry succeeds.
    let flaky = flaky.ready();
    assert!(flaky.current().is_some());
}

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

#[test]
fn token_exchange_trades_the_workloads_token_and_follows_its_rotation() {
    let Some(server) = server("token_exchange") else {
        return;
    };
    // 33 s: renewed about 2.4 s after each token (as in the renewal test).
    server.set_token_lifetime(33);
    let dir = TempDir::new("oauth2-exchange");
    let subject_file = dir.path("workload-token");
    let workload = |name: &str| {
        server.mint(
            "rs-1",
            &format!(r#"{{"sub":"{name}","aud":"sts","tenant":"acme"}}"#),
            3600,
        )
    };
    std::fs::write(&subject_file, format!("{}\n", workload("workload-1"))).unwrap();
    // A public client: the workload's token is the only credential.
    let public = client(&format!(
        "{{ token_url: '{}', grant_type: token_exchange, subject_token_file: '{}', \
         audience: otap-df, scopes: [telemetry.write], retry: {{ initial_interval: 50ms, \
         max_interval: 200ms }}, refresh: {{ min_interval: 50ms }} }}",
        server.token_url(),
        subject_file.display()
    ))
    .ready();
    let mut subscription = public.provider().subscribe();
    let first = public
        .runtime
        .block_on(async { tokio::time::timeout(DEADLINE, subscription.next()).await })
        .unwrap()
        .unwrap();
    let issued = claims(first.secret().expose());
    assert_eq!(issued["sub"], "workload-1");
    assert_eq!(issued["aud"], "otap-df");
    assert_eq!(issued["scope"], "telemetry.write");

    // The platform rotates the workload's token on disk: the next renewal presents it.
    std::fs::write(&subject_file, workload("workload-2")).unwrap();
    let renewed = public
        .runtime
        .block_on(async {
            tokio::time::timeout(DEADLINE, async {
                loop {
                    let token = subscription.next().await.expect("tokens");
                    if claims(token.secret().expose())["sub"] == "workload-2" {
                        return token;
                    }
                }
            })
            .await
        })
        .expect("a token for the rotated workload token within the deadline");
    assert!(renewed.is_usable());

    // The same grant with the client authenticated (`client_secret_basic`).
    let confidential = client(&format!(
        "{{ token_url: '{}', grant_type: token_exchange, subject_token_file: '{}', \
         client_id: a, client_secret: secret-a, \
         requested_token_type: 'urn:ietf:params:oauth:token-type:access_token' }}",
        server.token_url(),
        subject_file.display()
    ))
    .ready();
    assert_eq!(
        claims(confidential.current().expect("a token").secret().expose())["client_id"],
        "a"
    );

    let seen = requests(&server);
    assert!(
        seen.iter().all(|r| r["grant_type"] == TOKEN_EXCHANGE),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r["error"].is_null()), "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"),
        "{seen:?}"
    );
    assert_eq!(seen[0]["method"], "none");
    assert_eq!(seen[0]["client_id"], serde_json::Value::Null);
    assert_eq!(seen[0]["subject"], "workload-1");
    assert_eq!(seen[0]["audience"], "otap-df");
    let last = seen.last().unwrap();
    assert_eq!(last["method"], "client_secret_basic");
    assert_eq!(last["client_id"], "a");
    assert_eq!(last["subject"], "workload-2");
    assert_eq!(
        last["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
}

#[test]
fn jwt_bearer_presents_the_assertion_file_and_a_refused_one_is_misconfigured() {
    let Some(server) = server("jwt_bearer") else {
        return;
    };
    let dir = TempDir::new("oauth2-jwt-bearer");
    let good = dir.path("good");
    let aud = server.token_url();
    std::fs::write(
        &good,
        server.mint("rs-1", &format!(r#"{{"sub":"svc-x","aud":"{aud}"}}"#), 3600),
    )
    .unwrap();
    let accepted = client(&format!(
        "{{ token_url: '{aud}', grant_type: jwt_bearer, assertion_file: '{}' }}",
        good.display()
    ))
    .ready();
    let token = accepted.current().expect("a token");
    assert_eq!(claims(token.secret().expose())["sub"], "svc-x");

    // An assertion the service refuses (made for another audience): misconfigured, and
    // neither it nor any token in the status.
    let wrong = dir.path("wrong");
    std::fs::write(
        &wrong,
        server.mint(
            "rs-1",
            r#"{"sub":"svc-x","aud":"https://elsewhere.example"}"#,
            3600,
        ),
    )
    .unwrap();
    let refused = client(&format!(
        "{{ token_url: '{aud}', grant_type: jwt_bearer, assertion_file: '{}', \
         retry: {{ initial_interval: 50ms, max_interval: 200ms }} }}",
        wrong.display()
    ));
    let why = refused.degraded_until(|why| why.contains("invalid_grant"));
    assert!(
        why.starts_with("token request failed (misconfigured; "),
        "{why}"
    );
    assert!(!why.contains("eyJ"), "{why}");
    assert!(refused.current().is_none());

    let seen = requests(&server);
    assert_eq!(
        seen[0]["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(seen[0]["subject"], "svc-x");
    assert_eq!(seen[0]["method"], "none");
    assert!(seen[0]["error"].is_null(), "{seen:?}");
    assert_eq!(seen[1]["error"], "assertion aud https://elsewhere.example");
}

#[test]
fn oauth2_client_passes_the_provider_suite() {
    let Some(server) = server("provider_suite") else {
        return;
    };
    let yaml = client_yaml(&server, "client_secret: secret-a");
    run_provider("oauth2_client", || {
        let running = client(&yaml).ready();
        let provider: std::sync::Arc<dyn shared::BearerTokenProvider> = running.provider();
        let token = running.current().unwrap().secret().expose().to_owned();
        ProviderUnderTest::shared(provider, token, None).keeping(running)
    });
}

fn allow(decision: Result<AuthzDecision, otap_df_core::capability::AuthorizeError>) -> Identity {
    match decision {
        Ok(AuthzDecision::Allow { identity }) => identity,
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn denied(reason: DenyReason) -> Result<AuthzDecision, otap_df_core::capability::AuthorizeError> {
    Ok(AuthzDecision::Deny { reason })
}

#[test]
fn tokens_signed_with_rsa_and_ec_keys_are_accepted_with_the_identity_their_claims_give() {
    let Some(server) = server("oidc_accepts") else {
        return;
    };
    server.add_key("ES256", "es-1");
    let auth = oidc(&oidc_yaml(&server, "")).ready();
    assert_eq!(auth.instance.key_count(), 2);
    for kid in ["rs-1", "es-1"] {
        let token = server.mint(
            kid,
            r#"{"sub":"svc-a","aud":"otap-df","tenant":"acme","groups":["writers","ops"]}"#,
            600,
        );
        let identity = allow(shared::BearerTokenAuthorizer::authorize(
            auth.instance.as_ref(),
            Credential::new(&token),
        ));
        assert_eq!(
            identity,
            // In the order of the configuration's attributes (by name).
            Identity::with_attributes(
                "svc-a",
                [("groups", "writers"), ("groups", "ops"), ("tenant", "acme")]
            ),
            "{kid}"
        );
        // Seen again: the same decision, from the core's memory.
        assert_eq!(
            shared::BearerTokenAuthorizer::authorize(
                auth.instance.as_ref(),
                Credential::new(&token)
            ),
            Ok(AuthzDecision::Allow { identity })
        );
    }
    // A token the client extension got from the token endpoint is accepted too.
    let client = client(&client_yaml(&server, "client_secret: secret-a")).ready();
    let token = client.current().unwrap();
    let identity = allow(shared::BearerTokenAuthorizer::authorize(
        auth.instance.as_ref(),
        token.credential(),
    ));
    assert_eq!(identity, "a");
    assert_eq!(identity.attribute("tenant"), Some("acme"));
}

/// A token whose header is `header` (JSON) over `token`'s payload, signed `signature`.
fn forged(token: &str, header: &str, signature: &[u8]) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!(
        "{}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn expired_wrong_audience_wrong_issuer_tampered_and_unsigned_tokens_are_refused() {
    let Some(server) = server("oidc_refuses") else {
        return;
    };
    server.add_key("ES256", "es-1");
    server.add_key("RS384", "rs384");
    let auth = oidc(&oidc_yaml(&server, "")).ready();
    let decide = |token: &str| {
        shared::BearerTokenAuthorizer::authorize(auth.instance.as_ref(), Credential::new(token))
    };
    let good = server.mint("rs-1", r#"{"sub":"svc","aud":"otap-df"}"#, 600);
    allow(decide(&good));

    // Expired beyond the 30 s leeway; expired within it is still accepted.
    let expired = server.mint("rs-1", r#"{"sub":"svc","aud":"otap-df"}"#, -120);
    assert_eq!(decide(&expired), denied(DenyReason::Expired));
    let just_expired = server.mint("rs-1", r#"{"sub":"svc","aud":"otap-df"}"#, -5);
    allow(decide(&just_expired));

    let other_audience = server.mint("es-1", r#"{"sub":"svc","aud":"someone-else"}"#, 600);
    assert_eq!(decide(&other_audience), denied(DenyReason::Invalid));
    let audiences = server.mint("es-1", r#"{"sub":"svc","aud":["x","otap-df"]}"#, 600);
    allow(decide(&audiences));
    let other_issuer = server.mint(
        "rs-1",
        r#"{"sub":"svc","aud":"otap-df","iss":"http://127.0.0.1:1/evil"}"#,
        600,
    );
    assert_eq!(decide(&other_issuer), denied(DenyReason::Invalid));
    let not_yet = server.mint(
        "rs-1",
        &format!(
            r#"{{"sub":"svc","aud":"otap-df","nbf":{}}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600
        ),
        7200,
    );
    assert_eq!(decide(&not_yet), denied(DenyReason::Invalid));
    let no_subject = server.mint("rs-1", r#"{"aud":"otap-df"}"#, 600);
    assert_eq!(decide(&no_subject), denied(DenyReason::Invalid));
    // An algorithm the configuration does not list, though the issuer signed it.
    let rs384 = server.mint("rs384", r#"{"sub":"svc","aud":"otap-df"}"#, 600);
    assert_eq!(decide(&rs384), denied(DenyReason::Invalid));

    // Tampered: another payload under the good token's signature.
    let mut parts: Vec<&str> = good.split('.').collect();
    let admin = URL_SAFE_NO_PAD.encode(
        r#"{"sub":"admin","aud":"otap-df","iss":"ISSUER","exp":9999999999}"#
            .replace("ISSUER", server.issuer()),
    );
    parts[1] = &admin;
    assert_eq!(decide(&parts.join(".")), denied(DenyReason::Invalid));
    // `alg: none`, with and without a signature.
    let none = forged(&good, r#"{"alg":"none","typ":"JWT"}"#, b"");
    assert_eq!(decide(&none), denied(DenyReason::Invalid));
    assert_eq!(
        decide(none.trim_end_matches('.')),
        denied(DenyReason::Invalid)
    );
    // Key confusion: HS256 keyed with the issuer's public RSA key bytes.
    // Key confusion: HS256 under the RSA key's id, keyed with what a verifier that took the
    // header's word would use (the public key); refused for its algorithm, whatever the key.
    let confused = {
        let header = r#"{"alg":"HS256","typ":"JWT","kid":"rs-1"}"#;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server.jwks_url().as_bytes());
        let payload = good.split('.').nth(1).unwrap();
        let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    assert_eq!(decide(&confused), denied(DenyReason::Invalid));
    // The RS256 signature presented as ES256 under the EC key.
    let switched = forged(
        &good,
        r#"{"alg":"ES256","kid":"es-1"}"#,
        &URL_SAFE_NO_PAD
            .decode(good.split('.').nth(2).unwrap())
            .unwrap(),
    );
    assert_eq!(decide(&switched), denied(DenyReason::Invalid));
    assert_eq!(decide("not-a-jwt"), denied(DenyReason::Invalid));
    assert_eq!(decide(""), denied(DenyReason::Missing));
}

#[test]
fn a_key_added_by_the_issuer_is_fetched_without_a_restart() {
    let Some(server) = server("oidc_rotation") else {
        return;
    };
    let auth = oidc(&oidc_yaml(&server, ", keys_min_interval: 50ms")).ready();
    assert_eq!(auth.instance.key_count(), 1);
    server.add_key("ES256", "es-rotated");
    let token = server.mint("es-rotated", r#"{"sub":"svc","aud":"otap-df"}"#, 600);
    let decide = || {
        shared::BearerTokenAuthorizer::authorize(auth.instance.as_ref(), Credential::new(&token))
    };
    // Until the set is fetched again the sender is asked to retry (503), not refused.
    let deadline = Instant::now() + DEADLINE;
    let mut retries = 0;
    let identity = loop {
        match decide() {
            Ok(AuthzDecision::Allow { identity }) => break identity,
            Err(error) => {
                assert!(error.message.contains("es-rotated"), "{error}");
                retries += 1;
            }
            Ok(other) => panic!("refused instead of retried: {other:?}"),
        }
        assert!(Instant::now() < deadline, "the rotated key was not fetched");
        // Sampling interval: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(identity, "svc");
    assert!(retries >= 1, "the first decision came before the fetch");
    assert_eq!(auth.instance.key_count(), 2);
    // A key the issuer does not publish at all: refused once the set is fresh.
    let unknown = server.mint("rs-1", r#"{"sub":"svc","aud":"otap-df"}"#, 600);
    let forged_kid = forged(
        &unknown,
        r#"{"alg":"RS256","kid":"nobody"}"#,
        &URL_SAFE_NO_PAD
            .decode(unknown.split('.').nth(2).unwrap())
            .unwrap(),
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        match shared::BearerTokenAuthorizer::authorize(
            auth.instance.as_ref(),
            Credential::new(&forged_kid),
        ) {
            Ok(decision) => {
                assert_eq!(
                    decision,
                    AuthzDecision::Deny {
                        reason: DenyReason::Invalid
                    }
                );
                break;
            }
            Err(_) => assert!(Instant::now() < deadline, "never refused"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_caller_without_a_required_claim_is_forbidden_not_unauthenticated() {
    let Some(server) = server("oidc_forbidden") else {
        return;
    };
    let auth = oidc(&oidc_yaml(
        &server,
        ", required_claims: { scope: [telemetry.write], groups: [writers] }",
    ))
    .ready();
    let decide = |claims: &str| {
        let token = server.mint("rs-1", claims, 600);
        shared::BearerTokenAuthorizer::authorize(auth.instance.as_ref(), Credential::new(&token))
    };
    allow(decide(
        r#"{"sub":"w","aud":"otap-df","scope":"logs.read telemetry.write","groups":["writers"]}"#,
    ));
    assert_eq!(
        decide(r#"{"sub":"r","aud":"otap-df","scope":"logs.read","groups":["writers"]}"#),
        denied(DenyReason::Forbidden)
    );
    assert_eq!(
        decide(r#"{"sub":"r","aud":"otap-df","scope":"telemetry.write"}"#),
        denied(DenyReason::Forbidden)
    );
}

#[test]
fn oidc_auth_passes_the_authorizer_suite() {
    let Some(server) = server("authorizer_suite") else {
        return;
    };
    server.add_key("ES256", "es-1");
    let accepted = [
        server.mint("rs-1", r#"{"sub":"svc-a","aud":"otap-df"}"#, 3600),
        server.mint(
            "es-1",
            r#"{"sub":"svc-b","aud":"otap-df","tenant":"acme"}"#,
            3600,
        ),
    ];
    let yaml = oidc_yaml(&server, "");
    run_authorizer("oidc_auth", || {
        let running = oidc(&yaml).ready();
        let authorizer: std::sync::Arc<dyn shared::BearerTokenAuthorizer> =
            running.instance.clone();
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        AuthorizerUnderTest::shared(authorizer, &accepted).keeping(running)
    });
}
