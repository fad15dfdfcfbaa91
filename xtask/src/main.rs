//! Developer commands for the otap-df workspace: `cargo xtask <command>`.
//!
//! - `test`: what CI runs: `redis-server` installed when missing (the redis-kv tests then
//!   require it), format check, clippy with warnings denied, the whole test suite, `cargo doc`
//!   with warnings denied, every facade feature checked alone (cargo-hack, installed when
//!   missing), the dependency footprints, the publishing checks of `package`, and `interop`.
//! - `interop`: the OpenTelemetry Collector of `interop/otelcol` built with Go into
//!   `target/otelcol/`, the OpenTelemetry Python SDK of `interop/python-sdk` installed into
//!   `target/python-sdk/` (pip), and the interop tests against them.
//! - `collector-bridge`: the bridge's static library (`cargo rustc --crate-type staticlib`),
//!   the `otelcol-otapdf` Collector distribution of `collector-bridge/` built with Go (cgo)
//!   into `target/otelcol-otapdf/`, and the bridge's tests inside that Collector.
//! - `package`: the publishing checks alone (also part of `test`): every library crate
//!   packaged and built from its package, and the out-of-tree path (a generated extension and
//!   a distribution binary) built and tested against those packages.
//! - `author-path`: the README's "Write an extension" commands, run in an empty folder
//!   outside the workspace against this checkout (also part of `test`).
//! - `new-extension`: `otap-df new-extension` from inside the workspace (a member crate).
//! - `bench`: the criterion benchmarks (extra arguments go to `cargo bench`).
//! - `bench load`: the OTLP/HTTP load sweep (`xtask/load`): the release binary against a
//!   minimal server, as a receiver and as a gateway, at 8/64/256 connections (extra
//!   arguments go to `otap-df-load sweep`).
//! - `bench drain`: a gateway's durable queue filled with its upstream down, then drained
//!   (`otap-df-load drain`).
//! - `bench bridge`: the Collector bridge in release: the crossing benchmarks (Go) and a
//!   Collector pipeline's load sweep without and with our dedup processor.

mod author_path;
mod bridge;
mod checks;
mod provision;
mod scaffold;
mod shell;

use checks::{docs, features, footprint, packaged};
use provision::{build_collector, node_js, python_sdk, redis_server};
use scaffold::{scaffolded, workspace_root};
use shell::{GO_REQUIRED, cargo, cargo_with_env};

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") | Some("ci") => test(),
        Some("bench") => bench(&args[1..]),
        Some("package") => packaged().and_then(|()| scaffolded()),
        Some("interop") => interop(),
        Some("collector-bridge") => bridge::collector_bridge(),
        Some("new-extension") => scaffold::new_extension(&args[1..]),
        Some("author-path") => author_path::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test    what CI runs: redis-server installed when missing, format check,\n          \
                 clippy (warnings denied), the whole test suite, docs, feature checks\n          \
                 (cargo-hack), dependency footprints and the publishing checks\n  \
                 ci      the same as test\n  \
                 package every library crate packaged and built from its package, and a\n          \
                 scaffolded extension and distribution built against the packages\n  \
                 interop the OpenTelemetry Collector built from interop/otelcol (Go), and\n          \
                 the interop tests against it\n  \
                 collector-bridge\n          \
                 the Collector bridge's static library and Collector distribution (Go),\n          \
                 and its tests inside that Collector\n  \
                 bench   criterion benchmarks; extra arguments go to `cargo bench`\n  \
                 bench load [sweep options]\n          \
                 the OTLP/HTTP load sweep (release build; see xtask/load)\n  \
                 bench vs-otelcol [sweep options]\n          \
                 the authenticating gateway as otap-df and as the Collector, one sweep\n  \
                 bench drain [drain options]\n          \
                 a gateway's durable queue filled with its upstream down, then drained\n  \
                 bench bridge [sweep options]\n          \
                 the Collector bridge: crossing benchmarks, a Collector pipeline without\n          \
                 and with our dedup processor\n  \
                 new-extension <name> [--crate <crate>] [--dir <directory>]\n          \
                 `otap-df new-extension`: a new extension crate (default:\n          \
                 extensions/<name>, a member)\n  \
                 author-path\n          \
                 the README's extension author path, run in an empty folder"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn test() -> Result<(), String> {
    redis_server()?;
    node_js()?;
    // The wasm extension's Go guest is built by its tests, as the Collector is by interop:
    // `test` runs both, so Go is required, not skipped.
    GO_REQUIRED.store(true, std::sync::atomic::Ordering::Relaxed);
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets"])?;
    // Doc examples: `--all-targets` leaves them out.
    cargo(&["test", "--workspace", "--doc"])?;
    docs()?;
    // The registry holds exactly the enabled extensions, also with none and with all.
    cargo(&[
        "test",
        "-p",
        "otap-df",
        "--no-default-features",
        "--test",
        "registry",
    ])?;
    cargo(&[
        "test",
        "-p",
        "otap-df",
        "--features",
        "all-extensions",
        "--test",
        "registry",
    ])?;
    features()?;
    footprint()?;
    packaged()?;
    scaffolded()?;
    author_path::run()?;
    interop()?;
    bridge::collector_bridge()
}

/// The OpenTelemetry Collector distribution of `interop/otelcol`, built with Go into
/// `target/otelcol/` (again only when its sources changed), then the interop tests
/// (`otap-df/tests/interop.rs`, ignored under a plain `cargo test`) against it.
fn interop() -> Result<(), String> {
    let root = workspace_root()?;
    let collector = build_collector(&root)?;
    let python = python_sdk(&root)?;
    cargo_with_env(
        &[
            "test",
            "-p",
            "otap-df",
            "--test",
            "interop",
            "--",
            "--ignored",
        ],
        &[
            ("OTAP_DF_OTELCOL", &collector.display().to_string()),
            ("OTAP_DF_PYTHON_SDK", &python.display().to_string()),
        ],
    )
}

fn bench(extra: &[String]) -> Result<(), String> {
    if extra.first().map(String::as_str) == Some("load") {
        return load("sweep", &extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("drain") {
        return load("drain", &extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("bridge") {
        return bridge::bench_bridge(&extra[1..]);
    }
    if extra.first().map(String::as_str) == Some("vs-otelcol") {
        // The same authenticating gateway as our engine and as the Collector, beside the
        // ceiling, in one sweep.
        let root = workspace_root()?;
        let collector = build_collector(&root)?;
        let mut args = vec![
            "--only".to_owned(),
            "ceiling,gateway+auth,otelcol-gateway+auth,otelcol-gateway-blocking+auth".to_owned(),
            "--otelcol".to_owned(),
            collector.display().to_string(),
        ];
        args.extend(extra[1..].iter().cloned());
        return load("sweep", &args);
    }
    let mut args = vec!["bench", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// `bench load` and `bench drain`: builds the engine and the load tool in release, then runs
/// the load tool's `command` (`sweep`, `drain`).
fn load(command: &str, extra: &[String]) -> Result<(), String> {
    // With `extension-oauth2`, for the `+jwt` targets: every target runs this one binary.
    cargo(&[
        "build",
        "--release",
        "-p",
        "otap-df",
        "-p",
        "otap-df-load",
        "--bins",
        "--features",
        "otap-df/extension-oauth2",
    ])?;
    let root = workspace_root()?;
    let release = root.join("target").join("release");
    let engine = release.join("otap-df").display().to_string();
    let work_dir = root.join("target").join("load").display().to_string();
    let program = release.join("otap-df-load");
    eprintln!("==> {} {command} {}", program.display(), extra.join(" "));
    let status = Command::new(&program)
        .args([command, "--engine", &engine, "--work-dir", &work_dir])
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the load tool's {command} failed ({status})"))
    }
}
