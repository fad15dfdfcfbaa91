//! `exporter:otlp_grpc` against a real HTTP/2 server on loopback that speaks OTLP/gRPC
//! (`support::grpc`): every record of every signal delivered, in each compression and
//! encoding; the specification's statuses retried (and `RetryInfo` honoured) or not; what is
//! refused dead-lettered and counted; the bearer token sent as metadata and refreshed once
//! after `UNAUTHENTICATED`; a partial success reported.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::time::Duration;

use otap_df_core::data::Signal;
use otap_df_nodes::otlp_grpc::code;
use otap_df_tests::temp::TempDir;
use support::grpc::{GrpcUpstream, Reply};
use support::{named, node_totals, run_to_end};

/// A generator of `count` batches of 10 `signal` records in `encoding`, to an
/// `exporter:otlp_grpc` with `exporter` options (a YAML flow mapping's entries) and, with
/// `token`, a `bearer_auth` extension sending it.
fn pipeline(
    signal: &str,
    encoding: &str,
    count: u64,
    exporter: &str,
    token: Option<&str>,
) -> String {
    let (extensions, capabilities) = match token {
        Some(token) => (
            format!(
                "        extensions:\n          auth: {{ type: extension:bearer_auth, config: {{ token: {token} }} }}\n"
            ),
            ", capabilities: { bearer_token_provider: auth }",
        ),
        None => (String::new(), ""),
    };
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
{extensions}        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: {signal}, encoding: {encoding}, batch_size: 10, count: {count} }} }}
          out: {{ type: exporter:otlp_grpc, config: {{ {exporter} }}{capabilities} }}
        connections:
          - {{ from: gen, to: out }}
"
    )
}

const RETRY: &str = "retry: { initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 20s }";

#[test]
fn every_record_of_every_signal_reaches_the_server_in_each_compression_and_encoding() {
    let cases = [
        ("gzip", "protobuf"),
        ("zstd", "protobuf"),
        ("none", "protobuf"),
        ("gzip", "json"),
    ];
    for (compression, encoding) in cases {
        let upstream = GrpcUpstream::start(vec![Reply::Ok]);
        for signal in ["logs", "metrics", "traces"] {
            let exporter = format!(
                "endpoint: 'http://127.0.0.1:{}', compression: {compression}",
                upstream.port
            );
            let telemetry = run_to_end(&pipeline(signal, encoding, 20, &exporter, None));
            let out = node_totals(&telemetry, "out");
            assert_eq!(
                out.counts.records_in, 200,
                "{signal} {compression} {encoding}"
            );
            assert_eq!(
                out.counts.records_out, 200,
                "{signal} {compression} {encoding}"
            );
            assert_eq!(out.counts.records_failed, 0);
        }
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            assert_eq!(
                upstream.records(signal),
                200,
                "{signal:?} {compression} {encoding}"
            );
        }
        for call in upstream.calls() {
            assert_eq!(call.headers["content-type"], "application/grpc");
            assert_eq!(call.headers["te"], "trailers");
            assert_eq!(
                call.headers
                    .get("grpc-encoding")
                    .map(|v| v.to_str().unwrap()),
                (compression != "none").then_some(compression)
            );
            assert!(call.headers.contains_key("grpc-timeout"));
        }
    }
}

#[test]
fn retryable_statuses_are_retried_as_retry_info_says_and_delivered_once() {
    let upstream = GrpcUpstream::start(vec![
        Reply::Status(code::UNAVAILABLE, None),
        Reply::Status(code::RESOURCE_EXHAUSTED, Some(Duration::from_millis(300))),
        Reply::Ok,
    ]);
    let exporter = format!(
        "endpoint: 'http://127.0.0.1:{}', compression: none, max_in_flight: 1, \
         retry: {{ initial_interval: 20ms, max_interval: 2s, max_elapsed_time: 20s }}",
        upstream.port
    );
    let telemetry = run_to_end(&pipeline("logs", "protobuf", 1, &exporter, None));
    let calls = upstream.calls();
    assert_eq!(calls.len(), 3, "two refusals, one delivery");
    let waited = calls[2].at - calls[1].at;
    assert!(
        waited >= Duration::from_millis(300),
        "the RetryInfo delay (300ms) is honoured over the backoff (20ms, doubled): {waited:?}"
    );
    assert_eq!(
        upstream.records(Signal::Logs),
        30,
        "each call carried the batch"
    );
    let out = node_totals(&telemetry, "out");
    assert_eq!((out.counts.records_out, out.counts.records_failed), (10, 0));
    assert_eq!(named(&out, "requests"), 3);
}

#[test]
fn what_the_server_refuses_for_good_is_not_retried_and_is_dead_lettered_and_counted() {
    let temp = TempDir::new("otlp-grpc-dead-letter");
    let dead = temp.path("dead.bin");
    // `RESOURCE_EXHAUSTED` without `RetryInfo` is not retried (the OTLP specification), nor
    // is `INVALID_ARGUMENT`.
    for reply in [
        Reply::Status(code::INVALID_ARGUMENT, None),
        Reply::Status(code::RESOURCE_EXHAUSTED, None),
    ] {
        let _ = std::fs::remove_file(&dead);
        let upstream = GrpcUpstream::start(vec![reply.clone()]);
        let exporter = format!(
            "endpoint: 'http://127.0.0.1:{}', {RETRY}, dead_letter_file: '{}'",
            upstream.port,
            dead.display()
        );
        let telemetry = run_to_end(&pipeline("traces", "protobuf", 2, &exporter, None));
        assert_eq!(
            upstream.calls().len(),
            2,
            "{reply:?}: one call per batch, no retry"
        );
        let out = node_totals(&telemetry, "out");
        assert_eq!(
            (out.counts.records_out, out.counts.records_failed),
            (0, 20),
            "{reply:?}"
        );
        let kept = otap_df_nodes::read_payloads(&dead).expect("a readable dead-letter file");
        assert_eq!(
            kept.iter().map(|p| p.records()).sum::<u64>(),
            20,
            "{reply:?}"
        );
    }
}

#[test]
fn the_token_travels_as_metadata_and_unauthenticated_gets_one_retry_with_a_fresh_one() {
    let upstream = GrpcUpstream::start(vec![Reply::Status(code::UNAUTHENTICATED, None), Reply::Ok]);
    let exporter = format!(
        "endpoint: 'http://127.0.0.1:{}', max_in_flight: 1, {RETRY}",
        upstream.port
    );
    let telemetry = run_to_end(&pipeline(
        "metrics",
        "protobuf",
        1,
        &exporter,
        Some("t0ken"),
    ));
    let calls = upstream.calls();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(call.headers["authorization"], "Bearer t0ken");
    }
    let out = node_totals(&telemetry, "out");
    assert_eq!(out.counts.records_out, 10);

    // Refused again: no second retry, the batch is counted as failed.
    let refusing = GrpcUpstream::start(vec![Reply::Status(code::UNAUTHENTICATED, None)]);
    let exporter = format!(
        "endpoint: 'http://127.0.0.1:{}', max_in_flight: 1, {RETRY}",
        refusing.port
    );
    let telemetry = run_to_end(&pipeline(
        "metrics",
        "protobuf",
        1,
        &exporter,
        Some("t0ken"),
    ));
    assert_eq!(
        refusing.calls().len(),
        2,
        "one retry with the freshest token, no more"
    );
    assert_eq!(node_totals(&telemetry, "out").counts.records_failed, 10);
}

#[test]
fn a_partial_success_is_counted_and_not_retried() {
    let upstream = GrpcUpstream::start(vec![Reply::Partial(3)]);
    let exporter = format!("endpoint: 'http://127.0.0.1:{}', {RETRY}", upstream.port);
    let telemetry = run_to_end(&pipeline("logs", "protobuf", 2, &exporter, None));
    assert_eq!(upstream.calls().len(), 2);
    let out = node_totals(&telemetry, "out");
    assert_eq!(out.counts.records_out, 20);
    assert_eq!(named(&out, "records_rejected"), 6);
}

#[test]
fn a_server_that_is_not_there_is_retried_until_the_budget_then_counted() {
    let port = otap_df_tests::ports::free_port().expect("a free port");
    let exporter = format!(
        "endpoint: 'http://127.0.0.1:{port}', timeout: 1s, \
         retry: {{ initial_interval: 20ms, max_interval: 50ms, max_elapsed_time: 300ms }}"
    );
    let telemetry = run_to_end(&pipeline("logs", "protobuf", 1, &exporter, None));
    let out = node_totals(&telemetry, "out");
    assert_eq!((out.counts.records_out, out.counts.records_failed), (0, 10));
    assert!(named(&out, "requests") >= 2, "retried: {:?}", out.named);
}

#[test]
fn over_tls_the_exporter_delivers_to_a_server_it_trusts_and_not_to_one_it_does_not() {
    let pki = otap_df_tests::tls::TestPki::generate().expect("a PKI");
    let other = otap_df_tests::tls::TestPki::generate().expect("another PKI");
    let upstream = GrpcUpstream::start_tls(vec![Reply::Ok], &pki.server_cert(), &pki.server_key());
    let exporter = |ca: &std::path::Path| {
        format!(
            "endpoint: 'https://localhost:{}', tls: {{ ca_file: '{}' }}, \
             retry: {{ initial_interval: 20ms, max_elapsed_time: 200ms }}",
            upstream.port,
            ca.display()
        )
    };
    let trusted = run_to_end(&pipeline(
        "logs",
        "protobuf",
        5,
        &exporter(&pki.ca_cert()),
        None,
    ));
    assert_eq!(node_totals(&trusted, "out").counts.records_out, 50);
    assert_eq!(upstream.records(Signal::Logs), 50);
    let untrusted = run_to_end(&pipeline(
        "logs",
        "protobuf",
        1,
        &exporter(&other.ca_cert()),
        None,
    ));
    let refused = node_totals(&untrusted, "out");
    assert_eq!(
        (refused.counts.records_out, refused.counts.records_failed),
        (0, 10)
    );
    assert_eq!(upstream.records(Signal::Logs), 50, "nothing reached it");
}

/// A gateway on `port`: `receiver:otlp_grpc` (accepting `token`, when given) → `exporter:file`
/// writing `out`.
fn grpc_gateway(port: u16, token: Option<&str>, out: &std::path::Path, extra: &str) -> String {
    let (extensions, capabilities) = match token {
        Some(token) => (
            format!(
                "        extensions:\n          callers: {{ type: extension:bearer_auth, config: {{ tokens: [{token}] }} }}\n"
            ),
            ", capabilities: { bearer_token_authorizer: callers }",
        ),
        None => (String::new(), ""),
    };
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      gateway:
{extensions}        nodes:
          in: {{ type: receiver:otlp_grpc, config: {{ listen: '127.0.0.1:{port}'{extra} }}{capabilities} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
        out.display()
    )
}

/// The records of each signal in the payload file `out`: logs, metrics, traces.
fn records_by_signal(out: &std::path::Path) -> [u64; 3] {
    let payloads = otap_df_nodes::read_payloads(out).expect("a readable payload file");
    [Signal::Logs, Signal::Metrics, Signal::Traces].map(|signal| {
        payloads
            .iter()
            .filter(|p| p.signal() == signal)
            .map(|p| p.records())
            .sum()
    })
}

#[test]
fn a_grpc_sender_and_a_grpc_gateway_with_tokens_on_both_ends_deliver_every_record() {
    let temp = TempDir::new("otlp-grpc-gateway");
    for compression in ["gzip", "none"] {
        let port = support::free_port();
        let out = temp.path(&format!("{compression}.bin"));
        let gateway =
            support::Running::listening(&grpc_gateway(port, Some("t-in"), &out, ""), port);
        for signal in ["logs", "metrics", "traces"] {
            let exporter = format!(
                "endpoint: 'http://127.0.0.1:{port}', compression: {compression}, \
                 merge_max_bytes: 0, {RETRY}"
            );
            let telemetry = run_to_end(&pipeline(signal, "protobuf", 30, &exporter, Some("t-in")));
            assert_eq!(
                node_totals(&telemetry, "out").counts.records_out,
                300,
                "{signal}"
            );
        }
        let accepted = gateway.node("in");
        gateway.stop().expect("a clean stop");
        assert_eq!(records_by_signal(&out), [300, 300, 300], "{compression}");
        assert_eq!(accepted.counts.records_in, 900);
        assert_eq!(named(&accepted, "requests"), 90);
        assert_eq!(named(&accepted, "accepted"), 90);
    }
}

#[test]
fn refusals_get_grpcs_statuses_and_the_receiver_keeps_serving() {
    use http::Method;
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    use support::grpc::call;

    let temp = TempDir::new("otlp-grpc-refusals");
    let port = support::free_port();
    let out = temp.path("out.bin");
    let gateway = support::Running::listening(&grpc_gateway(port, Some("t-in"), &out, ""), port);
    let logs = service_path(Signal::Logs);
    let message = otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1)
        .bytes()
        .clone();
    let valid = frame(&message, false);
    let grpc = ("content-type", "application/grpc");
    let token = ("authorization", "Bearer t-in");
    // What is sent (a name, the method, the path, the metadata, the body), and the status.
    type Case<'a> = (
        &'a str,
        Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        bytes::Bytes,
        i32,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown method",
            Method::POST,
            "/x.Y/Export",
            vec![grpc, token],
            valid.clone(),
            code::UNIMPLEMENTED,
        ),
        (
            "GET",
            Method::GET,
            logs,
            vec![grpc, token],
            valid.clone(),
            code::UNIMPLEMENTED,
        ),
        (
            "not gRPC",
            Method::POST,
            logs,
            vec![("content-type", "application/json"), token],
            valid.clone(),
            code::INVALID_ARGUMENT,
        ),
        (
            "no token",
            Method::POST,
            logs,
            vec![grpc],
            valid.clone(),
            code::UNAUTHENTICATED,
        ),
        (
            "wrong token",
            Method::POST,
            logs,
            vec![grpc, ("authorization", "Bearer nope")],
            valid.clone(),
            code::UNAUTHENTICATED,
        ),
        (
            "snappy",
            Method::POST,
            logs,
            vec![grpc, token, ("grpc-encoding", "snappy")],
            valid.clone(),
            code::UNIMPLEMENTED,
        ),
        (
            "a grpc-timeout that is not one",
            Method::POST,
            logs,
            vec![grpc, token, ("grpc-timeout", "10s")],
            valid.clone(),
            code::INVALID_ARGUMENT,
        ),
        (
            "past the limit",
            Method::POST,
            logs,
            vec![grpc, token],
            frame(&vec![0u8; (4 << 20) + 1], false),
            code::RESOURCE_EXHAUSTED,
        ),
        (
            "bad zstd",
            Method::POST,
            logs,
            vec![grpc, token, ("grpc-encoding", "zstd")],
            frame(b"not zstd", true),
            code::INVALID_ARGUMENT,
        ),
        (
            "zstd past the limit once decompressed",
            Method::POST,
            logs,
            vec![grpc, token, ("grpc-encoding", "zstd")],
            frame(&zstd::encode_all(&vec![0u8; 5 << 20][..], 1).unwrap(), true),
            code::RESOURCE_EXHAUSTED,
        ),
        (
            "short framing",
            Method::POST,
            logs,
            vec![grpc, token],
            bytes::Bytes::from_static(b"\0\0"),
            code::INVALID_ARGUMENT,
        ),
        (
            "not OTLP",
            Method::POST,
            logs,
            vec![grpc, token],
            frame(b"\xff\xff\xff", false),
            code::INVALID_ARGUMENT,
        ),
        (
            "compressed without encoding",
            Method::POST,
            logs,
            vec![grpc, token],
            frame(b"abc", true),
            code::INVALID_ARGUMENT,
        ),
        (
            "valid",
            Method::POST,
            logs,
            vec![grpc, token],
            valid.clone(),
            code::OK,
        ),
        (
            "valid, zstd",
            Method::POST,
            logs,
            vec![grpc, token, ("grpc-encoding", "zstd")],
            frame(&zstd::encode_all(message.as_ref(), 3).unwrap(), true),
            code::OK,
        ),
    ];
    for (what, method, path, headers, body, expected) in cases {
        let answer = call(port, method, path, &headers, body);
        assert_eq!(answer.http, http::StatusCode::OK, "{what}");
        assert_eq!(answer.code, Some(expected), "{what}: {answer:?}");
        assert!(
            !answer.details,
            "{what}: no RetryInfo for a refusal not worth retrying"
        );
    }
    let totals = gateway.node("in");
    gateway.stop().expect("a clean stop");
    assert_eq!(
        records_by_signal(&out),
        [10, 0, 0],
        "only the valid calls' records"
    );
    assert_eq!(named(&totals, "requests"), 15);
    assert_eq!(named(&totals, "accepted"), 2);
}

#[test]
fn metadata_from_the_senders_identity_travels_upstream_and_nothing_goes_without_it() {
    use http::Method;
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    use support::grpc::call;

    // A gRPC gateway: each caller's identity (bearer_auth names it after its token's place in
    // the configuration) sent upstream as `x-sender`.
    let upstream = GrpcUpstream::start(vec![Reply::Ok]);
    let port = support::free_port();
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [t-one, t-two] }} }}
        nodes:
          in: {{ type: receiver:otlp_grpc, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:otlp_grpc, config: {{ endpoint: 'http://127.0.0.1:{}', compression: none, headers_from_identity: {{ x-sender: name }} }} }}
        connections:
          - {{ from: in, to: out }}
",
        upstream.port
    );
    let gateway = support::Running::listening(&yaml, port);
    for (token, records) in [("t-one", 3), ("t-two", 4)] {
        let message = otap_df_nodes::otlp::synthetic(Signal::Logs, records, "t", 1);
        let authorization = format!("Bearer {token}");
        let answer = call(
            port,
            Method::POST,
            service_path(Signal::Logs),
            &[
                ("content-type", "application/grpc"),
                ("authorization", &authorization),
            ],
            frame(message.bytes(), false),
        );
        assert_eq!(answer.code, Some(code::OK), "{token}: {answer:?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while upstream.records(Signal::Logs) < 7 {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream got {:?}",
            upstream.calls()
        );
        // Sampling interval: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
    gateway.stop().expect("a clean stop");
    let mut senders: Vec<(String, usize)> = upstream
        .calls()
        .iter()
        .map(|call| {
            let sender = call
                .headers
                .get("x-sender")
                .expect("x-sender")
                .to_str()
                .unwrap();
            (sender.to_owned(), call.records)
        })
        .collect();
    senders.sort();
    assert_eq!(
        senders,
        [
            ("callers:tokens[0]".to_owned(), 3),
            ("callers:tokens[1]".to_owned(), 4)
        ]
    );

    // Payloads without a sender (a generator's): never sent without the metadata.
    let upstream = GrpcUpstream::start(vec![Reply::Ok]);
    let exporter = format!(
        "endpoint: 'http://127.0.0.1:{}', headers_from_identity: {{ x-sender: name }}, {RETRY}",
        upstream.port
    );
    let telemetry = run_to_end(&pipeline("logs", "protobuf", 5, &exporter, None));
    let out = node_totals(&telemetry, "out");
    assert_eq!((out.counts.records_out, out.counts.records_failed), (0, 50));
    assert!(upstream.calls().is_empty());
}

#[test]
fn a_caller_not_permitted_for_a_signal_gets_permission_denied() {
    use http::Method;
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    use support::grpc::call;

    let temp = TempDir::new("otlp-grpc-permissions");
    let port = support::free_port();
    let out = temp.path("out.bin");
    // Logs are open to every authorized caller; traces only to a name no token has.
    let gateway = support::Running::listening(
        &grpc_gateway(
            port,
            Some("t-in"),
            &out,
            ", permissions: { traces: { name: [someone-else] } }",
        ),
        port,
    );
    let headers = [
        ("content-type", "application/grpc"),
        ("authorization", "Bearer t-in"),
    ];
    for (signal, expected) in [(Signal::Logs, code::OK), (Signal::Traces, 7)] {
        let message = otap_df_nodes::otlp::synthetic(signal, 5, "t", 1);
        let answer = call(
            port,
            Method::POST,
            service_path(signal),
            &headers,
            frame(message.bytes(), false),
        );
        assert_eq!(answer.code, Some(expected), "{signal}: {answer:?}");
    }
    let totals = gateway.node("in");
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [5, 0, 0]);
    assert_eq!(named(&totals, "refused.auth_forbidden"), 1);
}

#[test]
fn a_full_pipeline_answers_resource_exhausted_with_retry_info_without_reading_the_message() {
    let port = support::free_port();
    // The sink holds a payload for a second and the queue one more: a call that finds both
    // taken waits `admission_timeout`, then is refused.
    let gateway = slow_gateway(
        port,
        ", admission_timeout: 100ms, retry_after: 2s",
        "grpc-full",
        "1s",
    );
    let (accepted, refused) = call_until_refused(port, &[("content-type", "application/grpc")]);
    assert_eq!(refused.code, Some(code::RESOURCE_EXHAUSTED), "{refused:?}");
    assert!(
        refused.details,
        "a RetryInfo says when to come back: {refused:?}"
    );
    assert!(accepted >= 1, "the first calls fit");
    let totals = gateway.node("in");
    assert_eq!(named(&totals, "accepted"), accepted);
    assert_eq!(named(&totals, "refused.pipeline_full"), 1);
    assert_eq!(
        named(&totals, "bodies_read"),
        accepted,
        "the refused call's message was never read"
    );
    gateway.stop().expect("a clean stop");
}

#[test]
fn over_tls_a_grpc_sender_reaches_a_grpc_gateway_it_trusts() {
    let temp = TempDir::new("otlp-grpc-tls");
    let pki = otap_df_tests::tls::TestPki::generate().expect("a PKI");
    let port = support::free_port();
    let out = temp.path("out.bin");
    let tls = format!(
        ", tls: {{ cert_file: '{}', key_file: '{}' }}",
        pki.server_cert().display(),
        pki.server_key().display()
    );
    let gateway = support::Running::listening(&grpc_gateway(port, None, &out, &tls), port);
    let exporter = format!(
        "endpoint: 'https://localhost:{port}', tls: {{ ca_file: '{}' }}, {RETRY}",
        pki.ca_cert().display()
    );
    let telemetry = run_to_end(&pipeline("traces", "protobuf", 7, &exporter, None));
    assert_eq!(node_totals(&telemetry, "out").counts.records_out, 70);
    // A client speaking h2c to the TLS port gets nothing through.
    let plain =
        format!("endpoint: 'http://127.0.0.1:{port}', timeout: 1s, retry: {{ enabled: false }}");
    let refused = run_to_end(&pipeline("traces", "protobuf", 1, &plain, None));
    assert_eq!(node_totals(&refused, "out").counts.records_failed, 10);
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [0, 0, 70]);
}

#[test]
fn reloads_that_replace_a_grpc_gateway_lose_nothing_its_clients_send_meanwhile() {
    use otap_df_tests::engine;

    let temp = TempDir::new("otlp-grpc-reloads");
    let port = support::free_port();
    let out = temp.path("out.bin");
    // Each version differs in one option, so that a reload replaces the pipeline: the old
    // version sends its connections `GOAWAY`, the new one accepts from the same socket.
    let version = |streams: u32| {
        grpc_gateway(
            port,
            None,
            &out,
            &format!(", max_concurrent_streams: {streams}"),
        )
    };
    let registry = support::registry();
    let gateway = engine::start(engine::one_core(engine::resolve(&version(100), &registry)));
    assert!(
        gateway.wait_running(Duration::from_secs(10)),
        "the gateway runs"
    );
    // 400 batches of 10 logs at 400 a second: a second of traffic across the reloads.
    let sender = std::thread::spawn(move || {
        let exporter = format!(
            "endpoint: 'http://127.0.0.1:{port}', compression: none, merge_max_bytes: 0, \
             retry: {{ initial_interval: 10ms, max_interval: 100ms, max_elapsed_time: 20s }}"
        );
        run_to_end(
            &pipeline("logs", "protobuf", 400, &exporter, None)
                .replace("count: 400 }", "count: 400, rate: 400 }"),
        )
    });
    let mut replaced = 0;
    while !sender.is_finished() {
        let streams = 101 + replaced % 2;
        let outcome = gateway
            .reload
            .reload(engine::resolve(&version(streams), &registry))
            .expect("the reload is answered");
        assert_eq!(outcome.replaced.len(), 1, "{outcome:?}");
        replaced += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let telemetry = sender.join().expect("the sender ran");
    let out_totals = node_totals(&telemetry, "out");
    assert_eq!(
        (
            out_totals.counts.records_out,
            out_totals.counts.records_failed
        ),
        (4000, 0),
        "every record delivered across {replaced} reloads"
    );
    assert!(
        replaced >= 5,
        "the reloads overlapped the traffic: {replaced}"
    );
    // `GOAWAY` lets the calls in flight finish, and the client opens its next calls on a new
    // connection: none failed, none was sent twice.
    assert_eq!(named(&out_totals, "retried"), 0, "{:?}", out_totals.named);
    assert_eq!(named(&out_totals, "requests"), 400);
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [4000, 0, 0]);
}

#[test]
fn a_call_that_cannot_be_taken_before_its_deadline_is_answered_deadline_exceeded_unread() {
    let port = support::free_port();
    // The sink holds a payload for two seconds and the queue one more; admission would wait
    // 30s, but each call says it waits 300ms (`grpc-timeout`): the first that finds no room is
    // answered when its client stops waiting, not taken after it.
    let gateway = slow_gateway(port, ", admission_timeout: 30s", "grpc-deadline", "2s");
    let (accepted, late) = call_until_refused(
        port,
        &[
            ("content-type", "application/grpc"),
            ("grpc-timeout", "300m"),
        ],
    );
    assert_eq!(late.code, Some(code::DEADLINE_EXCEEDED), "{late:?}");
    assert!(late.message.contains("deadline (300ms) passed"), "{late:?}");
    let totals = gateway.node("in");
    assert_eq!(named(&totals, "accepted"), accepted);
    assert_eq!(named(&totals, "refused.deadline_exceeded"), 1);
    assert_eq!(named(&totals, "refused.pipeline_full"), 0);
    assert_eq!(named(&totals, "bodies_read"), accepted);
    gateway.stop().expect("a clean stop");
}

#[test]
fn a_connection_idle_for_idle_timeout_is_closed_and_a_busy_one_is_not() {
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    use support::grpc::Connection;

    let temp = TempDir::new("otlp-grpc-idle");
    let port = support::free_port();
    let out = temp.path("out.bin");
    let gateway =
        support::Running::listening(&grpc_gateway(port, None, &out, ", idle_timeout: 1s"), port);
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let headers = [("content-type", "application/grpc")];
    let logs = service_path(Signal::Logs);
    let mut busy = Connection::open(port);
    let mut idle = Connection::open(port);
    let answer = idle.call(http::Method::POST, logs, &headers, message.clone());
    assert_eq!(answer.code, Some(code::OK));
    // A call every 100 ms, for longer than the idle timeout, on one connection: never idle
    // for long enough, never closed (a closed connection fails the next call).
    let started = std::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        let answer = busy.call(http::Method::POST, logs, &headers, message.clone());
        assert_eq!(answer.code, Some(code::OK), "call {calls}");
        calls += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        idle.closed_within(std::time::Duration::from_secs(10)),
        "the idle connection is closed"
    );
    let totals = gateway.node("in");
    assert_eq!(named(&totals, "connections.idle_closed"), 1);
    assert_eq!(named(&totals, "accepted"), calls + 1);
    assert!(
        busy.closed_within(std::time::Duration::from_secs(10)),
        "idle in its turn, the busy connection is closed too"
    );
    assert_eq!(named(&gateway.node("in"), "connections.idle_closed"), 2);
    gateway.stop().expect("a clean stop");
}

#[test]
fn a_message_that_stops_arriving_is_refused_after_message_read_timeout() {
    use otap_df_nodes::otlp_grpc::{frame, service_path};

    let temp = TempDir::new("otlp-grpc-read-timeout");
    let port = support::free_port();
    let out = temp.path("out.bin");
    let gateway = support::Running::listening(
        &grpc_gateway(port, None, &out, ", message_read_timeout: 300ms"),
        port,
    );
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let headers = [("content-type", "application/grpc")];
    let logs = service_path(Signal::Logs);
    // Half the message, then nothing: refused once the timeout passes, not waited on.
    let half = message.slice(..message.len() / 2);
    let answer = support::grpc::call_stalled(
        port,
        logs,
        &headers,
        half,
        std::time::Duration::from_secs(30),
    )
    .expect("an answer while the message is still coming");
    assert_eq!(answer.code, Some(code::DEADLINE_EXCEEDED), "{answer:?}");
    assert_eq!(answer.message, "the message did not arrive within 300ms");
    // The receiver keeps serving; nothing of the stalled call was taken.
    let answer = support::grpc::call(port, http::Method::POST, logs, &headers, message);
    assert_eq!(answer.code, Some(code::OK));
    let totals = gateway.node("in");
    assert_eq!(named(&totals, "refused.body_timeout"), 1);
    assert_eq!(named(&totals, "accepted"), 1);
    gateway.stop().expect("a clean stop");
    assert_eq!(records_by_signal(&out), [5, 0, 0]);
}

/// A gateway on `port` whose receiver has `options` (a flow mapping's entries after `listen`)
/// into a sink that holds each payload for `delay`, with a queue of one: the third call at
/// once finds the pipeline full.
fn slow_gateway(port: u16, options: &str, log: &str, delay: &str) -> support::Running {
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      gateway:
        nodes:
          in: {{ type: receiver:otlp_grpc, config: {{ listen: '127.0.0.1:{port}'{options} }} }}
          slow: {{ type: exporter:recording_sink, config: {{ log: {log}, delay: {delay} }} }}
        connections:
          - {{ from: in, to: slow }}
"
    );
    support::Running::listening_with(&yaml, port, 1)
}

/// Raw logs calls with `headers` until one is not `OK`: how many were, and that one's answer.
fn call_until_refused(port: u16, headers: &[(&str, &str)]) -> (u64, support::grpc::CallAnswer) {
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let mut accepted = 0;
    loop {
        let answer = support::grpc::call(
            port,
            http::Method::POST,
            service_path(Signal::Logs),
            headers,
            message.clone(),
        );
        match answer.code {
            Some(code::OK) => accepted += 1,
            _ => return (accepted, answer),
        }
        assert!(accepted < 5, "the pipeline never filled");
    }
}

#[test]
fn an_authorizer_that_waits_decides_each_call_where_the_receiver_waits() {
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    let temp = TempDir::new("otlp-grpc-waiting-authorizer");
    let port = support::free_port();
    let out = temp.path("out.bin");
    // `fixed_token` with `waits`: it decides only with `authorize_waiting`, after its caller's
    // task yields once, as an authorizer reading its tokens from a store does.
    let yaml = grpc_gateway(port, None, &out, "").replace(
        "      gateway:\n",
        "      gateway:\n        extensions:\n          callers: { type: extension:fixed_token, config: { token: t-in, waits: true } }\n",
    ).replace(
        &format!("listen: '127.0.0.1:{port}' }}"),
        &format!("listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: callers }}"),
    );
    let gateway = support::Running::listening(&yaml, port);
    let message = frame(
        otap_df_nodes::otlp::synthetic(Signal::Logs, 5, "t", 1).bytes(),
        false,
    );
    let grpc = ("content-type", "application/grpc");
    let answer = |token: &str| {
        let authorization = format!("Bearer {token}");
        support::grpc::call(
            port,
            http::Method::POST,
            service_path(Signal::Logs),
            &[grpc, ("authorization", authorization.as_str())],
            message.clone(),
        )
        .code
    };
    assert_eq!(answer("t-in"), Some(code::OK));
    assert_eq!(answer("wrong"), Some(code::UNAUTHENTICATED));
    assert_eq!(answer("t-in"), Some(code::OK));
    gateway.stop().unwrap();
    assert_eq!(records_by_signal(&out), [10, 0, 0]);
}
