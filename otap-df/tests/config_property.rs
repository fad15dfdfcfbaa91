//! Whatever `validate` accepts, `run` survives.
//!
//! - The corpus (`tests/config-corpus/`): configurations a fuzzing pass found that `validate`
//!   once accepted and `run` then crashed on, or that were accepted but wrong. Each file's
//!   first line says where and what the error must be (`# expect: LINE:COLUMN text`).
//! - A property over the typed configuration space: the example configurations and a few
//!   templates covering every built-in node, with one to three values replaced by edge values
//!   (zero, negative, huge, NaN-like, empty, control characters, out-of-range ports and
//!   durations, wrong types) or removed. Each either fails to load with every error located,
//!   or runs briefly on one core and stops when asked, without a panic.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::{Engine, RunOptions};
use proptest::prelude::*;
use serde_yaml_ng::Value;

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-corpus")
}

#[test]
fn every_corpus_configuration_is_refused_where_its_fixture_says() {
    let registry = support::registry();
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is in place: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
        let (at, message) = expect.split_once(' ').unwrap();
        let errors = load_with_env(&text, "corpus.yaml", &registry, &|_| None)
            .map(|_| ())
            .expect_err(&format!("{} is refused", file.display()));
        let first = &errors.errors[0];
        let location = first
            .location
            .map(|l| format!("{}:{}", l.line, l.column))
            .unwrap_or_default();
        assert_eq!(
            (location.as_str(), errors.errors.len()),
            (at, 1),
            "{}: {errors}",
            file.display()
        );
        assert!(
            first.to_string().contains(message),
            "{}: `{message}` not in {first}",
            file.display()
        );
    }
}

/// Configurations to mutate: the examples, and templates that reach every built-in node.
fn seeds() -> Vec<Value> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut texts: Vec<String> = ["quickstart.yaml", "sender.yaml", "gateway.yaml"]
        .iter()
        .map(|name| std::fs::read_to_string(examples.join(name)).unwrap())
        .collect();
    texts.push(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          kv: { type: extension:memory_kv, config: { max_entries: 10, default_ttl: 1m } }
        nodes:
          gen: { type: receiver:generator, config: { signal: metrics, batch_size: 5, count: 20, rate: 1000, duplicate_ratio: 0.5, encoding: json } }
          dedup: { type: processor:dedup, config: { ttl: 1s }, capabilities: { key_value_store: kv } }
          file: { type: exporter:file, config: { path: out.bin } }
          noop: { type: exporter:noop }
        connections:
          - { from: gen, to: dedup }
          - { from: dedup, to: [file, noop] }
"
        .to_owned(),
    );
    texts.push(
        "version: otap_df/v1
engine: { cores: 1 }
groups:
  g:
    pipelines:
      p:
        nodes:
          in:
            type: receiver:otlp_http
            config:
              listen: '127.0.0.1:0'
              max_body_size: 1000000
              admission_timeout: 1s
              header_read_timeout: 1s
              body_read_timeout: 1s
              max_connections: 10
          out:
            type: exporter:otlp_http
            config:
              endpoint: 'http://127.0.0.1:9'
              timeout: 1s
              compression: gzip
              max_in_flight: 4
              merge_max_bytes: 100000
              dead_letter_file: dead.bin
              headers: { x-tenant: a }
              retry: { initial_interval: 10ms, max_interval: 100ms, max_elapsed_time: 1s }
          debug: { type: exporter:debug, config: { verbosity: normal } }
        connections:
          - { from: in, to: [out, debug] }
"
        .to_owned(),
    );
    texts
        .iter()
        .map(|text| {
            // Loopback ports nobody else uses: listen anywhere free, send nowhere.
            let text = text
                .replace("http://127.0.0.1:4318", "http://127.0.0.1:9")
                .replace("http://127.0.0.1:4319", "http://127.0.0.1:9")
                .replace("127.0.0.1:4318", "127.0.0.1:0")
                .replace("127.0.0.1:4319", "127.0.0.1:0");
            serde_yaml_ng::from_str(&text).unwrap()
        })
        .collect()
}

#[test]
fn every_seed_is_valid_before_it_is_mutated() {
    let registry = support::registry();
    for seed in seeds() {
        let text = serde_yaml_ng::to_string(&seed).unwrap();
        if let Err(errors) = load_with_env(&text, "seed.yaml", &registry, &|_| None) {
            panic!("{errors}\n{text}");
        }
    }
}

/// The values a mutation puts in place of one.
const EDGES: &[&str] = &[
    "0",
    "-1",
    "1",
    "0.5",
    "1e-300",
    "1e300",
    ".nan",
    "4294967296",
    "18446744073709551615",
    "''",
    "'\\n'",
    "\"a\\u0000b\"",
    "'0s'",
    "'1ns'",
    "'18446744073709551615s'",
    "'999999999days'",
    "'127.0.0.1:0'",
    "'0.0.0.0:65536'",
    "'http://127.0.0.1:65536'",
    "'http://[::1]'",
    "'ftp://x'",
    "'http://user:pw@h'",
    "true",
    "null",
    "[]",
    "{}",
    "[1, 2]",
    "{ a: 1 }",
];

/// Every path to a value of `value`, depth first.
fn paths(value: &Value, at: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                let mut path = at.clone();
                path.push(key.clone());
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut path = at.clone();
                path.push(Value::from(i as u64));
                out.push(path.clone());
                paths(child, path, out);
            }
        }
        _ => {}
    }
}

/// Replaces (or, for `edge == None`, removes) the value at `path`.
fn mutate(root: &mut Value, path: &[Value], edge: Option<&str>) {
    let (last, parents) = path.split_last().unwrap();
    let mut node = root;
    for key in parents {
        node = match (node, key) {
            (Value::Mapping(map), key) => map.get_mut(key).unwrap(),
            (Value::Sequence(items), Value::Number(i)) => &mut items[i.as_u64().unwrap() as usize],
            _ => unreachable!("paths come from this value"),
        };
    }
    let replacement = edge.map(|edge| serde_yaml_ng::from_str::<Value>(edge).unwrap());
    match (node, last, replacement) {
        (Value::Mapping(map), key, Some(value)) => {
            map.insert(key.clone(), value);
        }
        (Value::Mapping(map), key, None) => {
            map.remove(key);
        }
        (Value::Sequence(items), Value::Number(i), Some(value)) => {
            items[i.as_u64().unwrap() as usize] = value;
        }
        (Value::Sequence(items), Value::Number(i), None) => {
            items.remove(i.as_u64().unwrap() as usize);
        }
        _ => unreachable!("paths come from this value"),
    }
}

/// Runs `resolved` on one core for a moment, then stops it: the engine's result, or why
/// the property fails.
fn run_briefly(resolved: otap_df_core::resolve::ResolvedConfig) -> Result<(), String> {
    let engine = Engine::new(
        resolved,
        RunOptions {
            shutdown_timeout: Duration::from_millis(500),
            ..otap_df_tests::engine::one_core_options()
        },
    );
    let shutdown = engine.shutdown_handle();
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || engine.run(),
        )));
    });
    // The run's length, not a wait for something to happen: the property is about whatever
    // the configuration does in its first moments and on the way out.
    std::thread::sleep(Duration::from_millis(30));
    shutdown.request();
    match ended.recv_timeout(Duration::from_secs(20)) {
        Err(_) => Err("the run did not stop within 20 s of being asked".to_owned()),
        Ok(Err(_)) => Err("the engine panicked".to_owned()),
        Ok(Ok(Err(error))) if error.to_string().contains("panicked") => {
            Err(format!("a node panicked: {error}"))
        }
        Ok(Ok(_)) => Ok(()),
    }
}

/// Whatever `validate` says of `config`: every error located, or a run that stops without
/// a panic.
fn survives(config: &Value) -> Result<(), String> {
    let text = serde_yaml_ng::to_string(config).unwrap();
    match load_with_env(&text, "property.yaml", &support::registry(), &|_| None) {
        Err(errors) => match errors.errors.iter().find(|e| e.location.is_none()) {
            Some(error) => Err(format!("not located: {error}\n{text}")),
            None => Ok(()),
        },
        Ok(resolved) => run_briefly(resolved).map_err(|why| format!("{why}\n{text}")),
    }
}

/// The component and engine fields of `config` (the document's structure is covered by
/// `tests/integration/tests/config_fuzz.rs`).
fn typed_paths(config: &Value) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    paths(config, Vec::new(), &mut all);
    all.retain(|path| {
        path.iter()
            .any(|key| key.as_str().is_some_and(|k| k == "config" || k == "engine"))
    });
    all
}

/// Files the configurations name (`out.bin`, dead letters, `'\n'`) land in a directory of
/// their own.
fn in_scratch_dir() {
    static DIR: std::sync::OnceLock<otap_df_tests::temp::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| otap_df_tests::temp::TempDir::new("config-property"));
    std::env::set_current_dir(dir.path("")).unwrap();
}

#[test]
fn every_edge_value_in_every_field_is_refused_with_a_location_or_runs() {
    in_scratch_dir();
    let (mut refused, mut ran) = (0, 0);
    for seed in seeds() {
        for path in typed_paths(&seed) {
            for edge in EDGES.iter().copied().map(Some).chain([None]) {
                let mut config = seed.clone();
                mutate(&mut config, &path, edge);
                let text = serde_yaml_ng::to_string(&config).unwrap();
                if load_with_env(&text, "property.yaml", &support::registry(), &|_| None).is_ok() {
                    ran += 1;
                } else {
                    refused += 1;
                }
                if let Err(why) = survives(&config) {
                    panic!("{path:?} = {edge:?}: {why}");
                }
            }
        }
    }
    // Both sides of the property were exercised.
    eprintln!("edge values: {refused} refused, {ran} ran");
    assert!(refused > 500 && ran > 50, "refused {refused}, ran {ran}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128),
        // The run's failures are not shrunk through the engine (each case runs it).
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn whatever_validate_accepts_runs_and_stops_without_a_panic(
        seed in 0usize..5,
        mutations in prop::collection::vec((any::<usize>(), 0usize..=EDGES.len()), 1..=3),
    ) {
        in_scratch_dir();
        let mut config = seeds().swap_remove(seed);
        for (at, edge) in mutations {
            let all = typed_paths(&config);
            if all.is_empty() {
                break;
            }
            mutate(&mut config, &all[at % all.len()], EDGES.get(edge).copied());
        }
        let survived = survives(&config);
        prop_assert!(survived.is_ok(), "{}", survived.unwrap_err());
    }
}
