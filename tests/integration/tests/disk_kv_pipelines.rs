//! `extension:disk_kv` under `processor:dedup` in a running engine: what the dedup has seen
//! survives the engine's restart, because the store is a file.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::net::TcpStream;
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;
use otap_df_core::registry::Registry;
use otap_df_tests::engine;
use otap_df_tests::temp::TempDir;

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_disk_kv::register(&mut registry);
    registry.finish().expect("registry")
}

/// `receiver:otlp_http` on `port` → `processor:dedup` on a `disk_kv` in `store` →
/// `exporter:file` writing `out`.
fn dedup_on_disk(port: u16, store: &std::path::Path, out: &std::path::Path) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          seen: {{ type: extension:disk_kv, config: {{ path: '{}' }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: seen }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: dedup }}
          - {{ from: dedup, to: out }}
",
        store.display(),
        out.display()
    )
}

/// The status of posting the logs batch tagged `tag` (the same tag, the same bytes).
fn post(port: u16, tag: &str) -> u16 {
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 4, tag, 1)
        .bytes()
        .clone();
    otap_df_tests::http::post_status(
        port,
        "/v1/logs",
        &[("content-type", "application/x-protobuf")],
        &body,
    )
}

/// Runs the pipeline on `port` while `send` posts, then stops it: the dedup's counters, and the
/// store's `entries` gauge.
fn run(
    port: u16,
    store: &std::path::Path,
    out: &std::path::Path,
    send: impl FnOnce(),
) -> (otap_df_core::node::CounterSnapshot, i64) {
    let started = engine::start(engine::one_core(engine::resolve(
        &dedup_on_disk(port, store, out),
        &registry(),
    )));
    assert!(started.wait_running(Duration::from_secs(10)), "it runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::yield_now();
    }
    send();
    let telemetry = started.telemetry.clone();
    started.stop().expect("a clean stop");
    let counts = telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "dedup")
        .expect("the dedup's counters")
        .counts;
    (counts, entries_shown(&telemetry))
}

/// The store's `entries` gauge, as the admin endpoint shows it.
fn entries_shown(telemetry: &otap_df_core::runtime::Telemetry) -> i64 {
    let metrics = telemetry.extension_metrics();
    let seen = metrics
        .iter()
        .find(|m| m.extension == "seen")
        .expect("the store's metrics");
    seen.metrics
        .gauges
        .iter()
        .find(|(name, _)| *name == "entries")
        .map(|(_, value)| *value)
        .expect("an entries gauge")
}

#[test]
fn a_dedup_on_disk_remembers_what_it_saw_across_a_restart() {
    let dir = TempDir::new("disk-kv-dedup-restart");
    let store = dir.path("seen.redb");
    let port = otap_df_tests::ports::free_port().unwrap();
    let (first, entries) = run(port, &store, &dir.path("first.bin"), || {
        assert_eq!(post(port, "a"), 200);
        assert_eq!(post(port, "a"), 200);
        assert_eq!(post(port, "b"), 200);
    });
    assert_eq!(
        (first.records_in, first.records_out, first.records_dropped),
        (12, 8, 4),
        "the repeat of a is dropped"
    );
    assert_eq!(entries, 2, "the gauge follows each write");
    // A new engine, the same file: a and b are known, c is new.
    let (second, entries) = run(port, &store, &dir.path("second.bin"), || {
        assert_eq!(post(port, "a"), 200);
        assert_eq!(post(port, "b"), 200);
        assert_eq!(post(port, "c"), 200);
    });
    assert_eq!(
        (
            second.records_in,
            second.records_out,
            second.records_dropped,
            second.errors
        ),
        (12, 4, 8, 0),
        "what the first engine saw is remembered"
    );
    assert_eq!(entries, 3);
    let exported = |name: &str| -> u64 {
        otap_df_nodes::read_payloads(&dir.path(name))
            .unwrap()
            .iter()
            .map(|p| p.records())
            .sum()
    };
    assert_eq!((exported("first.bin"), exported("second.bin")), (8, 4));
}
