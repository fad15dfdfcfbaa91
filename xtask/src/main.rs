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
mod scaffold;

use scaffold::{scaffolded, workspace_root};

use std::process::{Command, ExitCode};
use std::time::Instant;

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

/// Runs `cargo <args>`, printing it first and how long it took after.
pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with environment variables set for it.
fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = cargo_path();
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
    eprintln!("==> {}cargo {}", shown.concat(), args.join(" "));
    let started = Instant::now();
    let mut command = Command::new(&cargo);
    command.args(args).envs(env.iter().copied());
    if REDIS_REQUIRED.load(std::sync::atomic::Ordering::Relaxed) {
        command.env("OTAP_DF_REQUIRE_REDIS", "1");
    }
    if GO_REQUIRED.load(std::sync::atomic::Ordering::Relaxed) {
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
fn finished(command: &mut Command, started: Instant, shown: &str) -> Result<(), String> {
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

/// A Go binary built from `package` in `sources`, again only when its inputs changed.
struct GoBuild<'a> {
    /// What it is, for the progress line.
    what: &'a str,
    sources: &'a std::path::Path,
    package: &'a str,
    binary: &'a std::path::Path,
    /// The files whose contents decide whether to build again.
    inputs: &'a [std::path::PathBuf],
    /// Build flags, which decide it too.
    flags: &'a [String],
    env: &'a [(&'a str, String)],
}

/// Builds `build` unless the binary there was built from the same inputs (a stamp beside it).
fn go_build_once(build: &GoBuild<'_>) -> Result<std::path::PathBuf, String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in build.inputs {
        std::fs::read(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?
            .hash(&mut hasher);
    }
    build.flags.hash(&mut hasher);
    let stamp = format!("{:016x}", hasher.finish());
    let stamp_file = build.binary.with_extension("stamp");
    if build.binary.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        eprintln!("==> {} is built ({})", build.what, build.binary.display());
        return Ok(build.binary.to_owned());
    }
    require_go(build.what)?;
    eprintln!("==> go build {}", build.what);
    finished(
        Command::new("go")
            .args(["build", "-mod=readonly", "-buildvcs=false"])
            .args(build.flags)
            .arg("-o")
            .arg(build.binary)
            .arg(build.package)
            .current_dir(build.sources)
            .envs(build.env.iter().map(|(k, v)| (*k, v.as_str()))),
        Instant::now(),
        &format!("go build of {}", build.what),
    )?;
    std::fs::write(&stamp_file, stamp)
        .map_err(|e| format!("cannot write `{}`: {e}", stamp_file.display()))?;
    Ok(build.binary.to_owned())
}

/// Fails with what to install when `go` does not run.
fn require_go(what: &str) -> Result<(), String> {
    let have_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if have_go {
        Ok(())
    } else {
        Err(format!(
            "{what} is built with Go (1.26 or newer, https://go.dev/dl/): install it and \
             run again"
        ))
    }
}

/// A Python environment in `target/python-sdk/` with the OpenTelemetry SDK and its OTLP/gRPC
/// exporter (`interop/python-sdk/requirements.txt`, from PyPI), made again only when the
/// requirements changed; its interpreter.
fn python_sdk(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let requirements = root
        .join("interop")
        .join("python-sdk")
        .join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = root.join("target").join("python-sdk");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.stamp");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        eprintln!("==> the Python SDK is installed ({})", venv.display());
        return Ok(python);
    }
    let run = |program: &std::path::Path, args: &[&str]| -> Result<(), String> {
        eprintln!("==> {} {}", program.display(), args.join(" "));
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {} failed ({status})",
                program.display(),
                args.join(" ")
            ))
        }
    };
    let venv_text = venv.display().to_string();
    run(
        std::path::Path::new("python3"),
        &["-m", "venv", "--clear", &venv_text],
    )?;
    let requirements_text = requirements.display().to_string();
    run(
        &python,
        &["-m", "pip", "install", "--quiet", "-r", &requirements_text],
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

/// Builds `interop/otelcol` unless the binary in `target/otelcol/` was built from the same
/// sources (a stamp of `main.go`, `go.mod` and `go.sum`).
fn build_collector(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let sources = root.join("interop").join("otelcol");
    let inputs: Vec<_> = ["main.go", "go.mod", "go.sum"]
        .iter()
        .map(|name| sources.join(name))
        .collect();
    go_build_once(&GoBuild {
        what: "interop/otelcol (the OpenTelemetry Collector, v0.165)",
        sources: &sources,
        package: ".",
        binary: &root.join("target").join("otelcol").join("otelcol-interop"),
        inputs: &inputs,
        flags: &[],
        env: &[],
    })
}

/// The redis-kv tests run against real `redis-server`s: installs it from the system's packages
/// when it is missing (Debian's `apt-get`, as root or through `sudo`), or fails with one line
/// saying what to install. The tests then require it (`OTAP_DF_REQUIRE_REDIS`, read by the
/// kit's `redis_server::require`): under `cargo xtask test` no Redis test skips.
fn redis_server() -> Result<(), String> {
    let require = || REDIS_REQUIRED.store(true, std::sync::atomic::Ordering::Relaxed);
    if runs("redis-server", &["--version"]) {
        require();
        return Ok(());
    }
    let how = "the redis-kv tests need `redis-server` on PATH: install it (Debian/Ubuntu: \
               `apt-get install redis-server`; macOS: `brew install redis`) and run again";
    let sudo = apt_install(&["redis-server"], how)?;
    // The package may start a system service; the tests start servers of their own.
    let argv: Vec<&str> = sudo
        .iter()
        .chain(&["service", "redis-server", "stop"])
        .copied()
        .collect();
    let _ = Command::new(argv[0]).args(&argv[1..]).output();
    if !runs("redis-server", &["--version"]) {
        return Err(format!(
            "redis-server is still not on PATH after installing it; {how}"
        ));
    }
    require();
    Ok(())
}

/// Node.js and npm, for the OAuth2/OIDC test server the oauth2 tests install with npm
/// (`oauth2-mock-server`, which takes Node 18.12 and later): installed with `apt-get` when
/// missing.
fn node_js() -> Result<(), String> {
    if runs("node", &["--version"]) && runs("npm", &["--version"]) {
        return Ok(());
    }
    let how = "the oauth2 tests need Node.js 18.12+ and npm on PATH: install them (Debian/Ubuntu: \
               `apt-get install nodejs npm`; macOS: `brew install node`) and run again";
    apt_install(&["nodejs", "npm"], how)?;
    if !(runs("node", &["--version"]) && runs("npm", &["--version"])) {
        return Err(format!(
            "node or npm is still not on PATH after installing them; {how}"
        ));
    }
    Ok(())
}

/// Whether `program args` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Installs Debian `packages` with `apt-get` (through `sudo -n` unless root); `how` says what
/// to do by hand when it cannot. The `sudo` prefix used.
fn apt_install(packages: &[&str], how: &str) -> Result<&'static [&'static str], String> {
    if !runs("apt-get", &["--version"]) {
        return Err(how.to_owned());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let sudo: &'static [&'static str] = if root { &[] } else { &["sudo", "-n"] };
    eprintln!("==> installing {} (apt-get)", packages.join(", "));
    let mut install = vec!["apt-get", "install", "-y", "-qq"];
    install.extend_from_slice(packages);
    for step in [&["apt-get", "update", "-qq"][..], &install[..]] {
        let argv: Vec<&str> = sudo.iter().chain(step).copied().collect();
        let status = Command::new(argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}; {how}", argv.join(" ")))?;
        if !status.success() {
            return Err(format!("`{}` failed ({status}); {how}", argv.join(" ")));
        }
    }
    Ok(sudo)
}

/// Set once `redis-server` is known to be on PATH: every cargo command then runs with
/// `OTAP_DF_REQUIRE_REDIS=1`.
static REDIS_REQUIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the tests must fail rather than skip without Go (`OTAP_DF_REQUIRE_GO=1`): set by
/// `test`.
static GO_REQUIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The library crates the out-of-tree check builds from their packages, not their paths.
pub(crate) const PUBLISHED: &[&str] = &[
    "otap-df-core",
    "otap-df-nodes",
    "otap-df-tests",
    "otap-df-extension-bearer-auth",
    "otap-df-extension-azure-auth",
    "otap-df-extension-redis-kv",
    "otap-df-extension-disk-kv",
    "otap-df-extension-disk-queue",
    "otap-df-extension-wasm",
    "otap-df-extension-oauth2",
    "otap-df",
];

/// Every library crate packages with what crates.io requires (`cargo publish --dry-run`).
/// The packages are built by [`scaffolded`], from their unpacked sources in
/// `target/package/` as path dependencies: cargo's own verification builds them from a local
/// registry whose extractions and builds it reuses as long as the version number stays the
/// same, so a second run verified the first run's sources (seen: a method added to core was
/// "missing" in the verification of a crate using it).
fn packaged() -> Result<(), String> {
    cargo(&[
        "publish",
        "--dry-run",
        "--no-verify",
        "--workspace",
        "--allow-dirty",
    ])?;
    // The same packages as files (`target/package/<crate>-<version>.crate`), unpacked fresh
    // into `target/package/unpacked/` for the out-of-tree build.
    let mut args = vec!["package", "--no-verify", "--allow-dirty"];
    for name in PUBLISHED {
        args.extend(["-p", name]);
    }
    cargo(&args)?;
    let root = workspace_root()?;
    let packages = root.join("target").join("package");
    let unpacked = packages.join("unpacked");
    for name in PUBLISHED {
        let crate_name = format!("{name}-{}", env!("CARGO_PKG_VERSION"));
        let dir = unpacked.join(&crate_name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot remove `{}`: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&unpacked)
            .map_err(|e| format!("cannot create `{}`: {e}", unpacked.display()))?;
        let archive = packages.join(format!("{crate_name}.crate"));
        // `-m`: the files get the time of extraction, not the archive's. Cargo fingerprints
        // path dependencies by modification time: with the archive's times, sources older
        // than the last build of the same path counted as built, and a method added to core
        // was "missing" in the scaffolded build against them (seen).
        let status = Command::new("tar")
            .arg("-xzmf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .map_err(|e| format!("cannot run `tar`: {e}"))?;
        if !status.success() {
            return Err(format!("cannot unpack `{}` ({status})", archive.display()));
        }
    }
    Ok(())
}

/// `cargo doc` of the workspace with rustdoc's warnings (broken links among them) denied.
fn docs() -> Result<(), String> {
    cargo_with_env(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
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

/// Crates a package must not compile, by package: `(package, cargo tree edge kinds,
/// forbidden name prefixes)`, with default features. The package itself is never an
/// offender.
const FOOTPRINT: &[(&str, &str, &[&str])] = &[
    // The default facade: light extensions only.
    (
        "otap-df",
        "normal",
        &["azure_", "redis", "redb", "wasmtime", "reqwest"],
    ),
    // Core: no extension client library, no HTTP stack.
    (
        "otap-df-core",
        "normal",
        &[
            "azure_",
            "redis",
            "redb",
            "hyper",
            "reqwest",
            "opentelemetry",
        ],
    ),
    // azure-auth: one TLS stack (rustls with ring), not reqwest's default aws-lc build nor
    // OpenSSL.
    (
        "otap-df-extension-azure-auth",
        "normal",
        &["aws-lc", "openssl-sys", "native-tls"],
    ),
    // The test kit serves third parties' tests: core only, no node, no extension.
    (
        "otap-df-tests",
        "normal",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    // An extension's tests use core and the kit: no node, no other extension (pipelines with
    // the built-in nodes are the integration tests' job).
    (
        "otap-df-extension-bearer-auth",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-azure-auth",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-redis-kv",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-disk-kv",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-disk-queue",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-wasm",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    (
        "otap-df-extension-oauth2",
        "normal,dev",
        &["otap-df-nodes", "otap-df-extension-"],
    ),
    // oauth2: one TLS stack and one crypto library (rustls with ring, ring for JWTs).
    (
        "otap-df-extension-oauth2",
        "normal",
        &["aws-lc", "openssl-sys", "native-tls"],
    ),
];

/// What the facade must not compile for a library user (`default-features = false`): no
/// command line, no admin server, no log subscriber.
const LIBRARY_FOOTPRINT: &[&str] = &["clap", "prometheus-client", "tracing-subscriber"];

/// Checks [`FOOTPRINT`] (default features) and [`LIBRARY_FOOTPRINT`] with `cargo tree`.
fn footprint() -> Result<(), String> {
    let library = ("otap-df", "normal", LIBRARY_FOOTPRINT);
    let checks = FOOTPRINT
        .iter()
        .map(|check| (check, "default features"))
        .chain([(&library, "no default features")]);
    for ((package, edges, forbidden), features) in checks {
        eprintln!("==> dependency footprint of {package} ({edges} dependencies, {features})");
        let mut args = vec![
            "tree", "-p", package, "-e", edges, "--prefix", "none", "--format", "{p}",
        ];
        if features == "no default features" {
            args.push("--no-default-features");
        }
        let output = Command::new(cargo_path())
            .args(&args)
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
            .filter(|name| name != package)
            .filter(|name| forbidden.iter().any(|prefix| name.starts_with(prefix)))
            .collect();
        if !offending.is_empty() {
            return Err(format!(
                "{package} ({edges} dependencies, {features}) depends on {offending:?}; \
                 forbidden: {forbidden:?}"
            ));
        }
    }
    Ok(())
}

pub(crate) fn cargo_path() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
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
