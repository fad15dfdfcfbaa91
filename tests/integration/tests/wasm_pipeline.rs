//! `extension:wasm` in a running engine: a WebAssembly authorizer guarding
//! `receiver:otlp_http` on real HTTP, the extension's counters, and a guest that runs out of
//! fuel on every call denying every request while the receiver keeps answering; a guest
//! store over the `redis_kv` granted to it deduplicating a pipeline's batches in Redis.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;
use otap_df_core::registry::Registry;
use otap_df_tests::engine;

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_wasm::register(&mut registry);
    otap_df_extension_bearer_auth::register(&mut registry);
    otap_df_extension_redis_kv::register(&mut registry);
    registry.finish().expect("registry")
}

/// The guest `name` of the wasm crate's tests.
fn guest(name: &str) -> String {
    format!(
        "{}/../../extensions/wasm/tests/guests/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `receiver:otlp_http` on `port` guarded by an `extension:wasm` of guest `name`, into noop.
fn gateway(port: u16, name: &str, limits: &str) -> String {
    gateway_of(port, &guest(name), limits)
}

/// [`gateway`] of the module at `module`.
fn gateway_of(port: u16, module: &str, limits: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          guard: {{ type: extension:wasm, config: {{ module: '{module}', provides: [bearer_token_authorizer], compile_cache: null{limits} }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: guard }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: in, to: out }}
"
    )
}

/// The status of one OTLP/HTTP logs request with `token` (none when empty).
fn post(port: u16, token: &str) -> u16 {
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 3, "wasm", 1)
        .bytes()
        .clone();
    let authorization = format!("Bearer {token}");
    let mut headers = vec![("content-type", "application/x-protobuf")];
    if !token.is_empty() {
        headers.push(("authorization", authorization.as_str()));
    }
    otap_df_tests::http::post_status(port, "/v1/logs", &headers, &body)
}

/// Starts `yaml` on one core and waits (bounded) until `port` accepts connections.
fn start(yaml: &str, port: u16) -> engine::Started {
    let started = engine::start(engine::one_core(engine::resolve(yaml, &registry())));
    assert!(started.wait_running(Duration::from_secs(10)), "it runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::yield_now();
    }
    started
}

/// The wasm extension's counters: an authorizer runs the shared variant (one extension for
/// every core, with an instance of the guest per thread), so there is one set.
fn counters(started: &engine::Started) -> Vec<(&'static str, u64)> {
    counters_of(started, None)
}

/// The counters of extension `guard` on `core` (`None`: a shared extension's).
fn counters_of(started: &engine::Started, core: Option<usize>) -> Vec<(&'static str, u64)> {
    let metrics = started.telemetry.extension_metrics();
    let guard = metrics
        .iter()
        .find(|m| m.extension == "guard")
        .expect("the extension's metrics");
    assert_eq!(guard.core, core, "where the extension runs");
    guard.metrics.counters.clone()
}

fn counter(counters: &[(&'static str, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}

#[test]
fn a_webassembly_authorizer_guards_a_receiver_and_counts_its_decisions() {
    let port = otap_df_tests::ports::free_port().unwrap();
    let started = start(&gateway(port, "authorizer.wat", ""), port);
    assert_eq!(post(port, "alpha-token"), 200);
    assert_eq!(post(port, "beta-token"), 200);
    assert_eq!(post(port, "nope"), 401);
    assert_eq!(post(port, "old-token"), 401);
    assert_eq!(post(port, ""), 401);
    let counters = counters(&started);
    started.stop().expect("a clean stop");
    assert_eq!(counter(&counters, "authorized"), 2);
    assert_eq!(counter(&counters, "denied.invalid"), 1);
    assert_eq!(counter(&counters, "denied.expired"), 1);
    // A request without a credential is refused by the receiver without asking.
    assert_eq!(counter(&counters, "denied.missing"), 0);
    assert_eq!(counter(&counters, "guest.out_of_fuel"), 0);
}

#[test]
fn a_guest_that_never_answers_denies_every_request_and_the_receiver_keeps_serving() {
    let port = otap_df_tests::ports::free_port().unwrap();
    let started = start(
        &gateway(port, "spin.wat", ", limits: { fuel_per_call: 100000 }"),
        port,
    );
    assert_eq!(
        started.telemetry.readiness(),
        Ok(()),
        "ready before any call"
    );
    for _ in 0..5 {
        assert_eq!(post(port, "alpha-token"), 401);
    }
    // The third failure in a row turns the extension degraded: the engine is not ready,
    // saying why (the extension's task reports it: a bounded wait for it to run).
    let deadline = Instant::now() + Duration::from_secs(10);
    let reasons = loop {
        if let Err(reasons) = started.telemetry.readiness() {
            break reasons;
        }
        assert!(Instant::now() < deadline, "the failing guest never showed");
        std::thread::yield_now();
    };
    assert_eq!(
        reasons,
        [
            "extension `guard` of pipeline `g/p` is degraded: the guest failed 3 calls in a row, \
             the last: the call ran out of fuel (`limits.fuel_per_call`)"
        ]
    );
    let counters = counters(&started);
    started.stop().expect("a clean stop");
    assert_eq!(counter(&counters, "guest.out_of_fuel"), 5);
    assert_eq!(counter(&counters, "denied.invalid"), 5);
    assert_eq!(counter(&counters, "authorized"), 0);
}

#[test]
fn a_module_that_does_not_provide_what_a_node_binds_is_a_located_config_error() {
    let yaml = gateway(1, "no-authorize.wat", "");
    let error = otap_df_core::resolve::load_with_env(&yaml, "wasm.yaml", &registry(), &|_| None)
        .expect_err("the module lacks otap_authorize");
    let text = error.to_string();
    assert!(
        text.contains("wasm.yaml:7:52:")
            && text.contains("extensions.guard.config.module")
            && text.contains("`otap_authorize(i32, i32) -> i64`"),
        "{text}"
    );
    let yaml = gateway(1, "authorizer.wat", "").replace(
        "capabilities: { bearer_token_authorizer: guard }",
        "capabilities: { bearer_token_provider: guard }",
    );
    let error = otap_df_core::resolve::load_with_env(&yaml, "wasm.yaml", &registry(), &|_| None)
        .expect_err("a capability the instance does not name");
    assert!(
        error
            .to_string()
            .contains("wasm.yaml:9:94: at `groups.g.pipelines.p.nodes.in.capabilities.bearer_token_provider`: extension `guard` (type `wasm`) does not provide `bearer_token_provider`; it provides: `bearer_token_authorizer`"),
        "{error}"
    );
}

#[test]
fn reloads_that_swap_the_module_refuse_no_request_a_sender_makes_meanwhile() {
    use otap_df_tests::temp::TempDir;

    // Two modules of different bytes (a comment apart) that accept the same token: each
    // reload swaps the module, so each is a new instance (and a new compilation).
    let dir = TempDir::new("wasm-reload");
    let source = std::fs::read_to_string(guest("authorizer.wat")).unwrap();
    let modules = ["first", "second"].map(|name| {
        let path = dir.path(&format!("{name}.wat"));
        std::fs::write(&path, format!(";; the {name} module\n{source}")).unwrap();
        path.display().to_string()
    });
    let port = otap_df_tests::ports::free_port().unwrap();
    let gateways = registry();
    let version = |n: usize| engine::resolve(&gateway_of(port, &modules[n % 2], ""), &gateways);
    let started = engine::start(engine::one_core(version(0)));
    assert!(started.wait_running(Duration::from_secs(10)), "it runs");
    // 300 batches at 300 a second, each one request with the token both modules accept.
    let sender = std::thread::spawn(move || {
        engine::run_to_end(engine::resolve(
            &format!(
                "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          token: {{ type: extension:bearer_auth, config: {{ token: alpha-token }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 10, count: 300, rate: 300 }} }}
          out:
            type: exporter:otlp_http
            config: {{ endpoint: 'http://127.0.0.1:{port}', merge_max_bytes: 0, retry: {{ initial_interval: 10ms, max_interval: 100ms, max_elapsed_time: 20s }} }}
            capabilities: {{ bearer_token_provider: token }}
        connections:
          - {{ from: gen, to: out }}
"
            ),
            &registry(),
        ))
    });
    let mut swapped = 0;
    while !sender.is_finished() {
        let outcome = started
            .reload
            .reload(version(swapped + 1))
            .expect("the reload is answered");
        assert!(outcome.failed.is_empty(), "{outcome:?}");
        assert_eq!(outcome.replaced.len(), 1, "{outcome:?}");
        swapped += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let telemetry = sender.join().expect("the sender ran");
    let out = engine::totals(&telemetry, "out");
    assert_eq!(
        (out.counts.records_out, out.counts.records_failed),
        (3000, 0),
        "every record delivered across {swapped} swaps"
    );
    assert_eq!(
        engine::named(&out, "retried"),
        0,
        "no request refused: {:?}",
        out.named
    );
    assert!(swapped >= 3, "the swaps overlapped the traffic: {swapped}");
    started.stop().expect("a clean stop");
}

#[test]
fn a_webassembly_provider_signs_an_exporters_requests_and_renews_its_token_before_it_expires() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};

    // An upstream that answers every request 200 and notes its Authorization header.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let noted = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let noted = noted.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                loop {
                    let (mut length, mut line) = (0usize, String::new());
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(value) = lower.strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap();
                        }
                        if let Some(value) = line.strip_prefix("authorization: ") {
                            noted.lock().unwrap().push(value.trim().to_owned());
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          signer: {{ type: extension:wasm, config: {{ module: '{}', provides: [bearer_token_provider], compile_cache: null }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 5, rate: 50 }} }}
          out:
            type: exporter:otlp_http
            config: {{ endpoint: 'http://127.0.0.1:{upstream}', compression: none, merge_max_bytes: 0 }}
            capabilities: {{ bearer_token_provider: signer }}
        connections:
          - {{ from: gen, to: out }}
",
        guest("rotating-fast.wat")
    );
    let started = engine::start(engine::one_core(engine::resolve(&yaml, &registry())));
    assert!(started.wait_running(Duration::from_secs(10)), "it runs");
    // The guest's token is valid 200 ms: the extension asks again at 160 ms, and the requests
    // carry the new one (a bounded wait for the second token to show).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tokens: std::collections::BTreeSet<String> =
            seen.lock().unwrap().iter().cloned().collect();
        if tokens.len() >= 2 {
            assert!(
                tokens.iter().all(|t| t.starts_with("Bearer tok-")),
                "{tokens:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token was never renewed: {tokens:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.stop().expect("a clean stop");
}

/// The first line of Redis's answer to `command` (inline form), e.g. `*3` for a list of 3.
fn redis_answer(port: u16, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects to Redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "{command}\r\n").unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("an answer");
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap().trim_end().to_owned()
}

/// A dedup pipeline whose store is the guest `prefixing-store.wat` over `redis_kv` at `url`
/// (`binds`: the guest's `capabilities:` entry, empty for none).
fn dedup_through_guest(url: &str, binds: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          seen:
            type: extension:wasm
            config: {{ module: '{}', provides: [key_value_store], compile_cache: null }}
{binds}
          backing: {{ type: extension:redis_kv, config: {{ url: '{url}' }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: 1, count: 100, duplicate_ratio: 0.5 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: seen }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
",
        guest("prefixing-store.wat")
    )
}

#[test]
fn a_guest_store_over_a_granted_redis_kv_dedups_every_repeat_and_keeps_its_keys_in_redis() {
    let Some(server) = otap_df_tests::redis_server::require("wasm guest over redis_kv") else {
        return;
    };
    let text = dedup_through_guest(
        &server.url(),
        "            capabilities: { key_value_store: backing }",
    );
    let telemetry = engine::run_to_end(engine::resolve(&text, &registry()));
    let totals = telemetry.node_totals();
    let dedup = totals.iter().find(|t| t.node == "dedup").unwrap().counts;
    // Exactly half of the 100 batches repeat the one before; each repeat is caught by the
    // guest's lookup in Redis, and no store call failed.
    assert_eq!(
        (
            dedup.records_in,
            dedup.records_out,
            dedup.records_dropped,
            dedup.errors
        ),
        (100, 50, 50, 0)
    );
    // Every key the dedup wrote went through the guest, which prefixes it.
    let all = redis_answer(server.port(), "KEYS *");
    let guests = redis_answer(server.port(), "KEYS *wasm:dedup:*");
    assert_eq!(all, "*50", "one key per distinct batch");
    assert_eq!(guests, all);
}

#[test]
fn a_guest_that_calls_a_granted_store_without_one_bound_is_a_located_error() {
    let text = dedup_through_guest("redis://127.0.0.1:1", "");
    let errors = otap_df_core::resolve::load_with_env(&text, "wasm.yaml", &registry(), &|_| None)
        .expect_err("the guest needs a store");
    let shown: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "9:23: at `groups.g.pipelines.p.extensions.seen.config.module`: the module \
             imports `otap.kv_get`, `otap.kv_value`, `otap.kv_set`, `otap.kv_set_if_absent`, \
             `otap.kv_delete`, which call the `key_value_store` granted to it, and the extension \
             binds none: add `capabilities: { key_value_store: <extension id> }` to it"
        ]
    );
}

/// Two pipelines on `ports`, each a `receiver:otlp_http` guarded by the engine's
/// `extension:wasm` (`provides`: what its config names) into noop.
fn engine_guarded(ports: [u16; 2], provides: &str) -> String {
    format!(
        "version: otap_df/v1
engine:
  extensions:
    guard: {{ type: extension:wasm, config: {{ module: '{}', provides: [{provides}], compile_cache: null }} }}
groups:
  g:
    pipelines:
      a:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{}' }}, capabilities: {{ bearer_token_authorizer: guard }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: in, to: out }}
      b:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{}' }}, capabilities: {{ bearer_token_authorizer: guard }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: in, to: out }}
",
        guest("authorizer.wat"),
        ports[0],
        ports[1]
    )
}

#[test]
fn one_webassembly_authorizer_of_the_engine_guards_every_pipeline_on_every_core() {
    let ports = [
        otap_df_tests::ports::free_port().unwrap(),
        otap_df_tests::ports::free_port().unwrap(),
    ];
    let resolved = engine::resolve(
        &engine_guarded(ports, "bearer_token_authorizer"),
        &registry(),
    );
    let options = otap_df_core::runtime::RunOptions {
        cores: Some(2),
        ..otap_df_core::runtime::RunOptions::default()
    };
    let started = engine::start(otap_df_core::runtime::Engine::new(resolved, options));
    assert!(started.wait_running(Duration::from_secs(10)), "it runs");
    for port in ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::yield_now();
        }
    }
    // Many connections, so that both cores of each pipeline answer some.
    for _ in 0..10 {
        for port in ports {
            assert_eq!(post(port, "alpha-token"), 200);
            assert_eq!(post(port, "nope"), 401);
        }
    }
    let metrics = started.telemetry.extension_metrics();
    let guards: Vec<_> = metrics.iter().filter(|m| m.extension == "guard").collect();
    assert_eq!(guards.len(), 1, "one extension for the engine: {guards:?}");
    assert_eq!(
        (guards[0].pipeline.as_str(), guards[0].core),
        ("engine", None)
    );
    let counters = guards[0].metrics.counters.clone();
    started.stop().expect("a clean stop");
    assert_eq!(counter(&counters, "authorized"), 20);
    assert_eq!(counter(&counters, "denied.invalid"), 20);
}

#[test]
fn a_webassembly_store_of_the_engine_is_a_located_error() {
    let text = format!(
        "version: otap_df/v1
engine:
  extensions:
    seen: {{ type: extension:wasm, config: {{ module: '{}', provides: [key_value_store], compile_cache: null }} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          gen: {{ type: receiver:generator, config: {{ count: 1 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: seen }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
",
        guest("fixed-store.wat")
    );
    let errors = otap_df_core::resolve::load_with_env(&text, "wasm.yaml", &registry(), &|_| None)
        .expect_err("a store runs one instance per core");
    let shown: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "4:13: at `engine.extensions.seen.type`: extension `seen` (extension:wasm) runs one \
          instance per core with this configuration, and an extension of the engine is one \
          instance for all of its pipelines and cores; declare it in each pipeline's \
          `extensions:` instead"
        ]
    );
}

#[test]
fn an_authorizer_whose_tokens_live_in_redis_accepts_revokes_and_fails_closed_without_a_reload() {
    let Some(mut server) = otap_df_tests::redis_server::require("wasm authorizer over redis_kv")
    else {
        return;
    };
    let port = otap_df_tests::ports::free_port().unwrap();
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          guard:
            type: extension:wasm
            config: {{ module: '{}', provides: [bearer_token_authorizer], compile_cache: null }}
            capabilities: {{ key_value_store: tokens }}
          tokens: {{ type: extension:redis_kv, config: {{ url: '{}', key_prefix: 'tokens:', call_timeout: 200ms }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: guard }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: in, to: out }}
",
        guest("store-authorizer.wat"),
        server.url()
    );
    assert_eq!(
        redis_answer(server.port(), "SET tokens:alpha-key tenant-a"),
        "+OK"
    );
    let started = start(&text, port);
    assert_eq!(post(port, "alpha-key"), 200);
    assert_eq!(post(port, "nope"), 401);
    // Revoked in Redis: refused from the next request on.
    assert_eq!(redis_answer(server.port(), "DEL tokens:alpha-key"), ":1");
    assert_eq!(post(port, "alpha-key"), 401);
    assert_eq!(
        redis_answer(server.port(), "SET tokens:beta-key tenant-b"),
        "+OK"
    );
    assert_eq!(post(port, "beta-key"), 200);
    // Redis gone: no decision, the request refused as unavailable (retry), not unauthorized.
    server.stop();
    assert_eq!(post(port, "beta-key"), 503);
    // A guest granted a store runs one instance per core.
    let counters = counters_of(&started, Some(0));
    started.stop().expect("a clean stop");
    assert_eq!(counter(&counters, "authorized"), 2);
    assert_eq!(counter(&counters, "denied.invalid"), 2);
    assert_eq!(counter(&counters, "undecided"), 1);
}
