//! `cargo xtask new-extension <name>`: a new extension crate with the shape every extension
//! crate has (see `extensions/bearer-auth`): config, factory, one file per capability, README,
//! registration (explicit and `linkme`), and the behaviour-suite test of its capability.

use std::path::{Component, Path, PathBuf};

/// The template files, relative path and text.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/extension/Cargo.toml.tmpl"),
    ),
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

/// The workspace root (where `otap-df-core/` and `tests/kit/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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

/// How the generated `Cargo.toml` reaches a workspace crate from `dir`: a relative path when
/// `dir` is inside the workspace, an absolute one otherwise.
fn dependency(dir: &Path, root: &Path, crate_dir: &str) -> String {
    let path = match dir.strip_prefix(root) {
        Ok(inside) => {
            let ups = inside
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count();
            let mut path = "../".repeat(ups);
            path.push_str(crate_dir);
            path
        }
        Err(_) => root.join(crate_dir).display().to_string(),
    };
    format!("{{ path = \"{path}\" }}")
}

/// The files of extension `name` generated into `dir`, without writing them.
pub fn render(name: &str, dir: &Path, root: &Path) -> Vec<(PathBuf, String)> {
    let krate = crate_name(name);
    let replacements = [
        ("{{name}}", name.to_owned()),
        ("{{crate}}", krate.clone()),
        ("{{crate_ident}}", krate.replace('-', "_")),
        ("{{core_dep}}", dependency(dir, root, "otap-df-core")),
        ("{{tests_dep}}", dependency(dir, root, "tests/kit")),
    ];
    TEMPLATE
        .iter()
        .map(|(path, text)| {
            let text = replacements
                .iter()
                .fold((*text).to_owned(), |text, (from, to)| {
                    text.replace(from, to)
                });
            (dir.join(path), text)
        })
        .collect()
}

/// Writes extension `name` into `dir` (default `extensions/<name>` in the workspace, a
/// member there by the workspace's `extensions/*` glob). Refuses an existing directory.
pub fn new_extension(args: &[String]) -> Result<PathBuf, String> {
    let usage = "usage: cargo xtask new-extension <name> [--dir <directory>]";
    let name = args.first().ok_or(usage)?;
    check_name(name)?;
    let root = workspace_root();
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
    for (path, text) in render(name, &dir, &root) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    eprintln!(
        "created {} (crate {}) in {}",
        name,
        crate_name(name),
        dir.display()
    );
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
    fn every_placeholder_is_replaced_and_paths_fit_the_location() {
        let root = Path::new("/repo");
        let inside = render("my_store", &root.join("extensions/my-store"), root);
        let cargo = &inside[0].1;
        assert!(
            cargo.contains("name = \"otap-df-extension-my-store\""),
            "{cargo}"
        );
        assert!(
            cargo.contains("otap-df-core = { path = \"../../otap-df-core\" }"),
            "{cargo}"
        );
        assert!(
            cargo.contains("otap-df-tests = { path = \"../../tests\" }"),
            "{cargo}"
        );
        let outside = render("my_store", Path::new("/elsewhere/my-store"), root);
        assert!(
            outside[0]
                .1
                .contains("otap-df-core = { path = \"/repo/otap-df-core\" }")
        );
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
}
