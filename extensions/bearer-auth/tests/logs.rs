//! Tokens never reach the logs. Its own test binary, so that the process-wide subscriber
//! sees every event of every thread.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use otap_df_core::capability::shared;
use otap_df_core::secret::BearerToken;
use support::{TempDir, create, running};

#[test]
fn tokens_never_appear_in_debug_logs_or_errors() {
    let captured = otap_df_tests::logs::capture_all();
    let dir = TempDir::new("bearer");
    let path = dir.path("token");
    std::fs::write(&path, "s3cret-one").expect("write");
    let shown;
    {
        let running = running(&format!(
            "{{ token_file: '{}', tokens: [s3cret-two], reload_interval: 10ms }}",
            path.display()
        ));
        let mut updates = running.subscribe();
        running.next(&mut updates);
        std::fs::write(&path, "s3cret-three").expect("write");
        running.next(&mut updates);
        std::fs::remove_file(&path).expect("remove");
        running.wait_degraded(true);
        let fresh = running.block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.as_ref(),
        ));
        let token = BearerToken::new("s3cret-wrong");
        let decision =
            shared::BearerTokenAuthorizer::authorize(running.auth.as_ref(), token.credential());
        shown = format!(
            "{:?} {fresh:?} {decision:?} {:?} {:?}",
            running.auth,
            running.handle.degraded(),
            shared::BearerTokenProvider::current_token(running.auth.as_ref())
        );
    }
    let logs = captured.text();
    assert!(logs.contains("token files changed"), "{logs}");
    assert!(logs.contains("does not exist"), "{logs}");
    for secret in ["s3cret-one", "s3cret-two", "s3cret-three"] {
        assert!(!logs.contains(secret), "{secret} in logs: {logs}");
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let error = create("{ token: s3cret-four, token_env: ALSO }").expect_err("two sources");
    assert!(!error.contains("s3cret-four"), "{error}");
}
