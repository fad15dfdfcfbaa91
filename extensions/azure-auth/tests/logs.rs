//! Tokens and secrets never reach the logs (every level, every crate, the HTTP client's
//! included), the reported state, errors or `Debug` output.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::time::{Duration, Instant};

use otap_df_core::capability::shared;
use support::{
    IDENTITY_HEADER, Reply, SCOPE, TokenEndpoint, expect_child, managed_identity, run_child,
    running, start,
};

const CLIENT_SECRET: &str = "hunter2-client-secret";

#[test]
fn tokens_and_secrets_never_appear_in_logs_state_or_errors() {
    let endpoint = TokenEndpoint::start(
        &[Reply::Token(40), Reply::Fail(500), Reply::Token(40)],
        Reply::Token(40),
    );
    let mut env = endpoint.env();
    // The client secret credential's token endpoint: nothing listens there.
    env.push(("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9".to_owned()));
    run_child(
        "tokens_and_secrets_never_appear_in_logs_state_or_errors_child",
        &env,
    );
}

#[test]
#[ignore = "run by `tokens_and_secrets_never_appear_in_logs_state_or_errors` in a child process"]
fn tokens_and_secrets_never_appear_in_logs_state_or_errors_child() {
    expect_child("tokens_and_secrets_never_appear_in_logs_state_or_errors_child");
    let captured = otap_df_tests::logs::capture_all();

    let mut tokens = Vec::new();
    let mut shown = String::new();
    {
        let running = running(&managed_identity(""));
        let mut updates = running.subscribe();
        // The first token, a failed renewal, then two more tokens.
        while tokens.len() < 3 {
            let token = running.next(&mut updates);
            shown.push_str(&format!("{token:?} {token} "));
            tokens.push(token.secret().expose().to_owned());
        }
        let fresh = running.block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.tokens().as_ref(),
        ));
        shown.push_str(&format!("{fresh:?} {:?} ", running.auth));
    }
    {
        let running = start(&format!(
            "{{ scope: '{SCOPE}', method: client_secret, tenant_id: my-tenant, \
             client_id: my-client, client_secret: {CLIENT_SECRET}, request_timeout: 2s }}"
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        let why = loop {
            if let Some(why) = running.handle.degraded() {
                break why;
            }
            assert!(Instant::now() < deadline, "no failure reported");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            why.contains("ClientSecretCredential authentication failed"),
            "{why}"
        );
        let fresh = running.block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.tokens().as_ref(),
        ));
        shown.push_str(&format!("{why} {fresh:?} {:?} ", running.auth));
    }
    let logs = captured.text();
    assert!(logs.contains("token received"), "the logs were captured");
    assert!(
        logs.contains("token request failed"),
        "the failure was logged"
    );
    for secret in tokens
        .iter()
        .map(String::as_str)
        .chain([CLIENT_SECRET, IDENTITY_HEADER])
    {
        assert!(!logs.contains(secret), "`{secret}` appears in the logs");
        assert!(!shown.contains(secret), "`{secret}` appears in: {shown}");
    }
}
