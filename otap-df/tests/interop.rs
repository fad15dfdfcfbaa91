//! Interop with the real OpenTelemetry Collector (`interop/otelcol`, built by `cargo xtask
//! interop`, which runs these tests with `OTAP_DF_OTELCOL` set to the binary): our OTLP/HTTP
//! exporter with `bearer_auth` into the Collector's `otlp` receiver guarded by
//! `bearertokenauth`, the Collector's `otlp_http` exporter with `bearertokenauth` into our
//! receiver with `bearer_auth`: a three-hop chain with exact counts per signal, and a wrong
//! token refused and counted. The same over OTLP/gRPC: our `exporter:otlp_grpc` into the
//! Collector's gRPC receiver (gzip and none), and a wrong token refused (`UNAUTHENTICATED`)
//! and counted lost; the Collector's gRPC exporter into our `receiver:otlp_grpc` (TLS, as
//! gRPC sends its token only over TLS); HTTP→gRPC and gRPC→HTTP gateways of ours; the
//! Collector honouring our `RESOURCE_EXHAUSTED` + `RetryInfo`; and the OpenTelemetry Python
//! SDK's own OTLP/gRPC exporter into our receiver (`interop/python-sdk`).
//!
//! Ignored under a plain `cargo test` (they need the Collector build): `cargo xtask interop`
//! (part of `cargo xtask test`) runs them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use otap_df::core::data::Signal;
use otap_df_tests::temp::TempDir;
use support::binary::{RunningBinary, counter, final_line};
use support::free_port;

/// The Collector binary `cargo xtask interop` built.
fn otelcol() -> PathBuf {
    PathBuf::from(std::env::var_os("OTAP_DF_OTELCOL").expect(
        "OTAP_DF_OTELCOL names the Collector binary: run these tests with `cargo xtask interop`",
    ))
}

/// The Collector, killed on drop.
struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the Collector: `otlp` receiver accepting `token-in` over HTTP on `port` and over
/// gRPC on `grpc` (none: `port + 1` is not assumed, a free port is taken), `otlp_http`
/// exporter to our receiver on `upstream` sending `token-out`, every signal. Waits (bounded)
/// until both listen.
fn collector(dir: &Path, name: &str, port: u16, upstream: u16) -> Collector {
    collector_with_grpc(dir, name, port, free_port(), upstream)
}

/// [`collector`], its gRPC receiver on `grpc`.
fn collector_with_grpc(dir: &Path, name: &str, port: u16, grpc: u16, upstream: u16) -> Collector {
    collector_exporting(dir, name, port, grpc, Upstream::Http(upstream), "gzip")
}

/// Where the Collector exports, and over which protocol.
enum Upstream {
    /// Its `otlp_http` exporter, to our `receiver:otlp_http` on this port.
    Http(u16),
    /// Its `otlp` (gRPC) exporter, to our `receiver:otlp_grpc` on this port, serving TLS
    /// with a certificate of this CA (gRPC sends per-call credentials such as
    /// `bearertokenauth`'s only over TLS).
    Grpc(u16, PathBuf),
}

/// [`collector_with_grpc`], exporting to `upstream` compressed with `compression` (`gzip`,
/// `zstd` or `none`).
fn collector_exporting(
    dir: &Path,
    name: &str,
    port: u16,
    grpc: u16,
    upstream: Upstream,
    compression: &str,
) -> Collector {
    let (exporter, exporter_config) = match upstream {
        Upstream::Http(upstream) => (
            "otlp_http",
            format!("    endpoint: http://127.0.0.1:{upstream}\n"),
        ),
        Upstream::Grpc(upstream, ca) => (
            "otlp",
            format!(
                "    endpoint: localhost:{upstream}\n    tls: {{ ca_file: '{}' }}\n",
                ca.display()
            ),
        ),
    };
    let exporter_config = format!("{exporter_config}    compression: {compression}\n");
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "extensions:
  bearertokenauth/in:
    token: token-in
  bearertokenauth/out:
    token: token-out
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
        auth:
          authenticator: bearertokenauth/in
      grpc:
        endpoint: 127.0.0.1:{grpc}
        auth:
          authenticator: bearertokenauth/in
exporters:
  {exporter}:
{exporter_config}    auth:
      authenticator: bearertokenauth/out
service:
  extensions: [bearertokenauth/in, bearertokenauth/out]
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [{exporter}] }}
    traces: {{ receivers: [otlp], exporters: [{exporter}] }}
    metrics: {{ receivers: [otlp], exporters: [{exporter}] }}
"
        ),
    )
    .unwrap();
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(otelcol())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the Collector starts");
    let mut collector = Collector(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err()
    {
        if let Ok(Some(status)) = collector.0.try_wait() {
            panic!(
                "the Collector exited ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the Collector did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    collector
}

/// Our engine on the one-pipeline configuration `pipeline` (its `extensions:`, `nodes:` and
/// `connections:` lines), written to `<name>.yaml`; waits until its receiver listens.
fn ours(dir: &Path, name: &str, pipeline: &str) -> RunningBinary {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!("version: otap_df/v1\ngroups:\n  g:\n    pipelines:\n      p:\n{pipeline}"),
    )
    .unwrap();
    let mut run = RunningBinary::start(&config);
    run.wait_for(name, |line| line.contains("receiver listening"));
    run
}

/// Stops `run` (SIGINT) and checks that it ended cleanly; its final line.
fn stop(run: RunningBinary) -> String {
    run.signal("-INT");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    final_line(&lines).to_owned()
}

/// Our receiver on `port` accepting `token-out`, writing what it accepts to `out`.
fn receiver(dir: &Path, port: u16, out: &Path) -> RunningBinary {
    receiver_of("otlp_http", dir, port, out, "")
}

/// [`receiver`] of type `receiver:<kind>` (`otlp_http` or `otlp_grpc`), `extra` entries in
/// its config.
fn receiver_of(kind: &str, dir: &Path, port: u16, out: &Path, extra: &str) -> RunningBinary {
    ours(
        dir,
        "receiver",
        &format!(
            "        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [token-out] }} }}
        nodes:
          in: {{ type: receiver:{kind}, config: {{ listen: '127.0.0.1:{port}'{extra} }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
            out.display()
        ),
    )
}

/// Our gateway on `port` (OTLP/HTTP): accepts `token-out` (what the Collector sends),
/// forwards through `exporter:<exporter>` (`otlp_http` or `otlp_grpc`) to a Collector on
/// `upstream` with `token-in` (what the Collector accepts).
fn gateway_to(dir: &Path, port: u16, exporter: &str, upstream: u16) -> RunningBinary {
    ours(
        dir,
        "gateway",
        &format!(
            "        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [token-out] }} }}
          own: {{ type: extension:bearer_auth, config: {{ token: token-in }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:{exporter}, config: {{ endpoint: 'http://127.0.0.1:{upstream}' }}, capabilities: {{ bearer_token_provider: own }} }}
        connections:
          - {{ from: in, to: out }}
"
        ),
    )
}

/// Our sender: `count` batches of 10 records of each signal (traces in `traces_encoding`), to
/// the Collector's OTLP/HTTP receiver on `port` with `token`, compressed with `compression`;
/// runs to its end.
fn send(
    dir: &Path,
    port: u16,
    token: &str,
    count: u64,
    traces_encoding: &str,
    compression: &str,
) -> Output {
    send_with(
        "otlp_http",
        dir,
        port,
        token,
        count,
        traces_encoding,
        compression,
    )
}

/// [`send`] through `exporter:<exporter>` (`otlp_http` or `otlp_grpc`).
fn send_with(
    exporter: &str,
    dir: &Path,
    port: u16,
    token: &str,
    count: u64,
    traces_encoding: &str,
    compression: &str,
) -> Output {
    let config = dir.join("sender.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          token: {{ type: extension:bearer_auth, config: {{ token: {token} }} }}
        nodes:
          logs: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 10, count: {count} }} }}
          traces: {{ type: receiver:generator, config: {{ signal: traces, batch_size: 10, count: {count}, encoding: {traces_encoding} }} }}
          metrics: {{ type: receiver:generator, config: {{ signal: metrics, batch_size: 10, count: {count} }} }}
          out:
            type: exporter:{exporter}
            config: {{ endpoint: 'http://127.0.0.1:{port}', compression: {compression}, retry: {{ initial_interval: 50ms, max_elapsed_time: 2s }} }}
            capabilities: {{ bearer_token_provider: token }}
        connections:
          - {{ from: [logs, traces, metrics], to: out }}
"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args(["run", "--quiet"])
        .arg(&config)
        .output()
        .expect("the sender runs")
}

/// Records per signal in the file `out`, once it holds `expected` in all (bounded wait).
fn records_by_signal(out: &Path, expected: u64) -> [u64; 3] {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let payloads = otap_df::nodes::read_payloads(out).unwrap_or_default();
        let count = |signal: Signal| {
            payloads
                .iter()
                .filter(|p| p.signal() == signal)
                .map(|p| p.records())
                .sum::<u64>()
        };
        let counts = [
            count(Signal::Logs),
            count(Signal::Traces),
            count(Signal::Metrics),
        ];
        if counts.iter().sum::<u64>() >= expected || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// otap-df sender (OTLP/HTTP) → Collector → its `otlp` gRPC exporter with `bearertokenauth`,
/// compressed with `compression` → our `receiver:otlp_grpc` with `bearer_auth` → file.
fn collector_grpc_to_ours(compression: &str) {
    let dir = TempDir::new(&format!("interop-grpc-receiver-{compression}"));
    let (http_port, grpc_port, our_port) = (free_port(), free_port(), free_port());
    let out = dir.path("received.bin");
    let pki = otap_df_tests::tls::TestPki::generate().unwrap();
    let ours = receiver_of("otlp_grpc", dir.dir(), our_port, &out, &tls_of(&pki));
    let _collector = collector_exporting(
        dir.dir(),
        "otelcol",
        http_port,
        grpc_port,
        Upstream::Grpc(our_port, pki.ca_cert()),
        compression,
    );
    let sent = send(dir.dir(), http_port, "token-in", 25, "json", "gzip");
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(records_by_signal(&out, 750), [250, 250, 250]);
    let last = stop(ours);
    assert!(last.contains("out in=750 out=750"), "{last}");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collectors_grpc_exporter_delivers_every_signal_exactly_to_our_grpc_receiver() {
    collector_grpc_to_ours("gzip");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collectors_grpc_exporter_delivers_zstd_calls_exactly_to_our_grpc_receiver() {
    collector_grpc_to_ours("zstd");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_grpc_to_http_gateway_in_front_of_the_collector_forwards_every_record() {
    // otap-df sender (OTLP/gRPC) → otap-df gateway, OTLP/gRPC in and OTLP/HTTP out →
    // Collector → otap-df receiver → file, tokens on every hop.
    let dir = TempDir::new("interop-grpc-to-http");
    let (gateway_port, http_port, grpc_port, our_port) =
        (free_port(), free_port(), free_port(), free_port());
    let out = dir.path("received.bin");
    let receiver = receiver(dir.dir(), our_port, &out);
    let _collector = collector_with_grpc(dir.dir(), "otelcol", http_port, grpc_port, our_port);
    let gateway = ours(
        dir.dir(),
        "gateway",
        &format!(
            "        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [token-out] }} }}
          own: {{ type: extension:bearer_auth, config: {{ token: token-in }} }}
        nodes:
          in: {{ type: receiver:otlp_grpc, config: {{ listen: '127.0.0.1:{gateway_port}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{http_port}' }}, capabilities: {{ bearer_token_provider: own }} }}
        connections:
          - {{ from: in, to: out }}
"
        ),
    );
    let sent = send_with(
        "otlp_grpc",
        dir.dir(),
        gateway_port,
        "token-out",
        20,
        "protobuf",
        "gzip",
    );
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(records_by_signal(&out, 600), [200, 200, 200]);
    for run in [gateway, receiver] {
        let last = stop(run);
        assert!(last.contains("out in=600 out=600"), "{last}");
    }
}

/// The Collector's receiver port that `exporter` (`otlp_http` or `otlp_grpc`) sends to.
fn receiver_port(exporter: &str, http: u16, grpc: u16) -> u16 {
    if exporter == "otlp_grpc" { grpc } else { http }
}

/// Our `exporter:<exporter>` → the Collector's receiver of that protocol → its `otlp_http`
/// exporter → our receiver, compressed with `compression` on both hops: every record of every
/// signal, exactly.
fn chain(exporter: &str, traces_encoding: &str, compression: &str) {
    let dir = TempDir::new(&format!("interop-chain-{exporter}-{compression}"));
    let (http_port, grpc_port, our_port) = (free_port(), free_port(), free_port());
    let out = dir.path("received.bin");
    let ours = receiver(dir.dir(), our_port, &out);
    let upstream = Upstream::Http(our_port);
    let _collector = collector_exporting(
        dir.dir(),
        "otelcol",
        http_port,
        grpc_port,
        upstream,
        compression,
    );
    let sent = send_with(
        exporter,
        dir.dir(),
        receiver_port(exporter, http_port, grpc_port),
        "token-in",
        25,
        traces_encoding,
        compression,
    );
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // Through the Collector and back: every record of every signal, exactly.
    assert_eq!(records_by_signal(&out, 750), [250, 250, 250]);
    let last = stop(ours);
    assert!(last.contains("out in=750 out=750"), "{last}");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn a_chain_through_the_collector_delivers_every_signal_exactly_protobuf_and_json_gzipped() {
    chain("otlp_http", "json", "gzip");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn a_chain_through_the_collector_delivers_every_signal_exactly_uncompressed() {
    chain("otlp_http", "protobuf", "none");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn a_chain_through_the_collector_delivers_every_signal_exactly_zstd_both_ways() {
    chain("otlp_http", "protobuf", "zstd");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_grpc_exporter_delivers_zstd_calls_exactly_through_the_collectors_grpc_receiver() {
    chain("otlp_grpc", "json", "zstd");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_grpc_exporter_delivers_every_signal_exactly_through_the_collectors_grpc_receiver_gzipped() {
    chain("otlp_grpc", "json", "gzip");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_grpc_exporter_delivers_every_signal_exactly_through_the_collectors_grpc_receiver_uncompressed()
 {
    chain("otlp_grpc", "protobuf", "none");
}

/// Our `exporter:<exporter>` with a token the Collector does not accept: refused, logged with
/// the reason starting `refusal`, and every record counted lost (exit 3).
fn wrong_token(exporter: &str, refusal: &str) {
    let dir = TempDir::new(&format!("interop-wrong-token-{exporter}"));
    let (http_port, grpc_port, our_port) = (free_port(), free_port(), free_port());
    let _collector = collector_with_grpc(dir.dir(), "otelcol", http_port, grpc_port, our_port);
    let sent = send_with(
        exporter,
        dir.dir(),
        receiver_port(exporter, http_port, grpc_port),
        "wrong-token",
        2,
        "protobuf",
        "gzip",
    );
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert_eq!(sent.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("reason=\"{refusal}")),
        "the Collector's refusal is logged: {stderr}"
    );
    assert!(
        stderr.contains("otap-df: 60 records were lost"),
        "every record is counted lost: {stderr}"
    );
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collector_refuses_a_wrong_token_and_our_exporter_counts_the_records_lost() {
    wrong_token("otlp_http", "401 Unauthorized");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collectors_grpc_receiver_refuses_a_wrong_token_and_our_grpc_exporter_counts_it_lost() {
    wrong_token("otlp_grpc", "gRPC status 16: ");
}

/// otap-df sender → Collector A (OTLP/HTTP) → otap-df gateway, OTLP/HTTP in and
/// `exporter:<exporter>` out → Collector B's receiver of that protocol → otap-df receiver →
/// file, with bearer tokens checked on every hop.
fn gateway_between_two_collectors(exporter: &str) {
    let dir = TempDir::new(&format!("interop-gateway-{exporter}"));
    let (a_port, gateway_port, b_port, b_grpc, our_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let out = dir.path("received.bin");
    let receiver = receiver(dir.dir(), our_port, &out);
    let _b = collector_with_grpc(dir.dir(), "collector-b", b_port, b_grpc, our_port);
    let upstream = receiver_port(exporter, b_port, b_grpc);
    let gateway = gateway_to(dir.dir(), gateway_port, exporter, upstream);
    let _a = collector(dir.dir(), "collector-a", a_port, gateway_port);
    let sent = send(dir.dir(), a_port, "token-in", 20, "protobuf", "gzip");
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(records_by_signal(&out, 600), [200, 200, 200]);
    for run in [gateway, receiver] {
        let last = stop(run);
        assert!(last.contains("out in=600 out=600"), "{last}");
    }
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_gateway_between_two_collectors_forwards_every_record() {
    gateway_between_two_collectors("otlp_http");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn our_http_to_grpc_gateway_between_two_collectors_forwards_every_record() {
    gateway_between_two_collectors("otlp_grpc");
}

/// Collector → our gateway of `receiver:<receiver>`, whose upstream is down at first: its
/// queue fills, and with `admission_timeout: 0s` it refuses at once, saying when to come back
/// (`429` + `Retry-After: 1`, or `RESOURCE_EXHAUSTED` + `RetryInfo` of 1s). The Collector
/// waits and retries; once the upstream comes up, every record arrives, exactly once.
fn the_collector_waits_as_our_gateway_says(receiver: &str) {
    let grpc = receiver == "otlp_grpc";
    let dir = TempDir::new(&format!("interop-retry-after-{receiver}"));
    let (http_port, grpc_port, gateway_port, upstream_port) =
        (free_port(), free_port(), free_port(), free_port());
    // The Collector sends its gRPC exporter's token only over TLS.
    let pki = otap_df_tests::tls::TestPki::generate().unwrap();
    let tls = if grpc { tls_of(&pki) } else { String::new() };
    let mut gateway = ours(
        dir.dir(),
        "busy-gateway",
        &format!(
            "        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [token-out] }} }}
        nodes:
          in: {{ type: receiver:{receiver}, config: {{ listen: '127.0.0.1:{gateway_port}', admission_timeout: 0s, retry_after: 1s{tls} }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out:
            type: exporter:otlp_http
            config: {{ endpoint: 'http://127.0.0.1:{upstream_port}', max_in_flight: 1, merge_max_bytes: 0, retry: {{ initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 1m }} }}
        connections:
          - {{ from: in, to: out }}
"
        ),
    );
    let upstream = if grpc {
        Upstream::Grpc(gateway_port, pki.ca_cert())
    } else {
        Upstream::Http(gateway_port)
    };
    let _collector =
        collector_exporting(dir.dir(), "otelcol", http_port, grpc_port, upstream, "gzip");
    // 400 logs batches of 10: more than the gateway's queue (`RunOptions::channel_capacity`,
    // 256) holds while nothing drains it, and fewer than the Collector's own queue (1000).
    let exporter = if grpc { "otlp_grpc" } else { "otlp_http" };
    let sent = send_logs(
        exporter,
        dir.dir(),
        receiver_port(exporter, http_port, grpc_port),
        400,
    );
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    gateway.wait_for("the gateway refusing, saying when to come back", |line| {
        counter(line, "in", "refused.pipeline_full").is_some_and(|n| n > 0)
    });
    // The upstream comes up: everything drains.
    let out = dir.path("received.bin");
    let upstream = ours(
        dir.dir(),
        "upstream",
        &format!(
            "        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{upstream_port}' }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
            out.display()
        ),
    );
    assert_eq!(records_by_signal(&out, 4000), [4000, 0, 0]);
    let last = stop(gateway);
    let refused = counter(&last, "in", "refused.pipeline_full").expect("refusals");
    assert!(refused > 0, "{last}");
    if !grpc {
        // Every refused request came again: the gateway took in each record once.
        assert_eq!(counter(&last, "in", "accepted"), Some(400), "{last}");
    }
    assert!(last.contains("out in=4000 out=4000"), "{last}");
    stop(upstream);
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collector_honours_our_retry_after_and_nothing_is_lost() {
    the_collector_waits_as_our_gateway_says("otlp_http");
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask interop`"]
fn the_collector_honours_our_grpc_resource_exhausted_and_retry_info_and_nothing_is_lost() {
    the_collector_waits_as_our_gateway_says("otlp_grpc");
}

/// Our sender: `count` batches of 10 logs through `exporter:<exporter>`, one payload a
/// request, to the Collector on `port` with `token-in`; runs to its end.
fn send_logs(exporter: &str, dir: &Path, port: u16, count: u64) -> Output {
    let config = dir.join("logs-sender.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          token: {{ type: extension:bearer_auth, config: {{ token: token-in }} }}
        nodes:
          logs: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 10, count: {count} }} }}
          out: {{ type: exporter:{exporter}, config: {{ endpoint: 'http://127.0.0.1:{port}', merge_max_bytes: 0 }}, capabilities: {{ bearer_token_provider: token }} }}
        connections:
          - {{ from: logs, to: out }}
"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args(["run", "--quiet"])
        .arg(&config)
        .output()
        .unwrap()
}

/// A receiver's `tls:` entry serving `pki`'s server certificate (for `localhost`).
fn tls_of(pki: &otap_df_tests::tls::TestPki) -> String {
    format!(
        ", tls: {{ cert_file: '{}', key_file: '{}' }}",
        pki.server_cert().display(),
        pki.server_key().display()
    )
}

/// The Python interpreter with the OpenTelemetry SDK that `cargo xtask interop` installed.
fn python_sdk() -> PathBuf {
    PathBuf::from(std::env::var_os("OTAP_DF_PYTHON_SDK").expect(
        "OTAP_DF_PYTHON_SDK names a Python with the OpenTelemetry SDK: run these tests with \
         `cargo xtask interop`",
    ))
}

/// `spans` spans sent by the Python SDK's own OTLP/gRPC exporter to `127.0.0.1:port` with
/// `token`, `compression` `gzip` or `none`; how the script ended.
fn python_spans(port: u16, token: &str, spans: u64, compression: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/python-sdk/send_spans.py");
    Command::new(python_sdk())
        .arg(script)
        .arg(format!("127.0.0.1:{port}"))
        .arg(token)
        .arg(spans.to_string())
        .arg(compression)
        .output()
        .expect("the Python SDK runs")
}

#[test]
#[ignore = "needs the Python SDK: run by `cargo xtask interop`"]
fn the_python_sdks_grpc_exporter_delivers_every_span_to_our_grpc_receiver() {
    let dir = TempDir::new("interop-python-sdk");
    let port = free_port();
    let out = dir.path("received.bin");
    let ours = receiver_of("otlp_grpc", dir.dir(), port, &out, "");
    for (compression, spans) in [("gzip", 500), ("none", 300)] {
        let sent = python_spans(port, "token-out", spans, compression);
        assert_eq!(
            sent.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }
    assert_eq!(records_by_signal(&out, 800), [0, 800, 0]);
    // A wrong token: refused (`UNAUTHENTICATED`, which the SDK does not retry), nothing taken.
    let refused = python_spans(port, "wrong-token", 50, "gzip");
    assert_eq!(
        refused.status.code(),
        Some(0),
        "the SDK flushed and logged the refusal"
    );
    let last = stop(ours);
    assert!(last.contains("out in=800 out=800"), "{last}");
    // The SDK batches on a timer: the 50 spans went in one call or a few, each refused.
    let refusals = counter(&last, "in", "refused.auth_invalid").expect("refusals");
    assert!((1..=50).contains(&refusals), "{last}");
    assert_eq!(records_by_signal(&out, 800), [0, 800, 0]);
}
