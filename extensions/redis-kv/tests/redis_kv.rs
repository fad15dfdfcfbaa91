//! `extension:redis_kv` against a real `redis-server`: the `key_value_store` behaviour suite
//! (shared and local consumers), prefix isolation, atomic `set_if_absent`, outages and
//! recovery, a dedup pipeline through an outage, and startup with Redis down.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::capability::{Capability, KeyValueStore, KvError, local, shared};
use otap_df_core::extension::ExtensionContext;
use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::engine::{Engine, Failure, RunOptions};
use otap_df_extension_redis_kv::extension::connect;
use otap_df_extension_redis_kv::{REDIS_KV, RedisKv};
use otap_df_tests::redis_server::{self, RedisServer};

mod support;
use support::{config, registry, runtime};

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
fn startup_with_redis_down_fails_naming_the_extension_and_the_address_never_the_password() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let not_ready = support::start_expecting_not_ready(&format!(
        "{{ url: 'redis://:hunter2-secret@127.0.0.1:{port}/0' }}"
    ));
    assert_eq!(not_ready.timeout, Duration::from_secs(1));
    assert!(
        not_ready
            .reason
            .starts_with(&format!("Redis at `127.0.0.1:{port}` does not answer: ")),
        "{not_ready:?}"
    );
    assert!(!not_ready.shown.contains("hunter2-secret"), "{not_ready:?}");
}

/// Runs `text` on one core on its own thread: its telemetry, its shutdown and the run.
fn start_one_core(
    text: &str,
) -> (
    Arc<otap_df_core::runtime::engine::Telemetry>,
    otap_df_core::runtime::engine::ShutdownHandle,
    std::thread::JoinHandle<Result<(), otap_df_core::runtime::engine::EngineError>>,
) {
    let resolved = load_with_env(text, "redis.yaml", &registry(), &|_| None).expect("valid");
    let engine = Engine::new(
        resolved,
        RunOptions {
            cores: Some(1),
            ..RunOptions::default()
        },
    );
    let telemetry = engine.telemetry();
    let shutdown = engine.shutdown_handle();
    (
        telemetry,
        shutdown,
        std::thread::spawn(move || engine.run()),
    )
}

/// Waits until `done(dedup counters)` holds, for at most 20 s.
fn wait_for_dedup(
    telemetry: &otap_df_core::runtime::engine::Telemetry,
    what: &str,
    done: impl Fn(&otap_df_core::node::CounterSnapshot) -> bool,
) -> otap_df_core::node::CounterSnapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = telemetry
            .node_totals()
            .into_iter()
            .find(|t| t.node == "dedup")
            .map(|t| t.counts)
            .unwrap_or_default();
        if done(&counts) {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 20s ({counts:?})"
        );
        // Sampling live counters; bounded by the deadline.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_dedup_pipeline_loses_nothing_through_an_outage_and_dedups_again_after_it() {
    let Some(mut server) = redis_server::require("pipeline outage") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("otap-df-redis-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.bin");
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {{ type: extension:redis_kv, config: {{ url: '{}', call_timeout: 200ms }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: 1, rate: 1000, duplicate_ratio: 0.5 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
",
        server.url(),
        out.display()
    );
    let (telemetry, shutdown, run) = start_one_core(&text);

    wait_for_dedup(&telemetry, "dedup through Redis", |c| c.records_dropped > 0);
    server.stop();
    let during = wait_for_dedup(&telemetry, "fail open during the outage", |c| c.errors > 5);
    server.restart().expect("redis restarts");
    wait_for_dedup(&telemetry, "dedup again after the outage", |c| {
        c.records_dropped > during.records_dropped + 5
    });
    shutdown.request();
    run.join().unwrap().expect("a clean run");

    let totals = telemetry.node_totals();
    let counts = |node: &str| totals.iter().find(|t| t.node == node).unwrap().counts;
    let (generated, dedup, exported) = (counts("gen"), counts("dedup"), counts("out"));
    assert_eq!(dedup.records_in, generated.records_out);
    assert_eq!(dedup.records_out + dedup.records_dropped, dedup.records_in);
    assert_eq!(dedup.records_failed, 0);
    assert_eq!(exported.records_in, dedup.records_out);
    let in_file: u64 = otap_df_nodes::read_payloads(&out)
        .unwrap()
        .iter()
        .map(|p| p.records())
        .sum();
    assert_eq!(in_file, dedup.records_out);
    std::fs::remove_dir_all(&dir).unwrap();
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
fn startup_with_a_wrong_password_fails_at_once_naming_the_refusal() {
    let Some(server) = redis_server::require_with_args("auth startup", &["--requirepass", "right"])
    else {
        return;
    };
    let failure = support::start_expecting_failure(&format!(
        "{{ url: '{}', password: wrong-secret }}",
        server.url()
    ));
    let Failure::ExtensionExited {
        extension, reason, ..
    } = &failure
    else {
        panic!("{failure:?}");
    };
    assert_eq!(extension, "store");
    let address = server.url().replace("redis://", "");
    assert!(
        reason.contains(&format!(
            "Redis refused the readiness probe (permanent): {address}: "
        )),
        "{reason}"
    );
    assert!(
        !format!("{failure} {failure:?}").contains("wrong-secret"),
        "{failure:?}"
    );
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

/// One keep-alive OTLP/HTTP client that sends the same request at a fixed pace (never
/// catching up on slots it missed), and counts the answers.
struct PacedClient {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    request: Vec<u8>,
    every: Duration,
}

impl PacedClient {
    fn connect(port: u16, every: Duration) -> Self {
        let body = otap_df_nodes::otlp::synthetic(otap_df_core::data::Signal::Logs, 5, "same", 1);
        let mut request = format!(
            "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.bytes().len()
        )
        .into_bytes();
        request.extend_from_slice(body.bytes());
        let writer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: std::io::BufReader::new(writer.try_clone().unwrap()),
            writer,
            request,
            every,
        }
    }

    /// One request; its status.
    fn send(&mut self) -> u16 {
        use std::io::{BufRead, Read, Write};
        self.writer.write_all(&self.request).unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        status.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// Sends for `time`: (accepted, other answers).
    fn run_for(&mut self, time: Duration) -> (u64, u64) {
        let start = Instant::now();
        let (mut accepted, mut other) = (0, 0);
        let mut next = start;
        while start.elapsed() < time {
            if self.send() == 200 {
                accepted += 1;
            } else {
                other += 1;
            }
            next += self.every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now; // a slot missed is not made up
            }
        }
        (accepted, other)
    }
}

fn store_state(telemetry: &otap_df_core::runtime::engine::Telemetry) -> String {
    telemetry
        .extension_states()
        .into_iter()
        .find(|(_, id, _, _)| id == "store")
        .map(|(_, _, _, state)| state.to_string())
        .unwrap_or_default()
}

#[test]
fn during_an_outage_calls_fail_fast_the_store_is_degraded_and_the_receiver_in_front_keeps_its_rate()
{
    let Some(mut server) = redis_server::require("breaker") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {{ type: extension:redis_kv, config: {{ url: '{}' }} }}
        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: otlp_in, to: dedup }}
          - {{ from: dedup, to: out }}
",
        server.url(),
    );
    let (telemetry, shutdown, run) = start_one_core(&text);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens");
        std::thread::sleep(Duration::from_millis(10));
    }
    // 200 requests a second offered; the same request each time, so that a working store
    // makes dedup drop all but the first.
    let mut client = PacedClient::connect(port, Duration::from_millis(5));
    let up = client.run_for(Duration::from_secs(2));

    server.stop();
    let outage = std::thread::spawn(move || {
        let down = client.run_for(Duration::from_secs(5));
        (client, down)
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store_state(&telemetry).starts_with("degraded") {
        assert!(
            Instant::now() < deadline,
            "never degraded: {}",
            store_state(&telemetry)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let degraded = store_state(&telemetry);
    let (mut client, down) = outage.join().unwrap();

    server.restart().expect("redis restarts");
    let restarted = Instant::now();
    let dropped = |t: &otap_df_core::runtime::engine::Telemetry| {
        t.node_totals()
            .into_iter()
            .find(|n| n.node == "dedup")
            .map_or(0, |n| n.counts.records_dropped)
    };
    let before = dropped(&telemetry);
    while dropped(&telemetry) == before {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "dedup never resumed"
        );
        assert_eq!(client.send(), 200);
    }
    let recovered = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store_state(&telemetry) != "ready" {
        assert!(
            Instant::now() < deadline,
            "not healthy again: {}",
            store_state(&telemetry)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    shutdown.request();
    run.join().unwrap().expect("a clean run");

    let (up_rate, down_rate) = (up.0 as f64 / 2.0, down.0 as f64 / 5.0);
    eprintln!(
        "redis up: {up_rate:.0} accepted/s; redis down 5 s: {down_rate:.0} accepted/s \
         ({:.2}×), refused {}; dedup again {recovered:?} after the restart; during: {degraded}",
        down_rate / up_rate,
        down.1
    );
    assert_eq!((up.1, down.1), (0, 0), "nothing refused");
    assert!(
        down_rate >= 0.9 * up_rate,
        "the outage cost more than 10 %: {up_rate:.0}/s up, {down_rate:.0}/s down"
    );
    assert!(
        degraded.contains("calls fail fast until it does"),
        "{degraded}"
    );
}
