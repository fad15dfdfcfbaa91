//! Tokens never reach the logs. Its own test binary, so that the process-wide subscriber
//! sees every event of every thread.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::sync::{Arc, Mutex};

use otap_df_core::capability::shared;
use otap_df_core::secret::BearerToken;
use support::{TempDir, create, running};

/// Collects everything logged while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn tokens_never_appear_in_debug_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let dir = TempDir::new();
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
        let decision = shared::BearerTokenAuthorizer::authorize(running.auth.as_ref(), &token);
        shown = format!(
            "{:?} {fresh:?} {decision:?} {:?} {:?}",
            running.auth,
            running.handle.degraded(),
            shared::BearerTokenProvider::current_token(running.auth.as_ref())
        );
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).expect("utf-8 logs");
    assert!(logs.contains("token files changed"), "{logs}");
    assert!(logs.contains("does not exist"), "{logs}");
    for secret in ["s3cret-one", "s3cret-two", "s3cret-three"] {
        assert!(!logs.contains(secret), "{secret} in logs: {logs}");
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let error = create("{ token: s3cret-four, token_env: ALSO }").expect_err("two sources");
    assert!(!error.contains("s3cret-four"), "{error}");
}
