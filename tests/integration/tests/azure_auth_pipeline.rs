//! `azure_auth` in a running engine: readiness at startup, and an `exporter:otlp_http` that
//! keeps exporting through a token service outage without ever sending an expired token.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

// The azure-auth crate's own test support (a managed identity endpoint on loopback, child
// processes for the credential's environment): this crate is never packaged, so it may reach
// into a sibling's test files.
#[path = "../../../extensions/azure-auth/tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use otap_df_core::registry::Registry;
use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::{Engine, RunOptions};
use otap_df_tests::engine;
use support::{Reply, SCOPE, TokenEndpoint, expect_child, expiry_of, number_of, run_child};

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_azure_auth::register(&mut registry);
    registry.finish().expect("registry")
}

/// generator → exporter:otlp_http (to `endpoint`), the exporter's token from `azure`.
fn pipeline(azure: &str, endpoint: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          azure: {azure}
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 5, rate: 100 }} }}
          out:
            type: exporter:otlp_http
            config: {{ endpoint: '{endpoint}', retry: {{ initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 1m }} }}
            capabilities: {{ bearer_token_provider: azure }}
        connections:
          - {{ from: gen, to: out }}
"
    )
}

fn engine(yaml: &str) -> Engine {
    engine::one_core(engine::resolve(yaml, &registry()))
}

#[test]
fn a_token_service_down_at_startup_fails_readiness_naming_the_extension() {
    let endpoint = TokenEndpoint::start(&[], Reply::Fail(503));
    run_child(
        "a_token_service_down_at_startup_fails_readiness_naming_the_extension_child",
        &endpoint.env(),
    );
    assert!(endpoint.served().len() >= 2, "retried within the timeout");
}

#[test]
#[ignore = "run by `a_token_service_down_at_startup_fails_readiness_naming_the_extension` in a child process"]
fn a_token_service_down_at_startup_fails_readiness_naming_the_extension_child() {
    expect_child("a_token_service_down_at_startup_fails_readiness_naming_the_extension_child");
    let azure = format!(
        "{{ type: extension:azure_auth, startup_timeout: 2s, config: {{ scope: '{SCOPE}', \
         method: managed_identity, retry: {{ initial_interval: 100ms }} }} }}"
    );
    // Nothing listens there: the exporter never starts.
    let error = engine(&pipeline(&azure, "http://127.0.0.1:9"))
        .run()
        .expect_err("not ready");
    let message = error.to_string();
    assert!(
        message.contains(
            "extension `azure` of pipeline `g/p` was not ready within its startup_timeout of 2s"
        ),
        "{message}"
    );
    assert!(message.contains("token request failed ("), "{message}");
    assert!(
        message
            .contains("no usable token to serve): ManagedIdentityCredential authentication failed"),
        "{message}"
    );
    assert!(message.contains("nodes were not started"), "{message}");
}

/// What the upstream saw of one export request.
#[derive(Debug, Clone)]
struct Export {
    /// Milliseconds since the epoch at arrival.
    at_ms: u64,
    /// The bearer token sent.
    token: String,
}

/// An OTLP/HTTP upstream on 127.0.0.1 (on a runtime of its own, returned) that accepts
/// everything and records the tokens.
fn upstream() -> (tokio::runtime::Runtime, String, Arc<Mutex<Vec<Export>>>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    let token = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default()
                        .to_owned();
                    let at_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64;
                    record.lock().unwrap().push(Export { at_ms, token });
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(200)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (runtime, format!("http://{addr}"), seen)
}

#[test]
fn exporting_through_a_token_service_outage_never_sends_an_expired_token() {
    // 34 s tokens are usable for 3 to 4 s (the expiry is in whole seconds). While a usable
    // token is held, retries come at least every 160 ms (half the time left, at least the
    // initial interval, -20 % jitter), so at most nine of the twelve failures fit in the
    // ~1.4 s from the first renewal to the token's end; the rest wait at least 0.8 s each
    // (the 1 s maximum, -20 %): the outage outlasts the token.
    let mut script = vec![Reply::Token(34)];
    script.extend([Reply::Fail(503); 12]);
    let endpoint = TokenEndpoint::start(&script, Reply::Token(34));
    run_child(
        "exporting_through_a_token_service_outage_never_sends_an_expired_token_child",
        &endpoint.env(),
    );
    let served = endpoint.served();
    assert_eq!(
        served
            .iter()
            .filter(|s| s.reply == Reply::Fail(503))
            .count(),
        12,
        "{served:?}"
    );
    // The outage outlasted the first token's usable time (at most 4 s), so the exporter
    // went through a time without any usable token.
    let healed = served
        .iter()
        .rposition(|s| s.reply == Reply::Fail(503))
        .unwrap()
        + 1;
    assert!(
        served[healed].at.duration_since(served[0].at) > Duration::from_secs(4),
        "{served:?}"
    );
}

#[test]
#[ignore = "run by `exporting_through_a_token_service_outage_never_sends_an_expired_token` in a child process"]
fn exporting_through_a_token_service_outage_never_sends_an_expired_token_child() {
    expect_child("exporting_through_a_token_service_outage_never_sends_an_expired_token_child");
    let (_runtime, url, seen) = upstream();
    let azure = format!(
        "{{ type: extension:azure_auth, config: {{ scope: '{SCOPE}', method: managed_identity, \
         refresh: {{ lifetime_fraction: 0.05, min_interval: 10ms }}, \
         retry: {{ initial_interval: 200ms, max_interval: 1s }} }} }}"
    );
    let engine = engine(&pipeline(&azure, &url));
    let shutdown = engine.shutdown_handle();
    let run = std::thread::spawn(move || engine.run());
    // Until exports carry a token issued after the outage (bounded).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let after = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| number_of(&e.token) >= 2)
            .count();
        if after >= 10 {
            break;
        }
        assert!(!run.is_finished(), "the pipeline ended: {:?}", run.join());
        assert!(Instant::now() < deadline, "no export after the outage");
        std::thread::sleep(Duration::from_millis(20));
    }
    shutdown.request();
    run.join().unwrap().expect("clean shutdown");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|e| number_of(&e.token) == 1),
        "exports before the outage"
    );
    for export in &seen {
        let expiry_ms = expiry_of(&export.token) * 1000;
        // Sent while usable: at least 25 s before the expiry (30 s margin, less transit).
        assert!(
            export.at_ms + 25_000 <= expiry_ms,
            "a request with a token {} ms from its expiry (or past it): {export:?}",
            expiry_ms as i64 - export.at_ms as i64
        );
    }
    // The outage left a gap: the first token's usable time ended before the next arrived.
    let last_with_first = seen
        .iter()
        .filter(|e| number_of(&e.token) == 1)
        .map(|e| e.at_ms)
        .max()
        .unwrap();
    let first_with_second = seen
        .iter()
        .filter(|e| number_of(&e.token) >= 2)
        .map(|e| e.at_ms)
        .min()
        .unwrap();
    assert!(
        first_with_second > last_with_first,
        "tokens in order: {last_with_first} then {first_with_second}"
    );
}

#[test]
fn a_misconfiguration_is_reported_with_file_line_and_path() {
    let yaml = pipeline(
        &format!(
            "{{ type: extension:azure_auth, config: {{ scope: '{SCOPE}', method: managed_identity, \
             tenant_id: my-tenant }} }}"
        ),
        "http://127.0.0.1:9",
    );
    let error = load_with_env(&yaml, "test.yaml", &registry(), &|_| None)
        .expect_err("tenant_id does not apply")
        .to_string();
    assert!(
        error.contains(
            "test.yaml:7:129: at `groups.g.pipelines.p.extensions.azure.config.tenant_id`: \
             `tenant_id` does not apply to method `managed_identity`"
        ),
        "{error}"
    );
}

/// Runs `yaml` to its end on two cores; its telemetry.
fn run_on_two_cores(yaml: &str) -> Arc<otap_df_core::runtime::Telemetry> {
    let engine = Engine::new(
        engine::resolve(yaml, &registry()),
        RunOptions {
            cores: Some(2),
            ..RunOptions::default()
        },
    );
    let telemetry = engine.telemetry();
    engine.run().expect("the pipelines run to the end");
    telemetry
}

#[test]
fn two_cores_and_two_exporters_share_one_token_request() {
    let endpoint = TokenEndpoint::start(&[], Reply::Token(3600));
    run_child(
        "two_cores_and_two_exporters_share_one_token_request_child",
        &endpoint.env(),
    );
    assert_eq!(endpoint.served().len(), 1, "{:?}", endpoint.served());
}

#[test]
#[ignore = "run by `two_cores_and_two_exporters_share_one_token_request` in a child process"]
fn two_cores_and_two_exporters_share_one_token_request_child() {
    expect_child("two_cores_and_two_exporters_share_one_token_request_child");
    let (_runtime, url, seen) = upstream();
    let yaml = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          azure: {{ type: extension:azure_auth, config: {{ scope: '{SCOPE}', method: managed_identity }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 5, count: 40 }} }}
          a: {{ type: exporter:otlp_http, config: {{ endpoint: '{url}', merge_max_bytes: 0 }}, capabilities: {{ bearer_token_provider: azure }} }}
          b: {{ type: exporter:otlp_http, config: {{ endpoint: '{url}', merge_max_bytes: 0 }}, capabilities: {{ bearer_token_provider: azure }} }}
        connections:
          - {{ from: gen, to: [a, b] }}
"
    );
    let telemetry = run_on_two_cores(&yaml);
    let seen = seen.lock().unwrap();
    // 40 batches, each to both exporters (one request each: no merging), over two cores;
    // all with the one token.
    assert_eq!(seen.len(), 80);
    assert!(seen.iter().all(|e| number_of(&e.token) == 1));
    // One shared instance, which counted its one renewal and shows the token's expiry.
    let metrics = telemetry.extension_metrics();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let azure = &metrics[0];
    assert_eq!((azure.extension.as_str(), azure.core), ("azure", None));
    assert_eq!(
        azure.metrics.counters,
        [("renewals", 1), ("renewal_failures", 0)]
    );
    assert_eq!(
        azure.metrics.gauges,
        [(
            "token_expiry_unix_seconds",
            i64::try_from(expiry_of(&seen[0].token)).unwrap()
        )]
    );
}

#[test]
fn two_pipelines_on_two_cores_share_one_engine_scoped_token_request() {
    let endpoint = TokenEndpoint::start(&[], Reply::Token(3600));
    run_child(
        "two_pipelines_on_two_cores_share_one_engine_scoped_token_request_child",
        &endpoint.env(),
    );
    assert_eq!(endpoint.served().len(), 1, "{:?}", endpoint.served());
}

#[test]
#[ignore = "run by `two_pipelines_on_two_cores_share_one_engine_scoped_token_request` in a child process"]
fn two_pipelines_on_two_cores_share_one_engine_scoped_token_request_child() {
    expect_child("two_pipelines_on_two_cores_share_one_engine_scoped_token_request_child");
    let (_runtime, url, seen) = upstream();
    let pipeline = |name: &str| {
        format!(
            "      {name}:
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: logs, batch_size: 5, count: 40 }} }}
          out: {{ type: exporter:otlp_http, config: {{ endpoint: '{url}', merge_max_bytes: 0 }}, capabilities: {{ bearer_token_provider: azure }} }}
        connections:
          - {{ from: gen, to: out }}
"
        )
    };
    let yaml = format!(
        "version: otap_df/v1
engine:
  extensions:
    azure: {{ type: extension:azure_auth, config: {{ scope: '{SCOPE}', method: managed_identity }} }}
groups:
  g:
    pipelines:
{}{}",
        pipeline("p"),
        pipeline("q")
    );
    let telemetry = run_on_two_cores(&yaml);
    let seen = seen.lock().unwrap();
    // 40 batches per pipeline (over its two cores), all with the one token.
    assert_eq!(seen.len(), 80);
    assert!(seen.iter().all(|e| number_of(&e.token) == 1));
    // One instance, the engine's.
    let metrics = telemetry.extension_metrics();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(
        (
            metrics[0].pipeline.as_str(),
            metrics[0].extension.as_str(),
            metrics[0].core
        ),
        ("engine", "azure", None)
    );
    assert_eq!(
        metrics[0].metrics.counters,
        [("renewals", 1), ("renewal_failures", 0)]
    );
}
