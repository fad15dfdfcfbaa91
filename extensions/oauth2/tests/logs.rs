//! Secrets, assertions and tokens never reach the logs (every level, every crate, the HTTP
//! client's included), the reported state, errors or `Debug` output — with each client
//! authentication, each grant (the workload's token presented by token exchange and JWT
//! bearer), a refused secret, and the authorizer deciding on good and bad tokens.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use otap_df_core::capability::shared;
use otap_df_core::secret::Credential;
use otap_df_tests::temp::TempDir;
use support::{client, node_key, oidc, public_jwk, server_with};

const WRONG_SECRET: &str = "hunter2-not-the-secret";

#[test]
fn secrets_assertions_and_tokens_never_appear_in_logs_state_or_errors() {
    let key = node_key("ec");
    let Some(server) = server_with("logs", &format!(r#""jwt":{{"jwk":{}}}"#, public_jwk(&key)))
    else {
        return;
    };
    let captured = otap_df_tests::logs::capture_all();
    let dir = TempDir::new("oauth2-logs");
    let key_file = dir.path("key.pem");
    std::fs::write(&key_file, &key).unwrap();
    let mut tokens = Vec::new();
    let workload = server.mint(
        "rs-1",
        &format!(r#"{{"sub":"workload","aud":"{}"}}"#, server.token_url()),
        3600,
    );
    let workload_file = dir.path("workload-token");
    std::fs::write(&workload_file, &workload).unwrap();
    tokens.push(workload);
    let mut shown = String::new();
    for auth in [
        "client_id: a, client_secret: secret-a".to_owned(),
        "client_id: a, client_secret: secret-a, client_auth: client_secret_post".to_owned(),
        format!("client_id: jwt, private_key_file: '{}'", key_file.display()),
        format!(
            "grant_type: token_exchange, subject_token_file: '{}'",
            workload_file.display()
        ),
        format!(
            "grant_type: jwt_bearer, assertion_file: '{}', client_id: a, client_secret: secret-a",
            workload_file.display()
        ),
    ] {
        let running = client(&format!(
            "{{ token_url: '{}', {auth} }}",
            server.token_url()
        ))
        .ready();
        let token = running.current().unwrap();
        let fresh = running
            .runtime
            .block_on(running.provider().fresh_token())
            .unwrap();
        shown.push_str(&format!(
            "{token:?} {token} {fresh:?} {:?} {:?} ",
            running.instance,
            running.handle.degraded()
        ));
        tokens.push(token.secret().expose().to_owned());
        tokens.push(fresh.secret().expose().to_owned());
    }
    let refused = client(&format!(
        "{{ token_url: '{}', client_id: a, client_secret: {WRONG_SECRET}, \
         retry: {{ initial_interval: 50ms }} }}",
        server.token_url()
    ));
    let why = refused.degraded_until(|why| why.contains("invalid_client"));
    let error = refused
        .runtime
        .block_on(refused.provider().fresh_token())
        .unwrap_err();
    shown.push_str(&format!("{why} {error} {error:?} {:?}", refused.instance));

    let auth = oidc(&format!(
        "{{ issuer: '{}', audience: otap-df }}",
        server.issuer()
    ))
    .ready();
    let expired = server.mint("rs-1", r#"{"sub":"svc","aud":"otap-df"}"#, -600);
    for token in tokens.iter().chain([&expired]) {
        let decision = shared::BearerTokenAuthorizer::authorize(
            auth.instance.as_ref(),
            Credential::new(token),
        );
        shown.push_str(&format!("{decision:?} "));
    }
    shown.push_str(&format!("{:?}", auth.instance));
    drop((refused, auth));

    let logged = captured.text();
    assert!(
        logged.contains("token received"),
        "the capture works: {logged}"
    );
    for (what, text) in [("logs", &logged), ("state, errors and Debug", &shown)] {
        for secret in ["secret-a", WRONG_SECRET, key.lines().nth(1).unwrap()] {
            assert!(!text.contains(secret), "{what} show a secret: {text}");
        }
        for token in tokens.iter().chain([&expired]) {
            assert!(
                !text.contains(token.as_str()),
                "{what} show a token: {text}"
            );
        }
        // No JWT at all (a signed assertion, a token): their header starts `eyJ`.
        assert!(!text.contains("eyJ"), "{what} show a JWT: {text}");
    }
}
