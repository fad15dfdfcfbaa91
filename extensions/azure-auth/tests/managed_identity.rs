//! `azure_auth` with method `managed_identity`, through the real `azure_identity` client
//! against an App Service style token endpoint on 127.0.0.1.
//!
//! Each test starts the endpoint, then runs its `_child` in a child process whose
//! `IDENTITY_ENDPOINT` points at it (the credential reads the process environment), and
//! checks what the endpoint saw once the child is done.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otap_df_core::capability::shared;
use support::{
    RESOURCE, Reply, TokenEndpoint, expect_child, expiry_of, managed_identity, number_of,
    run_child, running, start, unix_now,
};

#[test]
fn first_token_makes_it_ready() {
    let endpoint = TokenEndpoint::start(&[], Reply::Token(3600));
    run_child("first_token_makes_it_ready_child", &endpoint.env());
    let served = endpoint.served();
    // The loop's request, then the one `fresh_token` asked for.
    assert_eq!(served.len(), 2, "{served:?}");
    for request in &served {
        assert_eq!(request.resource.as_deref(), Some(RESOURCE));
        assert!(request.header_ok, "the identity header was sent");
        assert_eq!(request.client_id, None, "system-assigned identity");
    }
}

#[test]
#[ignore = "run by `first_token_makes_it_ready` in a child process"]
fn first_token_makes_it_ready_child() {
    expect_child("first_token_makes_it_ready_child");
    let running = running(&managed_identity(""));
    let token = running.current().expect("a token once ready");
    assert!(token.is_usable());
    let value = token.secret().expose().to_owned();
    assert_eq!(number_of(&value), 1);
    let expires = token
        .expires_at()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(expires, expiry_of(&value), "the expiry is the endpoint's");
    assert_eq!(running.auth.renewals(), 1);
    assert_eq!(running.handle.degraded(), None);
    let fresh = running
        .block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.tokens().as_ref(),
        ))
        .expect("fresh token");
    // An hour-long token: a consumer's demand makes a request, the loop does not.
    assert_eq!(number_of(fresh.secret().expose()), 2);
}

#[test]
fn a_user_assigned_identity_is_named_in_the_request() {
    let endpoint = TokenEndpoint::start(&[], Reply::Token(3600));
    run_child(
        "a_user_assigned_identity_is_named_in_the_request_child",
        &endpoint.env(),
    );
    let served = endpoint.served();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].client_id.as_deref(), Some("my-client-id"));
}

#[test]
#[ignore = "run by `a_user_assigned_identity_is_named_in_the_request` in a child process"]
fn a_user_assigned_identity_is_named_in_the_request_child() {
    expect_child("a_user_assigned_identity_is_named_in_the_request_child");
    let running = running(&managed_identity(", client_id: my-client-id"));
    assert!(running.current().is_some());
}

#[test]
fn short_lived_tokens_are_renewed_before_expiry() {
    // 40 s tokens are usable for 10 s (30 s margin); renewed after 2 s (5 % of 40 s).
    let endpoint = TokenEndpoint::start(&[], Reply::Token(40));
    run_child(
        "short_lived_tokens_are_renewed_before_expiry_child",
        &endpoint.env(),
    );
    assert!(endpoint.served().len() >= 4);
}

#[test]
#[ignore = "run by `short_lived_tokens_are_renewed_before_expiry` in a child process"]
fn short_lived_tokens_are_renewed_before_expiry_child() {
    expect_child("short_lived_tokens_are_renewed_before_expiry_child");
    let running = running(&managed_identity(""));
    let mut updates = running.subscribe();
    let first = running.next(&mut updates);
    assert_eq!(number_of(first.secret().expose()), 1);
    let mut previous = first;
    // The subscription yields every renewal, each while the one before is still usable.
    for expected in 2..=4 {
        let next = running.next(&mut updates);
        let received = unix_now();
        assert_eq!(number_of(next.secret().expose()), expected);
        assert!(
            received + 30 < expiry_of(previous.secret().expose()),
            "token {expected} arrived after token {} stopped being usable",
            expected - 1
        );
        assert_eq!(
            running.current().map(|t| t.secret().expose().to_owned()),
            Some(next.secret().expose().to_owned())
        );
        previous = next;
    }
    assert_eq!(running.handle.degraded(), None);
}

#[test]
fn failures_back_off_and_the_last_valid_token_is_served_meanwhile() {
    let endpoint = TokenEndpoint::start(
        &[
            Reply::Token(40),
            Reply::Fail(500),
            Reply::Fail(503),
            Reply::Fail(500),
        ],
        Reply::Token(40),
    );
    run_child(
        "failures_back_off_and_the_last_valid_token_is_served_meanwhile_child",
        &endpoint.env(),
    );
    let served = endpoint.served();
    assert!(served.len() >= 5, "{served:?}");
    assert_eq!(
        served[..5].iter().map(|s| s.reply).collect::<Vec<_>>(),
        [
            Reply::Token(40),
            Reply::Fail(500),
            Reply::Fail(503),
            Reply::Fail(500),
            Reply::Token(40)
        ]
    );
    // Backoff: 200 ms, 400 ms, 800 ms (±20 %) after the 1st, 2nd, 3rd failure.
    for (k, pair) in served[1..5].windows(2).enumerate() {
        let waited = pair[1].at.duration_since(pair[0].at);
        let floor = Duration::from_millis(200 << k).mul_f64(0.8);
        assert!(
            waited >= floor,
            "after failure {}: waited {waited:?}, less than {floor:?}",
            k + 1
        );
    }
}

#[test]
#[ignore = "run by `failures_back_off_and_the_last_valid_token_is_served_meanwhile` in a child process"]
fn failures_back_off_and_the_last_valid_token_is_served_meanwhile_child() {
    expect_child("failures_back_off_and_the_last_valid_token_is_served_meanwhile_child");
    let running = running(&managed_identity(""));
    assert_eq!(number_of(&running.current_value()), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut degraded_seen = None;
    // Sample what consumers get until the endpoint heals: the first token throughout the
    // outage (it stays usable), then the second; never nothing, never an unusable one.
    loop {
        let token = running.current().expect("a token is served throughout");
        assert!(token.is_usable(), "an unusable token was handed out");
        if let Some(why) = running.handle.degraded() {
            degraded_seen.get_or_insert(why);
        }
        match number_of(token.secret().expose()) {
            1 => {}
            2 => break,
            n => panic!("token {n} before token 2"),
        }
        assert!(Instant::now() < deadline, "no second token within 20s");
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = degraded_seen.expect("reported degraded during the outage");
    assert!(
        why.starts_with("token request failed (unavailable; 1 in a row; next attempt in"),
        "{why}"
    );
    assert!(why.contains("serving the current token for"), "{why}");
    assert!(
        why.contains("ManagedIdentityCredential authentication failed"),
        "{why}"
    );
    // Healthy again after the success (reported by the loop right after it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.handle.degraded().is_some() {
        assert!(Instant::now() < deadline, "still degraded after healing");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_token_that_expires_during_an_outage_is_withdrawn() {
    // 32 s tokens are usable for 2 s; then the endpoint fails for good.
    let endpoint = TokenEndpoint::start(&[Reply::Token(32)], Reply::Fail(503));
    run_child(
        "a_token_that_expires_during_an_outage_is_withdrawn_child",
        &endpoint.env(),
    );
}

#[test]
#[ignore = "run by `a_token_that_expires_during_an_outage_is_withdrawn` in a child process"]
fn a_token_that_expires_during_an_outage_is_withdrawn_child() {
    expect_child("a_token_that_expires_during_an_outage_is_withdrawn_child");
    let running = running(&managed_identity(""));
    let token = running.current().expect("first token");
    let expires_at = token.expires_at().unwrap();
    let last_usable = expires_at - Duration::from_secs(30);
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.current().is_some() {
        assert!(
            SystemTime::now() < expires_at,
            "current_token() handed out an expired token"
        );
        assert!(Instant::now() < deadline, "the token was never withdrawn");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Withdrawn when it stopped being usable, not before.
    assert!(SystemTime::now() >= last_usable);
    // The loop withdraws it from subscribers too, and says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let latest = running.subscribe().latest();
        let why = running.handle.degraded().unwrap_or_default();
        if latest.is_none() && why.contains("no usable token to serve") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still served: {latest:?} / {why}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let error = running
        .block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.tokens().as_ref(),
        ))
        .expect_err("no token to give");
    assert!(
        error
            .to_string()
            .starts_with("token provider `azure` has no usable token: token request failed ("),
        "{error}"
    );
}

#[test]
fn a_stalled_endpoint_is_bounded_by_request_timeout() {
    let endpoint = TokenEndpoint::start(&[Reply::Stall], Reply::Token(3600));
    run_child(
        "a_stalled_endpoint_is_bounded_by_request_timeout_child",
        &endpoint.env(),
    );
    let served = endpoint.served();
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(served[1].at.duration_since(served[0].at) >= Duration::from_secs(2));
}

#[test]
#[ignore = "run by `a_stalled_endpoint_is_bounded_by_request_timeout` in a child process"]
fn a_stalled_endpoint_is_bounded_by_request_timeout_child() {
    expect_child("a_stalled_endpoint_is_bounded_by_request_timeout_child");
    let running = running(&managed_identity(""));
    // The stalled request gave nothing; the retry gave the first token.
    assert_eq!(number_of(&running.current_value()), 1);
}

#[test]
fn an_endpoint_down_at_startup_leaves_it_unready_with_the_reason() {
    let endpoint = TokenEndpoint::start(&[], Reply::Fail(503));
    run_child(
        "an_endpoint_down_at_startup_leaves_it_unready_with_the_reason_child",
        &endpoint.env(),
    );
    assert!(endpoint.served().len() >= 2, "retried");
}

#[test]
#[ignore = "run by `an_endpoint_down_at_startup_leaves_it_unready_with_the_reason` in a child process"]
fn an_endpoint_down_at_startup_leaves_it_unready_with_the_reason_child() {
    expect_child("an_endpoint_down_at_startup_leaves_it_unready_with_the_reason_child");
    let running = start(&managed_identity(""));
    let deadline = Instant::now() + Duration::from_secs(10);
    let why = loop {
        if let Some(why) = running.handle.degraded()
            && why.contains("2 in a row")
        {
            break why;
        }
        assert!(Instant::now() < deadline, "no second failure reported");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(why.contains("no usable token to serve"), "{why}");
    assert!(running.current().is_none());
    let error = running
        .block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.tokens().as_ref(),
        ))
        .expect_err("nothing to give");
    assert!(
        error.to_string().contains("token request failed"),
        "{error}"
    );
}
