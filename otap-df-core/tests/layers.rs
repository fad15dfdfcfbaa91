//! Core's modules form layers, by phase: a module uses only modules of lower layers (or of its
//! own), never one above it. The test reads core's sources: every `crate::<module>` in code
//! (not in comments or doc links, not in `#[cfg(test)]` modules) must point down.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. Modules on one line are one layer and may use each other.
const LAYERS: &[&[&str]] = &[
    // Vocabulary: payloads, secrets, who sent them, capability identities and traits.
    &["data", "secret", "identity"],
    &["capability"],
    // The document: positions, errors, component configs.
    &["config"],
    // Factories and models of what a config names.
    &["extension", "memory_kv", "refresh"],
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

/// The code of `text`: comments and `#[doc = …]` attributes dropped, and everything from the
/// first `#[cfg(test)]` on (core keeps its unit tests at the end of a file).
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut kept = String::new();
    for line in code.lines() {
        if line.trim_start().starts_with("#[doc") {
            continue;
        }
        kept.push_str(line.split("//").next().unwrap_or_default());
        kept.push('\n');
    }
    kept
}

/// `crate::<module>` references in the code of `text`.
fn references(text: &str) -> BTreeSet<String> {
    let code = code_of(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
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

/// The runtime's files, each a module path below `runtime` (`worker/serve.rs`: `worker::serve`;
/// `worker/mod.rs`: `worker`; `mod.rs`: the empty path).
fn runtime_files(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let root = src.join("runtime");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).expect("under runtime");
            let mut path: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if path.last().is_some_and(|last| last == "mod") {
                path.pop();
            }
            (path, file)
        })
        .collect()
}

/// The module paths one path expression names, from the text right after its prefix
/// (`crate::runtime::` or `super::`), relative to `base`: `a::b::X` names `a::b`, `{a::X, Y}`
/// names `a` and the base itself. Only the longest prefix that is a module counts (see
/// [`imports`]).
fn named(base: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
    let mut path = base.to_vec();
    let mut rest = rest;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    named(&path, item.trim(), out);
                }
            }
            out.push(path);
            return;
        }
        rest = &rest[name.len()..];
        match rest.strip_prefix("::") {
            Some(after) => {
                path.push(name);
                rest = after;
            }
            None => {
                out.push(path.clone());
                path.push(name);
                out.push(path);
                return;
            }
        }
    }
}

/// The runtime files that the code of the file at module path `own` imports from:
/// `crate::runtime::…`, `super::…` and `use <child>::…` paths, each resolved to the deepest
/// module (file) of `modules` it names.
fn imports(
    own: &[String],
    is_mod_rs: bool,
    text: &str,
    modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let code = code_of(text);
    let mut named_paths = Vec::new();
    // `super` of `runtime/mod.rs` is the crate root: not a runtime file.
    let parent = (!own.is_empty()).then(|| own[..own.len() - 1].to_vec());
    let bases = [("crate::runtime::", Some(Vec::new())), ("super::", parent)];
    for (prefix, base) in bases {
        let Some(base) = base else { continue };
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            named(&base, &code[at + prefix.len()..], &mut named_paths);
        }
    }
    if is_mod_rs {
        for (at, _) in code.match_indices("use ") {
            named(own, &code[at + "use ".len()..], &mut named_paths);
        }
    }
    named_paths
        .into_iter()
        .filter_map(|path| {
            (0..=path.len())
                .rev()
                .map(|len| path[..len].to_vec())
                .find(|prefix| modules.contains(prefix))
        })
        .filter(|target| target != own)
        .collect()
}

/// A circle in `edges`, as the modules on it, if there is one.
fn circle(
    edges: &std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> Option<Vec<String>> {
    fn visit(
        at: &Vec<String>,
        edges: &std::collections::BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|m| m == at) {
            let mut names: Vec<String> = stack[start..].iter().map(|m| show(m)).collect();
            names.push(show(at));
            return Some(names);
        }
        if !done.insert(at.clone()) {
            return None;
        }
        stack.push(at.clone());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(found) = visit(next, edges, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "runtime".to_owned()
    } else {
        format!("runtime::{}", module.join("::"))
    }
}

/// The runtime's files import in one direction: no file imports, however indirectly, from a
/// file that imports from it. Each imports from the file that defines what it uses (a folder
/// through its `mod.rs`), never through `runtime/mod.rs`'s public re-exports.
#[test]
fn the_runtime_files_import_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = runtime_files(&src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(path, _)| path.clone()).collect();
    let mut edges = std::collections::BTreeMap::new();
    for (path, file) in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let is_mod_rs = file.file_name().is_some_and(|name| name == "mod.rs");
        edges.insert(path.clone(), imports(path, is_mod_rs, &text, &modules));
    }
    let through_root: Vec<String> = edges
        .iter()
        .filter(|(from, to)| !from.is_empty() && to.contains(&Vec::new()))
        .map(|(from, _)| show(from))
        .collect();
    assert!(
        through_root.is_empty(),
        "runtime files that import through runtime/mod.rs: {through_root:?}"
    );
    assert_eq!(
        circle(&edges),
        None,
        "an import circle among the runtime's files"
    );
    // The reader finds what it should: the worker's files import from one another.
    let serve = vec!["worker".to_owned(), "serve".to_owned()];
    assert!(edges[&serve].contains(&vec!["worker".to_owned(), "nodes".to_owned()]));
    assert!(edges[&serve].contains(&vec!["worker".to_owned()]));
}

#[test]
fn the_runtime_reader_resolves_paths_and_finds_a_circle() {
    let module = |path: &str| -> Vec<String> {
        path.split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let modules: BTreeSet<Vec<String>> = ["", "a", "a::b", "c"].into_iter().map(module).collect();
    let text = "use super::{b::X, Y};\nuse crate::runtime::c::Z;\n// super::c\n";
    let found = imports(&module("a::d"), false, text, &modules);
    assert_eq!(
        found,
        [module("a"), module("a::b"), module("c")]
            .into_iter()
            .collect()
    );
    let in_mod_rs = imports(&module("a"), true, "mod b;\npub use b::X;\n", &modules);
    assert_eq!(in_mod_rs, [module("a::b")].into_iter().collect());
    let mut edges = std::collections::BTreeMap::new();
    edges.insert(
        module("a"),
        [module("c")].into_iter().collect::<BTreeSet<_>>(),
    );
    edges.insert(module("c"), [module("a::b")].into_iter().collect());
    edges.insert(module("a::b"), BTreeSet::new());
    assert_eq!(circle(&edges), None);
    edges.insert(module("a::b"), [module("a")].into_iter().collect());
    assert_eq!(
        circle(&edges),
        Some(vec![
            "runtime::a".into(),
            "runtime::c".into(),
            "runtime::a::b".into(),
            "runtime::a".into()
        ])
    );
}
