//! `otap-df-load`: the OTLP/HTTP load benchmark (`cargo xtask bench load`).
//!
//! - `sweep`: starts each target as its own process — the minimal server (the ceiling), the
//!   engine as `receiver:otlp_http → exporter:noop` with and without bearer auth, and as a
//!   gateway `receiver:otlp_http → exporter:otlp_http` in front of a fast upstream (with and
//!   without bearer tokens on both sides of the gateway) and a slow one —
//!   drives it at each connection count and prints accepted and refused requests per second,
//!   latency, CPU and peak memory as a Markdown table.
//!   The `grpc-*` targets do the same over OTLP/gRPC (calls over HTTP/2 connections, 16 to a
//!   connection), against a gRPC ceiling (hyper's HTTP/2 alone, and tonic's server side), with
//!   the Collector's gRPC gateway beside them (refusing, or blocking, when its queue is full).
//! - `serve`: the minimal server alone (also the gateway's upstream); `--grpc` for OTLP/gRPC,
//!   `--tonic` for it on tonic.
//! - `drive`: one load level against a running OTLP/HTTP or (`--grpc`) OTLP/gRPC server.
//! - `drain`: a gateway's durable queue filled with its upstream down, then drained to the
//!   minimal server: payload drained per second, disk and memory full and drained.
//! - `issuer`: the `+jwt` targets' token issuer alone (its key set served, its token printed),
//!   for runs outside `sweep`.

mod drain;
mod drive;
mod jwt;
mod process;
mod quota;
mod serve;
mod sweep;
mod table;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "otap-df-load",
    about = "The OTLP/HTTP load benchmark of otap-df"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every target at every connection count and prints the table.
    Sweep {
        /// The `otap-df` binary under test (build it with `--release`).
        #[arg(long, default_value = "target/release/otap-df")]
        engine: PathBuf,
        /// Client connection counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "8,64,256")]
        connections: Vec<usize>,
        /// Unmeasured seconds at the start of each level.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Measured seconds of each level.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Only these targets (comma-separated): ceiling, receiver, receiver+auth,
        /// receiver+wasm-auth (an engine built with `--features extension-wasm`),
        /// receiver+jwt (`oidc_auth`, ES256 tokens; an engine built with `--features
        /// extension-oauth2`, as `cargo xtask bench load` builds it), gateway, gateway+auth,
        /// gateway+jwt, gateway+jwt+tenant-header (`headers_from_identity`),
        /// gateway+durable+auth (its exporter queued in an `extension:disk_queue`),
        /// gateway-slow-upstream, otelcol-gateway+auth,
        /// otelcol-gateway-blocking+auth, and over OTLP/gRPC grpc-ceiling, grpc-tonic-ceiling,
        /// grpc-receiver, grpc-receiver+auth, otelcol-grpc-receiver, grpc-gateway,
        /// grpc-gateway+auth, grpc-gateway+durable+auth, otelcol-grpc-gateway,
        /// otelcol-grpc-gateway-blocking (their
        /// connection count is the number of concurrent calls, 16 to an HTTP/2 connection),
        /// and bridge-baseline, bridge-dedup (the Collector with the bridge, without and with
        /// our dedup processor; every request distinct).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// The OpenTelemetry Collector binary (`cargo xtask interop` builds it into
        /// target/otelcol/) for the `otelcol-*` targets, which are left out without it.
        #[arg(long)]
        otelcol: Option<PathBuf>,
        /// The Collector with the bridge (`cargo xtask collector-bridge` builds it into
        /// target/otelcol-otapdf/; `cargo xtask bench bridge` with the release library) for
        /// the `bridge-*` targets, which are left out without it.
        #[arg(long)]
        bridge: Option<PathBuf>,
        /// CPUs of the server under test (`taskset -c` syntax); default: CPU 0 when the
        /// machine has more than one.
        #[arg(long)]
        server_cpus: Option<String>,
        /// CPUs of the load generator and the gateway's upstream; default: every other CPU.
        #[arg(long)]
        client_cpus: Option<String>,
        /// Threads of the load generator; default: one per client CPU.
        #[arg(long)]
        client_threads: Option<usize>,
        /// Caps the server under test at this many CPUs' worth of time (0.5: half of one;
        /// through a cgroup, so as root), so that it, not the client, is the bottleneck: where
        /// one client core cannot saturate a server (the gRPC ceilings), the capped servers
        /// compare by what each does with the same CPU. Its "server CPU" then reads the cap.
        #[arg(long)]
        server_quota: Option<f64>,
        /// Records per request.
        #[arg(long, default_value_t = 100)]
        records: usize,
        /// Answer delay of the slow upstream, in milliseconds.
        #[arg(long, default_value_t = 20)]
        slow_delay_ms: u64,
        /// Where configurations and logs go.
        #[arg(long, default_value = "target/load")]
        work_dir: PathBuf,
        /// Times the whole sweep is repeated (each connection level's targets back to back,
        /// in reverse order every other round); the table shows each level's
        /// median round (by accepted requests per second) and, as "× ceiling", the median of
        /// the rounds' ratios, each round's level against that round's ceiling (the `bridge-*`
        /// targets against that round's `bridge-baseline`).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// The minimal server: reads each body, answers 200 (after `--delay-ms`).
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Milliseconds to wait before each answer.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Serve OTLP/gRPC (HTTP/2, every call answered `OK`) instead of OTLP/HTTP.
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        grpc: bool,
        /// With `--grpc`: serve it on tonic's server side instead of hyper's HTTP/2 alone.
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        tonic: bool,
    },
    /// Fills a gateway's durable queue with its upstream down, then times the drain.
    Drain {
        /// The `otap-df` binary under test (build it with `--release`).
        #[arg(long, default_value = "target/release/otap-df")]
        engine: PathBuf,
        /// Backlogs to fill and drain, in MiB, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "256,1024")]
        backlog_mib: Vec<u64>,
        /// Records per request.
        #[arg(long, default_value_t = 100)]
        records: usize,
        /// Client connections while filling.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Where configurations, logs and queues go.
        #[arg(long, default_value = "target/load")]
        work_dir: PathBuf,
    },
    /// One load level against a running OTLP server: prints what the clients saw.
    Drive {
        /// The server's address.
        #[arg(long)]
        address: SocketAddr,
        /// Speak OTLP/gRPC (calls over HTTP/2, 16 to a connection) instead of OTLP/HTTP.
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        grpc: bool,
        /// Connections (OTLP/HTTP) or concurrent calls (OTLP/gRPC).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Unmeasured seconds at the start.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Measured seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Records per request.
        #[arg(long, default_value_t = 100)]
        records: usize,
        /// A bearer token to send.
        #[arg(long)]
        token: Option<String>,
        /// Make every request distinct (a record's timestamp rewritten in each), as the
        /// `bridge-*` targets do: a deduplicating server then does all its work each time
        /// (OTLP/HTTP only).
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        distinct: bool,
    },
    /// The `+jwt` targets' issuer on its own, for a run outside `sweep` (an engine under a
    /// profiler): prints `jwks_url <url>`, `issuer <iss>` and `token <jwt>` (audience
    /// `otap-df`, ES256, claim `tenant: acme`), then serves the key set until killed.
    Issuer,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve {
            listen,
            delay_ms,
            grpc,
            tonic,
        } => {
            let grpc = match (grpc, tonic) {
                (false, _) => serve::Grpc::No,
                (true, false) => serve::Grpc::Hyper,
                (true, true) => serve::Grpc::Tonic,
            };
            serve::serve(listen, Duration::from_millis(delay_ms), grpc)
        }
        Command::Drive {
            address,
            grpc,
            connections,
            warmup,
            seconds,
            records,
            token,
            distinct,
        } => drive::once(drive::Once {
            address,
            grpc,
            connections,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            records,
            token,
            distinct,
        }),
        Command::Issuer => jwt::issuer().map(|issuer| {
            println!("jwks_url {}", issuer.jwks_url);
            println!("issuer {}", jwt::ISSUER);
            println!("token {}", issuer.token);
            loop {
                std::thread::park();
            }
        }),
        Command::Drain {
            engine,
            backlog_mib,
            records,
            connections,
            work_dir,
        } => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            let pinned = cpus > 1 && which("taskset");
            let options = drain::DrainOptions {
                engine,
                own: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("otap-df-load")),
                backlogs_mib: backlog_mib,
                records,
                connections,
                server_cpus: pinned.then(|| "0".to_owned()),
                client_cpus: pinned.then(|| format!("1-{}", cpus - 1)),
                work_dir,
            };
            drain::drain(&options).map(|results| println!("{}", drain::table(&results)))
        }
        Command::Sweep {
            engine,
            connections,
            warmup,
            seconds,
            only,
            otelcol,
            bridge,
            server_cpus,
            client_cpus,
            client_threads,
            server_quota,
            records,
            slow_delay_ms,
            work_dir,
            rounds,
        } => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            let pinned = cpus > 1 && which("taskset");
            let server_cpus = server_cpus.or_else(|| pinned.then(|| "0".to_owned()));
            let client_cpus = client_cpus.or_else(|| pinned.then(|| format!("1-{}", cpus - 1)));
            let client_threads = client_threads.unwrap_or((cpus - 1).max(1));
            let options = sweep::SweepOptions {
                engine,
                connections,
                warmup: Duration::from_secs_f64(warmup),
                measure: Duration::from_secs_f64(seconds),
                only,
                server_cpus: server_cpus.clone(),
                client_cpus: client_cpus.clone(),
                server_quota,
                client_threads,
                records,
                slow_delay: Duration::from_millis(slow_delay_ms),
                work_dir,
                rounds,
                otelcol,
                bridge,
            };
            eprintln!(
                "server CPUs: {}, client CPUs: {} ({client_threads} client threads)",
                server_cpus.as_deref().unwrap_or("any"),
                client_cpus.as_deref().unwrap_or("any"),
            );
            // The load generator's own threads stay off the server's CPUs.
            if let Some(cpus) = &client_cpus {
                let _ = std::process::Command::new("taskset")
                    .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
                    .stdout(std::process::Stdio::null())
                    .status();
            }
            sweep::sweep(&options).map(|levels| println!("{}", table::table(&levels)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("otap-df-load: {message}");
            ExitCode::FAILURE
        }
    }
}

fn which(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
