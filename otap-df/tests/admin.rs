//! The admin endpoint of the real binary, asked with a real HTTP client: liveness, readiness
//! following an extension's health, the JSON status, and `/metrics` read back with an
//! independent OpenMetrics parser.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use otap_df_tests::temp::TempDir;
use support::binary::RunningBinary;
use support::{Answer, free_port, get, post, request};

/// A receiver guarded by `bearer_auth` (tokens from a file), a generator, dedup on
/// memory_kv, a noop exporter; the admin endpoint on `admin`.
fn config(dir: &Path, admin: u16, otlp: u16) -> std::path::PathBuf {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "caller-token\n").unwrap();
    let config = dir.join("admin.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {{ type: extension:memory_kv }}
          callers: {{ type: extension:bearer_auth, config: {{ tokens_file: '{}', reload_interval: 20ms }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: in, to: dedup }}
          - {{ from: dedup, to: out }}
",
            tokens.display()
        ),
    )
    .unwrap();
    config
}

/// Asks `path` until `done` holds for the answer (bounded: 10 s), then returns that answer.
fn until(port: u16, path: &str, what: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let answer = get(port, path);
            if done(&answer) {
                return answer;
            }
            if Instant::now() > deadline {
                panic!("{what}: {path} still answers {answer:?}");
            }
        } else if Instant::now() > deadline {
            panic!("{what}: nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn body(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// The value of the sample of `family` whose labels include `labels`.
fn sample(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let family_data = exposition
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family `{family}`"));
    let found = family_data.iter_samples().find(|sample| {
        let set = sample.get_labelset().expect("labels");
        labels
            .iter()
            .all(|(name, value)| set.get_label_value(name) == Some(value))
    });
    match found.map(|sample| &sample.value) {
        Some(OpenMetricsValue::Counter(counter)) => counter.value.as_f64(),
        Some(OpenMetricsValue::Gauge(gauge)) => gauge.as_f64(),
        Some(other) => panic!("`{family}` {labels:?} is {other:?}"),
        None => panic!("no sample of `{family}` with {labels:?}"),
    }
}

fn scrape(port: u16) -> Exposition {
    let answer = get(port, "/metrics");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers["content-type"],
        otap_df::admin::OPENMETRICS,
        "the OpenMetrics content type"
    );
    openmetrics_parser::openmetrics::parse_openmetrics(&body(&answer))
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{}", body(&answer)))
}

#[test]
fn an_operator_sees_health_status_and_metrics_of_a_running_engine() {
    let dir = TempDir::new("admin");
    let (admin, otlp) = (free_port(), free_port());
    let mut run = RunningBinary::start(&config(dir.dir(), admin, otlp));
    run.wait_for("the admin endpoint", |line| {
        line.contains(&format!("admin endpoint on http://127.0.0.1:{admin}"))
    });

    assert_eq!(get(admin, "/livez").status, 200);
    let ready = until(admin, "/readyz", "ready", |a| a.status == 200);
    assert_eq!(body(&ready), "ready\n");

    // Two accepted requests, one refused for its token.
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    let protobuf = [("content-type", "application/x-protobuf")];
    for token in ["caller-token", "caller-token", "wrong"] {
        let bearer = format!("Bearer {token}");
        let mut headers = protobuf.to_vec();
        headers.push(("authorization", &bearer));
        post(otlp, "/v1/logs", &headers, logs.bytes().clone());
    }

    let status: serde_json::Value = serde_json::from_slice(&get(admin, "/status").body).unwrap();
    assert_eq!(status["phase"], "running");
    assert_eq!(status["ready"], true);
    let pipeline = &status["pipelines"][0];
    assert_eq!(pipeline["name"], "g/p");
    let callers = &pipeline["extensions"][1];
    assert_eq!(callers["id"], "callers");
    assert_eq!(callers["type"], "extension:bearer_auth");
    assert_eq!(callers["execution"], "shared");
    assert_eq!(
        callers["bound_by"],
        serde_json::json!([{ "pipeline": "g/p", "node": "in", "capability": "bearer_token_authorizer" }])
    );
    assert_eq!(
        status["scopes"],
        serde_json::json!([]),
        "no engine or group extensions"
    );
    let receiver = &pipeline["nodes"][0];
    assert_eq!(receiver["id"], "in");
    assert_eq!(receiver["type"], "receiver:otlp_http");
    assert_eq!(receiver["counters"]["records_out"], 10);
    assert_eq!(receiver["counters"]["named"]["accepted"], 2);
    assert_eq!(receiver["counters"]["named"]["refused.auth_invalid"], 1);

    let metrics = scrape(admin);
    fn node(name: &str) -> [(&str, &str); 2] {
        [("pipeline", "g/p"), ("node", name)]
    }
    assert_eq!(
        sample(&metrics, "otap_df_node_records_in", &node("in")),
        10.0
    );
    assert_eq!(
        sample(&metrics, "otap_df_node_records_in", &node("dedup")),
        10.0
    );
    assert_eq!(
        sample(&metrics, "otap_df_node_records_dropped", &node("dedup")),
        5.0,
        "the second request repeats the first"
    );
    assert_eq!(
        sample(
            &metrics,
            "otap_df_node_counter",
            &[("node", "in"), ("name", "refused.auth_invalid")]
        ),
        1.0
    );
    let state = |state: &str| {
        sample(
            &metrics,
            "otap_df_extension_state",
            &[
                ("extension", "callers"),
                ("core", "shared"),
                ("state", state),
            ],
        )
    };
    assert_eq!((state("ready"), state("degraded")), (1.0, 0.0));
    assert_eq!(sample(&metrics, "otap_df_ready", &[]), 1.0);
    assert_eq!(
        sample(&metrics, "otap_df_run_phase", &[("phase", "running")]),
        1.0
    );
    // The extensions' own counters and gauges.
    let callers = |name: &str| {
        sample(
            &metrics,
            "otap_df_extension_counter",
            &[("extension", "callers"), ("core", "shared"), ("name", name)],
        )
    };
    assert_eq!(
        (
            callers("authorized"),
            callers("denied.invalid"),
            callers("denied.missing")
        ),
        (2.0, 1.0, 0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "otap_df_extension_gauge",
            &[("extension", "store"), ("name", "entries")]
        ),
        1.0,
        "one distinct payload stored"
    );
    assert_eq!(
        sample(
            &metrics,
            "otap_df_extension_counter",
            &[("extension", "store"), ("name", "evictions")]
        ),
        0.0
    );
    let instance = &status["pipelines"][0]["extensions"][1]["instances"][0];
    assert_eq!(instance["counters"]["authorized"], 2);

    // A broken token file degrades the extension: not ready, and the reason is given.
    std::fs::write(dir.path("tokens"), "").unwrap();
    let not_ready = until(admin, "/readyz", "degraded", |a| a.status == 503);
    let reasons = body(&not_ready);
    assert!(
        reasons.starts_with("not ready:\nextension `callers` of pipeline `g/p` is degraded: "),
        "{reasons}"
    );
    let metrics = scrape(admin);
    let degraded = sample(
        &metrics,
        "otap_df_extension_state",
        &[("extension", "callers"), ("state", "degraded")],
    );
    assert_eq!(degraded, 1.0);
    assert_eq!(sample(&metrics, "otap_df_ready", &[]), 0.0);
    assert!(
        sample(
            &metrics,
            "otap_df_extension_counter",
            &[("extension", "callers"), ("name", "reload_failures")]
        ) >= 1.0
    );
    // Fixed, with a new token: ready again, and the reload is counted.
    std::fs::write(dir.path("tokens"), "caller-token\nnew-token\n").unwrap();
    until(admin, "/readyz", "healed", |a| a.status == 200);
    assert_eq!(
        sample(
            &scrape(admin),
            "otap_df_extension_counter",
            &[("extension", "callers"), ("name", "reloads")]
        ),
        1.0
    );

    assert_eq!(get(admin, "/nope").status, 404);
    assert_eq!(
        request(http::Method::POST, admin, "/readyz", &[], "").status,
        405
    );
    run.signal("-INT");
    let (_, code) = run.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn the_status_shows_an_engine_extension_as_one_instance_bound_by_every_pipeline() {
    let dir = TempDir::new("admin-scopes");
    let (admin, a, b) = (free_port(), free_port(), free_port());
    let config = dir.path("scopes.yaml");
    let pipeline = |name: &str, port: u16| {
        format!(
            "      {name}:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        )
    };
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
engine:
  cores: 2
  admin: {{ listen: '127.0.0.1:{admin}' }}
  extensions:
    callers: {{ type: extension:bearer_auth, config: {{ tokens: [caller-token] }} }}
groups:
  g:
    pipelines:
{}{}",
            pipeline("a", a),
            pipeline("b", b)
        ),
    )
    .unwrap();
    let run = RunningBinary::start(&config);
    until(admin, "/readyz", "ready", |answer| answer.status == 200);
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("authorization", "Bearer caller-token"),
    ];
    for port in [a, b] {
        assert_eq!(post(port, "/v1/logs", &headers, Vec::new()).status, 200);
    }
    let status: serde_json::Value = serde_json::from_slice(&get(admin, "/status").body).unwrap();
    let scopes = status["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{status}");
    assert_eq!(scopes[0]["name"], "engine");
    let callers = &scopes[0]["extensions"][0];
    assert_eq!(callers["id"], "callers");
    assert_eq!(callers["execution"], "shared");
    assert_eq!(
        callers["instances"].as_array().unwrap().len(),
        1,
        "one instance for both pipelines and both cores: {callers}"
    );
    assert_eq!(
        callers["instances"][0]["state"], "passive",
        "inline tokens: no task"
    );
    assert_eq!(
        callers["bound_by"],
        serde_json::json!([
            { "pipeline": "g/a", "node": "in", "capability": "bearer_token_authorizer" },
            { "pipeline": "g/b", "node": "in", "capability": "bearer_token_authorizer" },
        ])
    );
    for pipeline in status["pipelines"].as_array().unwrap() {
        assert_eq!(pipeline["extensions"], serde_json::json!([]));
        assert_eq!(
            pipeline["nodes"][0]["bindings"],
            serde_json::json!([{ "capability": "bearer_token_authorizer", "extension": "callers", "scope": "engine" }])
        );
    }
    // Its decisions are counted once, for both pipelines.
    let metrics = scrape(admin);
    assert_eq!(
        sample(
            &metrics,
            "otap_df_extension_counter",
            &[
                ("pipeline", "engine"),
                ("extension", "callers"),
                ("name", "authorized")
            ]
        ),
        2.0
    );
    run.signal("-INT");
    let (_, code) = run.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn an_admin_port_already_taken_fails_the_start_naming_it() {
    let dir = TempDir::new("admin-taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = config(dir.dir(), free_port(), free_port());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args([
            "run",
            "--quiet",
            "--admin-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "otap-df: cannot serve the admin endpoint on 127.0.0.1:{port}: "
        )),
        "{stderr}"
    );
}
