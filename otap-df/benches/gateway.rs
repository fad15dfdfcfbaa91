//! The OTLP/HTTP gateway with bearer tokens on both ends against the same gateway without
//! auth, in one run: requests/s, records/s and latency percentiles seen by a load client.
//!
//! `cargo bench -p otap-df --bench gateway` (or `cargo xtask bench`). Two gateways run side by
//! side, each `receiver:otlp_http` → `exporter:otlp_http` → its own upstream
//! (`receiver:otlp_http` → `exporter:noop`), one core each; the auth gateway's receiver checks
//! the caller's token (`bearer_auth`, 10 accepted tokens) and its exporter sends its own,
//! which the upstream checks. A closed-loop client keeps `CONNECTIONS` keep-alive connections
//! busy with the same 100-record protobuf request; a `429` (the pipeline pushing back) is
//! retried after 1 ms and counted. The two gateways are measured in alternating rounds so
//! that drift hits both alike. Without `--bench` (as `cargo test --all-targets` runs it) it
//! does one short round of each, as a smoke test.

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use otap_df_core::binding::load_with_env;
use otap_df_core::data::Signal;
use otap_df_core::runtime::engine::{Engine, RunOptions, ShutdownHandle};

const CONNECTIONS: usize = 4;
const RECORDS: usize = 100;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `yaml` on one core on its own thread.
fn run(yaml: &str) -> (ShutdownHandle, std::thread::JoinHandle<()>) {
    let resolved =
        load_with_env(yaml, "bench.yaml", &otap_df::registry().unwrap(), &|_| None).unwrap();
    let engine = Engine::new(
        resolved,
        RunOptions {
            cores: Some(1),
            ..RunOptions::default()
        },
    );
    let shutdown = engine.shutdown_handle();
    let thread = std::thread::spawn(move || engine.run().expect("a clean run"));
    (shutdown, thread)
}

fn wait_listening(port: u16) {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running gateway and its upstream (separate engines, so that the upstream outlives the
/// gateway's drain at shutdown).
struct Gateway {
    port: u16,
    gateway: (ShutdownHandle, std::thread::JoinHandle<()>),
    upstream: (ShutdownHandle, std::thread::JoinHandle<()>),
}

impl Gateway {
    fn start(auth: bool) -> Self {
        let port = free_port();
        let upstream_port = free_port();
        let tokens: Vec<String> = (0..10).map(caller_token).collect();
        let own = format!("gateway-token-{}", "y".repeat(40));
        let (gateway_ext, upstream_ext, authorizer, provider, upstream_authorizer) = if auth {
            (
                format!(
                    "        extensions:\n          callers: {{ type: extension:bearer_auth, config: {{ tokens: [{}] }} }}\n          own: {{ type: extension:bearer_auth, config: {{ token: {own} }} }}\n",
                    tokens.join(", ")
                ),
                format!(
                    "        extensions:\n          gw: {{ type: extension:bearer_auth, config: {{ tokens: [{own}] }} }}\n"
                ),
                ", capabilities: { bearer_token_authorizer: callers }",
                ", capabilities: { bearer_token_provider: own }",
                ", capabilities: { bearer_token_authorizer: gw }",
            )
        } else {
            (String::new(), String::new(), "", "", "")
        };
        let upstream = run(&format!(
            "version: otap_df/v1
groups:
  bench:
    pipelines:
      upstream:
{upstream_ext}        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{upstream_port}' }}{upstream_authorizer} }}
          sink: {{ type: exporter:noop }}
        connections:
          - {{ from: otlp_in, to: sink }}
"
        ));
        wait_listening(upstream_port);
        let gateway = run(&format!(
            "version: otap_df/v1
groups:
  bench:
    pipelines:
      gateway:
{gateway_ext}        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}{authorizer} }}
          otlp_out: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{upstream_port}', compression: none }}{provider} }}
        connections:
          - {{ from: otlp_in, to: otlp_out }}
"
        ));
        wait_listening(port);
        Self {
            port,
            gateway,
            upstream,
        }
    }

    fn stop(self) {
        self.gateway.0.request();
        self.gateway.1.join().unwrap();
        self.upstream.0.request();
        self.upstream.1.join().unwrap();
    }
}

fn caller_token(i: usize) -> String {
    format!("caller-token-{i:02}-{}", "x".repeat(40))
}

/// What one round measured.
#[derive(Default)]
struct Round {
    ok: u64,
    refused: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

fn round(port: u16, token: Option<&str>, body: &Bytes, duration: Duration) -> Round {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let until = started + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let body = body.clone();
            let token = token.map(|t| format!("Bearer {t}"));
            tasks.spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut measured = Round::default();
                while Instant::now() < until {
                    let mut request = Request::post(format!("http://127.0.0.1:{port}/v1/logs"))
                        .header("content-type", "application/x-protobuf");
                    if let Some(token) = &token {
                        request = request.header("authorization", token);
                    }
                    let request = request.body(Full::new(body.clone())).unwrap();
                    let sent = Instant::now();
                    let response = sender.send_request(request).await.unwrap();
                    let status = response.status();
                    response.into_body().collect().await.unwrap();
                    match status {
                        StatusCode::OK => {
                            measured.ok += 1;
                            measured.latencies.push(sent.elapsed());
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            measured.refused += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
                measured
            });
        }
        let mut total = Round::default();
        while let Some(measured) = tasks.join_next().await {
            let measured = measured.unwrap();
            total.ok += measured.ok;
            total.refused += measured.refused;
            total.latencies.extend(measured.latencies);
        }
        total.elapsed = started.elapsed();
        total
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (rounds, duration) = if benchmarking {
        (6, Duration::from_secs(3))
    } else {
        (1, Duration::from_millis(200))
    };
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, RECORDS, "bench", 1)
        .bytes()
        .clone();
    // The last of the ten accepted tokens: the authorizer compares all of them anyway.
    let token = caller_token(9);
    // `BENCH_SAME=1` runs the plain gateway twice: the ratio then shows the bench's own bias.
    let auth_on = std::env::var_os("BENCH_SAME").is_none();
    let mut totals = [Round::default(), Round::default()];
    for r in 0..rounds {
        // One gateway at a time, started afresh each round, in alternating order: with both
        // running side by side, the one started first was 6 % faster whatever its config.
        let mut order = [(0, false), (1, auth_on)];
        if r % 2 == 1 {
            order.reverse();
        }
        for (index, auth) in order {
            let gateway = Gateway::start(auth);
            let measured = round(
                gateway.port,
                auth.then_some(token.as_str()),
                &body,
                duration,
            );
            gateway.stop();
            let total = &mut totals[index];
            total.ok += measured.ok;
            total.refused += measured.refused;
            total.latencies.extend(measured.latencies);
            total.elapsed += measured.elapsed;
        }
    }
    println!(
        "gateway, {CONNECTIONS} connections, {RECORDS} records a request, {rounds} rounds of {duration:?} each"
    );
    println!("| gateway | requests/s | records/s | p50 | p99 | 429s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut rates = Vec::new();
    for (name, total) in ["no auth", "bearer auth both ends"]
        .iter()
        .zip(totals.iter_mut())
    {
        total.latencies.sort_unstable();
        let rate = total.ok as f64 / total.elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "| {name} | {rate:.0} | {:.0} | {:?} | {:?} | {} |",
            rate * RECORDS as f64,
            percentile(&total.latencies, 0.50),
            percentile(&total.latencies, 0.99),
            total.refused
        );
    }
    println!("ratio (auth / no auth): {:.3}", rates[1] / rates[0]);
    assert!(totals.iter().all(|t| t.ok > 0), "every gateway answered");
}
