//! The publishing and footprint checks of `cargo xtask test`: every library crate packaged
//! and built from its package, `cargo doc` with warnings denied, every facade feature alone,
//! and what each package must not compile.

use std::process::Command;

use crate::scaffold::workspace_root;
use crate::shell::{cargo, cargo_path, cargo_with_env};

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
/// The packages are built by [`scaffolded`](crate::scaffold::scaffolded), from their unpacked sources in
/// `target/package/` as path dependencies: cargo's own verification builds them from a local
/// registry whose extractions and builds it reuses as long as the version number stays the
/// same, so a second run verified the first run's sources (seen: a method added to core was
/// "missing" in the verification of a crate using it).
pub(crate) fn packaged() -> Result<(), String> {
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
pub(crate) fn docs() -> Result<(), String> {
    cargo_with_env(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

/// Every feature of the facade builds alone (and with none), without dev-dependencies.
pub(crate) fn features() -> Result<(), String> {
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
pub(crate) fn footprint() -> Result<(), String> {
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
