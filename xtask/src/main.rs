//! Developer commands for the otap-df workspace: `cargo xtask <command>`.
//!
//! - `test`: what CI runs: format check, clippy with warnings denied, the whole test suite,
//!   every facade feature checked alone (cargo-hack, installed when missing), and the
//!   dependency footprint of the default build.
//! - `bench`: the criterion benchmarks (extra arguments go to `cargo bench`).

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") | Some("ci") => test(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test    format check, clippy (warnings denied), the whole test suite,\n          \
                 feature checks (cargo-hack) and the default dependency footprint\n  \
                 ci      the same as test\n  \
                 bench   criterion benchmarks; extra arguments go to `cargo bench`"
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

/// Runs `cargo <args>`, printing it first and how long it took after.
fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = cargo_path();
    eprintln!("==> cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run `{cargo}`: {e}"))?;
    eprintln!("<== {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

fn test() -> Result<(), String> {
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
    // The registry holds exactly the enabled extensions, also with none enabled.
    cargo(&[
        "test",
        "-p",
        "otap-df",
        "--no-default-features",
        "--test",
        "registry",
    ])?;
    features()?;
    footprint()
}

/// Every feature of the facade builds alone (and with none), without dev-dependencies.
fn features() -> Result<(), String> {
    let have_hack = Command::new(cargo_path())
        .args(["hack", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !have_hack {
        cargo(&["install", "cargo-hack", "--locked"])?;
    }
    cargo(&[
        "hack",
        "check",
        "-p",
        "otap-df",
        "--each-feature",
        "--no-dev-deps",
    ])
}

/// Crates the default build must not compile, by package: `(package, forbidden name prefixes)`.
const FOOTPRINT: &[(&str, &[&str])] = &[
    // The default facade: light extensions only.
    ("otap-df", &["azure_", "redis"]),
    // Core: no extension client library, no HTTP stack.
    (
        "otap-df-core",
        &["azure_", "redis", "hyper", "reqwest", "opentelemetry"],
    ),
];

/// Checks [`FOOTPRINT`] with `cargo tree` (normal dependencies, default features).
fn footprint() -> Result<(), String> {
    for (package, forbidden) in FOOTPRINT {
        eprintln!("==> dependency footprint of {package} (default features)");
        let output = Command::new(cargo_path())
            .args([
                "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
            ])
            .output()
            .map_err(|e| format!("cannot run `cargo tree`: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "`cargo tree -p {package}` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        let offending: std::collections::BTreeSet<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| forbidden.iter().any(|prefix| name.starts_with(prefix)))
            .collect();
        if !offending.is_empty() {
            return Err(format!(
                "{package} with default features depends on {offending:?}; forbidden: {forbidden:?}"
            ));
        }
    }
    Ok(())
}

fn cargo_path() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
