//! `extension:redis_kv` in pipelines, against a real `redis-server`: startup with Redis down
//! or refusing the password or untrusted over TLS, a dedup pipeline through an outage, and an OTLP/HTTP receiver in
//! front of a dedup whose store is down. Pipeline-level tests live here, with the built-in
//! nodes, so that the extension crate's own tests depend on core and the kit only.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::time::{Duration, Instant};

use otap_df_core::registry::Registry;
use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::{Engine, Failure, RunOptions};
use otap_df_tests::engine::{self, Started};
use otap_df_tests::redis_server;

/// Built-ins, the nodes and `extension:redis_kv`.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_redis_kv::register(&mut registry);
    registry.finish().expect("registry")
}

/// How a pipeline failed to start because its store `store` was not ready.
#[derive(Debug)]
pub struct NotReady {
    /// The timeout reported.
    pub timeout: Duration,
    /// What the probe last reported.
    pub reason: String,
    /// The error as shown to users (`Display` and `Debug`).
    pub shown: String,
}

/// Runs a dedup pipeline whose store `store` has `config:` `store_config` and a `startup_timeout`
/// of 1s, and returns why it did not start (panics when it starts, or fails in several ways).
pub fn start_expecting_failure(store_config: &str) -> Failure {
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store:
            type: extension:redis_kv
            startup_timeout: 1s
            config: {store_config}
        nodes:
          gen: {{ type: receiver:generator, config: {{ count: 1 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
"
    );
    let resolved = load_with_env(&text, "redis.yaml", &registry(), &|_| None).expect("valid");
    let error = Engine::new(resolved, RunOptions::default())
        .run()
        .expect_err("the store is not ready");
    let [failure] = error.0.as_slice() else {
        panic!("one failure expected: {error:?}");
    };
    failure.clone()
}

/// Like [`start_expecting_failure`], for a readiness timeout.
pub fn start_expecting_not_ready(store_config: &str) -> NotReady {
    let failure = start_expecting_failure(store_config);
    let Failure::ReadinessTimeout {
        extension,
        timeout,
        reason,
        ..
    } = &failure
    else {
        panic!("{failure:?}");
    };
    assert_eq!(extension, "store");
    NotReady {
        timeout: *timeout,
        reason: reason.clone().expect("what the probe saw"),
        shown: format!("{failure} {failure:?}"),
    }
}

#[test]
fn startup_with_redis_down_fails_naming_the_extension_and_the_address_never_the_password() {
    // A port nothing listens on: bind one, then free it.
    let port = otap_df_tests::ports::free_port().unwrap();
    let not_ready = start_expecting_not_ready(&format!(
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

/// Runs `text` on one core on its own thread.
fn start_one_core(text: &str) -> Started {
    engine::start(engine::one_core(engine::resolve(text, &registry())))
}

/// Waits until `done(dedup counters)` holds, for at most 20 s.
fn wait_for_dedup(
    telemetry: &otap_df_core::runtime::Telemetry,
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
    let started = start_one_core(&text);
    let telemetry = started.telemetry.clone();

    wait_for_dedup(&telemetry, "dedup through Redis", |c| c.records_dropped > 0);
    server.stop();
    let during = wait_for_dedup(&telemetry, "fail open during the outage", |c| c.errors > 5);
    server.restart().expect("redis restarts");
    wait_for_dedup(&telemetry, "dedup again after the outage", |c| {
        c.records_dropped > during.records_dropped + 5
    });
    started.stop().expect("a clean run");

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
fn startup_with_a_wrong_password_fails_at_once_naming_the_refusal() {
    let Some(server) = redis_server::require_with_args("auth startup", &["--requirepass", "right"])
    else {
        return;
    };
    let failure = start_expecting_failure(&format!(
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

fn store_state(telemetry: &otap_df_core::runtime::Telemetry) -> String {
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
    let port = otap_df_tests::ports::free_port().unwrap();
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
    let started = start_one_core(&text);
    let telemetry = started.telemetry.clone();
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
    let dropped = |t: &otap_df_core::runtime::Telemetry| {
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
    started.stop().expect("a clean run");

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

#[test]
fn startup_against_an_untrusted_server_names_the_certificate_problem() {
    let pki = otap_df_tests::tls::TestPki::generate().expect("test certificates");
    let Some(server) = redis_server::require_tls("untrusted startup", &pki, false) else {
        return;
    };
    // No `tls:` block: the system trust store, which does not know the test CA.
    let not_ready = start_expecting_not_ready(&format!("{{ url: '{}' }}", server.tls_url()));
    let address = server.tls_url().replace("rediss://", "");
    assert!(
        not_ready
            .reason
            .starts_with(&format!("Redis at `{address}` does not answer: "))
            && not_ready
                .reason
                .contains("invalid peer certificate: UnknownIssuer"),
        "{not_ready:?}"
    );
}
