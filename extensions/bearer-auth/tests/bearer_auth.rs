//! `extension:bearer_auth` on real files: the behaviour suites, rotation by in-place write,
//! atomic rename and Kubernetes' symlink swap, broken files, startup errors.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use otap_df_core::capability::{AuthzDecision, DenyReason, Identity, shared};
use otap_df_core::extension::LifecycleKind;
use otap_df_core::secret::Credential;
use otap_df_tests::bearer_suite::{self, AuthorizerUnderTest, ProviderUnderTest};
use support::{TempDir, auth, create, running, write_atomically};

#[test]
fn inline_token_passes_the_provider_suite() {
    bearer_suite::run_provider("bearer_auth inline", || {
        ProviderUnderTest::shared(auth("token: inline-s3cret"), "inline-s3cret", None)
    });
}

#[test]
fn token_file_passes_the_provider_suite_with_rotation() {
    let dir = TempDir::new("bearer");
    let counter = AtomicU64::new(0);
    bearer_suite::run_provider("bearer_auth token_file", || {
        let path = dir.path(&format!(
            "token-{}",
            counter.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, "file-s3cret\n").expect("write");
        let running = running(&format!(
            "{{ token_file: '{}', reload_interval: 10ms }}",
            path.display()
        ));
        let provider: Arc<dyn shared::BearerTokenProvider> = running.auth.clone();
        ProviderUnderTest::shared(
            provider,
            "file-s3cret",
            Some(Box::new(move |token: &str| write_atomically(&path, token))),
        )
        .keeping(running)
    });
}

#[test]
fn tokens_pass_the_authorizer_suite() {
    bearer_suite::run_authorizer("bearer_auth tokens", || {
        AuthorizerUnderTest::shared(
            auth("{ token: client-token, tokens: [old-token, new-token] }"),
            &["client-token", "old-token", "new-token"],
        )
    });
    let dir = TempDir::new("bearer");
    let path = dir.path("tokens");
    std::fs::write(&path, "# accepted\nfirst-token\n\nsecond-token\n").expect("write");
    bearer_suite::run_authorizer("bearer_auth tokens_file", || {
        AuthorizerUnderTest::shared(
            auth(&format!("tokens_file: '{}'", path.display())),
            &["first-token", "second-token"],
        )
    });
}

#[test]
fn the_authorizer_names_which_token_matched_and_why_others_are_denied() {
    let dir = TempDir::new("bearer");
    let path = dir.path("tokens");
    std::fs::write(&path, "# rotation\nfile-a\nfile-b\n").expect("write");
    let auth = auth(&format!(
        "{{ token: client, tokens: [inline-a], tokens_file: '{}' }}",
        path.display()
    ));
    let decide = |token: &str| {
        shared::BearerTokenAuthorizer::authorize(auth.as_ref(), Credential::new(token))
            .expect("a decision")
    };
    let allow = |identity: &str| AuthzDecision::Allow {
        identity: Identity::interned(identity),
    };
    assert_eq!(decide("client"), allow("tokens:token"));
    assert_eq!(decide("inline-a"), allow("tokens:tokens[0]"));
    assert_eq!(
        decide("file-b"),
        allow(&format!("tokens:{}:3", path.display()))
    );
    assert_eq!(
        decide("file-c"),
        AuthzDecision::Deny {
            reason: DenyReason::Invalid
        }
    );
    assert_eq!(
        decide(""),
        AuthzDecision::Deny {
            reason: DenyReason::Missing
        }
    );
}

#[test]
fn among_a_thousand_tokens_each_is_found_once_the_first_of_duplicates_wins_and_near_misses_are_denied()
 {
    let dir = TempDir::new("bearer");
    let path = dir.path("tokens");
    let tokens: Vec<String> = (0..1000)
        .map(|i| format!("token-{i:04}-{}", "x".repeat(i % 7)))
        .collect();
    // The file repeats the first inline token: the inline entry comes first and names it.
    std::fs::write(
        &path,
        format!("{}\n{}\n", tokens[1..].join("\n"), tokens[0]),
    )
    .expect("write");
    let auth = auth(&format!(
        "{{ tokens: ['{}'], tokens_file: '{}' }}",
        tokens[0],
        path.display()
    ));
    let decide = |token: &str| {
        shared::BearerTokenAuthorizer::authorize(auth.as_ref(), Credential::new(token))
            .expect("a decision")
    };
    let allow = |identity: String| AuthzDecision::Allow {
        identity: identity.into(),
    };
    assert_eq!(decide(&tokens[0]), allow("tokens:tokens[0]".to_owned()));
    for (i, token) in tokens.iter().enumerate().skip(1) {
        assert_eq!(
            decide(token),
            allow(format!("tokens:{}:{i}", path.display())),
            "token {i}"
        );
    }
    let denied = AuthzDecision::Deny {
        reason: DenyReason::Invalid,
    };
    for near in [
        &tokens[5][..tokens[5].len() - 1],
        &format!("{}y", tokens[5]),
        &tokens[5].to_uppercase(),
        "token-1000-",
    ] {
        assert_eq!(decide(near), denied, "{near}");
    }
}

#[test]
fn a_token_file_is_followed_through_in_place_writes_renames_and_symlink_swaps() {
    let dir = TempDir::new("bearer");
    // Kubernetes mounts a secret as `token -> ..data/token`, `..data -> ..<timestamp>/`, and
    // updates it by creating a new timestamped directory and swapping `..data` atomically.
    let first = dir.path("..2026_11_22_1");
    std::fs::create_dir_all(&first).expect("dir");
    std::fs::write(first.join("token"), "v1\n").expect("write");
    std::os::unix::fs::symlink("..2026_11_22_1", dir.path("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/token", dir.path("token")).expect("symlink");
    let running = running(&format!(
        "{{ token_file: '{}', reload_interval: 10ms }}",
        dir.path("token").display()
    ));
    let mut updates = running.subscribe();
    assert_eq!(running.next(&mut updates), "v1");

    // The symlink swap.
    let second = dir.path("..2026_11_22_2");
    std::fs::create_dir_all(&second).expect("dir");
    std::fs::write(second.join("token"), "v2\n").expect("write");
    std::os::unix::fs::symlink("..2026_11_22_2", dir.path("..data_tmp")).expect("symlink");
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).expect("swap");
    std::fs::remove_dir_all(&first).expect("old version removed");
    assert_eq!(running.next(&mut updates), "v2");

    // An atomic rename over the target.
    write_atomically(&second.join("token"), "v3");
    assert_eq!(running.next(&mut updates), "v3");

    // A write in place.
    std::fs::write(second.join("token"), "v4\n").expect("write");
    assert_eq!(running.next(&mut updates), "v4");
    assert_eq!(running.current(), "v4");
    // The server side follows the same file.
    assert_eq!(
        shared::BearerTokenAuthorizer::authorize(running.auth.as_ref(), Credential::new("v4")),
        Ok(AuthzDecision::Allow {
            identity: "tokens:token_file".into()
        })
    );
    assert_eq!(
        shared::BearerTokenAuthorizer::authorize(running.auth.as_ref(), Credential::new("v1")),
        Ok(AuthzDecision::Deny {
            reason: DenyReason::Invalid
        })
    );
}

#[test]
fn a_broken_file_keeps_the_last_good_token_and_reports_degraded_until_it_recovers() {
    let dir = TempDir::new("bearer");
    let path = dir.path("token");
    std::fs::write(&path, "good-token").expect("write");
    let running = running(&format!(
        "{{ token_file: '{}', reload_interval: 10ms }}",
        path.display()
    ));
    assert_eq!(running.handle.degraded(), None);

    std::fs::remove_file(&path).expect("remove");
    let why = running.wait_degraded(true).expect("degraded");
    assert_eq!(
        why,
        format!(
            "token file `{}` does not exist; serving the last good tokens",
            path.display()
        )
    );
    assert_eq!(running.current(), "good-token");

    std::fs::write(&path, "  \n").expect("write empty");
    let mut why = running.wait_degraded(true).expect("degraded");
    for _ in 0..1000 {
        if why.contains("holds no token") {
            break;
        }
        running.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
        why = running.handle.degraded().unwrap_or_default();
    }
    assert_eq!(
        why,
        format!(
            "token file `{}` holds no token; serving the last good tokens",
            path.display()
        )
    );
    assert_eq!(running.current(), "good-token");
    let fresh = running
        .block_on(shared::BearerTokenProvider::fresh_token(
            running.auth.as_ref(),
        ))
        .expect("the last good token");
    assert_eq!(fresh.secret().expose(), "good-token");

    let mut updates = running.subscribe();
    assert_eq!(running.next(&mut updates), "good-token");
    std::fs::write(&path, "new-token").expect("write");
    assert_eq!(running.next(&mut updates), "new-token");
    assert_eq!(running.wait_degraded(false), None);
}

#[test]
fn inline_tokens_are_passive_and_files_make_it_active() {
    let dir = TempDir::new("bearer");
    let path = dir.path("token");
    std::fs::write(&path, "t").expect("write");
    assert_eq!(create("token: t"), Ok(LifecycleKind::Passive));
    assert_eq!(create("tokens: [a, b]"), Ok(LifecycleKind::Passive));
    assert_eq!(
        create(&format!("token_file: '{}'", path.display())),
        Ok(LifecycleKind::Active)
    );
    assert_eq!(
        create(&format!("tokens_file: '{}'", path.display())),
        Ok(LifecycleKind::Active)
    );
}

#[test]
fn startup_with_a_missing_or_empty_file_fails_naming_the_path() {
    let dir = TempDir::new("bearer");
    let missing = dir.path("absent");
    assert_eq!(
        create(&format!("token_file: '{}'", missing.display())),
        Err(format!(
            "extension `tokens` failed: token file `{}` does not exist",
            missing.display()
        ))
    );
    let empty = dir.path("empty");
    std::fs::write(&empty, "\n").expect("write");
    assert_eq!(
        create(&format!("tokens_file: '{}'", empty.display())),
        Err(format!(
            "extension `tokens` failed: token file `{}` holds no token",
            empty.display()
        ))
    );
}

#[test]
fn a_start_failure_carries_the_crates_typed_error() {
    let dir = TempDir::new("bearer-typed");
    let missing = dir.path("absent");
    let error = otap_df_extension_bearer_auth::BearerAuth::new(
        "tokens",
        &support::config(&format!("token_file: '{}'", missing.display())),
    )
    .map(|_| ())
    .expect_err("no such file");
    let otap_df_core::extension::ExtensionError::Source {
        extension, source, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(extension, "tokens");
    assert_eq!(
        error.kind(),
        otap_df_core::extension::ErrorKind::Misconfigured
    );
    assert!(!error.retry_can_help());
    let typed = source
        .get()
        .downcast_ref::<otap_df_extension_bearer_auth::BearerAuthError>()
        .expect("the crate's error");
    assert!(
        matches!(typed, otap_df_extension_bearer_auth::BearerAuthError::File(file) if file.path == missing),
        "{typed:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "extension `tokens` failed: token file `{}` does not exist",
            missing.display()
        )
    );
}
