//! `collector-bridge` and `bench bridge`: the bridge's static library, the `otelcol-otapdf`
//! distribution linking it (Go, cgo), the Go package's tests and benchmarks, and the tests
//! and load sweep run against that Collector.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::load;
use crate::provision::{GoBuild, go_build_once, require_go};
use crate::scaffold::workspace_root;
use crate::shell::{cargo, cargo_with_env, finished};

/// The Collector bridge: its static library, the `otelcol-otapdf` distribution linking it,
/// then the tests that run inside that Collector (`collector-bridge/tests/collector.rs`,
/// ignored under a plain `cargo test`).
pub(crate) fn collector_bridge() -> Result<(), String> {
    let root = workspace_root()?;
    // The library is built in this target directory's debug profile, with the dependencies
    // the test suite already built.
    let library = Library::build(&root, false)?;
    let collector = library.collector(&root, "otelcol-otapdf")?;
    // The Go package's own tests (its factories against the library, in process).
    library.go(&root, &["vet", "./otapdf"])?;
    library.go(&root, &["test", "-count=1", "./otapdf"])?;
    cargo_with_env(
        &[
            "test",
            "-p",
            "otap-df-collector-bridge",
            "--test",
            "collector",
            "--",
            "--ignored",
        ],
        &[
            ("OTAP_DF_OTELCOL_OTAPDF", &collector.display().to_string()),
            ("OTAP_DF_BRIDGE_LIBRARY", &library.hash),
        ],
    )
}

/// `bench bridge`: the bridge's library in release, the Collector distribution linking it,
/// the crossing benchmarks (Go), then the load sweep of a Collector pipeline without and with
/// our dedup processor (extra arguments go to the sweep).
pub(crate) fn bench_bridge(extra: &[String]) -> Result<(), String> {
    let root = workspace_root()?;
    let library = Library::build(&root, true)?;
    let collector = library.collector(&root, "otelcol-otapdf-release")?;
    library.go(
        &root,
        &[
            "test",
            "-count=1",
            "-run",
            "^$",
            "-bench",
            ".",
            "-benchtime",
            "2s",
            "./otapdf",
        ],
    )?;
    let mut args = vec![
        "--only".to_owned(),
        "ceiling,bridge-baseline,bridge-dedup".to_owned(),
        "--bridge".to_owned(),
        collector.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    load("sweep", &args)
}

/// The bridge's static library (`libotap_df_collector_bridge.a`), built.
struct Library {
    /// The folder that holds it (for `CGO_LDFLAGS=-L`).
    folder: PathBuf,
    /// Its contents' hash, which every Go link of it names (see [`Library::link_flag`]).
    hash: String,
}

impl Library {
    /// Builds it in the debug or release profile of this target directory.
    fn build(root: &Path, release: bool) -> Result<Self, String> {
        let mut args = vec!["rustc"];
        if release {
            args.push("--release");
        }
        args.extend([
            "-p",
            "otap-df-collector-bridge",
            "--lib",
            "--crate-type",
            "staticlib",
        ]);
        cargo(&args)?;
        let folder = root
            .join("target")
            .join(if release { "release" } else { "debug" });
        let archive = folder.join("libotap_df_collector_bridge.a");
        let contents = std::fs::read(&archive)
            .map_err(|e| format!("cannot read {}: {e}", archive.display()))?;
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            contents.hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        Ok(Library { folder, hash })
    }

    /// The Go link flag that names the library by its contents (`otapdf.LinkedLibrary`).
    /// Go's build cache does not look into the C libraries a package links: without it, a
    /// binary or test built again after only the library changed would be the cached link
    /// of the old library.
    fn link_flag(&self) -> String {
        format!(
            "-ldflags=-X github.com/otap-df/collector-bridge/otapdf.LinkedLibrary={}",
            self.hash
        )
    }

    /// What cgo links it with.
    fn cgo_env(&self) -> [(&'static str, String); 2] {
        [
            ("CGO_ENABLED", "1".to_owned()),
            ("CGO_LDFLAGS", format!("-L{}", self.folder.display())),
        ]
    }

    /// Runs `go <args>` in `collector-bridge/`, linking the library.
    fn go(&self, root: &Path, args: &[&str]) -> Result<(), String> {
        require_go("the Collector bridge")?;
        let (command, rest) = args.split_first().ok_or("no go command")?;
        eprintln!("==> go {} (in collector-bridge/)", args.join(" "));
        finished(
            Command::new("go")
                .arg(command)
                .arg(self.link_flag())
                .args(rest)
                .current_dir(root.join("collector-bridge"))
                .envs(self.cgo_env()),
            Instant::now(),
            &format!("go {}", args.join(" ")),
        )
    }

    /// Builds `collector-bridge/cmd/otelcol-otapdf` linking the library into
    /// `target/<folder>/`, unless the binary there was built from the same Go sources and
    /// library.
    fn collector(&self, root: &Path, folder: &str) -> Result<PathBuf, String> {
        let sources = root.join("collector-bridge");
        let mut inputs = vec![
            sources.join("go.mod"),
            sources.join("go.sum"),
            sources.join("include").join("otapdf_bridge.h"),
        ];
        for package in ["otapdf", "cmd/otelcol-otapdf"] {
            let entries = std::fs::read_dir(sources.join(package))
                .map_err(|e| format!("cannot read collector-bridge/{package}: {e}"))?;
            let mut go: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "go"))
                .collect();
            go.sort();
            inputs.extend(go);
        }
        go_build_once(&GoBuild {
            what: "collector-bridge/cmd/otelcol-otapdf (cgo, the bridge's library)",
            sources: &sources,
            package: "./cmd/otelcol-otapdf",
            binary: &root.join("target").join(folder).join("otelcol-otapdf"),
            inputs: &inputs,
            flags: &[self.link_flag()],
            env: &self.cgo_env(),
        })
    }
}
