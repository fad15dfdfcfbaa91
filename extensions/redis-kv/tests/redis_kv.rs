//! `extension:redis_kv` against a real `redis-server`: the `key_value_store` behaviour suite
//! (shared and local consumers), prefix isolation, atomic `set_if_absent`, outages and
//! recovery, credentials, databases, a busy server. Pipelines with this store (startup with
//! Redis down, a dedup through an outage) are tested with the integration tests
//! (`tests/integration/tests/redis_kv_pipelines.rs`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::capability::{Capability, KeyValueStore, KvError, local, shared};
use otap_df_core::extension::{ClassifiedError as _, ErrorKind, ExtensionContext};
use otap_df_extension_redis_kv::connect;
use otap_df_extension_redis_kv::{REDIS_KV, RedisKv};
use otap_df_tests::redis_server::{self, RedisServer};

mod support;
use support::{config, runtime};

/// A store of extension `id` on `server`.
fn store(server: &RedisServer, id: &str, extra: &str) -> RedisKv {
    let context = ExtensionContext::new(&REDIS_KV, id, "g", "p", None);
    connect(
        &context,
        &config(&format!("{{ url: '{}' {extra} }}", server.url())),
    )
    .expect("store")
}

#[test]
fn redis_kv_passes_the_key_value_store_suite_for_shared_and_local_consumers() {
    let Some(server) = redis_server::require("suite") else {
        return;
    };
    otap_df_tests::key_value_suite::run_shared("redis_kv", || {
        Arc::new(store(&server, "suite", "")) as Arc<dyn shared::KeyValueStore>
    });
    otap_df_tests::key_value_suite::run_local("redis_kv via shared-as-local", || {
        let shared: Arc<dyn shared::KeyValueStore> = Arc::new(store(&server, "suite", ""));
        KeyValueStore::shared_as_local(shared) as Rc<dyn local::KeyValueStore>
    });
}

#[test]
fn two_extensions_on_one_server_never_see_each_others_keys() {
    let Some(server) = redis_server::require("prefixes") else {
        return;
    };
    let a = store(&server, "a", "");
    let b = store(&server, "b", "");
    assert_eq!(a.prefix(), b"otap-df:g/p/a:");
    runtime().block_on(async {
        use shared::KeyValueStore as _;
        a.set(b"k", b"from a", None).await.unwrap();
        assert_eq!(b.get(b"k").await.unwrap(), None);
        assert!(b.set_if_absent(b"k", b"from b", None).await.unwrap());
        assert!(b.delete(b"k").await.unwrap());
        assert_eq!(a.get(b"k").await.unwrap(), Some(b"from a".to_vec()));
    });
}

#[test]
fn a_reload_changes_the_prefix_and_default_ttl_in_place_and_refuses_connection_settings() {
    let Some(server) = redis_server::require("update") else {
        return;
    };
    let store = store(&server, "update", "");
    let url = server.url();
    runtime().block_on(async {
        use shared::KeyValueStore as _;
        store.set(b"k", b"before", None).await.unwrap();
        // A new prefix and a default expiry, from the next call on: the old keys are out of
        // sight, and new entries expire.
        store
            .update(&config(&format!(
                "{{ url: '{url}', key_prefix: 'tenant-b:', default_ttl: 50ms }}"
            )))
            .expect("taken in place");
        assert_eq!(store.prefix(), b"tenant-b:");
        assert_eq!(store.get(b"k").await.unwrap(), None);
        store.set(b"k", b"after", None).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap(), Some(b"after".to_vec()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.get(b"k").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the default TTL applies");
            // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What sets up the connection is refused, naming the option; nothing changes.
        let error = store
            .update(&config(&format!("{{ url: '{url}', db: 3 }}")))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`db` cannot change in place (it sets up the connection); a new instance takes it"
        );
        // Someone has to restart it (a new instance): retrying the same cannot help.
        assert_eq!(error.kind(), ErrorKind::Refused);
        assert!(!error.kind().retry_can_help());
        assert_eq!(store.prefix(), b"tenant-b:");
    });
}

#[test]
fn set_if_absent_has_exactly_one_winner_among_concurrent_callers() {
    let Some(server) = redis_server::require("atomic") else {
        return;
    };
    let store = Arc::new(store(&server, "atomic", ""));
    let winners = runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            let store = store.clone();
            tasks.spawn(async move {
                shared::KeyValueStore::set_if_absent(
                    store.as_ref(),
                    b"contended",
                    &i.to_be_bytes(),
                    None,
                )
                .await
                .unwrap()
            });
        }
        let mut winners = 0;
        while let Some(won) = tasks.join_next().await {
            winners += u32::from(won.unwrap());
        }
        winners
    });
    assert_eq!(winners, 1);
}

/// Calls `get` until it succeeds, for at most 10 s; the errors seen meanwhile.
async fn until_it_answers(store: &RedisKv) -> Vec<KvError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut errors = Vec::new();
    loop {
        match shared::KeyValueStore::get(store, b"probe").await {
            Ok(_) => return errors,
            Err(error) => errors.push(error),
        }
        assert!(
            Instant::now() < deadline,
            "no answer within 10s: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn calls_errors_by_class_and_latency_are_counted() {
    let Some(mut server) = redis_server::require("metrics") else {
        return;
    };
    let context = ExtensionContext::new(&REDIS_KV, "metrics", "g", "p", None);
    let store = connect(
        &context,
        &config(&format!(
            "{{ url: '{}', call_timeout: 300ms, fail_fast_after: 100 }}",
            server.url()
        )),
    )
    .expect("store");
    let runtime = runtime();
    runtime.block_on(async {
        use shared::KeyValueStore as _;
        store.set(b"k", b"v", None).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        assert!(!store.set_if_absent(b"k", b"w", None).await.unwrap());
    });
    server.stop();
    let failed = runtime
        .block_on(shared::KeyValueStore::get(&store, b"k"))
        .expect_err("redis is down");
    let snapshot = context.metrics().snapshot();
    let count = |name: &str| {
        snapshot
            .counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no counter `{name}`: {snapshot:?}"))
    };
    assert_eq!(count("calls"), 4);
    let class = match failed {
        KvError::Unavailable { .. } => "errors.unavailable",
        KvError::Timeout { .. } => "errors.timeout",
        KvError::Refused { .. } => "errors.refused",
    };
    assert_eq!(count(class), 1, "{snapshot:?}");
    assert_eq!(
        count("errors.unavailable") + count("errors.timeout") + count("errors.refused"),
        1
    );
    let timed = [
        "latency.under_1ms",
        "latency.1ms_to_10ms",
        "latency.10ms_to_100ms",
        "latency.over_100ms",
    ]
    .iter()
    .map(|name| count(name))
    .sum::<u64>();
    assert_eq!(timed, 4, "every call that reached for Redis is timed once");
    assert!(count("latency.total_us") > 0);
}

#[test]
fn an_outage_gives_transient_errors_and_calls_recover_when_redis_is_back() {
    let Some(mut server) = redis_server::require("outage") else {
        return;
    };
    let store = store(&server, "outage", ", call_timeout: 500ms");
    let runtime = runtime();
    runtime.block_on(async {
        shared::KeyValueStore::set(&store, b"k", b"v", None)
            .await
            .unwrap();
    });
    server.stop();
    for _ in 0..3 {
        let error = runtime
            .block_on(shared::KeyValueStore::get(&store, b"k"))
            .expect_err("redis is down");
        assert!(error.is_transient(), "{error}");
        assert_eq!(error.store(), "outage");
        assert!(
            matches!(&error, KvError::Timeout { timeout, .. } if *timeout == Duration::from_millis(500))
                || matches!(&error, KvError::Unavailable { message, .. } if message.starts_with(&format!("127.0.0.1:{}", server.port()))),
            "{error:?}"
        );
    }
    server.restart().expect("redis restarts");
    runtime.block_on(until_it_answers(&store));
    // Persistence is off: the restarted server is empty, and the store works again.
    runtime.block_on(async {
        assert_eq!(
            shared::KeyValueStore::get(&store, b"k").await.unwrap(),
            None
        );
        shared::KeyValueStore::set(&store, b"k", b"again", None)
            .await
            .unwrap();
        assert_eq!(
            shared::KeyValueStore::get(&store, b"k").await.unwrap(),
            Some(b"again".to_vec())
        );
    });
}

#[test]
fn over_a_unix_socket_redis_kv_passes_the_suite() {
    let Some(server) = redis_server::require("unix socket") else {
        return;
    };
    let context = ExtensionContext::new(&REDIS_KV, "unix", "g", "p", None);
    let config = config(&format!("{{ url: '{}' }}", server.unix_url()));
    otap_df_tests::key_value_suite::run_shared("redis_kv over a Unix socket", || {
        Arc::new(connect(&context, &config).expect("store")) as Arc<dyn shared::KeyValueStore>
    });
}

/// A store of extension `id` connecting to `url` with more options.
fn store_at(url: &str, id: &str, extra: &str) -> RedisKv {
    let context = ExtensionContext::new(&REDIS_KV, id, "g", "p", None);
    connect(&context, &config(&format!("{{ url: '{url}' {extra} }}"))).expect("store")
}

#[test]
fn credentials_from_the_url_the_options_or_a_file_authenticate_and_wrong_ones_are_refused() {
    let Some(server) = redis_server::require_with_args(
        "auth",
        &[
            "--requirepass",
            "default-pw",
            // One word per argument: redis-server joins an option's words itself.
            "--user",
            "alice",
            "on",
            ">alice-pw",
            "~*",
            "&*",
            "+@all",
        ],
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("otap-df-redis-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, "alice-pw\n").unwrap();
    let address = server.url().replace("redis://", "");
    let authenticated = [
        store_at(&format!("redis://:default-pw@{address}"), "url", ""),
        store_at(&server.url(), "options", ", password: default-pw"),
        store_at(&format!("redis://alice:alice-pw@{address}"), "acl-url", ""),
        store_at(
            &server.url(),
            "acl-file",
            &format!(
                ", username: alice, password_file: '{}'",
                password_file.display()
            ),
        ),
    ];
    let refused = [
        store_at(&server.url(), "no-password", ""),
        store_at(&server.url(), "wrong-password", ", password: nope"),
        store_at(
            &server.url(),
            "wrong-user",
            ", username: bob, password: alice-pw",
        ),
    ];
    runtime().block_on(async {
        use shared::KeyValueStore as _;
        for store in &authenticated {
            store.set(b"k", b"v", None).await.unwrap();
            assert_eq!(store.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        }
        for store in &refused {
            let error = store.get(b"k").await.expect_err("not authenticated");
            let KvError::Refused { store: id, message } = &error else {
                panic!("{error:?}");
            };
            assert!(!error.is_transient(), "{error}");
            assert_eq!(id, store.id());
            assert!(message.starts_with(&address), "{message}");
            assert!(
                !message.contains("alice-pw") && !message.contains("nope"),
                "{message}"
            );
        }
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn db_selects_the_database() {
    let Some(server) = redis_server::require("db") else {
        return;
    };
    // The same prefix on purpose: only the database keeps them apart.
    let in_db_0 = store_at(&server.url(), "zero", ", key_prefix: 'shared:'");
    let in_db_3 = store_at(&server.url(), "three", ", key_prefix: 'shared:', db: 3");
    let in_db_3_by_url = store_at(
        &format!("{}/3", server.url()),
        "url",
        ", key_prefix: 'shared:'",
    );
    runtime().block_on(async {
        use shared::KeyValueStore as _;
        in_db_3.set(b"k", b"in 3", None).await.unwrap();
        assert_eq!(in_db_0.get(b"k").await.unwrap(), None);
        assert_eq!(
            in_db_3_by_url.get(b"k").await.unwrap(),
            Some(b"in 3".to_vec())
        );
    });
}

#[test]
fn a_busy_server_gives_transient_errors_and_answers_again_once_it_is_free() {
    let Some(server) = redis_server::require_with_args("busy", &["--busy-reply-threshold", "10"])
    else {
        return;
    };
    let store = store(&server, "busy", "");
    let runtime = runtime();
    runtime.block_on(until_it_answers(&store));
    // A script that never ends makes the server reply BUSY to everyone else.
    let url = server.url();
    let script = std::thread::spawn(move || {
        let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query::<()>(&mut connection)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        match runtime.block_on(shared::KeyValueStore::get(&store, b"k")) {
            Err(error) => break error,
            Ok(_) => assert!(Instant::now() < deadline, "the server never got busy"),
        }
    };
    assert!(error.is_transient(), "{error:?}");
    assert!(
        matches!(&error, KvError::Unavailable { message, .. } if message.contains("BUSY")),
        "{error:?}"
    );
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SCRIPT")
        .arg("KILL")
        .query::<()>(&mut admin)
        .unwrap();
    assert!(script.join().unwrap().is_err(), "the script was killed");
    runtime.block_on(until_it_answers(&store));
}
