//! The bridge inside a real OpenTelemetry Collector (`otelcol-otapdf`, built by `cargo xtask
//! collector-bridge`, which runs these tests with `OTAP_DF_OTELCOL_OTAPDF` set to it), with
//! exact counts per signal: the Collector's `otlp` receiver → our dedup processor → its
//! exporter; our receiver with `bearer_auth` → its exporter; its pipeline → our exporter
//! signing with an `azure_auth` token from a loopback managed identity endpoint; its own
//! `otlp` receiver guarded by our authorizer and its exporter signed by our provider; our
//! connector between two pipelines; configuration errors located in its output; a reload
//! (every component restarted) under load with nothing lost.
//!
//! The senders and the final receivers are otap-df engines in this process.
//! Ignored under a plain `cargo test` (they need the Collector build).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

// The azure-auth crate's own test support (a managed identity endpoint on loopback).
#[path = "../../extensions/azure-auth/tests/support/mod.rs"]
mod azure;
#[path = "collector/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use otap_df_tests::temp::TempDir;

use harness::{Chain, DEDUP, every_signal, lost, otelcol, port, records_by_signal, send, service};

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_collectors_pipeline_through_our_dedup_processor_forwards_each_batch_once() {
    let chain = Chain::new("bridge-processor");
    let collector = chain.collector(&chain.through_dedup("warn"), &[]);
    // 40 batches a signal, 10 of them repeats: 30 distinct batches of 10 records.
    chain.delivers(&collector, None, 40, 0.25, 300);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_receiver_with_bearer_auth_feeds_every_signals_pipeline_and_refuses_a_wrong_token() {
    let chain = Chain::new("bridge-receiver");
    let config = format!(
        "receivers:
  otapdf/in:
    extensions:
      callers: {{ type: extension:bearer_auth, config: {{ tokens: [sender] }} }}
    nodes:
      in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
exporters:
{}{}",
        chain.ingest,
        chain.otlp_out(),
        service("", &every_signal("otapdf/in", "", "otlp_http"))
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, Some("sender"), 10, 0.0, 100);
    // A wrong token: refused by our receiver (401, not retried).
    chain.refuses("intruder", 100);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_collectors_pipeline_exports_through_our_exporter_with_an_azure_auth_token() {
    let chain = Chain::accepting("bridge-exporter", "entra-issued");
    let value = chain.dir.path("token-value");
    std::fs::write(&value, "entra-issued").unwrap();
    let endpoint =
        azure::TokenEndpoint::start(&[], azure::Reply::Token(3600)).with_value_file(&value);
    let config = format!(
        "receivers:
{}exporters:
  otapdf/up:
    extensions:
      entra: {{ type: extension:azure_auth, config: {} }}
    nodes:
      up: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{}' }}, capabilities: {{ bearer_token_provider: entra }} }}
{}",
        chain.otlp_in(),
        azure::managed_identity(""),
        chain.upstream,
        service("", &every_signal("otlp", "", "otapdf/up"))
    );
    let collector = chain.collector(&config, &endpoint.env());
    chain.delivers(&collector, None, 10, 0.0, 100);
    assert!(
        endpoint.served().iter().all(|s| s.header_ok) && !endpoint.served().is_empty(),
        "the token came from the managed identity endpoint"
    );
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_extensions_guard_the_collectors_receiver_and_sign_its_exporter() {
    let chain = Chain::accepting("bridge-extension", "signed-by-otapdf");
    let config = format!(
        "extensions:
  otapdf/callers: {{ type: bearer_auth, config: {{ tokens: [sender] }} }}
  otapdf/sign: {{ type: bearer_auth, config: {{ token: signed-by-otapdf }} }}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: '127.0.0.1:{}', auth: {{ authenticator: otapdf/callers }} }}
exporters:
  otlp_http: {{ endpoint: 'http://127.0.0.1:{}', auth: {{ authenticator: otapdf/sign }} }}
{}",
        chain.ingest,
        chain.upstream,
        service(
            "otapdf/callers, otapdf/sign",
            &every_signal("otlp", "", "otlp_http")
        )
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, Some("sender"), 10, 0.0, 100);
    chain.refuses("intruder", 100);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn our_connector_joins_two_pipelines_of_each_signal() {
    let chain = Chain::new("bridge-connector");
    let pipelines: String = ["logs", "traces", "metrics"]
        .iter()
        .map(|s| {
            format!(
                "    {s}/in: {{ receivers: [otlp], exporters: [otapdf/link] }}\n    \
                 {s}/out: {{ receivers: [otapdf/link], exporters: [otlp_http] }}\n"
            )
        })
        .collect();
    let config = format!(
        "receivers:\n{}connectors:\n  otapdf/link:{DEDUP}\nexporters:\n{}{}",
        chain.otlp_in(),
        chain.otlp_out(),
        service("", &pipelines)
    );
    let collector = chain.collector(&config, &[]);
    chain.delivers(&collector, None, 40, 0.25, 300);
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn configuration_errors_from_the_rust_side_are_located_in_the_collectors_output() {
    let dir = TempDir::new("bridge-config-errors");
    let path = dir.path("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: '127.0.0.1:{}' }} }} }}
processors:
  otapdf/dedup:
    extensions:
      seen: {{ type: extension:memory_kv }}
    nodes:
      dedup: {{ type: processor:dedup, config: {{ ttl: forever }}, capabilities: {{ key_value_store: seen }} }}
exporters:
  debug: {{}}
{}",
            port(),
            service("", "    logs: { receivers: [otlp], processors: [otapdf/dedup], exporters: [debug] }\n")
        ),
    )
    .unwrap();
    let output = Command::new(otelcol())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("the Collector runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("processors::otapdf/dedup: at `nodes.dedup.config.ttl`: "),
        "the error names the component and the field: {text}"
    );
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn a_reload_restarts_every_component_under_load_and_nothing_is_lost() {
    let chain = Chain::new("bridge-reload");
    let collector = chain.collector(&chain.through_dedup("info"), &[]);
    // 3 signals × 300 batches at 100 a second each: three seconds of load.
    let ingest = chain.ingest;
    let sender = std::thread::spawn(move || send(ingest, None, 300, 0.0, Some(100)));
    for at in [1500, 4500] {
        // Once a share of the load went through, restart every component (SIGHUP).
        let counts = records_by_signal(&chain.out, at);
        assert!(counts.iter().sum::<u64>() >= at, "{}", collector.output());
        let status = Command::new("kill")
            .args(["-HUP", &collector.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let sent = sender.join().unwrap();
    assert_eq!(lost(&sent), 0, "{}", collector.output());
    // Every batch arrived. A batch the Collector took while its answer was cut by the
    // restart is sent again (at least once), so distinct batches are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let distinct = loop {
        let mut payloads: Vec<Vec<u8>> = otap_df::nodes::read_payloads(&chain.out)
            .unwrap_or_default()
            .iter()
            .map(|p| p.bytes().to_vec())
            .collect();
        payloads.sort();
        payloads.dedup();
        if payloads.len() >= 900 || Instant::now() > deadline {
            break payloads.len();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(distinct, 900, "{}", collector.output());
    let log = collector.output();
    assert_eq!(log.matches("Received signal from OS").count(), 2, "{log}");
    // One processor per signal, started, then stopped and started again at each reload.
    assert_eq!(log.matches("otap-df engine started").count(), 9, "{log}");
    assert_eq!(log.matches("otap-df engine stopped").count(), 6, "{log}");
    chain.finish();
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_readmes_collector_configurations_validate() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let section = readme
        .split("\n## Inside the OpenTelemetry Collector")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's bridge section");
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 2, "the section's configurations");
    let dir = TempDir::new("bridge-readme");
    // The durable queue's folder must exist: the README's, here under the test's folder.
    let state = dir.path("var-lib-otapdf");
    std::fs::create_dir_all(&state).unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path(&format!("readme-{i}.yaml"));
        let block = block.replace("/var/lib/otapdf", &state.display().to_string());
        std::fs::write(&path, &block).unwrap();
        let output = Command::new(otelcol())
            .args(["validate", "--config"])
            .arg(&path)
            .env("SENDER_TOKEN", "a-token")
            .output()
            .expect("the Collector runs");
        assert!(
            output.status.success(),
            "README configuration {i} does not validate: {}{}\n{block}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
#[ignore = "needs the Collector build: run by `cargo xtask collector-bridge`"]
fn the_runtime_section_sets_every_components_defaults() {
    let chain = Chain::new("bridge-runtime");
    let body = |runtime: &str| {
        format!(
            "runtime:\n  rust:\n{runtime}\n{}",
            chain.through_dedup("info")
        )
    };
    // Out of range, and a misspelt key: refused, named.
    for (runtime, error) in [
        (
            "    executor: { cores: 0 }\n    otapdf: { queue_size: 100000 }",
            "runtime::rust::otapdf::queue_size: must be from 1 to 65536",
        ),
        ("    executr: { cores: 2 }", "executr"),
    ] {
        let path = chain.dir.path("bad.yaml");
        std::fs::write(&path, body(runtime)).unwrap();
        let output = Command::new(otelcol())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .expect("the Collector runs");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && text.contains(error), "{text}");
    }
    let config = body("    executor: { cores: 2 }\n    otapdf: { queue_size: 32 }");
    let collector = chain.collector(&config, &[]);
    // Two cores share the store (memory_kv serves every core): repeats are still dropped.
    chain.delivers(&collector, None, 20, 0.25, 150);
    let log = collector.output();
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("otap-df engine started"))
        .collect();
    assert_eq!(started.len(), 3, "{log}");
    assert!(
        started
            .iter()
            .all(|l| l.contains("\"cores\": 2") && l.contains("\"queue_size\": 32")),
        "{log}"
    );
    // The build names the library it links (`cargo xtask` passes its hash): a binary linked
    // from Go's cache with an older library would name that one.
    match std::env::var("OTAP_DF_BRIDGE_LIBRARY") {
        Ok(library) => assert!(
            started
                .iter()
                .all(|l| l.contains(&format!("\"library\": \"{library}\""))),
            "the Collector build does not link the current library ({library}): {log}"
        ),
        Err(_) => eprintln!(
            "NOT CHECKED: which library the Collector build links (OTAP_DF_BRIDGE_LIBRARY is \
             not set; `cargo xtask collector-bridge` sets it)"
        ),
    }
    chain.finish();
}
