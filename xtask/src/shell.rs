//! Running the commands `cargo xtask` is made of: each printed before it runs and timed.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set once `redis-server` is known to be on PATH: every cargo command then runs with
/// `OTAP_DF_REQUIRE_REDIS=1`.
pub(crate) static REDIS_REQUIRED: AtomicBool = AtomicBool::new(false);

/// Whether the tests must fail rather than skip without Go (`OTAP_DF_REQUIRE_GO=1`): set by
/// `test`.
pub(crate) static GO_REQUIRED: AtomicBool = AtomicBool::new(false);

/// Runs `cargo <args>`, printing it first and how long it took after.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with environment variables set for it.
pub(crate) fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = cargo_path();
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
    eprintln!("==> {}cargo {}", shown.concat(), args.join(" "));
    let started = Instant::now();
    let mut command = Command::new(&cargo);
    command.args(args).envs(env.iter().copied());
    if REDIS_REQUIRED.load(Ordering::Relaxed) {
        command.env("OTAP_DF_REQUIRE_REDIS", "1");
    }
    if GO_REQUIRED.load(Ordering::Relaxed) {
        command.env("OTAP_DF_REQUIRE_GO", "1");
        // The OAuth2/OIDC test server is an npm package its tests install: Node is required
        // as Go is.
        command.env("OTAP_DF_REQUIRE_NODE", "1");
    }
    finished(
        &mut command,
        started,
        &format!("{cargo} {}", args.join(" ")),
    )
}

/// Runs `command` (started at `started`), printing how long it took; `shown` names it.
pub(crate) fn finished(command: &mut Command, started: Instant, shown: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    eprintln!("<== {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// The cargo that runs `cargo xtask` (`$CARGO`), else `cargo` from PATH.
pub(crate) fn cargo_path() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
