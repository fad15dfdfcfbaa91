//! Core's modules form layers, by phase: a module uses only modules of lower layers (or of its
//! own), never one above it. The test reads core's sources: every `crate::<module>` in code
//! (not in comments or doc links, not in `#[cfg(test)]` modules) must point down.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. Modules on one line are one layer and may use each other.
const LAYERS: &[&[&str]] = &[
    // Vocabulary: payloads, secrets, capability identities and traits.
    &["data", "secret"],
    &["capability"],
    // The document: positions, errors, component configs.
    &["config"],
    // Factories and models of what a config names.
    &["extension", "memory_kv"],
    &["node"],
    &["registry"],
    // A document checked against a registry: the plan.
    &["resolve"],
    // A plan, running.
    &["runtime"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// `crate::<module>` references in the code of `text`: comments and `#[doc = …]` attributes
/// dropped, and everything from the first `#[cfg(test)]` on (core keeps its unit tests at the
/// end of a file).
fn references(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines() {
        if line.trim_start().starts_with("#[doc") {
            continue;
        }
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn every_core_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let missing: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in LAYERS: {missing:?}"
    );
}

#[test]
fn no_core_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            continue; // reported by the test above
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for target in references(&text) {
            if let Some(layer) = layer_of(&target)
                && layer > own
            {
                upward.push(format!(
                    "{} ({module}) uses crate::{target}",
                    file.strip_prefix(&src).expect("under src").display()
                ));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_reader_sees_code_references_and_skips_comments_and_tests() {
    let text = "use crate::config::X;\n/// [`Y`](crate::runtime::Y)\n#[doc = \"[`W`](crate::resolve::W)\"]\nfn f() { crate::node::g(); } // crate::resolve\n#[cfg(test)]\nmod tests { use crate::runtime::Z; }\n";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["config", "node"]);
}
