//! What the tests need that cargo does not build: Go binaries (built again only when their
//! inputs changed), the Collector of `interop/otelcol`, the Python SDK's environment,
//! `redis-server` and Node.js (installed from the system's packages when missing).

use std::process::Command;
use std::time::Instant;

use crate::shell::{REDIS_REQUIRED, finished};

/// A Go binary built from `package` in `sources`, again only when its inputs changed.
pub(crate) struct GoBuild<'a> {
    /// What it is, for the progress line.
    pub(crate) what: &'a str,
    pub(crate) sources: &'a std::path::Path,
    pub(crate) package: &'a str,
    pub(crate) binary: &'a std::path::Path,
    /// The files whose contents decide whether to build again.
    pub(crate) inputs: &'a [std::path::PathBuf],
    /// Build flags, which decide it too.
    pub(crate) flags: &'a [String],
    pub(crate) env: &'a [(&'a str, String)],
}

/// Builds `build` unless the binary there was built from the same inputs (a stamp beside it).
pub(crate) fn go_build_once(build: &GoBuild<'_>) -> Result<std::path::PathBuf, String> {
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
pub(crate) fn require_go(what: &str) -> Result<(), String> {
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
pub(crate) fn python_sdk(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
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
pub(crate) fn build_collector(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
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
pub(crate) fn redis_server() -> Result<(), String> {
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
pub(crate) fn node_js() -> Result<(), String> {
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
