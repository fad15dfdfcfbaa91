//! The sweep: each target (the ceiling, the engine as a receiver, with and without bearer
//! auth, as a gateway in front of a fast and a slow upstream) started as its own process on
//! its own CPU, driven at each connection count, measured from outside.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;

use crate::drive::{self, Outcome};
use crate::quota::CpuQuota;

/// What the sweep is told.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The `otap-df` binary under test.
    pub engine: PathBuf,
    /// Client connection counts, in order.
    pub connections: Vec<usize>,
    /// Unmeasured time at the start of each level.
    pub warmup: Duration,
    /// Measured time of each level.
    pub measure: Duration,
    /// Only these targets (all when empty).
    pub only: Vec<String>,
    /// CPUs of the server under test (`taskset -c`), e.g. `0`.
    pub server_cpus: Option<String>,
    /// CPUs of the load generator and of the gateway's upstream.
    pub client_cpus: Option<String>,
    /// CPU time the server under test may use (in CPUs: 0.5 is half of one), capped through a
    /// cgroup; `None`: as much as its CPUs give.
    pub server_quota: Option<f64>,
    /// Threads of the load generator.
    pub client_threads: usize,
    /// Records per request.
    pub records: usize,
    /// Delay of the slow upstream.
    pub slow_delay: Duration,
    /// Where configurations and logs go.
    pub work_dir: PathBuf,
    /// Times the whole sweep is repeated (in the order [`schedule`] gives); the table shows
    /// each level's median round and the median of its rounds' ratios to the ceiling
    /// ([`Level::paired_ratio`]).
    pub rounds: usize,
    /// The OpenTelemetry Collector binary for the `otelcol-*` targets (`interop/otelcol`).
    pub otelcol: Option<PathBuf>,
    /// The Collector with the bridge for the `bridge-*` targets (`collector-bridge`).
    pub bridge: Option<PathBuf>,
}

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "ceiling",
    "receiver",
    "receiver+auth",
    "receiver+wasm-auth",
    "receiver+jwt",
    "gateway",
    "gateway+auth",
    "gateway+jwt",
    "gateway+jwt+tenant-header",
    "gateway+durable+auth",
    "gateway-slow-upstream",
    "otelcol-gateway+auth",
    "otelcol-gateway-blocking+auth",
    "grpc-ceiling",
    "grpc-tonic-ceiling",
    "grpc-receiver",
    "grpc-receiver+auth",
    "otelcol-grpc-receiver",
    "grpc-gateway",
    "grpc-gateway+auth",
    "grpc-gateway+durable+auth",
    "otelcol-grpc-gateway",
    "otelcol-grpc-gateway-blocking",
    "bridge-baseline",
    "bridge-dedup",
];

/// The timestamp of every record of the `bridge-*` targets' request: the client rewrites its
/// first occurrence in each request, so that no two are alike.
pub(crate) const STAMP: u64 = 0x5eed_0000_0000_0001;

/// Whether `target` speaks OTLP/gRPC (its load is calls over HTTP/2 connections).
fn grpc(target: &str) -> bool {
    target.starts_with("grpc-") || target.starts_with("otelcol-grpc")
}

/// What `target` is measured against: its protocol's ceiling; for the Collector with the
/// bridge, the same Collector pipeline without our component (`bridge-baseline`).
fn ceiling_of(target: &str) -> &'static str {
    if target.starts_with("bridge-") {
        "bridge-baseline"
    } else if grpc(target) {
        "grpc-ceiling"
    } else {
        "ceiling"
    }
}

/// One measured level of one target.
#[derive(Debug, Clone)]
pub struct Level {
    /// The target's name.
    pub target: String,
    /// Client connections.
    pub connections: usize,
    /// What the clients saw.
    pub outcome: Outcome,
    /// CPU the server under test used during the window, in cores.
    pub server_cpu: f64,
    /// CPU the load generator used during the window, in cores.
    pub client_cpu: f64,
    /// Peak resident memory of the server under test, in KiB.
    pub server_peak_rss_kib: u64,
    /// Records per request.
    pub records: usize,
    /// With several rounds: the median of the rounds' ratios of this level's accepted req/s
    /// to its ceiling's at the same connections, each round against its own ceiling (the
    /// machine's speed drifts between rounds more than within one).
    pub paired_ratio: Option<f64>,
}

const CALLER_TOKENS: usize = 10;

fn caller_token(i: usize) -> String {
    format!("caller-{i:02}-{}", "x".repeat(48))
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Process {
    name: String,
    child: Child,
}

impl Process {
    pub(crate) fn spawn(
        name: &str,
        cpus: Option<&str>,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self, String> {
        Self::spawn_with_env(name, cpus, program, args, log, &[])
    }

    fn spawn_with_env(
        name: &str,
        cpus: Option<&str>,
        program: &Path,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let log_file = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `port` accepts connections (bounded), or the process has ended.
    pub(crate) fn wait_listening(&mut self, port: u16, log: &Path) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{} exited ({status}) before listening:\n{log}",
                    self.name
                ));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "{} did not listen on port {port} within 20s",
            self.name
        ))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time used so far by process `pid` (`self` for this process), from `/proc`.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) end with `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `) `.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Field `field` (`VmHWM:`, `VmRSS:`) of process `pid`'s `/proc` status, in KiB; 0 when it
/// cannot be read.
pub(crate) fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The engine configuration of `target` listening on `port` (`upstream`: the gateway's); a
/// `+durable` gateway queues in an `extension:disk_queue` in `queues`.
fn engine_config(target: &str, port: u16, upstream: u16, queues: &Path) -> String {
    let tokens: Vec<String> = (0..CALLER_TOKENS).map(caller_token).collect();
    let auth = target.ends_with("+auth");
    let jwt = target.contains("+jwt");
    let (extensions, binding) = if jwt {
        // Checked by `jwt_available` before the target runs.
        let issuer = crate::jwt::issuer()
            .map(|i| i.jwks_url.as_str())
            .unwrap_or_default();
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:oidc_auth\n            config: {{ issuer: '{}', jwks_url: '{issuer}', audience: otap-df, algorithms: [ES256], attributes: {{ tenant: tenant }} }}\n",
                crate::jwt::ISSUER
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else if target == "receiver+wasm-auth" {
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:wasm\n            config: {{ module: '{}', provides: [bearer_token_authorizer], compile_cache: null }}\n",
                wasm_authorizer().display()
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else if auth {
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:bearer_auth\n            config: {{ tokens: [{}] }}\n          own:\n            type: extension:bearer_auth\n            config: {{ token: gateway-{} }}\n",
                tokens.join(", "),
                "y".repeat(48)
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    let durable = target.contains("+durable");
    let extensions = if durable {
        let spool = format!(
            "          spool:\n            type: extension:disk_queue\n            config: {{ directory: '{}' }}\n",
            queues.display()
        );
        if extensions.is_empty() {
            format!("        extensions:\n{spool}")
        } else {
            format!("{extensions}{spool}")
        }
    } else {
        extensions
    };
    let (receiver, exporter_type) = if grpc(target) {
        ("otlp_grpc", "otlp_grpc")
    } else {
        ("otlp_http", "otlp_http")
    };
    let exporter = if target.starts_with("gateway") || target.starts_with("grpc-gateway") {
        let provider = match (auth, durable) {
            (true, true) => {
                "            capabilities: { bearer_token_provider: own, durable_queue: spool }\n"
            }
            (true, false) => "            capabilities: { bearer_token_provider: own }\n",
            (false, true) => "            capabilities: { durable_queue: spool }\n",
            (false, false) => "",
        };
        let headers = if target.ends_with("+tenant-header") {
            ", headers_from_identity: { X-Scope-OrgID: tenant }"
        } else {
            ""
        };
        format!(
            "          out:\n            type: exporter:{exporter_type}\n            config: {{ endpoint: 'http://127.0.0.1:{upstream}', compression: none{headers} }}\n{provider}"
        )
    } else {
        "          out:\n            type: exporter:noop\n".to_owned()
    };
    format!(
        "version: otap_df/v1\nengine:\n  cores: 1\ngroups:\n  load:\n    pipelines:\n      main:\n{extensions}        nodes:\n          ingest:\n            type: receiver:{receiver}\n            config: {{ listen: '127.0.0.1:{port}' }}\n{binding}{exporter}        connections:\n          - {{ from: ingest, to: out }}\n"
    )
}

/// The WebAssembly authorizer of `receiver+wasm-auth`: the wasm extension's WAT fixture,
/// which accepts [`WASM_TOKEN`] (an engine built with `--features extension-wasm` runs it).
fn wasm_authorizer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../extensions/wasm/tests/guests/authorizer.wat")
}

/// Whether `engine` was built with the component type `name` (`extension:oidc_auth`): its
/// `components` lists it before the types it names as not compiled in.
fn engine_has(engine: &Path, name: &str) -> bool {
    std::process::Command::new(engine)
        .arg("components")
        .output()
        .is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .take_while(|line| !line.starts_with("not compiled in"))
                .any(|line| line.starts_with(&format!("  {name}  ")))
        })
}

/// The token `receiver+wasm-auth`'s client sends.
const WASM_TOKEN: &str = "alpha-token";

/// The Collector's configuration for `otelcol-gateway+auth`, the same job as our
/// `gateway+auth`: OTLP/HTTP in on `port` checking the caller's bearer token
/// (`bearertokenauth`), OTLP/HTTP out to `upstream` with a token of its own, uncompressed.
/// The exporter keeps the Collector's defaults otherwise (a sending queue of 1 000 requests
/// drained by 10 consumers, retries on; a full queue rejects), or with `blocking` a full queue
/// makes the receiver wait (`block_on_overflow`: backpressure, as our receiver does).
fn otelcol_config(port: u16, upstream: u16, blocking: bool) -> String {
    let queue = if blocking {
        "\n    sending_queue:\n      block_on_overflow: true"
    } else {
        ""
    };
    format!(
        "extensions:
  bearertokenauth/in:
    token: {caller}
  bearertokenauth/out:
    token: gateway-{own}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
        auth:
          authenticator: bearertokenauth/in
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{upstream}
    compression: none{queue}
    auth:
      authenticator: bearertokenauth/out
service:
  extensions: [bearertokenauth/in, bearertokenauth/out]
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
",
        caller = caller_token(CALLER_TOKENS - 1),
        own = "y".repeat(48),
    )
}

/// The configuration of the Collector with the bridge for `bridge-baseline` (OTLP/HTTP in on
/// `port`, every request's data handed to the `nop` exporter) and, with `dedup`, for
/// `bridge-dedup` (the same with our dedup processor, on `memory_kv`, in between).
fn bridge_config(port: u16, dedup: bool) -> String {
    let (processors, used) = if dedup {
        (
            "processors:
  otapdf/dedup:
    extensions:
      seen: { type: extension:memory_kv }
    nodes:
      dedup: { type: processor:dedup, config: { ttl: 1m }, capabilities: { key_value_store: seen } }
",
            "otapdf/dedup",
        )
    } else {
        ("", "")
    };
    format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
{processors}exporters:
  nop:
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], processors: [{used}], exporters: [nop] }}
"
    )
}

/// The Collector's configuration for `otelcol-grpc-gateway`, the same job as our
/// `grpc-gateway`: OTLP/gRPC in on `port`, OTLP/gRPC out to `upstream`, uncompressed, with its
/// exporter's defaults otherwise (a sending queue drained by 10 consumers, retries on); with
/// `blocking`, a full queue blocks the receiver's call instead of refusing it (backpressure,
/// as ours applies it). No tokens: gRPC sends per-call credentials only over TLS.
fn otelcol_grpc_config(port: u16, upstream: u16, blocking: bool) -> String {
    let queue = if blocking {
        "\n    sending_queue:\n      block_on_overflow: true"
    } else {
        ""
    };
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  otlp:
    endpoint: 127.0.0.1:{upstream}
    compression: none{queue}
    tls: {{ insecure: true }}
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"
    )
}

/// The Collector's configuration for `otelcol-grpc-receiver`, the same job as our
/// `grpc-receiver`: OTLP/gRPC in on `port`, every call's data handed to the `nop` exporter.
fn otelcol_grpc_receiver_config(port: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  nop:
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [nop] }}
"
    )
}

/// Runs every selected target at every connection count; prints progress on stderr.
pub fn sweep(options: &SweepOptions) -> Result<Vec<Level>, String> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| format!("cannot create {}: {e}", options.work_dir.display()))?;
    let own = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let payload = otap_df_nodes::otlp::synthetic(Signal::Logs, options.records, "load", 1);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    eprintln!(
        "request: POST /v1/logs, {} records, {} bytes of protobuf",
        options.records,
        payload.bytes().len()
    );
    // Each round takes one connection level at a time, every target at it back to back (a
    // target beside its ceiling, seconds apart: the machine's speed drifts over minutes), the
    // targets in reverse order every other round (neither of two runs always first); each
    // (target, connections) keeps its median round.
    let mut rounds: Vec<Vec<Level>> = Vec::new();
    let wasm = engine_has(&options.engine, "extension:wasm");
    let oauth2 = engine_has(&options.engine, "extension:oidc_auth");
    if !oauth2 {
        eprintln!(
            "the +jwt targets are left out: the engine has no extension:oidc_auth (build it \
             with --features extension-oauth2)"
        );
    }
    if !wasm {
        eprintln!(
            "receiver+wasm-auth is left out: the engine has no extension:wasm (build it with \
             --features extension-wasm)"
        );
    }
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|&target| options.only.is_empty() || options.only.iter().any(|t| t == target))
        .filter(|target| !target.starts_with("otelcol") || options.otelcol.is_some())
        .filter(|target| !target.starts_with("bridge-") || options.bridge.is_some())
        .filter(|&target| target != "receiver+wasm-auth" || wasm)
        .filter(|target| !target.contains("+jwt") || oauth2)
        .collect();
    for round in 1..=options.rounds.max(1) {
        if options.rounds > 1 {
            eprintln!("round {round} of {}", options.rounds);
        }
        let mut levels = Vec::new();
        for (target, connections) in schedule(&targets, &options.connections, round) {
            let level = run_level(options, &own, target, connections, payload.bytes(), &client)?;
            eprintln!("{}", row(&level, None));
            levels.push(level);
        }
        // Every round in one order (the table's: by target, then connections).
        levels.sort_by_key(|level| {
            (
                targets.iter().position(|t| *t == level.target),
                options
                    .connections
                    .iter()
                    .position(|&c| c == level.connections),
            )
        });
        rounds.push(levels);
    }
    let mut medians = Vec::new();
    for i in 0..rounds[0].len() {
        let mut runs: Vec<Level> = rounds.iter().map(|levels| levels[i].clone()).collect();
        runs.sort_by(|a, b| {
            a.outcome
                .accepted_per_second()
                .total_cmp(&b.outcome.accepted_per_second())
        });
        let mut median = runs.swap_remove(runs.len() / 2);
        if rounds.len() > 1 {
            median.paired_ratio = paired_ratio(&rounds, i);
        }
        medians.push(median);
    }
    Ok(medians)
}

/// The runs of round `round` (from 1): one connection level at a time, every target at it
/// back to back, the targets in reverse order in even rounds.
fn schedule<'a>(targets: &[&'a str], connections: &[usize], round: usize) -> Vec<(&'a str, usize)> {
    let mut order = targets.to_vec();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    connections
        .iter()
        .flat_map(|&c| order.iter().map(move |&target| (target, c)))
        .collect()
}

/// The median over `rounds` of level `i`'s accepted req/s against its ceiling's in the same
/// round; `None` when a round has no ceiling at its connections.
fn paired_ratio(rounds: &[Vec<Level>], i: usize) -> Option<f64> {
    let mut ratios = rounds
        .iter()
        .map(|levels| {
            let level = &levels[i];
            let ceiling = levels.iter().find(|l| {
                l.target == ceiling_of(&level.target) && l.connections == level.connections
            })?;
            let ceiling = ceiling.outcome.accepted_per_second();
            (ceiling > 0.0).then(|| level.outcome.accepted_per_second() / ceiling)
        })
        .collect::<Option<Vec<f64>>>()?;
    ratios.sort_by(f64::total_cmp);
    Some(median_of_sorted(&ratios))
}

/// The median of sorted `values` (the mean of the middle two of an even count).
fn median_of_sorted(values: &[f64]) -> f64 {
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// For a target the Collector serves: its binary and its configuration.
fn collector_target<'a>(
    options: &'a SweepOptions,
    target: &str,
    port: u16,
    upstream_port: u16,
) -> Option<(&'a Path, String)> {
    if target.starts_with("bridge-") {
        let bridge = options.bridge.as_deref()?;
        return Some((bridge, bridge_config(port, target == "bridge-dedup")));
    }
    if !target.starts_with("otelcol") {
        return None;
    }
    let text = if target == "otelcol-grpc-receiver" {
        otelcol_grpc_receiver_config(port)
    } else if grpc(target) {
        otelcol_grpc_config(port, upstream_port, target.contains("blocking"))
    } else {
        otelcol_config(port, upstream_port, target.contains("blocking"))
    };
    Some((options.otelcol.as_deref()?, text))
}

fn run_level(
    options: &SweepOptions,
    own: &Path,
    target: &str,
    connections: usize,
    body: &[u8],
    client: &tokio::runtime::Runtime,
) -> Result<Level, String> {
    let port = free_port()?;
    let dir = &options.work_dir;
    let server_cpus = options.server_cpus.as_deref();
    let client_cpus = options.client_cpus.as_deref();
    // The gateway's upstream, on the client's CPUs so that the engine has its own.
    let mut upstream = None;
    let upstream_port = free_port()?;
    let gateway = [
        "gateway",
        "otelcol-gateway",
        "grpc-gateway",
        "otelcol-grpc-gateway",
    ]
    .iter()
    .any(|prefix| target.starts_with(prefix));
    if gateway {
        let delay = if target == "gateway-slow-upstream" {
            options.slow_delay
        } else {
            Duration::ZERO
        };
        let log = dir.join("upstream.log");
        let mut process = Process::spawn(
            "upstream",
            client_cpus,
            own,
            &[
                "serve".to_owned(),
                "--listen".to_owned(),
                format!("127.0.0.1:{upstream_port}"),
                "--delay-ms".to_owned(),
                delay.as_millis().to_string(),
                format!("--grpc={}", grpc(target)),
            ],
            &log,
        )?;
        process.wait_listening(upstream_port, &log)?;
        upstream = Some(process);
    }
    let log = dir.join(format!("{}-{connections}.log", target.replace('+', "-")));
    let mut server = if target.ends_with("ceiling") {
        Process::spawn(
            target,
            server_cpus,
            own,
            &[
                "serve".to_owned(),
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                format!("--grpc={}", grpc(target)),
                format!("--tonic={}", target == "grpc-tonic-ceiling"),
            ],
            &log,
        )?
    } else if let Some((collector, text)) = collector_target(options, target, port, upstream_port) {
        // The Collector (ours with the bridge for `bridge-*`), on one core's worth of Go.
        let config = dir.join(format!("{}.yaml", target.replace('+', "-")));
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        Process::spawn_with_env(
            target,
            server_cpus,
            collector,
            &["--config".to_owned(), config.display().to_string()],
            &log,
            &[("GOMAXPROCS", "1")],
        )?
    } else {
        let config = dir.join(format!("{}.yaml", target.replace('+', "-")));
        // Each level starts with an empty queue.
        let queues = dir.join(format!("queues-{}-{connections}", target.replace('+', "-")));
        let _ = std::fs::remove_dir_all(&queues);
        std::fs::write(&config, engine_config(target, port, upstream_port, &queues))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        Process::spawn(
            target,
            server_cpus,
            &options.engine,
            &[
                "run".to_owned(),
                config.display().to_string(),
                "--quiet".to_owned(),
            ],
            &log,
        )?
    };
    // Capped before it serves: every thread it starts later stays in the cgroup.
    let quota = match options.server_quota {
        Some(cpus) => {
            let quota = CpuQuota::new(&format!("otap-df-load-{}", std::process::id()), cpus)?;
            quota.add(server.pid())?;
            Some(quota)
        }
        None => None,
    };
    server.wait_listening(port, &log)?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let authorization = if target == "receiver+wasm-auth" {
        format!("Bearer {WASM_TOKEN}")
    } else if target.contains("+jwt") {
        format!("Bearer {}", crate::jwt::issuer()?.token)
    } else {
        format!("Bearer {}", caller_token(CALLER_TOKENS - 1))
    };
    let mut headers = vec![("Content-Type", "application/x-protobuf")];
    if target.ends_with("auth") || target.contains("+jwt") {
        headers.push(("Authorization", authorization.as_str()));
    }
    // The bridge's targets send distinct requests: the same size, a stamp rewritten in each.
    let distinct = target.starts_with("bridge-");
    let stamped;
    let body = if distinct {
        stamped = otap_df_nodes::otlp::synthetic(Signal::Logs, options.records, "load", STAMP);
        stamped.bytes().as_ref()
    } else {
        body
    };
    let request = drive::request(address, "/v1/logs", &headers, body);
    let stamp = distinct.then(|| drive::stamp_at(&request)).flatten();
    // CPU of both sides over the measured window, sampled from another thread.
    let pid = server.pid().to_string();
    let (warmup, measure) = (options.warmup, options.measure);
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(warmup);
        let before = (cpu_time(&pid), cpu_time("self"));
        let started = Instant::now();
        std::thread::sleep(measure);
        let after = (cpu_time(&pid), cpu_time("self"));
        let elapsed = started.elapsed().as_secs_f64();
        let share = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => (b.saturating_sub(a)).as_secs_f64() / elapsed,
            _ => f64::NAN,
        };
        (share(before.0, after.0), share(before.1, after.1))
    });
    let outcome = if grpc(target) {
        let mut metadata = Vec::new();
        if target.ends_with("+auth") {
            metadata.push((
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&authorization).map_err(|e| e.to_string())?,
            ));
        }
        let path = otap_df_nodes::otlp_grpc::service_path(Signal::Logs);
        let message = otap_df_nodes::otlp_grpc::frame(body, false);
        client.block_on(drive::drive_grpc(
            address,
            path,
            metadata,
            message,
            connections,
            warmup,
            measure,
        ))
    } else {
        client.block_on(drive::drive(
            address,
            Arc::clone(&request),
            stamp,
            connections,
            warmup,
            measure,
        ))
    };
    let (server_cpu, client_cpu) = sampler.join().unwrap_or((f64::NAN, f64::NAN));
    let server_peak_rss_kib = peak_rss_kib(server.pid());
    drop(server);
    drop(quota);
    drop(upstream);
    Ok(Level {
        target: target.to_owned(),
        connections,
        outcome,
        server_cpu,
        client_cpu,
        server_peak_rss_kib,
        records: options.records,
        paired_ratio: None,
    })
}

fn micros(duration: Option<Duration>) -> String {
    match duration {
        Some(d) if d >= Duration::from_millis(10) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{} µs", d.as_micros()),
        None => "–".to_owned(),
    }
}

/// The table's header.
pub const HEADER: &str = "| target | conns | accepted req/s | × ceiling | records/s | refused/s (% with Retry-After) | errors | p50 | p99 | server CPU | client CPU | server peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// One row of the table; `ratio`: its accepted req/s against the ceiling's at the same
/// connections.
pub fn row(level: &Level, ratio: Option<f64>) -> String {
    let o = &level.outcome;
    let rate = o.accepted_per_second();
    let records = rate * level.records as f64;
    let ratio = ratio
        .filter(|r| r.is_finite())
        .map(|r| format!("{r:.2}"))
        .unwrap_or_else(|| "–".to_owned());
    let mut line = String::new();
    let _ = write!(
        line,
        "| {} | {} | {:.0} | {ratio} | {:.2} M | {:.0}{} | {} | {} | {} | {:.2} | {:.2} | {:.1} MiB |",
        level.target,
        level.connections,
        rate,
        records / 1e6,
        o.refused_per_second(),
        if o.refused == 0 {
            String::new()
        } else {
            format!(
                " ({:.0} %)",
                100.0 * o.refused_with_retry_after as f64 / o.refused as f64
            )
        },
        o.errors,
        micros(o.latency(0.5)),
        micros(o.latency(0.99)),
        level.server_cpu,
        level.client_cpu,
        level.server_peak_rss_kib as f64 / 1024.0,
    );
    line
}

/// The whole table, each row against its protocol's ceiling at the same connection count:
/// the median of the rounds' ratios when there were several ([`Level::paired_ratio`]), else
/// the one round's.
pub fn table(levels: &[Level]) -> String {
    let ratio = |level: &Level| {
        level.paired_ratio.or_else(|| {
            let ceiling = levels
                .iter()
                .find(|l| {
                    l.target == ceiling_of(&level.target) && l.connections == level.connections
                })?
                .outcome
                .accepted_per_second();
            (ceiling > 0.0).then(|| level.outcome.accepted_per_second() / ceiling)
        })
    };
    let mut text = String::from(HEADER);
    for level in levels {
        text.push('\n');
        text.push_str(&row(level, ratio(level)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(target: &str, connections: usize, accepted: u64) -> Level {
        Level {
            target: target.to_owned(),
            connections,
            outcome: Outcome {
                accepted,
                window: Duration::from_secs(1),
                ..Outcome::default()
            },
            server_cpu: 0.5,
            client_cpu: 0.5,
            server_peak_rss_kib: 0,
            records: 100,
            paired_ratio: None,
        }
    }

    #[test]
    fn a_round_runs_each_level_s_targets_back_to_back_in_turns() {
        let targets = ["ceiling", "bridge-baseline", "bridge-dedup"];
        assert_eq!(
            schedule(&targets, &[8, 256], 1),
            [
                ("ceiling", 8),
                ("bridge-baseline", 8),
                ("bridge-dedup", 8),
                ("ceiling", 256),
                ("bridge-baseline", 256),
                ("bridge-dedup", 256),
            ]
        );
        assert_eq!(
            schedule(&targets, &[8], 2),
            [("bridge-dedup", 8), ("bridge-baseline", 8), ("ceiling", 8)]
        );
    }

    /// A machine that runs faster in one round than in another moves a target and its
    /// ceiling alike: the ratio is taken within each round, and its median shown.
    #[test]
    fn each_round_is_set_against_its_own_ceiling() {
        let rounds = vec![
            vec![
                level("ceiling", 64, 100),
                level("receiver", 64, 80),
                level("grpc-ceiling", 64, 50),
                level("grpc-receiver", 64, 40),
            ],
            vec![
                level("ceiling", 64, 60),
                level("receiver", 64, 54),
                level("grpc-ceiling", 64, 50),
                level("grpc-receiver", 64, 45),
            ],
            vec![
                level("ceiling", 64, 80),
                level("receiver", 64, 56),
                level("grpc-ceiling", 64, 50),
                level("grpc-receiver", 64, 50),
            ],
        ];
        // Rounds' ratios 0.8, 0.9, 0.7: the median is 0.8, where the medians of the rates
        // (56 against 80) would say 0.7.
        let ratio = paired_ratio(&rounds, 1).unwrap();
        assert!((ratio - 0.8).abs() < 1e-9, "{ratio}");
        // gRPC targets against the gRPC ceiling: 0.8, 0.9, 1.0.
        let ratio = paired_ratio(&rounds, 3).unwrap();
        assert!((ratio - 0.9).abs() < 1e-9, "{ratio}");
        // The Collector with our processor against the Collector without it.
        let bridged = vec![
            vec![
                level("ceiling", 8, 100),
                level("bridge-baseline", 8, 20),
                level("bridge-dedup", 8, 15),
            ],
            vec![
                level("ceiling", 8, 90),
                level("bridge-baseline", 8, 10),
                level("bridge-dedup", 8, 8),
            ],
        ];
        let ratio = paired_ratio(&bridged, 2).unwrap();
        assert!((ratio - 0.775).abs() < 1e-9, "{ratio}");
        // A ceiling against itself.
        assert_eq!(paired_ratio(&rounds, 0), Some(1.0));
        // No ceiling at those connections: no ratio.
        let lone = vec![
            vec![level("receiver", 8, 10)],
            vec![level("receiver", 8, 12)],
        ];
        assert_eq!(paired_ratio(&lone, 0), None);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 8.0]), 3.0);
    }

    #[test]
    fn the_table_shows_the_paired_ratio_when_there_is_one() {
        let mut receiver = level("receiver", 64, 56);
        let ceiling = level("ceiling", 64, 80);
        assert!(
            table(&[ceiling.clone(), receiver.clone()]).contains("| receiver | 64 | 56 | 0.70 |")
        );
        receiver.paired_ratio = Some(0.8);
        assert!(table(&[ceiling, receiver]).contains("| receiver | 64 | 56 | 0.80 |"));
    }
}
