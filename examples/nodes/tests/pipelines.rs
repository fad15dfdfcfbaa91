//! The three nodes in running pipelines, resolved through `otap_df::registry()` (this test
//! binary links the crate, so their `submit_node!` entries are found) with the first-party
//! extensions that provide each capability.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::sync::Arc;

use otap_df::core::runtime::{Engine, EngineError, Telemetry};
use otap_df::testkit::engine::{self, totals};

// Names the crate: without it nothing links it and its nodes are not registered.
use acme_nodes as _;

fn engine(yaml: &str) -> Engine {
    let registry = otap_df::registry().expect("registry");
    engine::one_core(engine::resolve(yaml, &registry))
}

fn run(yaml: &str) -> (Result<(), EngineError>, Arc<Telemetry>) {
    let engine = engine(yaml);
    let telemetry = engine.telemetry();
    (engine.run(), telemetry)
}

fn pipeline(extensions: &str, nodes: &str, connections: &str) -> String {
    format!(
        "version: otap_df/v1\ngroups:\n  g:\n    pipelines:\n      p:\n        extensions:\n{extensions}        nodes:\n{nodes}        connections:\n{connections}"
    )
}

#[test]
fn the_sampler_keeps_one_payload_in_every_n_through_the_store() {
    let (result, telemetry) = run(&pipeline(
        "          store: { type: extension:memory_kv }\n",
        "          gen: { type: receiver:generator, config: { batch_size: 5, count: 40 } }
          sample: { type: processor:acme_sample, config: { every: 4 }, capabilities: { key_value_store: store } }
          out: { type: exporter:noop }\n",
        "          - { from: gen, to: sample }\n          - { from: sample, to: out }\n",
    ));
    result.expect("a clean run");
    let sample = totals(&telemetry, "sample").counts;
    assert_eq!(
        (
            sample.records_in,
            sample.records_out,
            sample.records_dropped
        ),
        (200, 50, 150)
    );
    assert_eq!(totals(&telemetry, "out").counts.records_in, 50);
}

#[test]
fn the_sampler_refuses_a_zero_rate_at_validation() {
    let registry = otap_df::registry().expect("registry");
    let errors = otap_df::load(
        &pipeline(
            "          store: { type: extension:memory_kv }\n",
            "          gen: { type: receiver:generator, config: { count: 1 } }
          sample: { type: processor:acme_sample, config: { every: 0 }, capabilities: { key_value_store: store } }\n",
            "          - { from: gen, to: sample }\n",
        ),
        "test.yaml",
        &registry,
    )
    .expect_err("every: 0 is refused")
    .to_string();
    assert!(
        errors.contains(
            "test.yaml:10:60: at `groups.g.pipelines.p.nodes.sample.config.every`: \
             `every` must be between 1 and 1000000"
        ),
        "{errors}"
    );
}

#[test]
fn the_stamp_exporter_writes_the_scheme_and_length_never_the_token() {
    let dir = std::env::temp_dir().join(format!("acme-nodes-stamp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("stamps.txt");
    let token = "t0k3n-0123456789";
    let (result, telemetry) = run(&pipeline(
        &format!("          auth: {{ type: extension:bearer_auth, config: {{ token: {token} }} }}\n"),
        &format!(
            "          gen: {{ type: receiver:generator, config: {{ signal: traces, batch_size: 3, count: 7 }} }}
          out: {{ type: exporter:acme_stamp, config: {{ path: '{}' }}, capabilities: {{ bearer_token_provider: auth }} }}\n",
            path.display()
        ),
        "          - { from: gen, to: out }\n",
    ));
    result.expect("a clean run");
    let text = std::fs::read_to_string(&path).expect("the stamps");
    assert_eq!(text, "traces 3 Bearer 16\n".repeat(7));
    assert!(!text.contains(token));
    assert_eq!(totals(&telemetry, "out").counts.records_out, 21);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

fn gate(credential: &str) -> String {
    pipeline(
        "          callers: { type: extension:bearer_auth, config: { tokens: [caller-token] } }\n",
        &format!(
            "          gate: {{ type: receiver:acme_gate, config: {{ credential: {credential}, batches: 4 }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:noop }}\n"
        ),
        "          - { from: gate, to: out }\n",
    )
}

#[test]
fn the_gate_emits_its_batches_once_the_authorizer_accepts_the_credential() {
    let (result, telemetry) = run(&gate("caller-token"));
    result.expect("a clean run");
    assert_eq!(totals(&telemetry, "gate").counts.records_out, 40);
    assert_eq!(totals(&telemetry, "out").counts.records_in, 40);
}

#[test]
fn the_gate_fails_on_a_denied_credential_and_emits_nothing() {
    let (result, telemetry) = run(&gate("someone-else"));
    let error = result.expect_err("denied").to_string();
    assert!(
        error.contains("node `gate` failed: the credential is denied (invalid)"),
        "{error}"
    );
    assert!(!error.contains("someone-else"), "{error}");
    assert_eq!(totals(&telemetry, "out").counts.records_in, 0);
}
