//! The sweep: each target (the ceiling, the engine as a receiver, with and without bearer
//! auth, as a gateway in front of a fast and a slow upstream) started as its own process on
//! its own CPU, driven at each connection count, measured from outside.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;

use crate::drive::{self, Outcome, STAMP};
use crate::process::{Process, cpu_time, free_port, peak_rss_kib};
use crate::quota::CpuQuota;
use crate::table::row;
use crate::targets::{
    CALLER_TOKENS, TARGETS, WASM_TOKEN, caller_token, ceiling_of, collector_target, engine_config,
    engine_has, grpc,
};

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
    } else if let Some((collector, text)) = collector_target(
        options.otelcol.as_deref(),
        options.bridge.as_deref(),
        target,
        port,
        upstream_port,
    ) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn level(target: &str, connections: usize, accepted: u64) -> Level {
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
}
