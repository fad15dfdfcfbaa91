//! `receiver:otlp_http` and `exporter:otlp_http` over real HTTP on loopback: pipelines that
//! talk to each other (sender → gateway → file), bearer tokens on both ends, refusals with the
//! specification's status codes, and retries against a scripted upstream.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;
use support::{Answer, Running, free_port, named, node_totals, post, run_to_end};

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use otap_df_core::data::{Encoding, Signal};
use otap_df_core::runtime::Telemetry;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("otap-df-otlp-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway: `receiver:otlp_http` on `port` (with `auth` as its authorizer extension block
/// when given) → `exporter:file` at `out`.
fn gateway(port: u16, auth: Option<&str>, out: &Path) -> String {
    let (extensions, capabilities) = match auth {
        Some(extension) => (
            format!("        extensions:\n          auth: {extension}\n"),
            ", capabilities: { bearer_token_authorizer: auth }",
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
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}{capabilities} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: otlp_in, to: out }}
",
        out.display()
    )
}

/// A sender: `count` batches of `batch_size` records from the generator → `exporter:otlp_http`
/// with `exporter` as its config (and `auth` as its provider extension block when given).
fn sender(generator: &str, exporter: &str, auth: Option<&str>) -> String {
    let (extensions, capabilities) = match auth {
        Some(extension) => (
            format!("        extensions:\n          auth: {extension}\n"),
            ", capabilities: { bearer_token_provider: auth }",
        ),
        None => (String::new(), ""),
    };
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      sender:
{extensions}        nodes:
          gen: {{ type: receiver:generator, config: {generator} }}
          otlp_out: {{ type: exporter:otlp_http, config: {exporter}{capabilities} }}
        connections:
          - {{ from: gen, to: otlp_out }}
"
    )
}

fn records_in(path: &Path) -> (u64, Vec<Encoding>) {
    let payloads = otap_df_nodes::read_payloads(path).unwrap();
    let records = payloads.iter().map(|p| p.records()).sum();
    let mut encodings: Vec<Encoding> = payloads.iter().map(|p| p.encoding()).collect();
    encodings.dedup();
    (records, encodings)
}

#[test]
fn a_sender_and_a_gateway_with_tokens_on_both_ends_deliver_every_record_in_every_encoding() {
    let dir = TempDir::new("e2e");
    for (encoding, compression) in [
        ("protobuf", "gzip"),
        ("protobuf", "zstd"),
        ("protobuf", "none"),
        ("json", "gzip"),
        ("json", "none"),
    ] {
        let port = free_port();
        let out = dir.path(&format!("{encoding}-{compression}.bin"));
        let gateway = Running::listening(
            &gateway(
                port,
                Some("{ type: extension:bearer_auth, config: { tokens: [s3cret-a, s3cret-b] } }"),
                &out,
            ),
            port,
        );
        let sent = Running::start(&sender(
            &format!("{{ count: 20, batch_size: 7, signal: traces, encoding: {encoding} }}"),
            // One request per batch (no merging), so that the gateway's requests are exact.
            &format!(
                "{{ endpoint: 'http://127.0.0.1:{port}', compression: {compression}, merge_max_bytes: 0 }}"
            ),
            Some("{ type: extension:bearer_auth, config: { token: s3cret-b } }"),
        ));
        sent.finish().expect("the sender delivers and ends");
        let telemetry = gateway.telemetry().clone();
        gateway.stop().expect("a clean gateway run");
        let (records, encodings) = records_in(&out);
        assert_eq!(records, 140, "{encoding}/{compression}");
        let expected = if encoding == "json" {
            Encoding::Json
        } else {
            Encoding::Protobuf
        };
        assert_eq!(encodings, [expected], "{encoding}/{compression}");
        let receiver = node_totals(&telemetry, "otlp_in");
        assert_eq!(receiver.counts.records_out, 140);
        assert_eq!(named(&receiver, "requests"), 20);
        assert_eq!(named(&receiver, "accepted"), 20);
    }
}

#[test]
fn the_sender_counts_what_it_sent_and_retried() {
    let dir = TempDir::new("sender-counts");
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = Running::listening(&gateway(port, None, &out), port);
    let telemetry = run_to_end(&sender(
        "{ count: 5, batch_size: 3, signal: logs }",
        &format!("{{ endpoint: 'http://127.0.0.1:{port}' }}"),
        None,
    ));
    gateway.stop().unwrap();
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_in, 15);
    assert_eq!(exporter.counts.records_failed, 0);
    assert_eq!(exporter.counts.records_out, 15);
    assert_eq!(named(&exporter, "requests"), 5);
    assert_eq!(named(&exporter, "retried"), 0);
    assert!(
        telemetry
            .summary()
            .contains("otlp_out in=15 out=15 requests=5"),
        "{}",
        telemetry.summary()
    );
}

fn protobuf_logs(records: usize) -> Bytes {
    otap_df_nodes::otlp::synthetic(Signal::Logs, records, "raw", 1)
        .bytes()
        .clone()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");

#[test]
fn requests_without_an_accepted_token_get_401_and_nothing_enters_the_pipeline() {
    let dir = TempDir::new("auth");
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = Running::listening(
        &gateway(
            port,
            Some("{ type: extension:bearer_auth, config: { tokens: [right] } }"),
            &out,
        ),
        port,
    );
    let body = protobuf_logs(3);
    let missing = post(port, "/v1/logs", &[PROTOBUF], body.clone());
    let wrong = post(
        port,
        "/v1/logs",
        &[PROTOBUF, ("authorization", "Bearer wrong")],
        body.clone(),
    );
    let other_scheme = post(
        port,
        "/v1/logs",
        &[PROTOBUF, ("authorization", "Basic right")],
        body.clone(),
    );
    for (answer, message) in [
        (&missing, "no credential; send a bearer token"),
        (&wrong, "the credential is not accepted"),
        (&other_scheme, "the credential is not accepted"),
    ] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
        assert_eq!(
            answer.headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"otap-df\""
        );
        assert_eq!(
            otap_df_nodes::otlp_http::status_message(Encoding::Protobuf, &answer.body).as_deref(),
            Some(message)
        );
    }
    // Two credentials, an accepted one first: which one counts would be ambiguous.
    let two = post(
        port,
        "/v1/logs",
        &[
            PROTOBUF,
            ("authorization", "Bearer right"),
            ("authorization", "Bearer wrong"),
        ],
        body.clone(),
    );
    assert_eq!(two.status, StatusCode::BAD_REQUEST, "{two:?}");
    assert_eq!(
        otap_df_nodes::otlp_http::status_message(Encoding::Protobuf, &two.body).as_deref(),
        Some("more than one `authorization` header; send one credential")
    );
    let right = post(
        port,
        "/v1/logs",
        &[PROTOBUF, ("authorization", "bearer right")],
        body,
    );
    assert_eq!(right.status, StatusCode::OK, "{right:?}");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.auth_missing"), 1);
    assert_eq!(named(&receiver, "refused.auth_invalid"), 2);
    assert_eq!(named(&receiver, "refused.bad_request"), 1);
    assert_eq!(named(&receiver, "accepted"), 1);
    assert_eq!(receiver.counts.records_out, 3);
    assert_eq!(
        records_in(&out).0,
        3,
        "only the authorized request's records"
    );
}

#[test]
fn an_authorizer_that_cannot_decide_refuses_every_request() {
    let dir = TempDir::new("undecided");
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = Running::listening(
        &gateway(
            port,
            Some("{ type: extension:fixed_token, config: { token: t, undecided: true } }"),
            &out,
        ),
        port,
    );
    let answer = post(
        port,
        "/v1/logs",
        &[PROTOBUF, ("authorization", "Bearer t")],
        protobuf_logs(2),
    );
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.headers.get("retry-after").unwrap(), "1");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.auth_unavailable"), 1);
    assert_eq!(receiver.counts.records_out, 0);
    assert_eq!(records_in(&out).0, 0);
}

#[test]
fn an_authorizer_reading_a_header_http_cannot_carry_fails_the_start_naming_it() {
    let dir = TempDir::new("bad-auth-header");
    let port = free_port();
    let yaml = gateway(
        port,
        Some("{ type: extension:fixed_token, config: { header: 'x api key' } }"),
        &dir.path("out.bin"),
    );
    let error = Running::start(&yaml)
        .finish()
        .expect_err("the header name is invalid");
    let text = error.to_string();
    assert!(
        text.contains(
            "node `otlp_in` failed: the bound authorizer reads the header `x api key`, which \
             is not a valid HTTP header name"
        ),
        "{text}"
    );
}

/// A running [`gateway`] without tokens whose receiver takes bodies of at most 4096 bytes.
fn small_body_gateway(port: u16, out: &Path) -> Running {
    let yaml = gateway(port, None, out).replace(
        &format!("listen: '127.0.0.1:{port}'"),
        &format!("listen: '127.0.0.1:{port}', max_body_size: 4096"),
    );
    Running::listening(&yaml, port)
}

#[test]
fn malformed_requests_get_the_specifications_status_codes_and_the_receiver_keeps_serving() {
    let dir = TempDir::new("malformed");
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = small_body_gateway(port, &out);
    let good = protobuf_logs(4);
    let truncated = good.slice(..good.len() - 3);
    let json = ("content-type", "application/json");
    let cases: Vec<(&str, Answer, StatusCode)> = vec![
        (
            "truncated protobuf",
            post(port, "/v1/logs", &[PROTOBUF], truncated),
            StatusCode::BAD_REQUEST,
        ),
        (
            "invalid JSON",
            post(port, "/v1/logs", &[json], &b"{\"resourceLogs\": 7}"[..]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong content type",
            post(
                port,
                "/v1/logs",
                &[("content-type", "text/plain")],
                good.clone(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "unknown content encoding",
            post(
                port,
                "/v1/logs",
                &[PROTOBUF, ("content-encoding", "br")],
                good.clone(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "oversize",
            post(port, "/v1/logs", &[PROTOBUF], vec![0u8; 5000]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "oversize once decompressed",
            post(
                port,
                "/v1/logs",
                &[PROTOBUF, ("content-encoding", "gzip")],
                gzip(&vec![0u8; 100_000]),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "oversize once zstd-decompressed",
            post(
                port,
                "/v1/logs",
                &[PROTOBUF, ("content-encoding", "zstd")],
                zstd::encode_all(&vec![0u8; 100_000][..], 1).unwrap(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "bad zstd",
            post(
                port,
                "/v1/logs",
                &[PROTOBUF, ("content-encoding", "zstd")],
                good.clone(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad gzip",
            post(
                port,
                "/v1/logs",
                &[PROTOBUF, ("content-encoding", "gzip")],
                good.clone(),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown path",
            post(port, "/v1/profiles", &[PROTOBUF], good.clone()),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (what, answer, expected) in &cases {
        assert_eq!(answer.status, *expected, "{what}: {answer:?}");
        let message = otap_df_nodes::otlp_http::status_message(
            if answer.headers.get(CONTENT_TYPE).unwrap() == "application/json" {
                Encoding::Json
            } else {
                Encoding::Protobuf
            },
            &answer.body,
        );
        assert!(message.is_some(), "{what}: an error body with a message");
    }
    // Still serving, in both encodings, compressed or not.
    let ok = post(port, "/v1/logs", &[PROTOBUF], good.clone());
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.headers.get(CONTENT_TYPE).unwrap(),
        "application/x-protobuf"
    );
    let zipped = post(
        port,
        "/v1/logs",
        &[PROTOBUF, (CONTENT_ENCODING.as_str(), "gzip")],
        gzip(&good),
    );
    assert_eq!(zipped.status, StatusCode::OK);
    let zstd_ok = post(
        port,
        "/v1/logs",
        &[PROTOBUF, (CONTENT_ENCODING.as_str(), "ZSTD")],
        zstd::encode_all(&good[..], 3).unwrap(),
    );
    assert_eq!(zstd_ok.status, StatusCode::OK);
    let json_body =
        otap_df_nodes::otlp::to_json(&otap_df_nodes::otlp::synthetic(Signal::Logs, 4, "j", 1))
            .unwrap();
    let json_ok = post(port, "/v1/logs", &[json], json_body.bytes().clone());
    assert_eq!(json_ok.status, StatusCode::OK);
    assert_eq!(&json_ok.body[..], b"{}");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.bad_request"), 4);
    assert_eq!(named(&receiver, "refused.unsupported_media_type"), 2);
    assert_eq!(named(&receiver, "refused.too_large"), 3);
    assert_eq!(named(&receiver, "refused.not_found"), 1);
    assert_eq!(named(&receiver, "accepted"), 4);
    assert_eq!(records_in(&out).0, 16);
}

/// POSTs `chunks` as one chunked body (no `Content-Length`) to `/v1/logs` on a connection of
/// its own, in one write; the answer's status code.
fn post_chunked(port: u16, chunks: &[&[u8]]) -> u16 {
    use std::io::Read;
    let mut request = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in chunks {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            panic!("not an HTTP answer: {head}");
        })
}

#[test]
fn a_body_in_chunks_is_taken_whole_and_one_over_the_limit_refused_once_it_passes_it() {
    let dir = TempDir::new("chunked");
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = small_body_gateway(port, &out);
    let good = protobuf_logs(7);
    // Each chunk is a frame of its own: the body is joined from three.
    let (a, rest) = good.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    assert_eq!(post_chunked(port, &[a, b, c]), 200);
    // In one chunk, kept as it came.
    assert_eq!(post_chunked(port, &[&good]), 200);
    // Nothing declares the length: refused once what arrived passes the limit.
    let oversize = vec![0u8; 2_000];
    assert_eq!(post_chunked(port, &[&oversize, &oversize, &oversize]), 413);
    // A joined body is walked like any other: a truncated one is refused.
    assert_eq!(post_chunked(port, &[a, b]), 400);
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "accepted"), 2);
    assert_eq!(named(&receiver, "refused.too_large"), 1);
    assert_eq!(named(&receiver, "refused.bad_request"), 1);
    assert_eq!(records_in(&out).0, 14);
}

/// A scripted upstream: answers one request per entry of its script, in order, then stops
/// listening; records each request's head and when it came. Plain HTTP/1.1 on a std
/// listener.
struct Upstream {
    port: u16,
    thread: JoinHandle<Vec<(Instant, String)>>,
}

impl Upstream {
    fn start(script: Vec<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || serve(listener, script));
        Self { port, thread }
    }
}

fn serve(listener: TcpListener, script: Vec<&'static str>) -> Vec<(Instant, String)> {
    use std::io::{BufRead, BufReader, Read};
    let mut script = script.into_iter().peekable();
    let mut seen = Vec::new();
    while script.peek().is_some() {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        while let Some(status) = script.peek().copied() {
            let mut head = String::new();
            let mut line = String::new();
            let mut length = 0usize;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            if head.is_empty() {
                break; // the client closed this connection; take the next one
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            seen.push((Instant::now(), head));
            script.next();
            let extra = if status.starts_with("503") {
                "retry-after: 1\r\n"
            } else {
                ""
            };
            // `status|body`: an answer with a body, JSON when it starts with `{`.
            let (status, answer) = status.split_once('|').unwrap_or((status, ""));
            let media = if answer.starts_with('{') {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {media}\r\n{extra}content-length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
        }
    }
    seen
}

fn send_one_batch(upstream: u16, retry: &str, extra: &str) -> Arc<Telemetry> {
    send_one_batch_with(upstream, retry, extra, None)
}

fn send_one_batch_with(
    upstream: u16,
    retry: &str,
    extra: &str,
    auth: Option<&str>,
) -> Arc<Telemetry> {
    run_to_end(&sender(
        "{ count: 1, batch_size: 4, signal: metrics }",
        &format!(
            "{{ endpoint: 'http://127.0.0.1:{upstream}', compression: none, \
             retry: {retry} {extra} }}"
        ),
        auth,
    ))
}

const RETRY: &str = "{ initial_interval: 50ms, max_elapsed_time: 20s }";

#[test]
fn the_exporter_sends_its_headers_waits_as_retry_after_says_then_delivers_once() {
    let upstream = Upstream::start(vec!["503 Service Unavailable", "200 OK"]);
    let telemetry = send_one_batch(upstream.port, RETRY, ", headers: { X-Tenant: acme }");
    let seen = upstream.thread.join().unwrap();
    assert_eq!(seen.len(), 2, "one refusal, one delivery");
    let waited = seen[1].0 - seen[0].0;
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
    for (_, head) in &seen {
        assert!(head.starts_with("POST /v1/metrics HTTP/1.1"), "{head}");
        assert!(
            head.contains("x-tenant: acme\r\n"),
            "static headers: {head}"
        );
    }
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_out, 4);
    assert_eq!(named(&exporter, "retried"), 1);
    assert_eq!(named(&exporter, "requests"), 2);
    assert_eq!(exporter.counts.records_failed, 0);
}

#[test]
fn a_partial_success_in_protobuf_or_json_is_counted_and_not_retried() {
    // `ExportMetricsServiceResponse { partial_success { rejected_data_points: 3,
    // error_message: "x" } }` on the wire, and the same in OTLP/JSON (int64 as a string).
    let protobuf = "200 OK|\n\x05\x08\x03\x12\x01x";
    let json = r#"200 OK|{"partialSuccess":{"rejectedDataPoints":"2","errorMessage":"too old"}}"#;
    for (encoding, answer, rejected) in [("protobuf", protobuf, 3), ("json", json, 2)] {
        let upstream = Upstream::start(vec![answer]);
        let telemetry = run_to_end(&sender(
            &format!("{{ count: 1, batch_size: 4, signal: metrics, encoding: {encoding} }}"),
            &format!(
                "{{ endpoint: 'http://127.0.0.1:{}', compression: none, retry: {RETRY} }}",
                upstream.port
            ),
            None,
        ));
        let seen = upstream.thread.join().unwrap();
        assert_eq!(seen.len(), 1, "{encoding}: not retried");
        let exporter = node_totals(&telemetry, "otlp_out");
        assert_eq!(exporter.counts.records_out, 4, "{encoding}");
        assert_eq!(named(&exporter, "records_rejected"), rejected, "{encoding}");
        assert_eq!(named(&exporter, "retried"), 0, "{encoding}");
    }
}

#[test]
fn a_400_is_not_retried_and_the_batch_is_counted_and_dead_lettered() {
    let dir = TempDir::new("dead-letter");
    let dead = dir.path("dead.bin");
    let upstream = Upstream::start(vec!["400 Bad Request"]);
    let telemetry = send_one_batch(
        upstream.port,
        RETRY,
        &format!(", dead_letter_file: '{}'", dead.display()),
    );
    let seen = upstream.thread.join().unwrap();
    assert_eq!(seen.len(), 1, "no retry after a 400");
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_failed, 4);
    assert_eq!(exporter.counts.records_out, 0);
    assert_eq!(named(&exporter, "retried"), 0);
    assert_eq!(named(&exporter, "dead_lettered"), 4);
    let (records, encodings) = records_in(&dead);
    assert_eq!((records, encodings), (4, vec![Encoding::Protobuf]));
}

#[test]
fn an_unreachable_upstream_fails_after_the_retry_budget_without_losing_count() {
    let port = free_port(); // nothing listens
    let telemetry = send_one_batch(
        port,
        "{ initial_interval: 20ms, max_elapsed_time: 300ms }",
        "",
    );
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_failed, 4);
    assert!(named(&exporter, "retried") >= 2, "{exporter:?}");
    assert_eq!(exporter.counts.records_out, 0);
}

#[test]
fn a_listen_address_in_use_fails_the_start_naming_the_node() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new("in-use");
    let error = Running::start(&gateway(port, None, &dir.path("out.bin")))
        .finish()
        .expect_err("the address is taken");
    let text = error.to_string();
    assert!(
        text.contains("otlp_in") && text.contains(&format!("cannot listen on `127.0.0.1:{port}`")),
        "{text}"
    );
    let _: SocketAddr = taken.local_addr().unwrap();
}

#[test]
fn a_401_gets_one_retry_with_the_freshest_token_and_no_more() {
    let dir = TempDir::new("refresh");
    let token = dir.path("token");
    std::fs::write(&token, "first\n").unwrap();
    let auth = format!(
        "{{ type: extension:bearer_auth, config: {{ token_file: '{}' }} }}",
        token.display()
    );
    // Accepted after one refresh.
    let upstream = Upstream::start(vec!["401 Unauthorized", "200 OK"]);
    let telemetry = send_one_batch_with(upstream.port, RETRY, "", Some(&auth));
    let seen = upstream.thread.join().unwrap();
    assert_eq!(seen.len(), 2);
    for (_, head) in &seen {
        assert!(head.contains("authorization: Bearer first\r\n"), "{head}");
    }
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_out, 4);
    assert_eq!(named(&exporter, "token_refreshed"), 1);
    // Refused again with the freshest token: not retried further, counted.
    let upstream = Upstream::start(vec!["401 Unauthorized", "401 Unauthorized"]);
    let telemetry = send_one_batch_with(upstream.port, RETRY, "", Some(&auth));
    assert_eq!(upstream.thread.join().unwrap().len(), 2);
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_failed, 4);
    assert_eq!(exporter.counts.records_out, 0);
}

#[test]
fn an_expired_token_is_never_sent_a_fresh_one_is() {
    let upstream = Upstream::start(vec!["200 OK"]);
    let telemetry = send_one_batch_with(
        upstream.port,
        RETRY,
        "",
        Some("{ type: extension:fixed_token, config: { token: old, current_expired: true } }"),
    );
    let seen = upstream.thread.join().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].1.contains("authorization: Bearer fresh-old\r\n"),
        "{}",
        seen[0].1
    );
    assert_eq!(node_totals(&telemetry, "otlp_out").counts.records_out, 4);
}

/// Replaces `path`'s content at once (write aside, rename over), as secret managers do.
fn replace_file(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Waits until the gateway's receiver accepted at least `records`.
fn wait_accepted(gateway: &Running, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.node("otlp_in").counts.records_out < records {
        assert!(
            Instant::now() < deadline,
            "the gateway did not reach {records} records: {}",
            gateway.telemetry().summary()
        );
        // Sampling live counters; bounded by the deadline.
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn tokens_rotated_on_both_sides_during_a_run_lose_nothing() {
    let dir = TempDir::new("rotation");
    let accepted = dir.path("accepted");
    let client = dir.path("client");
    std::fs::write(&accepted, "old\n").unwrap();
    std::fs::write(&client, "old\n").unwrap();
    let port = free_port();
    let out = dir.path("out.bin");
    let gateway = Running::listening(
        &gateway(
            port,
            Some(&format!(
                "{{ type: extension:bearer_auth, config: {{ tokens_file: '{}', reload_interval: 10ms }} }}",
                accepted.display()
            )),
            &out,
        ),
        port,
    );
    let sent = Running::start(&sender(
        "{ count: 600, batch_size: 1, rate: 400 }",
        &format!("{{ endpoint: 'http://127.0.0.1:{port}' }}"),
        Some(&format!(
            "{{ type: extension:bearer_auth, config: {{ token_file: '{}', reload_interval: 10ms }} }}",
            client.display()
        )),
    ));
    wait_accepted(&gateway, 100);
    replace_file(&accepted, "old\nnew\n"); // the server learns the new token
    wait_accepted(&gateway, 200);
    replace_file(&client, "new\n"); // clients switch
    wait_accepted(&gateway, 300);
    replace_file(&accepted, "new\n"); // the old token is retired
    let sender_telemetry = sent.telemetry().clone();
    sent.finish().expect("the sender ends cleanly");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(records_in(&out).0, 600, "every record delivered");
    let exporter = node_totals(&sender_telemetry, "otlp_out");
    assert_eq!(exporter.counts.records_failed, 0);
    assert_eq!(exporter.counts.records_out, 600);
    // A request can only be refused if it still carried the retired token, and the
    // exporter then retries it once with the freshest one: at most one such refusal.
    let refused = named(&receiver, "refused.auth_invalid");
    assert!(refused <= 1, "{refused} refusals");
    assert!(named(&exporter, "token_refreshed") >= refused);
    assert_eq!(named(&receiver, "refused.auth_missing"), 0);
}

#[test]
fn over_https_the_sender_delivers_to_a_gateway_it_trusts_and_not_to_one_it_does_not() {
    let dir = TempDir::new("https");
    let pki = otap_df_tests::tls::TestPki::generate().unwrap();
    let other = otap_df_tests::tls::TestPki::generate().unwrap();
    let port = free_port();
    let out = dir.path("out.bin");
    let yaml = gateway(port, None, &out).replace(
        &format!("listen: '127.0.0.1:{port}'"),
        &format!(
            "listen: '127.0.0.1:{port}', tls: {{ cert_file: '{}', key_file: '{}' }}",
            pki.server_cert().display(),
            pki.server_key().display()
        ),
    );
    let gateway = Running::listening(&yaml, port);
    let exporter = |ca: &Path| {
        format!(
            "{{ endpoint: 'https://localhost:{port}', tls: {{ ca_file: '{}' }}, \
             retry: {{ initial_interval: 20ms, max_elapsed_time: 200ms }} }}",
            ca.display()
        )
    };
    let trusted = run_to_end(&sender(
        "{ count: 5, batch_size: 2 }",
        &exporter(&pki.ca_cert()),
        None,
    ));
    assert_eq!(node_totals(&trusted, "otlp_out").counts.records_out, 10);
    let untrusted = run_to_end(&sender(
        "{ count: 1, batch_size: 2 }",
        &exporter(&other.ca_cert()),
        None,
    ));
    let refused = node_totals(&untrusted, "otlp_out");
    assert_eq!(refused.counts.records_failed, 2);
    assert_eq!(refused.counts.records_out, 0);
    gateway.stop().unwrap();
    assert_eq!(records_in(&out).0, 10);
}

#[test]
fn unusable_tls_files_fail_the_start_naming_the_option() {
    let dir = TempDir::new("tls-files");
    let port = free_port();
    let yaml = gateway(port, None, &dir.path("out.bin")).replace(
        &format!("listen: '127.0.0.1:{port}'"),
        &format!(
            "listen: '127.0.0.1:{port}', tls: {{ cert_file: '{0}', key_file: '{0}' }}",
            dir.path("missing.pem").display()
        ),
    );
    let error = Running::start(&yaml).finish().expect_err("no certificate");
    let text = error.to_string();
    assert!(
        text.contains("node `otlp_in` failed: cannot read `tls.cert_file`"),
        "{text}"
    );
}

#[test]
fn statuses_429_502_and_504_are_retried_with_backoff_until_delivered() {
    let upstream = Upstream::start(vec![
        "429 Too Many Requests",
        "502 Bad Gateway",
        "504 Gateway Timeout",
        "200 OK",
    ]);
    let telemetry = send_one_batch(upstream.port, RETRY, "");
    assert_eq!(upstream.thread.join().unwrap().len(), 4);
    let exporter = node_totals(&telemetry, "otlp_out");
    assert_eq!(named(&exporter, "retried"), 3);
    assert_eq!(exporter.counts.records_out, 4);
    assert_eq!(exporter.counts.records_failed, 0);
}

#[test]
fn an_authorizer_that_waits_decides_each_request_where_the_receiver_waits() {
    let dir = TempDir::new("waiting-authorizer");
    let port = free_port();
    let out = dir.path("out.bin");
    // `fixed_token` with `waits`: it decides only with `authorize_waiting`, after its caller's
    // task yields once, as an authorizer reading its tokens from a store does.
    let gateway = Running::listening(
        &gateway(
            port,
            Some("{ type: extension:fixed_token, config: { token: t, waits: true } }"),
            &out,
        ),
        port,
    );
    let status = |token: &str| {
        let authorization = format!("Bearer {token}");
        post(
            port,
            "/v1/logs",
            &[PROTOBUF, ("authorization", authorization.as_str())],
            protobuf_logs(2),
        )
        .status
    };
    assert_eq!(status("t"), StatusCode::OK);
    assert_eq!(status("wrong"), StatusCode::UNAUTHORIZED);
    assert_eq!(status("t"), StatusCode::OK);
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.auth_invalid"), 1);
    assert_eq!(records_in(&out).0, 4);
}
