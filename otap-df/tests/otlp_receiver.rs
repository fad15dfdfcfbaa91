//! `receiver:otlp`: one receiver serving OTLP/gRPC and OTLP/HTTP on their own addresses into
//! one pipeline, as the Collector's `otlp` receiver does — both kinds of sender delivered
//! exactly, one authorizer guarding both, and reloads replacing it while both send losing
//! nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::time::Duration;

use otap_df_core::data::Signal;
use otap_df_nodes::otlp_grpc::{code, frame, service_path};
use otap_df_tests::temp::TempDir;
use support::{named, node_totals, run_to_end};

/// A gateway whose `receiver:otlp` serves gRPC on `grpc` and HTTP on `http` (each with the
/// `extra` options of its `protocols:` entry), accepting `t-in` when `auth`, into a file.
fn gateway(grpc: u16, http: u16, auth: bool, out: &std::path::Path, extra: [&str; 2]) -> String {
    let (extensions, capabilities) = if auth {
        (
            "        extensions:\n          callers: { type: extension:bearer_auth, config: { tokens: [t-in] } }\n",
            "            capabilities: { bearer_token_authorizer: callers }\n",
        )
    } else {
        ("", "")
    };
    let [grpc_extra, http_extra] = extra;
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      gateway:
{extensions}        nodes:
          in:
            type: receiver:otlp
            config:
              protocols:
                grpc: {{ listen: '127.0.0.1:{grpc}'{grpc_extra} }}
                http: {{ listen: '127.0.0.1:{http}'{http_extra} }}
{capabilities}          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
        out.display()
    )
}

/// A sender of `count` batches of 10 records of each signal through `exporter:<exporter>` to
/// `port`, with token `t-in`; each signal's batches at `rate` a second when given.
fn sender(exporter: &str, port: u16, count: u64, rate: Option<u32>) -> String {
    let rate = rate.map_or(String::new(), |rate| format!(", rate: {rate}"));
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          auth: {{ type: extension:bearer_auth, config: {{ token: t-in }} }}
        nodes:
          logs: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 10, count: {count}{rate} }} }}
          metrics: {{ type: receiver:generator, config: {{ signal: metrics, batch_size: 10, count: {count}{rate} }} }}
          traces: {{ type: receiver:generator, config: {{ signal: traces, batch_size: 10, count: {count}{rate} }} }}
          out:
            type: exporter:{exporter}
            config: {{ endpoint: 'http://127.0.0.1:{port}', merge_max_bytes: 0, retry: {{ initial_interval: 10ms, max_interval: 100ms, max_elapsed_time: 20s }} }}
            capabilities: {{ bearer_token_provider: auth }}
        connections:
          - {{ from: [logs, metrics, traces], to: out }}
",
    )
}

/// The records of each signal in the payload file `out`: logs, metrics, traces.
fn records_by_signal(out: &std::path::Path) -> [u64; 3] {
    let payloads = otap_df_nodes::read_payloads(out).unwrap_or_default();
    let count = |signal: Signal| {
        payloads
            .iter()
            .filter(|p| p.signal() == signal)
            .map(|p| p.records())
            .sum::<u64>()
    };
    [
        count(Signal::Logs),
        count(Signal::Metrics),
        count(Signal::Traces),
    ]
}

#[test]
fn one_receiver_takes_grpc_and_http_senders_into_one_pipeline_behind_one_authorizer() {
    let temp = TempDir::new("otlp-receiver-both");
    let (grpc, http) = (support::free_port(), support::free_port());
    let out = temp.path("out.bin");
    let gateway = support::Running::listening(&gateway(grpc, http, true, &out, ["", ""]), grpc);
    let senders = [("otlp_grpc", grpc), ("otlp_http", http)].map(|(exporter, port)| {
        std::thread::spawn(move || run_to_end(&sender(exporter, port, 20, None)))
    });
    for (sender, exporter) in senders.into_iter().zip(["otlp_grpc", "otlp_http"]) {
        let telemetry = sender.join().expect("the sender ran");
        let totals = node_totals(&telemetry, "out");
        assert_eq!(
            (totals.counts.records_out, totals.counts.records_failed),
            (600, 0),
            "{exporter}"
        );
    }
    // A wrong token is refused on both protocols.
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let refused = support::grpc::call(
        grpc,
        http::Method::POST,
        service_path(Signal::Logs),
        &[
            ("content-type", "application/grpc"),
            ("authorization", "Bearer nope"),
        ],
        message,
    );
    assert_eq!(refused.code, Some(code::UNAUTHENTICATED), "{refused:?}");
    let refused = support::post(
        http,
        "/v1/logs",
        &[
            ("content-type", "application/x-protobuf"),
            ("authorization", "Bearer nope"),
        ],
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1)
            .bytes()
            .clone(),
    );
    assert_eq!(refused.status, http::StatusCode::UNAUTHORIZED);
    let totals = gateway.node("in");
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [400, 400, 400]);
    // Both protocols' counters add up in the one node: 60 calls and 60 requests accepted,
    // one of each refused.
    assert_eq!(totals.counts.records_in, 1200);
    assert_eq!(named(&totals, "requests"), 122);
    assert_eq!(named(&totals, "accepted"), 120);
    assert_eq!(named(&totals, "refused.auth_invalid"), 2);
}

#[test]
fn reloads_that_replace_a_two_protocol_receiver_lose_nothing_either_sender_sends() {
    use otap_df_tests::engine;

    let temp = TempDir::new("otlp-receiver-reloads");
    let (grpc, http) = (support::free_port(), support::free_port());
    let out = temp.path("out.bin");
    // Each version differs in one option of each protocol, so that a reload replaces the
    // pipeline: gRPC connections get `GOAWAY`, HTTP connections are handed over.
    let version = |n: u32| {
        gateway(
            grpc,
            http,
            false,
            &out,
            [
                &format!(", max_concurrent_streams: {}", 100 + n % 2),
                &format!(", max_body_size: {}", 1_000_000 + n % 2),
            ],
        )
    };
    let registry = support::registry();
    let gateway = engine::start(engine::one_core(engine::resolve(&version(0), &registry)));
    assert!(
        gateway.wait_running(Duration::from_secs(10)),
        "the gateway runs"
    );
    // 100 batches of 10 records of each signal at 200 a second, from each sender: half a
    // second of traffic across the reloads.
    let senders = [("otlp_grpc", grpc), ("otlp_http", http)].map(|(exporter, port)| {
        std::thread::spawn(move || run_to_end(&sender(exporter, port, 100, Some(200))))
    });
    let mut replaced = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        let outcome = gateway
            .reload
            .reload(engine::resolve(&version(replaced + 1), &registry))
            .expect("the reload is answered");
        assert_eq!(outcome.replaced.len(), 1, "{outcome:?}");
        replaced += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for (sender, exporter) in senders.into_iter().zip(["otlp_grpc", "otlp_http"]) {
        let telemetry = sender.join().expect("the sender ran");
        let totals = node_totals(&telemetry, "out");
        assert_eq!(
            (totals.counts.records_out, totals.counts.records_failed),
            (3000, 0),
            "{exporter}: every record delivered across {replaced} reloads"
        );
        assert_eq!(
            named(&totals, "retried"),
            0,
            "{exporter}: {:?}",
            totals.named
        );
    }
    assert!(
        replaced >= 3,
        "the reloads overlapped the traffic: {replaced}"
    );
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [2000, 2000, 2000]);
}

#[test]
fn a_reload_that_moves_one_protocol_keeps_the_others_socket_and_serves_both() {
    use otap_df_tests::engine;

    let temp = TempDir::new("otlp-receiver-move");
    let (grpc, http, moved) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let out = temp.path("out.bin");
    let registry = support::registry();
    let yaml = gateway(grpc, http, false, &out, ["", ""]);
    let gateway = engine::start(engine::one_core(engine::resolve(&yaml, &registry)));
    assert!(gateway.wait_running(Duration::from_secs(10)));
    // A gRPC client connected before the reload.
    let mut connected = support::grpc::Connection::open(grpc);
    let moved_yaml = yaml.replace(&format!("127.0.0.1:{http}"), &format!("127.0.0.1:{moved}"));
    let outcome = gateway
        .reload
        .reload(engine::resolve(&moved_yaml, &registry))
        .expect("the reload is answered");
    assert_eq!(outcome.replaced.len(), 1, "{outcome:?}");
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    // The old version's socket for HTTP closes with it (bounded wait); gRPC's stays.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old HTTP address still listens"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for (exporter, port) in [("otlp_grpc", grpc), ("otlp_http", moved)] {
        let telemetry = run_to_end(&sender(exporter, port, 1, None));
        assert_eq!(
            node_totals(&telemetry, "out").counts.records_out,
            30,
            "{exporter}"
        );
    }
    // The connection made before the reload got `GOAWAY` from the old version; a new one
    // to the same address is served by the new version.
    assert!(connected.closed_within(Duration::from_secs(10)));
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let answer = support::grpc::call(
        grpc,
        http::Method::POST,
        service_path(Signal::Logs),
        &[("content-type", "application/grpc")],
        message,
    );
    assert_eq!(answer.code, Some(code::OK));
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [25, 20, 20]);
}
