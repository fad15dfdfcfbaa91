//! `otap-df new-extension`: a new extension crate with the shape every extension crate has
//! (config, factory, one file per capability, README, registration explicit and through
//! `linkme`, and the behaviour-suite test of its capability), which builds and passes its
//! tests as generated.
//!
//! Outside the otap-df repository it is a crate of its own, ready to publish, whose name the
//! author chooses (`--crate`, asked for on a terminal): `otap-df-extension-*` is the prefix of
//! the crates in the otap-df repository. Inside the repository it is a workspace member named
//! `otap-df-extension-<name>`. Until otap-df's crates are on crates.io, `--checkout` points
//! the new crate at a checkout of otap-df (`[patch.crates-io]`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The template files, relative path and text (the manifest is chosen apart: [`manifest`]).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "README.md",
        include_str!("../../templates/extension/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/extension/src/lib.rs.tmpl"),
    ),
    (
        "src/config.rs",
        include_str!("../../templates/extension/src/config.rs.tmpl"),
    ),
    (
        "src/error.rs",
        include_str!("../../templates/extension/src/error.rs.tmpl"),
    ),
    (
        "src/extension.rs",
        include_str!("../../templates/extension/src/extension.rs.tmpl"),
    ),
    (
        "src/key_value.rs",
        include_str!("../../templates/extension/src/key_value.rs.tmpl"),
    ),
    (
        "tests/key_value_suite.rs",
        include_str!("../../templates/extension/tests/key_value_suite.rs.tmpl"),
    ),
];

/// A member of the otap-df workspace: versions, lints and dependencies from the workspace.
const MEMBER_MANIFEST: &str = include_str!("../../templates/extension/Cargo.member.toml.tmpl");

/// A crate of its own (another repository): versioned dependencies on the published crates,
/// ready to publish.
const STANDALONE_MANIFEST: &str =
    include_str!("../../templates/extension/Cargo.standalone.toml.tmpl");

/// The prefix of the extension crates in the otap-df repository, refused for a crate of one's
/// own (crates.io names are first come, first served: a third party's crate under it would
/// read as first-party).
pub const FIRST_PARTY_PREFIX: &str = "otap-df-extension-";

/// The otap-df crates a generated crate depends on, with their folder in a checkout: what
/// `--checkout` patches.
const PATCHED: &[(&str, &str)] = &[
    ("otap-df-core", "otap-df-core"),
    ("otap-df-tests", "tests/kit"),
];

/// `new-extension`'s arguments.
#[derive(Debug, clap::Args)]
pub struct NewExtension {
    /// The extension type's name, as a configuration writes it after `extension:`
    /// (lower-case snake case: `vault_kv`).
    name: String,
    /// The crate's name. Outside the otap-df repository, one of your own, such as
    /// `acme-otap-df-vault-kv` (asked for on a terminal when not given); inside it,
    /// `otap-df-extension-<name>`.
    #[arg(long = "crate", value_name = "CRATE")]
    krate: Option<String>,
    /// Where to write it: `./<crate>` by default (`extensions/<name>` inside the otap-df
    /// repository). Refused if it exists.
    #[arg(long, value_name = "DIRECTORY")]
    dir: Option<PathBuf>,
    /// A checkout of otap-df to build against until its crates are on crates.io: adds
    /// `[patch.crates-io]` entries for `otap-df-core` and `otap-df-tests` pointing into it.
    #[arg(long, value_name = "CHECKOUT")]
    checkout: Option<PathBuf>,
}

/// Writes the crate and says where; an error line on a bad name, an existing directory, a
/// checkout that is not one, or a failed write.
pub fn run(args: &NewExtension) -> Result<String, String> {
    check_name(&args.name)?;
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let workspace = workspace_root(&cwd);
    let krate = match (&args.krate, &workspace) {
        (Some(krate), _) => krate.clone(),
        (None, Some(_)) => format!("{FIRST_PARTY_PREFIX}{}", args.name.replace('_', "-")),
        (None, None) => ask_crate_name(&args.name)?,
    };
    check_crate_name(&krate)?;
    let dir = match (&args.dir, &workspace) {
        (Some(dir), _) => cwd.join(dir),
        (None, Some(root)) => root.join("extensions").join(args.name.replace('_', "-")),
        (None, None) => cwd.join(&krate),
    };
    if dir.exists() {
        return Err(format!(
            "`{}` already exists; choose another name or `--dir`",
            dir.display()
        ));
    }
    let member = workspace.as_ref().is_some_and(|root| dir.starts_with(root));
    if !member && krate.starts_with(FIRST_PARTY_PREFIX) {
        return Err(format!(
            "`{krate}` starts with `{FIRST_PARTY_PREFIX}`, the prefix of the crates in the \
             otap-df repository; name a crate of your own after yourself and the extension, \
             e.g. `--crate acme-otap-df-{}`",
            args.name.replace('_', "-")
        ));
    }
    let patches = match &args.checkout {
        Some(checkout) if !member => patch_section(&cwd.join(checkout))?,
        Some(_) => {
            return Err(
                "`--checkout` is for a crate outside the otap-df repository; a member builds \
                 against the workspace's crates"
                    .to_owned(),
            );
        }
        None => String::new(),
    };
    let files = render(&Names::new(&args.name, &krate), member, &patches);
    write_all(&dir, &files)?;
    let mut said = format!(
        "created extension `{}` (crate `{krate}`) in {}",
        args.name,
        dir.display()
    );
    if let Some(root) = workspace.filter(|root| member && !dir.starts_with(root.join("extensions")))
    {
        said.push_str(&format!(
            "\nnote: the crate uses the workspace's dependencies; add `{}` to the workspace's \
             `members` (only `extensions/*` is a member by default)",
            dir.strip_prefix(&root).unwrap_or(&dir).display()
        ));
    }
    if !member && args.checkout.is_none() {
        said.push_str(
            "\nnote: it depends on otap-df's crates by version; where they are not on crates.io \
             yet, generate it again with `--checkout <a checkout of otap-df>`",
        );
    }
    Ok(said)
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

/// Checks a crate name as crates.io takes it: ASCII letters, digits, `-` and `_`, starting
/// with a letter, at most 64 characters.
pub fn check_crate_name(krate: &str) -> Result<(), String> {
    let valid = krate.len() <= 64
        && krate
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        && krate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{krate}` is not a valid crate name: ASCII letters, digits, `-` and `_`, starting \
             with a letter, at most 64 characters (e.g. `acme-otap-df-vault-kv`)"
        ))
    }
}

/// Asks for the crate name on a terminal, suggesting `<name>-otap-df`; off a terminal, says
/// to pass `--crate`.
fn ask_crate_name(name: &str) -> Result<String, String> {
    let suggestion = format!("{}-otap-df", name.replace('_', "-"));
    let how = format!(
        "the crate needs a name of your own (`{FIRST_PARTY_PREFIX}*` is the otap-df \
         repository's): pass `--crate`, e.g. `--crate acme-otap-df-{}` or `--crate {suggestion}`",
        name.replace('_', "-")
    );
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(how);
    }
    eprint!("crate name (yours, not `{FIRST_PARTY_PREFIX}*`) [{suggestion}]: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the crate name: {e}"))?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        suggestion
    } else {
        answer.to_owned()
    })
}

/// The otap-df repository that holds `dir`, if any: the nearest folder above it (itself
/// included) with a `Cargo.toml` and an `otap-df-core/Cargo.toml`.
fn workspace_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("otap-df-core/Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

/// `[patch.crates-io]` pointing the crates a generated crate uses into `checkout`.
fn patch_section(checkout: &Path) -> Result<String, String> {
    let mut section = String::from(
        "\n# Built against a checkout of otap-df until its crates are on crates.io; remove this\n\
         # section to build against the published crates.\n[patch.crates-io]\n",
    );
    for (krate, folder) in PATCHED {
        let path = checkout.join(folder);
        if !path.join("Cargo.toml").is_file() {
            return Err(format!(
                "`{}` is not a checkout of otap-df: `{}` has no Cargo.toml",
                checkout.display(),
                path.display()
            ));
        }
        let path = std::path::absolute(&path)
            .map_err(|e| format!("`{}`: {e}", path.display()))?
            .display()
            .to_string();
        section.push_str(&format!("{krate} = {{ path = {path:?} }}\n"));
    }
    Ok(section)
}

/// The names a template uses.
struct Names {
    name: String,
    krate: String,
}

impl Names {
    fn new(name: &str, krate: &str) -> Self {
        Self {
            name: name.to_owned(),
            krate: krate.to_owned(),
        }
    }
}

/// The version requirement a crate of its own puts on otap-df's crates: this crate's
/// `major.minor` (`0.1` for 0.1.x).
pub fn version_requirement() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_owned(),
    }
}

/// The files of the crate, relative paths and texts: a workspace member's manifest or, with
/// `patches` appended, a crate of its own.
fn render(names: &Names, member: bool, patches: &str) -> Vec<(PathBuf, String)> {
    let manifest = if member {
        MEMBER_MANIFEST.to_owned()
    } else {
        format!("{STANDALONE_MANIFEST}{patches}")
    };
    let replacements = [
        ("{{name}}", names.name.clone()),
        ("{{crate}}", names.krate.clone()),
        ("{{crate_ident}}", names.krate.replace('-', "_")),
        ("{{otap_df_version}}", version_requirement()),
    ];
    std::iter::once(("Cargo.toml", manifest.as_str()))
        .chain(TEMPLATE.iter().copied())
        .map(|(path, text)| {
            let text = replacements
                .iter()
                .fold(text.to_owned(), |text, (from, to)| text.replace(from, to));
            (PathBuf::from(path), text)
        })
        .collect()
}

/// Writes the files under `dir`, then formats the Rust ones.
fn write_all(dir: &Path, files: &[(PathBuf, String)]) -> Result<(), String> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    format_sources(files.iter().map(|(path, _)| dir.join(path)))
}

/// Formats the generated Rust files with `rustfmt` (the names put in the templates change line
/// lengths). A toolchain without rustfmt leaves them as rendered, with a note.
fn format_sources(paths: impl Iterator<Item = PathBuf>) -> Result<(), String> {
    let sources: Vec<PathBuf> = paths
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names_are_lower_snake_case() {
        assert_eq!(check_name("my_store"), Ok(()));
        assert_eq!(check_name("kv2"), Ok(()));
        for bad in ["", "My", "2kv", "my-store", "my_", "a__b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crate_names_are_what_crates_io_takes() {
        assert_eq!(check_crate_name("acme-otap-df-vault_kv2"), Ok(()));
        for bad in ["", "-x", "1x", "a b", "é", &"x".repeat(65)] {
            assert!(check_crate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_member_takes_the_workspace_and_a_crate_of_its_own_versions_and_its_patches() {
        let names = Names::new("my_store", "acme-otap-df-my-store");
        let member = render(&names, true, "");
        let cargo = &member[0].1;
        assert_eq!(member[0].0, PathBuf::from("Cargo.toml"));
        assert!(
            cargo.contains("name = \"acme-otap-df-my-store\""),
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

        let patches = "\n[patch.crates-io]\notap-df-core = { path = \"/x/otap-df-core\" }\n";
        let own = render(&names, false, patches);
        let cargo = &own[0].1;
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
        assert!(cargo.ends_with(patches), "{cargo}");
        for absent in ["publish = false", ".workspace"] {
            assert!(!cargo.contains(absent), "{absent} in {cargo}");
        }
        for (path, text) in member.iter().chain(&own) {
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder",
                path.display()
            );
        }
        let suite = &member.last().expect("files").1;
        assert!(suite.contains("use acme_otap_df_my_store::{Config, Store, StoreError};"));
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
    fn a_checkout_is_found_above_a_folder_inside_it() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = workspace_root(here).expect("this crate is in the otap-df repository");
        assert!(root.join("otap-df-core/Cargo.toml").is_file());
        assert_eq!(workspace_root(Path::new("/")), None);
        assert!(patch_section(&root).expect("a checkout").contains(&format!(
            "otap-df-tests = {{ path = {:?} }}",
            root.join("tests/kit").display().to_string()
        )));
        let error = patch_section(here).expect_err("not a checkout");
        assert!(error.contains("is not a checkout of otap-df"), "{error}");
    }
}
