//! The `bearer_token_provider` behaviour suite, run against `azure_auth` (managed identity,
//! through the real `azure_identity` client and a token endpoint on loopback).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::PathBuf;

use otap_df_core::capability::shared;
use otap_df_tests::bearer_suite::{ProviderUnderTest, run_provider};
use support::{Reply, TempDir, TokenEndpoint, expect_child, managed_identity, run_child, running};

#[test]
fn azure_auth_passes_the_provider_suite() {
    let dir = TempDir::new("azure");
    let value_file = dir.path("value");
    std::fs::write(&value_file, "suite-token-value").unwrap();
    // The endpoint serves whatever the file holds: rotating the token is writing the file.
    let endpoint = TokenEndpoint::start(&[], Reply::Token(40)).with_value_file(&value_file);
    let mut env = endpoint.env();
    env.push(("VALUE_FILE", value_file.display().to_string()));
    run_child("azure_auth_passes_the_provider_suite_child", &env);
}

#[test]
#[ignore = "run by `azure_auth_passes_the_provider_suite` in a child process"]
fn azure_auth_passes_the_provider_suite_child() {
    expect_child("azure_auth_passes_the_provider_suite_child");
    let value_file = PathBuf::from(std::env::var("VALUE_FILE").unwrap());
    run_provider("azure_auth", || {
        let instance = running(&managed_identity(""));
        let token = std::fs::read_to_string(&value_file).unwrap();
        let provider: std::sync::Arc<dyn shared::BearerTokenProvider> =
            instance.auth.tokens().clone();
        let file = value_file.clone();
        ProviderUnderTest::shared(
            provider,
            token,
            Some(Box::new(move |value: &str| {
                std::fs::write(&file, value).unwrap();
            })),
        )
        .keeping(instance)
    });
}
