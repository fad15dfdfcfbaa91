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

/// An engine-level `bearer_auth` (`admins`, accepting `tokens`, reload interval `interval`)
/// bound by the admin endpoint on `admin` with `require_token_for`; a receiver on `otlp`.
fn guarded_config(
    path: &Path,
    (admin, otlp): (u16, u16),
    tokens: &str,
    interval: &str,
    require_token_for: &str,
) {
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin:
    listen: '127.0.0.1:{admin}'
    capabilities: {{ bearer_token_authorizer: admins }}
    require_token_for: {require_token_for}
  extensions:
    admins: {{ type: extension:bearer_auth, config: {{ tokens: [{tokens}], reload_interval: {interval} }} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}' }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        ),
    )
    .unwrap();
}

/// `method path` with `token` (`Bearer`), if any: the status.
fn with_token(port: u16, method: http::Method, path: &str, token: Option<&str>) -> Answer {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|bearer| vec![("authorization", bearer)])
        .unwrap_or_default();
    request(method, port, path, &headers, Vec::new())
}

#[test]
fn a_bound_token_guards_reload_and_reads_and_follows_its_extension_across_reloads() {
    let dir = TempDir::new("admin-token");
    let config = dir.path("guarded.yaml");
    let (admin, otlp) = (free_port(), free_port());
    guarded_config(&config, (admin, otlp), "admin-secret", "1m", "all");
    let run = RunningBinary::start(&config);
    until(admin, "/readyz", "ready", |a| a.status == 200);
    // The probes need no token; the reads and the reload need the accepted one.
    assert_eq!(get(admin, "/livez").status, 200);
    let status = get(admin, "/status");
    assert_eq!(status.status, 401, "{}", body(&status));
    assert_eq!(
        status.headers["www-authenticate"],
        "Bearer realm=\"otap-df admin\""
    );
    let post = http::Method::POST;
    assert_eq!(with_token(admin, post.clone(), "/reload", None).status, 401);
    assert_eq!(
        with_token(admin, post.clone(), "/reload", Some("guess")).status,
        401
    );
    let status = with_token(admin, http::Method::GET, "/status", Some("admin-secret"));
    assert_eq!(status.status, 200);
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(
        status["scopes"][0]["extensions"][0]["bound_by"],
        serde_json::json!([{ "pipeline": "engine", "node": "admin", "capability": "bearer_token_authorizer" }])
    );
    // A new token, taken in place: the old one no longer opens the endpoint.
    guarded_config(&config, (admin, otlp), "new-secret", "1m", "all");
    let answer = with_token(admin, post.clone(), "/reload", Some("admin-secret"));
    assert_eq!(answer.status, 200, "{}", body(&answer));
    assert_eq!(
        with_token(admin, http::Method::GET, "/metrics", Some("admin-secret")).status,
        401
    );
    assert_eq!(
        with_token(admin, http::Method::GET, "/metrics", Some("new-secret")).status,
        200
    );
    // An option the instance cannot take: a new instance, which the endpoint asks from then on.
    guarded_config(&config, (admin, otlp), "third-secret", "2m", "all");
    let answer = with_token(admin, post.clone(), "/reload", Some("new-secret"));
    assert_eq!(answer.status, 200, "{}", body(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        answer["replaced"],
        serde_json::json!(["extension `admins` of the engine"])
    );
    assert_eq!(
        with_token(admin, http::Method::GET, "/status", Some("new-secret")).status,
        401
    );
    assert_eq!(
        with_token(admin, http::Method::GET, "/status", Some("third-secret")).status,
        200
    );
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "{lines:?}");
}

#[test]
fn a_reload_a_web_page_could_send_is_refused_and_the_command_lines_is_served() {
    let dir = TempDir::new("admin-csrf");
    let (admin, otlp) = (free_port(), free_port());
    let run = RunningBinary::start(&config(dir.dir(), admin, otlp));
    until(admin, "/readyz", "ready", |a| a.status == 200);
    let post = http::Method::POST;
    let from_a_page = request(
        post.clone(),
        admin,
        "/reload",
        &[("origin", "https://evil.example")],
        "",
    );
    assert_eq!(from_a_page.status, 403, "{}", body(&from_a_page));
    let a_form = request(
        post.clone(),
        admin,
        "/reload",
        &[("content-type", "text/plain")],
        "x",
    );
    assert_eq!(a_form.status, 415, "{}", body(&a_form));
    let rebound = request(
        http::Method::GET,
        admin,
        "/status",
        &[("host", "attacker.example")],
        "",
    );
    assert_eq!(rebound.status, 403, "{}", body(&rebound));
    let curl = request(post, admin, "/reload", &[], "");
    assert_eq!(curl.status, 200, "{}", body(&curl));
    run.signal("-TERM");
    assert_eq!(run.finish().1, Some(0));
}

#[test]
fn the_admin_endpoint_survives_idle_and_slow_floods_within_512_descriptors_and_the_data_path_serves()
 {
    let dir = TempDir::new("admin-flood");
    let config = dir.path("flood.yaml");
    let (admin, otlp) = (free_port(), free_port());
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}', max_connections: 16, header_read_timeout: 500ms }}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}' }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        ),
    )
    .unwrap();
    // The engine with 512 file descriptors: 600 connections held open to the admin endpoint
    // would take them all without its cap.
    let run = RunningBinary::start_with_fd_limit(&config, 512);
    until(admin, "/readyz", "ready", |a| a.status == 200);
    use std::io::{Read, Write};
    let mut idle = Vec::new();
    for _ in 0..600 {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", admin)) {
            idle.push(stream);
        }
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        // Half a request head, and then nothing.
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        slow.push(stream);
    }
    // While they are held: the probes are answered, and the data path takes requests.
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    for _ in 0..20 {
        assert_eq!(get(admin, "/livez").status, 200);
        let answer = support::post(
            otlp,
            "/v1/logs",
            &[("content-type", "application/x-protobuf")],
            logs.bytes().clone(),
        );
        assert_eq!(answer.status, 200);
    }
    // A slow head is closed: displaced or timed out (500 ms), never left open.
    let deadline = Instant::now() + Duration::from_secs(10);
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            .unwrap();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(
            read.is_ok()
                || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "closed within the bound: {read:?}"
        );
    }
    drop(idle);
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("final: in in=100 out=100")),
        "{lines:?}"
    );
}
