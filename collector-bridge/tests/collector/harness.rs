//! The setting of the tests inside the Collector: the `otelcol-otapdf` process, its
//! configuration's sections, our engines that send to it and receive from it, and what they
//! count.

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

pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| otap_df_collector_bridge::registry().expect("registry"))
}

pub(crate) fn port() -> u16 {
    free_port().expect("a free loopback port")
}

/// The Collector, killed on drop.
pub(crate) struct Collector {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
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
    pub(crate) fn start(
        dir: &Path,
        name: &str,
        config: &str,
        ports: &[u16],
        env: &[(&str, String)],
    ) -> Self {
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

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub(crate) fn otelcol() -> PathBuf {
    PathBuf::from(std::env::var_os("OTAP_DF_OTELCOL_OTAPDF").expect(
        "OTAP_DF_OTELCOL_OTAPDF names the Collector build: run these tests with \
         `cargo xtask collector-bridge`",
    ))
}

/// The Collector's service section: telemetry quiet, `pipelines` as given.
pub(crate) fn service(extensions: &str, pipelines: &str) -> String {
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
pub(crate) fn every_signal(receivers: &str, processors: &str, exporters: &str) -> String {
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
pub(crate) fn sink(port: u16, token: &str, out: &Path) -> Started {
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
pub(crate) fn send(
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
pub(crate) fn records_by_signal(out: &Path, expected: u64) -> [u64; 3] {
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

pub(crate) fn lost(telemetry: &Telemetry) -> u64 {
    engine::totals(telemetry, "out").counts.records_failed
}

pub(crate) const DEDUP: &str = "
    extensions:
      seen: { type: extension:memory_kv }
    nodes:
      dedup: { type: processor:dedup, config: { ttl: 10m }, capabilities: { key_value_store: seen } }";

/// One test's setting: its folder, the port the Collector takes data on, and our final
/// receiver (accepting `up` unless said otherwise) writing what arrives to a file.
pub(crate) struct Chain {
    pub(crate) dir: TempDir,
    pub(crate) ingest: u16,
    pub(crate) upstream: u16,
    pub(crate) out: PathBuf,
    pub(crate) sink: Started,
}

impl Chain {
    pub(crate) fn new(label: &str) -> Self {
        Self::accepting(label, "up")
    }

    /// Our final receiver accepting `token`.
    pub(crate) fn accepting(label: &str, token: &str) -> Self {
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
    pub(crate) fn otlp_in(&self) -> String {
        format!(
            "  otlp: {{ protocols: {{ http: {{ endpoint: '127.0.0.1:{}' }} }} }}\n",
            self.ingest
        )
    }

    /// The Collector's `otlp_http` exporter to our final receiver with `up`, as an
    /// `exporters:` entry.
    pub(crate) fn otlp_out(&self) -> String {
        format!(
            "  otlp_http: {{ endpoint: 'http://127.0.0.1:{}', headers: {{ authorization: 'Bearer up' }} }}\n",
            self.upstream
        )
    }

    /// The Collector's `otlp` receiver → our dedup processor → its `otlp_http` exporter, for
    /// every signal, logging at `level`.
    pub(crate) fn through_dedup(&self, level: &str) -> String {
        format!(
            "receivers:\n{}processors:\n  otapdf/dedup:{DEDUP}\nexporters:\n{}{}",
            self.otlp_in(),
            self.otlp_out(),
            service("", &every_signal("otlp", "otapdf/dedup", "otlp_http"))
                .replace("level: warn", &format!("level: {level}"))
        )
    }

    /// The Collector on `config`, with `env`, taking data on the ingest port.
    pub(crate) fn collector(&self, config: &str, env: &[(&str, String)]) -> Collector {
        Collector::start(self.dir.dir(), "otelcol", config, &[self.ingest], env)
    }

    /// Sends `count` batches of each signal (see [`send`]) to the ingest port; nothing is
    /// lost on the way and `records` of each signal arrive.
    pub(crate) fn delivers(
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
    pub(crate) fn refuses(&self, token: &str, records: u64) {
        let refused = send(self.ingest, Some(token), 2, 0.0, None);
        assert_eq!(lost(&refused), 60, "a wrong token is refused");
        assert_eq!(records_by_signal(&self.out, 3 * records + 1), [records; 3]);
    }

    pub(crate) fn finish(self) {
        self.sink.stop().unwrap();
    }
}
