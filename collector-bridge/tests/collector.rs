//! The bridge inside a real OpenTelemetry Collector (`otelcol-otapdf`, built by `cargo xtask
//! collector-bridge`, which runs these tests with `OTAP_DF_OTELCOL_OTAPDF` set to it), with
//! exact counts per signal: the Collector's `otlp` receiver → our dedup processor → its
//! exporter; our receiver with `bearer_auth` → its exporter; its pipeline → our exporter
//! signing with an `azure_auth` token from a loopback managed identity endpoint; its own
//! `otlp` receiver guarded by our authorizer and its exporter signed by our provider; our
//! connector between two pipelines; configuration errors located in its output; a reload
//! (every component restarted) under load with nothing lost.
//!
//! The senders and the final receivers are otap-df engines in this process.
//! Ignored under a plain `cargo test` (they need the Collector build).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

// The azure-auth crate's own test support (a managed identity endpoint on loopback).
#[path = "../../extensions/azure-auth/tests/support/mod.rs"]
mod azure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use otap_df::Registry;
use otap_df::core::data::Signal;
use otap_df::core::runtime::Telemetry;
use otap_df_tests::engine::{self, Started};
use otap_df_tests::ports::free_port;
use otap_df_tests::temp::TempDir;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| otap_df_collector_bridge::registry().expect("registry"))
}

fn port() -> u16 {
    free_port().expect("a free loopback port")
}

/// The Collector, killed on drop.
struct Collector {
    child: Child,
    log: PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Collector {
    /// Starts `otelcol-otapdf` on `config` (written to `<name>.yaml`) with `env`, and waits
    /// (bounded) until something listens on each of `ports`.
    fn start(dir: &Path, name: &str, config: &str, ports: &[u16], env: &[(&str, String)]) -> Self {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(otelcol())
            .arg("--config")
            .arg(&path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the Collector starts");
        let mut collector = Collector { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ports
            .iter()
            .any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if let Ok(Some(status)) = collector.child.try_wait() {
                panic!("the Collector exited ({status}): {}", collector.output());
            }
            assert!(
                Instant::now() < deadline,
                "the Collector did not listen on {ports:?}: {}",
                collector.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        collector
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn otelcol() -> PathBuf {
    PathBuf::from(std::env::var_os("OTAP_DF_OTELCOL_OTAPDF").expect(
        "OTAP_DF_OTELCOL_OTAPDF names the Collector build: run these tests with \
         `cargo xtask collector-bridge`",
    ))
}

/// The Collector's service section: telemetry quiet, `pipelines` as given.
fn service(extensions: &str, pipelines: &str) -> String {
    format!(
        "service:
  extensions: [{extensions}]
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
{pipelines}"
    )
}

/// The same pipeline for every signal.
fn every_signal(receivers: &str, processors: &str, exporters: &str) -> String {
    ["logs", "traces", "metrics"]
        .iter()
        .map(|s| {
            format!(
                "    {s}: {{ receivers: [{receivers}], processors: [{processors}], exporters: [{exporters}] }}\n"
            )
        })
        .collect()
}

/// Our final receiver: OTLP/HTTP on `port` accepting `token`, writing what it takes to
/// `out`.
fn sink(port: u16, token: &str, out: &Path) -> Started {
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: ['{token}'] }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
        out.display()
    );
    let started = engine::start(engine::one_core(engine::resolve(&yaml, registry())));
    assert!(
        started.wait_running(Duration::from_secs(20)),
        "the sink runs"
    );
    started
}

/// Our sender: `count` batches of 10 records of each signal (a `duplicate_ratio` share of
/// them repeats of the one before), unmerged, at `rate` batches a second per signal (as fast
/// as taken when `None`), to OTLP/HTTP on `port` with `token` (none when `None`); runs to
/// its end.
fn send(
    port: u16,
    token: Option<&str>,
    count: u64,
    duplicate_ratio: f64,
    rate: Option<u64>,
) -> Arc<Telemetry> {
    // What the sender could not deliver, and why, shows in a failed test's output.
    otap_df_tests::logs::warnings_to_stderr();
    let (extensions, capabilities) = match token {
        Some(token) => (
            format!(
                "        extensions:\n          token: {{ type: extension:bearer_auth, config: {{ token: '{token}' }} }}\n"
            ),
            "\n            capabilities: { bearer_token_provider: token }",
        ),
        None => (String::new(), ""),
    };
    let rate = rate.map_or(String::new(), |r| format!(", rate: {r}"));
    let generator = |signal: &str| {
        format!(
            "          {signal}: {{ type: receiver:generator, config: {{ signal: {signal}, batch_size: 10, count: {count}, duplicate_ratio: {duplicate_ratio}{rate} }} }}\n"
        )
    };
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
{extensions}        nodes:
{}{}{}          out:
            type: exporter:otlp_http
            config: {{ endpoint: 'http://127.0.0.1:{port}', merge_max_bytes: 0, retry: {{ initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 60s }} }}{capabilities}
        connections:
          - {{ from: [logs, traces, metrics], to: out }}
",
        generator("logs"),
        generator("traces"),
        generator("metrics"),
    );
    engine::run_to_end(engine::resolve(&yaml, registry()))
}

/// Records per signal (logs, traces, metrics) in `out`, once it holds `expected` in all
/// (bounded wait).
fn records_by_signal(out: &Path, expected: u64) -> [u64; 3] {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let payloads = otap_df::nodes::read_payloads(out).unwrap_or_default();
        let mut counts = [0; 3];
        for payload in &payloads {
            let at = match payload.signal() {
                Signal::Logs => 0,
                Signal::Traces => 1,
                Signal::Metrics => 2,
            };
            counts[at] += payload.records();
        }
        if counts.iter().sum::<u64>() >= expected || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lost(telemetry: &Telemetry) -> u64 {
    engine::totals(telemetry, "out").counts.records_failed
}

const DEDUP: &str = "
    extensions:
      seen: { type: extension:memory_kv }
    nodes:
      dedup: { type: processor:dedup, config: { ttl: 10m }, capabilities: { key_value_store: seen } }";

/// One test's setting: its folder, the port the Collector takes data on, and our final
/// receiver (accepting `up` unless said otherwise) writing what arrives to a file.
struct Chain {
    dir: TempDir,
    ingest: u16,
    upstream: u16,
    out: PathBuf,
    sink: Started,
}

impl Chain {
    fn new(label: &str) -> Self {
        Self::accepting(label, "up")
    }

    /// Our final receiver accepting `token`.
    fn accepting(label: &str, token: &str) -> Self {
        let dir = TempDir::new(label);
        let (ingest, upstream) = (port(), port());
        let out = dir.path("received.bin");
        let sink = sink(upstream, token, &out);
        Self {
            dir,
            ingest,
            upstream,
            out,
            sink,
        }
    }

    /// The Collector's `otlp` receiver (OTLP/HTTP) on the ingest port, as a `receivers:`
    /// entry.
    fn otlp_in(&self) -> String {
        format!(
            "  otlp: {{ protocols: {{ http: {{ endpoint: '127.0.0.1:{}' }} }} }}\n",
            self.ingest
        )
    }

    /// The Collector's `otlp_http` exporter to our final receiver with `up`, as an
    /// `exporters:` entry.
    fn otlp_out(&self) -> String {
        format!(
            "  otlp_http: {{ endpoint: 'http://127.0.0.1:{}', headers: {{ authorization: 'Bearer up' }} }}\n",
            self.upstream
        )
    }

    /// The Collector's `otlp` receiver → our dedup processor → its `otlp_http` exporter, for
    /// every signal, logging at `level`.
    fn through_dedup(&self, level: &str) -> String {
        format!(
            "receivers:\n{}processors:\n  otapdf/dedup:{DEDUP}\nexporters:\n{}{}",
            self.otlp_in(),
            self.otlp_out(),
            service("", &every_signal("otlp", "otapdf/dedup", "otlp_http"))
                .replace("level: warn", &format!("level: {level}"))
        )
    }

    /// The Collector on `config`, with `env`, taking data on the ingest port.
    fn collector(&self, config: &str, env: &[(&str, String)]) -> Collector {
        Collector::start(self.dir.dir(), "otelcol", config, &[self.ingest], env)
    }

    /// Sends `count` batches of each signal (see [`send`]) to the ingest port; nothing is
    /// lost on the way and `records` of each signal arrive.
    fn delivers(
        &self,
        collector: &Collector,
        token: Option<&str>,
        count: u64,
        ratio: f64,
        records: u64,
    ) {
        let sent = send(self.ingest, token, count, ratio, None);
        assert_eq!(lost(&sent), 0, "{}", collector.output());
        assert_eq!(
            records_by_signal(&self.out, 3 * records),
            [records; 3],
            "{}",
            collector.output()
        );
    }

    /// Sends 2 batches of each signal with `token`, which is refused: all 60 records lost,
    /// nothing more arrives than the `records` of each signal before.
    fn refuses(&self, token: &str, records: u64) {
        let refused = send(self.ingest, Some(token), 2, 0.0, None);
        assert_eq!(lost(&refused), 60, "a wrong token is refused");
        assert_eq!(records_by_signal(&self.out, 3 * records + 1), [records; 3]);
    }

    fn finish(self) {
        self.sink.stop().unwrap();
    }
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_collectors_pipeline_through_our_dedup_processor_forwards_each_batch_once() {
    let chain = Chain::new("bridge-processor");
    let collector = chain.collector(&chain.through_dedup("warn"), &[]);
    // 40 batches a signal, 10 of them repeats: 30 distinct batches of 10 records.
    chain.delivers(&collector, None, 40, 0.25, 300);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_receiver_with_bearer_auth_feeds_every_signals_pipeline_and_refuses_a_wrong_token() {
    let chain = Chain::new("bridge-receiver");
    let config = format!(
        "receivers:
  otapdf/in:
    extensions:
      callers: {{ type: extension:bearer_auth, config: {{ tokens: [sender] }} }}
    nodes:
      in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
exporters:
{}{}",
        chain.ingest,
        chain.otlp_out(),
        service("", &every_signal("otapdf/in", "", "otlp_http"))
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, Some("sender"), 10, 0.0, 100);
    // A wrong token: refused by our receiver (401, not retried).
    chain.refuses("intruder", 100);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_collectors_pipeline_exports_through_our_exporter_with_an_azure_auth_token() {
    let chain = Chain::accepting("bridge-exporter", "entra-issued");
    let value = chain.dir.path("token-value");
    std::fs::write(&value, "entra-issued").unwrap();
    let endpoint =
        azure::TokenEndpoint::start(&[], azure::Reply::Token(3600)).with_value_file(&value);
    let config = format!(
        "receivers:
{}exporters:
  otapdf/up:
    extensions:
      entra: {{ type: extension:azure_auth, config: {} }}
    nodes:
      up: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{}' }}, capabilities: {{ bearer_token_provider: entra }} }}
{}",
        chain.otlp_in(),
        azure::managed_identity(""),
        chain.upstream,
        service("", &every_signal("otlp", "", "otapdf/up"))
    );
    let collector = chain.collector(&config, &endpoint.env());
    chain.delivers(&collector, None, 10, 0.0, 100);
    assert!(
        endpoint.served().iter().all(|s| s.header_ok) && !endpoint.served().is_empty(),
        "the token came from the managed identity endpoint"
    );
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_extensions_guard_the_collectors_receiver_and_sign_its_exporter() {
    let chain = Chain::accepting("bridge-extension", "signed-by-otapdf");
    let config = format!(
        "extensions:
  otapdf/callers: {{ type: bearer_auth, config: {{ tokens: [sender] }} }}
  otapdf/sign: {{ type: bearer_auth, config: {{ token: signed-by-otapdf }} }}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: '127.0.0.1:{}', auth: {{ authenticator: otapdf/callers }} }}
exporters:
  otlp_http: {{ endpoint: 'http://127.0.0.1:{}', auth: {{ authenticator: otapdf/sign }} }}
{}",
        chain.ingest,
        chain.upstream,
        service(
            "otapdf/callers, otapdf/sign",
            &every_signal("otlp", "", "otlp_http")
        )
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, Some("sender"), 10, 0.0, 100);
    chain.refuses("intruder", 100);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_connector_joins_two_pipelines_of_each_signal() {
    let chain = Chain::new("bridge-connector");
    let pipelines: String = ["logs", "traces", "metrics"]
        .iter()
        .map(|s| {
            format!(
                "    {s}/in: {{ receivers: [otlp], exporters: [otapdf/link] }}\n    \
                 {s}/out: {{ receivers: [otapdf/link], exporters: [otlp_http] }}\n"
            )
        })
        .collect();
    let config = format!(
        "receivers:\n{}connectors:\n  otapdf/link:{DEDUP}\nexporters:\n{}{}",
        chain.otlp_in(),
        chain.otlp_out(),
        service("", &pipelines)
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, None, 40, 0.25, 300);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn configuration_errors_from_the_rust_side_are_located_in_the_collectors_output() {
    let dir = TempDir::new("bridge-config-errors");
    let path = dir.path("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: '127.0.0.1:{}' }} }} }}
processors:
  otapdf/dedup:
    extensions:
      seen: {{ type: extension:memory_kv }}
    nodes:
      dedup: {{ type: processor:dedup, config: {{ ttl: forever }}, capabilities: {{ key_value_store: seen }} }}
exporters:
  debug: {{}}
{}",
            port(),
            service("", "    logs: { receivers: [otlp], processors: [otapdf/dedup], exporters: [debug] }\n")
        ),
    )
    .unwrap();
    let output = Command::new(otelcol())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("the Collector runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("processors::otapdf/dedup: at `nodes.dedup.config.ttl`: "),
        "the error names the component and the field: {text}"
    );
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn a_reload_restarts_every_component_under_load_and_nothing_is_lost() {
    let chain = Chain::new("bridge-reload");
    let collector = chain.collector(&chain.through_dedup("info"), &[]);
    // 3 signals × 300 batches at 100 a second each: three seconds of load.
    let ingest = chain.ingest;
    let sender = std::thread::spawn(move || send(ingest, None, 300, 0.0, Some(100)));
    for at in [1500, 4500] {
        // Once a share of the load went through, restart every component (SIGHUP).
        let counts = records_by_signal(&chain.out, at);
        assert!(counts.iter().sum::<u64>() >= at, "{}", collector.output());
        let status = Command::new("kill")
            .args(["-HUP", &collector.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let sent = sender.join().unwrap();
    assert_eq!(lost(&sent), 0, "{}", collector.output());
    // Every batch arrived. A batch the Collector took while its answer was cut by the
    // restart is sent again (at least once), so distinct batches are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let distinct = loop {
        let mut payloads: Vec<Vec<u8>> = otap_df::nodes::read_payloads(&chain.out)
            .unwrap_or_default()
            .iter()
            .map(|p| p.bytes().to_vec())
            .collect();
        payloads.sort();
        payloads.dedup();
        if payloads.len() >= 900 || Instant::now() > deadline {
            break payloads.len();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(distinct, 900, "{}", collector.output());
    let log = collector.output();
    assert_eq!(log.matches("Received signal from OS").count(), 2, "{log}");
    // One processor per signal, started, then stopped and started again at each reload.
    assert_eq!(log.matches("otap-df engine started").count(), 9, "{log}");
    assert_eq!(log.matches("otap-df engine stopped").count(), 6, "{log}");
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_readmes_collector_configurations_validate() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let section = readme
        .split("\n## Inside the OpenTelemetry Collector")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's bridge section");
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 2, "the section's configurations");
    let dir = TempDir::new("bridge-readme");
    // The durable queue's folder must exist: the README's, here under the test's folder.
    let state = dir.path("var-lib-otapdf");
    std::fs::create_dir_all(&state).unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path(&format!("readme-{i}.yaml"));
        let block = block.replace("/var/lib/otapdf", &state.display().to_string());
        std::fs::write(&path, &block).unwrap();
        let output = Command::new(otelcol())
            .args(["validate", "--config"])
            .arg(&path)
            .env("SENDER_TOKEN", "a-token")
            .output()
            .expect("the Collector runs");
        assert!(
            output.status.success(),
            "README configuration {i} does not validate: {}{}\n{block}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_runtime_section_sets_every_components_defaults() {
    let chain = Chain::new("bridge-runtime");
    let body = |runtime: &str| {
        format!(
            "runtime:\n  rust:\n{runtime}\n{}",
            chain.through_dedup("info")
        )
    };
    // Out of range, and a misspelt key: refused, named.
    for (runtime, error) in [
        (
            "    executor: { cores: 0 }\n    otapdf: { queue_size: 100000 }",
            "runtime::rust::otapdf::queue_size: must be from 1 to 65536",
        ),
        ("    executr: { cores: 2 }", "executr"),
    ] {
        let path = chain.dir.path("bad.yaml");
        std::fs::write(&path, body(runtime)).unwrap();
        let output = Command::new(otelcol())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .expect("the Collector runs");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && text.contains(error), "{text}");
    }
    let config = body("    executor: { cores: 2 }\n    otapdf: { queue_size: 32 }");
    let collector = chain.collector(&config, &[]);
    // Two cores share the store (memory_kv serves every core): repeats are still dropped.
    chain.delivers(&collector, None, 20, 0.25, 150);
    let log = collector.output();
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("otap-df engine started"))
        .collect();
    assert_eq!(started.len(), 3, "{log}");
    assert!(
        started
            .iter()
            .all(|l| l.contains("\"cores\": 2") && l.contains("\"queue_size\": 32")),
        "{log}"
    );
    // The build names the library it links (`cargo xtask` passes its hash): a binary linked
    // from Go's cache with an older library would name that one.
    match std::env::var("OTAP_DF_BRIDGE_LIBRARY") {
        Ok(library) => assert!(
            started
                .iter()
                .all(|l| l.contains(&format!("\"library\": \"{library}\""))),
            "the Collector build does not link the current library ({library}): {log}"
        ),
        Err(_) => eprintln!(
            "NOT CHECKED: which library the Collector build links (OTAP_DF_BRIDGE_LIBRARY is \
             not set; `cargo xtask collector-bridge` sets it)"
        ),
    }
    chain.finish();
}
