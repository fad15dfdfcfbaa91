//! `cargo xtask new-extension <name>`: a new extension crate with the shape every extension
//! crate has (see `extensions/bearer-auth`): config, factory, one file per capability, README,
//! registration (explicit and `linkme`), and the behaviour-suite test of its capability.

use std::path::{Path, PathBuf};

/// The template files, relative path and text (the manifest is chosen apart: [`manifest`]).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "README.md",
        include_str!("../templates/extension/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/extension/src/lib.rs.tmpl"),
    ),
    (
        "src/config.rs",
        include_str!("../templates/extension/src/config.rs.tmpl"),
    ),
    (
        "src/extension.rs",
        include_str!("../templates/extension/src/extension.rs.tmpl"),
    ),
    (
        "src/key_value.rs",
        include_str!("../templates/extension/src/key_value.rs.tmpl"),
    ),
    (
        "tests/key_value_suite.rs",
        include_str!("../templates/extension/tests/key_value_suite.rs.tmpl"),
    ),
];

/// A member of the otap-df workspace: versions, lints and dependencies from the workspace.
const MEMBER_MANIFEST: &str = include_str!("../templates/extension/Cargo.member.toml.tmpl");

/// A crate of its own (another repository): versioned dependencies on the published crates,
/// ready to publish.
const STANDALONE_MANIFEST: &str = include_str!("../templates/extension/Cargo.standalone.toml.tmpl");

/// The version requirement a standalone crate puts on otap-df's crates: this workspace's
/// `major.minor` (`0.1` for 0.1.x).
pub fn version_requirement() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_owned(),
    }
}

/// The otap-df workspace's root, found at run time from the current directory (`cargo
/// locate-project --workspace`), as `cargo xtask` is run from inside it.
pub fn workspace_root() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .map_err(|e| format!("cannot run `cargo locate-project`: {e}"))?;
    let manifest = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let root = Path::new(&manifest).parent().map(Path::to_path_buf);
    match root {
        Some(root) if output.status.success() && root.join("otap-df-core").is_dir() => Ok(root),
        _ => Err(format!(
            "run `cargo xtask` inside the otap-df workspace (found {}): {}",
            if manifest.is_empty() {
                "no workspace"
            } else {
                manifest.as_str()
            },
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Checks an extension type name: lower-case snake case, starting with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.ends_with('_')
        && !name.contains("__");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid extension name: use lower-case snake case starting with a \
             letter, e.g. `my_store`"
        ))
    }
}

/// The crate name of extension `name`: `otap-df-extension-<name with dashes>`.
pub fn crate_name(name: &str) -> String {
    format!("otap-df-extension-{}", name.replace('_', "-"))
}

/// The manifest for a crate in `dir`: a workspace member inside the workspace `root`, a crate
/// of its own anywhere else.
fn manifest(dir: &Path, root: &Path) -> &'static str {
    if dir.starts_with(root) {
        MEMBER_MANIFEST
    } else {
        STANDALONE_MANIFEST
    }
}

/// The files of extension `name` generated into `dir`, without writing them.
pub fn render(name: &str, dir: &Path, root: &Path) -> Vec<(PathBuf, String)> {
    let krate = crate_name(name);
    let replacements = [
        ("{{name}}", name.to_owned()),
        ("{{crate}}", krate.clone()),
        ("{{crate_ident}}", krate.replace('-', "_")),
        ("{{otap_df_version}}", version_requirement()),
    ];
    std::iter::once(("Cargo.toml", manifest(dir, root)))
        .chain(TEMPLATE.iter().copied())
        .map(|(path, text)| {
            let text = replacements
                .iter()
                .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
            (dir.join(path), text)
        })
        .collect()
}

/// Formats the generated Rust files with `rustfmt` (the names put in the templates change line
/// lengths). A toolchain without rustfmt leaves them as rendered, with a note.
fn format_sources<'a>(paths: impl Iterator<Item = &'a Path>) -> Result<(), String> {
    let sources: Vec<&Path> = paths
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&sources)
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("rustfmt failed on the generated files ({status})")),
        Err(error) => {
            eprintln!("note: the generated files are not formatted: cannot run rustfmt ({error})");
            Ok(())
        }
    }
}

/// Writes extension `name` into `dir` (default `extensions/<name>` in the workspace, a
/// member there by the workspace's `extensions/*` glob). Refuses an existing directory.
pub fn new_extension(args: &[String]) -> Result<PathBuf, String> {
    let usage = "usage: cargo xtask new-extension <name> [--dir <directory>]";
    let name = args.first().ok_or(usage)?;
    check_name(name)?;
    let root = workspace_root()?;
    let dir = match args.get(1).map(String::as_str) {
        Some("--dir") => {
            let dir = PathBuf::from(args.get(2).ok_or(usage)?);
            std::path::absolute(&dir).map_err(|e| format!("`{}`: {e}", dir.display()))?
        }
        Some(other) => return Err(format!("unexpected argument `{other}`\n{usage}")),
        None => root.join("extensions").join(name.replace('_', "-")),
    };
    if dir.exists() {
        return Err(format!(
            "`{}` already exists; choose another name or --dir",
            dir.display()
        ));
    }
    let files = render(name, &dir, &root);
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    format_sources(files.iter().map(|(path, _)| path.as_path()))?;
    eprintln!(
        "created {} (crate {}) in {}",
        name,
        crate_name(name),
        dir.display()
    );
    if dir.starts_with(&root) && !dir.starts_with(root.join("extensions")) {
        eprintln!(
            "note: the crate uses the workspace's dependencies; add `{}` to the workspace's \
             `members` (only `extensions/*` is a member by default)",
            dir.strip_prefix(&root).unwrap_or(&dir).display()
        );
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_snake_case() {
        assert_eq!(check_name("my_store"), Ok(()));
        assert_eq!(check_name("kv2"), Ok(()));
        for bad in ["", "My", "2kv", "my-store", "my_", "a__b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inside_the_workspace_the_crate_is_a_member_and_outside_a_crate_of_its_own() {
        let root = Path::new("/repo");
        let inside = render("my_store", &root.join("extensions/my-store"), root);
        let cargo = &inside[0].1;
        assert_eq!(inside[0].0, root.join("extensions/my-store/Cargo.toml"));
        assert!(
            cargo.contains("name = \"otap-df-extension-my-store\""),
            "{cargo}"
        );
        for line in [
            "version.workspace = true",
            "otap-df-core.workspace = true",
            "otap-df-tests.workspace = true",
            "[lints]\nworkspace = true",
        ] {
            assert!(cargo.contains(line), "{line} in {cargo}");
        }
        assert!(!cargo.contains("path ="), "{cargo}");

        let outside = render("my_store", Path::new("/elsewhere/my-store"), root);
        let cargo = &outside[0].1;
        let version = version_requirement();
        for line in [
            "version = \"0.1.0\"".to_owned(),
            format!("otap-df-core = \"{version}\""),
            format!("otap-df-tests = \"{version}\""),
            "license = \"Apache-2.0\"".to_owned(),
            "readme = \"README.md\"".to_owned(),
        ] {
            assert!(cargo.contains(&line), "{line} in {cargo}");
        }
        for absent in ["path =", "publish = false", ".workspace"] {
            assert!(!cargo.contains(absent), "{absent} in {cargo}");
        }
        for (path, text) in inside.iter().chain(&outside) {
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder",
                path.display()
            );
        }
        let suite = &inside.last().expect("files").1;
        assert!(suite.contains("use otap_df_extension_my_store::{Config, Store};"));
    }

    #[test]
    fn the_version_requirement_is_major_dot_minor() {
        let version = version_requirement();
        assert!(
            env!("CARGO_PKG_VERSION").starts_with(&format!("{version}.")),
            "{version}"
        );
        assert_eq!(version.matches('.').count(), 1, "{version}");
    }

    #[test]
    fn the_workspace_is_found_from_the_current_directory() {
        let root = workspace_root().expect("tests run inside the workspace");
        assert!(
            root.join("otap-df-core/Cargo.toml").is_file(),
            "{}",
            root.display()
        );
    }
}
