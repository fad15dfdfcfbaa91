//! `otap-df new-extension` through the binary, outside the repository: what it writes, the
//! name it asks for, what it refuses. That the written crate builds and passes its tests (and a
//! distribution links it) is `cargo xtask author-path`, which follows the README.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::path::Path;
use std::process::{Command, Output, Stdio};

use otap_df_tests::temp::TempDir;

/// `otap-df new-extension <args>` in `dir`, standard input closed (not a terminal).
fn new_extension(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .arg("new-extension")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("otap-df runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The checkout this test runs in.
fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the facade is a folder of the checkout")
}

#[test]
fn outside_the_repository_it_writes_a_crate_of_its_own_under_the_chosen_name() {
    let temp = TempDir::new("new-extension");
    let output = new_extension(
        temp.dir(),
        &[
            "vault_kv",
            "--crate",
            "acme-otap-df-vault-kv",
            "--checkout",
            checkout().to_str().expect("a UTF-8 path"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = temp.path("acme-otap-df-vault-kv");
    assert!(
        stderr(&output).starts_with(&format!(
            "created extension `vault_kv` (crate `acme-otap-df-vault-kv`) in {}",
            dir.display()
        )),
        "{}",
        stderr(&output)
    );
    let mut files: Vec<String> = walk(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).expect("inside").display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "Cargo.toml",
            "README.md",
            "src/config.rs",
            "src/error.rs",
            "src/extension.rs",
            "src/key_value.rs",
            "src/lib.rs",
            "tests/key_value_suite.rs"
        ]
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    assert!(manifest.starts_with("[package]\nname = \"acme-otap-df-vault-kv\"\n"));
    assert!(
        manifest.contains("\notap-df-core = \"0.1\"\n"),
        "{manifest}"
    );
    let patches = format!(
        "[patch.crates-io]\notap-df-core = {{ path = {:?} }}\notap-df-tests = {{ path = {:?} }}\n",
        checkout().join("otap-df-core").display().to_string(),
        checkout().join("tests/kit").display().to_string(),
    );
    assert!(manifest.ends_with(&patches), "{manifest}");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
    assert!(
        lib.contains("pub const TYPE: &str = \"extension:vault_kv\";"),
        "{lib}"
    );
    let suite = std::fs::read_to_string(dir.join("tests/key_value_suite.rs")).expect("suite");
    assert!(suite.contains("use acme_otap_df_vault_kv::"), "{suite}");

    // A second time into the same folder: refused, the first crate untouched.
    let again = new_extension(
        temp.dir(),
        &["vault_kv", "--crate", "acme-otap-df-vault-kv"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let unchanged = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    assert_eq!(unchanged, manifest);
}

#[test]
fn without_a_crate_name_and_off_a_terminal_it_says_how_to_name_one() {
    let temp = TempDir::new("new-extension-unnamed");
    let output = new_extension(temp.dir(), &["vault_kv"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "otap-df: the crate needs a name of your own (`otap-df-extension-*` is the otap-df \
         repository's): pass `--crate`, e.g. `--crate acme-otap-df-vault-kv` or `--crate \
         vault-kv-otap-df`\n"
    );
    assert!(walk(temp.dir()).is_empty());
}

#[test]
fn it_refuses_the_first_party_prefix_a_bad_name_and_a_folder_that_is_not_a_checkout() {
    let temp = TempDir::new("new-extension-refused");
    let cases: [(&[&str], &str); 4] = [
        (
            &["vault_kv", "--crate", "otap-df-extension-vault-kv"],
            "`otap-df-extension-vault-kv` starts with `otap-df-extension-`, the prefix of the \
             crates in the otap-df repository",
        ),
        (
            &["Vault", "--crate", "acme-vault"],
            "`Vault` is not a valid extension name: use lower-case snake case",
        ),
        (
            &["vault", "--crate", "acme vault"],
            "`acme vault` is not a valid crate name",
        ),
        (
            &["vault", "--crate", "acme-vault", "--checkout", "."],
            "is not a checkout of otap-df",
        ),
    ];
    for (args, said) in cases {
        let output = new_extension(temp.dir(), args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains(said),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(walk(temp.dir()).is_empty());
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
