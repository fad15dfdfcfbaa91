//! The real `otap-df` binary on real configuration files.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use otap_df_tests::temp::TempDir;

mod support;

use support::binary::{RunningBinary, counter, final_line, records_out};

fn otap_df(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("the otap-df binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `otap-df validate` of a file holding `content`, which must fail: the file's path and what
/// the command wrote on standard error.
fn validate_refuses(name: &str, content: impl AsRef<[u8]>) -> (String, String) {
    let dir = TempDir::new("cli-validate");
    let config = dir.path(name);
    std::fs::write(&config, content).expect("write config");
    let path = config.display().to_string();
    let output = otap_df(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    (path, text(&output.stderr))
}

#[test]
fn the_otlp_http_examples_are_valid_and_bind_their_tokens() {
    for (example, bindings) in [
        (
            "examples/gateway.yaml",
            &[
                "otlp_in         receiver:otlp_http  [bearer_token_authorizer <- callers]",
                "otlp_out        exporter:otlp_http  [bearer_token_provider <- upstream_token]",
                "otlp_in        receiver:otlp_http  [bearer_token_authorizer <- gateway_token]",
            ][..],
        ),
        (
            "examples/sender.yaml",
            &["otlp_out   exporter:otlp_http  [bearer_token_provider <- token]"][..],
        ),
    ] {
        let output = otap_df(&["validate", example]);
        let stdout = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{example}: {}",
            text(&output.stderr)
        );
        assert!(
            stdout.starts_with(&format!("{example}: valid (1 core)\n")),
            "{stdout}"
        );
        for binding in bindings {
            assert!(stdout.contains(binding), "{example}: {binding}\n{stdout}");
        }
    }
}

#[test]
fn validate_prints_a_summary_of_the_quickstart_example() {
    let output = otap_df(&["validate", "examples/quickstart.yaml"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        "examples/quickstart.yaml: valid (1 core)
pipeline default/main
  extensions:
    dedup_store  extension:memory_kv  [shared, one for all cores]  bound by dedup
  nodes:
    generator    receiver:generator
    dedup        processor:dedup  [key_value_store <- dedup_store]
    debug        exporter:debug
  connections:
    generator -> dedup
    dedup -> debug
"
    );
}

#[test]
fn validate_prints_each_extension_with_its_scope_and_who_binds_it() {
    let output = otap_df(&["validate", "examples/scopes.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "examples/scopes.yaml: valid (2 cores)
engine
  extensions:
    callers  extension:bearer_auth  [shared, one for every pipeline and core]  bound by ingest/team_a.otlp_in, ingest/team_b.otlp_in
group ingest
  extensions:
    seen  extension:memory_kv  [shared, one for every pipeline and core]  bound by ingest/team_a.dedup, ingest/team_b.dedup
pipeline ingest/team_a
  nodes:
    otlp_in  receiver:otlp_http  [bearer_token_authorizer <- callers (engine)]
    dedup    processor:dedup  [key_value_store <- seen (group ingest)]
    debug    exporter:debug
  connections:
    otlp_in -> dedup
    dedup -> debug
pipeline ingest/team_b
  nodes:
    otlp_in  receiver:otlp_http  [bearer_token_authorizer <- callers (engine)]
    dedup    processor:dedup  [key_value_store <- seen (group ingest)]
    debug    exporter:debug
  connections:
    otlp_in -> dedup
    dedup -> debug
"
    );
}

#[test]
fn validate_reports_every_error_with_file_line_and_path_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("otap-df-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("broken.yaml");
    std::fs::write(
        &config,
        "version: otap_df/v1
groups:
  default:
    pipelines:
      main:
        extensions:
          store: { type: extension:memroy_kv }
          az: { type: extension:azure_auth }
        nodes:
          gen: { type: receiver:generator, config: { batch_sise: 10 } }
          dedup: { type: processor:dedup, capabilities: { key_value_store: store } }
          out: { type: exporter:debug }
        connections:
          - { from: gen, to: dedpu }
",
    )
    .expect("write config");
    let path = config.display().to_string();
    let output = otap_df(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    let p = "groups.default.pipelines.main";
    assert_eq!(
        text(&output.stderr),
        format!(
            "4 errors in {path}
  {path}:7:20: at `{p}.extensions.store.type`: unknown extension type `memroy_kv`; registered extension types: `bearer_auth`, `disk_queue`, `memory_kv` (did you mean `memory_kv`?)
  {path}:8:17: at `{p}.extensions.az.type`: extension type `azure_auth` is not compiled in: enable cargo feature `otap-df/extension-azure-auth`
  {path}:10:54: at `{p}.nodes.gen.config.batch_sise`: unknown field `batch_sise`; valid fields: `signal`, `batch_size`, `count`, `rate`, `duplicate_ratio`, `encoding` (did you mean `batch_size`?)
  {path}:14:26: at `{p}.connections[0].to`: unknown node `dedpu`; nodes of this pipeline: `gen`, `dedup`, `out` (did you mean `dedup`?)
"
        )
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn validate_refuses_two_receivers_on_one_address_anywhere_in_the_configuration() {
    let (path, stderr) = validate_refuses(
        "listen.yaml",
        "version: otap_df/v1
groups:
  a:
    pipelines:
      one:
        nodes:
          in: { type: receiver:otlp_http, config: { listen: '0.0.0.0:4318' } }
          out: { type: exporter:noop }
        connections: [{ from: in, to: out }]
  b:
    pipelines:
      two:
        nodes:
          in: { type: receiver:otlp_http, config: { listen: '127.0.0.1:4318' } }
          other: { type: receiver:otlp_http, config: { listen: '127.0.0.1:4319' } }
          out: { type: exporter:noop }
        connections: [{ from: [in, other], to: out }]
",
    );
    assert_eq!(
        stderr,
        format!(
            "1 error in {path}
  {path}:14:53: at `groups.b.pipelines.two.nodes.in.config.listen`: `listen` 127.0.0.1:4318 overlaps 0.0.0.0:4318 of node `in` of pipeline `a/one` (line 7:53); two listeners cannot share an address (give each its own port)
"
        )
    );
}

#[test]
fn validate_locates_a_byte_that_is_not_utf8() {
    let (path, stderr) = validate_refuses(
        "latin1.yaml",
        b"version: otap_df/v1\n# caf\xe9\ngroups: {}\n",
    );
    assert_eq!(
        stderr,
        format!("otap-df: `{path}`:2:6: not UTF-8 (byte 0xe9); save the configuration as UTF-8\n")
    );
}

#[test]
fn validate_refuses_a_20000_deep_nesting_with_its_location() {
    let depth = 20_000;
    let (path, stderr) = validate_refuses(
        "deep.yaml",
        format!(
            "version: otap_df/v1\ngroups: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    );
    assert!(
        stderr.starts_with(&format!("1 error in {path}\n  {path}:2:")),
        "{stderr}"
    );
    assert!(
        stderr.contains("collections nest more than 64 deep here"),
        "{stderr}"
    );
}

#[test]
fn validate_of_a_missing_file_names_it() {
    let output = otap_df(&["validate", "no/such/file.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("otap-df: cannot read `no/such/file.yaml`: "),
        "{stderr}"
    );
}

#[test]
fn components_for_tools_are_json_or_yaml_with_the_same_facts() {
    let json = otap_df(&["components", "--output", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let dedup = value["processors"]
        .as_array()
        .expect("processors")
        .iter()
        .find(|p| p["type"] == "processor:dedup")
        .expect("processor:dedup");
    assert_eq!(dedup["crate"], "otap-df-nodes");
    assert_eq!(
        dedup["accepts"],
        serde_json::json!([{ "capability": "key_value_store", "required": true }])
    );
    let memory_kv = value["extensions"]
        .as_array()
        .expect("extensions")
        .iter()
        .find(|e| e["type"] == "extension:memory_kv")
        .expect("memory_kv");
    assert_eq!(
        memory_kv["provides"],
        serde_json::json!(["key_value_store"])
    );
    assert_eq!(
        memory_kv["execution"],
        serde_json::json!(["local", "shared"])
    );
    assert_eq!(
        value["not_compiled_in"],
        serde_json::json!([
            { "type": "extension:azure_auth", "feature": "otap-df/extension-azure-auth" },
            { "type": "extension:disk_kv", "feature": "otap-df/extension-disk-kv" },
            { "type": "extension:oauth2_client", "feature": "otap-df/extension-oauth2" },
            { "type": "extension:oidc_auth", "feature": "otap-df/extension-oauth2" },
            { "type": "extension:redis_kv", "feature": "otap-df/extension-redis-kv" },
            { "type": "extension:wasm", "feature": "otap-df/extension-wasm" },
        ])
    );
    let yaml = otap_df(&["components", "--output", "yaml"]);
    assert_eq!(yaml.status.code(), Some(0));
    let from_yaml: serde_json::Value = serde_yaml_ng::from_slice(&yaml.stdout).expect("YAML");
    assert_eq!(from_yaml, value);
}

#[test]
fn components_lists_types_and_what_is_not_compiled_in() {
    let output = otap_df(&["components"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(
            "extensions:\n  extension:bearer_auth  static or file-backed bearer tokens"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("      provides: key_value_store  (local, shared)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  processor:dedup  drops batches already seen within a TTL, using a key/value store\n      accepts: key_value_store (required)\n      from: otap-df-nodes\n"), "{stdout}");
    assert!(
        stdout.contains("      provides: bearer_token_provider, bearer_token_authorizer  (shared)\n      from: otap-df-extension-bearer-auth\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "not compiled in:
  extension:azure_auth  enable cargo feature `otap-df/extension-azure-auth`
  extension:disk_kv  enable cargo feature `otap-df/extension-disk-kv`
  extension:oauth2_client  enable cargo feature `otap-df/extension-oauth2`
  extension:oidc_auth  enable cargo feature `otap-df/extension-oauth2`
  extension:redis_kv  enable cargo feature `otap-df/extension-redis-kv`
  extension:wasm  enable cargo feature `otap-df/extension-wasm`
"
        ),
        "{stdout}"
    );
}

#[test]
fn run_executes_the_quickstart_and_drops_exactly_the_duplicates() {
    let output = otap_df(&["run", "examples/quickstart.yaml"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    // 1000 batches of 100 logs, a quarter of them repeats: 750 batches reach the exporter.
    assert_eq!(stdout.lines().count(), 750, "{stdout}");
    assert!(
        stdout.lines().all(|line| line == "debug: logs 100 records"),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "final: generator in=100000 out=100000 | dedup in=100000 out=75000 dropped=25000 | debug in=75000 out=75000 | dedup_store=passive"
        ),
        "{stderr}"
    );
}

fn file_pipeline(dir: &Path, cores: usize) -> String {
    let config = dir.join(format!("file-{cores}.yaml"));
    let out = dir.join(format!("out-{cores}.bin"));
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
engine: {{ cores: {cores} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          gen: {{ type: receiver:generator, config: {{ signal: traces, batch_size: 7, count: 101 }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: gen, to: out }}
",
            out.display()
        ),
    )
    .expect("write config");
    config.display().to_string()
}

#[test]
fn every_generated_record_reaches_the_file_exporter_on_one_and_two_cores() {
    let dir = std::env::temp_dir().join(format!("otap-df-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for cores in [1usize, 2] {
        let config = file_pipeline(&dir, cores);
        let output = otap_df(&["run", "--quiet", &config]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "stderr: {}",
            text(&output.stderr)
        );
        let mut records = 0;
        let mut batches = 0;
        for core in 0..cores {
            let path = otap_df::nodes::payload_file::core_path(
                &dir.join(format!("out-{cores}.bin")),
                core,
            );
            for payload in otap_df::nodes::read_payloads(&path).expect("payload file") {
                let shape = otap_df::nodes::otlp::shape(&payload).expect("valid OTLP");
                assert_eq!(shape.records as u64, payload.records());
                records += shape.records;
                batches += 1;
            }
        }
        assert_eq!((batches, records), (101, 707), "{cores} cores");
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// An endless generator → `exporter:file` at `out`.
fn endless_file_pipeline(dir: &Path, out: &Path) -> PathBuf {
    let config = dir.join("endless.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: 10, rate: 2000 }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: gen, to: out }}
",
            out.display()
        ),
    )
    .expect("write config");
    config
}

#[test]
fn sigterm_mid_run_shuts_down_gracefully_and_loses_nothing_accepted() {
    let temp = TempDir::new("sigterm");
    let dir = temp.dir();
    let out = dir.join("out.bin");
    let mut run = RunningBinary::start(&endless_file_pipeline(dir, &out));
    run.wait_flowing("gen");
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    let sent = records_out(last, "gen").expect("gen count");
    let exported = records_out(last, "out").expect("out count");
    let in_file: u64 = otap_df::nodes::read_payloads(&out)
        .expect("payload file")
        .iter()
        .map(|payload| payload.records())
        .sum();
    assert!(sent > 0);
    assert_eq!((exported, in_file), (sent, sent), "{last}");
}

#[test]
fn sighup_with_the_same_configuration_changes_nothing_and_the_run_goes_on() {
    let temp = TempDir::new("sighup");
    let dir = temp.dir();
    let out = dir.join("out.bin");
    let mut run = RunningBinary::start(&endless_file_pipeline(dir, &out));
    run.wait_flowing("gen");
    run.signal("-HUP");
    run.wait_for("the reload's answer", |line| {
        line.contains("reload: the configuration is unchanged")
    });
    // Still running, still moving records.
    let before = run
        .seen
        .iter()
        .rev()
        .find_map(|line| records_out(line, "out"))
        .unwrap_or(0);
    run.wait_for("more records after the SIGHUP", |line| {
        records_out(line, "out").is_some_and(|n| n > before)
    });
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(records_out(last, "out"), records_out(last, "gen"), "{last}");
}

#[test]
fn a_second_signal_exits_at_once_with_the_final_line() {
    let temp = TempDir::new("second");
    let dir = temp.dir();
    // An upstream that refuses connections: the exporter retries until the shutdown
    // deadline (10 s), so the first signal's drain is still going when the second comes.
    let port = free_port();
    let config = dir.join("stuck.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: 10, rate: 100 }} }}
          out: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{port}', retry: {{ max_elapsed_time: 1m }} }} }}
        connections:
          - {{ from: gen, to: out }}
"
        ),
    )
    .expect("write config");
    let mut run = RunningBinary::start(&config);
    run.wait_flowing("gen");
    run.signal("-INT");
    run.wait_for("the graceful shutdown", |line| {
        line.contains("shutting down")
    });
    run.signal("-INT");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(130), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert!(
        last.ends_with("exited at a second signal: data still in the pipeline was abandoned"),
        "{last}"
    );
    assert!(records_out(last, "gen").is_some_and(|n| n > 0), "{last}");
}

#[test]
fn a_file_exporter_on_a_full_disk_fails_the_start_naming_the_file_before_taking_anything() {
    let temp = TempDir::new("full");
    let dir = temp.dir();
    let config = dir.join("full.yaml");
    std::fs::write(
        &config,
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          gen: { type: receiver:generator, config: { batch_size: 10, count: 50 } }
          out: { type: exporter:file, config: { path: /dev/full } }
        connections:
          - { from: gen, to: out }
",
    )
    .expect("write config");
    let output = otap_df(&["run", config.to_str().expect("utf-8 path")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // The payload file's header is written when the file is opened: a disk that cannot take
    // it fails the pipeline's start, before the generator emits anything.
    assert!(
        stderr.contains(
            "node `out` failed: cannot open `/dev/full`: No space left on device (os error 28)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("gen in="), "nothing ran: {stderr}");
}

/// One OTLP/HTTP request of `records` log records to `port`, answered; its status.
fn post_logs(port: u16, records: usize) -> u16 {
    use std::io::{Read, Write};
    let body = otap_df::nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, records, "t", 1);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.bytes().len()
    )
    .expect("write head");
    stream.write_all(body.bytes()).expect("write body");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A gateway whose upstream refuses connections, so that its exporter retries until the
/// shutdown; `extra` goes into the exporter's config.
fn stuck_gateway(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let upstream = free_port();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          otlp_out: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{upstream}', retry: {{ initial_interval: 50ms, max_elapsed_time: 1h }}{extra} }} }}
        connections:
          - {{ from: otlp_in, to: otlp_out }}
"
        ),
    )
    .expect("write config");
    config
}

fn free_port() -> u16 {
    otap_df_tests::ports::free_port().expect("a free loopback port")
}

/// Sends 30 requests of 10 records; all must be acknowledged. Then SIGTERM.
fn acknowledge_then_stop(run: &mut RunningBinary, port: u16) {
    run.wait_for("the receiver listening", |line| {
        line.contains("OTLP/HTTP receiver listening")
    });
    for _ in 0..30 {
        assert_eq!(post_logs(port, 10), 200);
    }
    run.signal("-TERM");
}

#[test]
fn at_shutdown_an_exporter_mid_retry_dead_letters_everything_acknowledged() {
    let temp = TempDir::new("dead-letter");
    let dir = temp.dir();
    let dead = dir.join("dead.bin");
    let port = free_port();
    let config = stuck_gateway(
        dir,
        port,
        &format!(", dead_letter_file: '{}'", dead.display()),
    );
    let mut run = RunningBinary::start_with(&config, &["--shutdown-timeout", "2"]);
    acknowledge_then_stop(&mut run, port);
    let (lines, code) = run.finish();
    // Accounted for: 300 acknowledged = 0 delivered + 300 dead-lettered + 0 lost.
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(counter(last, "otlp_in", "accepted"), Some(30), "{last}");
    // `out` of the exporter is what its upstream accepted: nothing.
    assert_eq!(records_out(last, "otlp_out"), Some(0), "{last}");
    assert_eq!(
        counter(last, "otlp_out", "dead_lettered"),
        Some(300),
        "{last}"
    );
    assert_eq!(counter(last, "otlp_out", "failed"), Some(300), "{last}");
    assert_eq!(counter(last, "otlp_out", "lost"), None, "{last}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("did not stop within the shutdown timeout")),
        "the exporter finished before the deadline: {lines:?}"
    );
    let in_file: u64 = otap_df::nodes::read_payloads(&dead)
        .expect("dead-letter file")
        .iter()
        .map(|payload| payload.records())
        .sum();
    assert_eq!(in_file, 300);
}

#[test]
fn with_fail_on_loss_dead_lettered_records_make_the_exit_code_non_zero() {
    let temp = TempDir::new("fail-on-loss");
    let dir = temp.dir();
    let dead = dir.join("dead.bin");
    let port = free_port();
    let config = stuck_gateway(
        dir,
        port,
        &format!(", dead_letter_file: '{}'", dead.display()),
    );
    let mut run =
        RunningBinary::start_with(&config, &["--shutdown-timeout", "2", "--fail-on-loss"]);
    acknowledge_then_stop(&mut run, port);
    let (lines, code) = run.finish();
    assert_eq!(code, Some(3), "stderr: {lines:?}");
    assert!(
        lines.iter().any(|l| l
            == "otap-df: 300 records were not delivered (dead-lettered or failed; see the \
                `failed=` counters), and --fail-on-loss was given"),
        "{lines:?}"
    );
}

#[test]
fn at_shutdown_without_a_dead_letter_file_what_is_given_up_is_counted_lost_and_the_exit_code_says_so()
 {
    let temp = TempDir::new("lost");
    let dir = temp.dir();
    let port = free_port();
    let config = stuck_gateway(dir, port, "");
    let mut run = RunningBinary::start_with(&config, &["--shutdown-timeout", "2"]);
    acknowledge_then_stop(&mut run, port);
    let (lines, code) = run.finish();
    assert_eq!(code, Some(3), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(counter(last, "otlp_in", "accepted"), Some(30), "{last}");
    assert_eq!(counter(last, "otlp_out", "lost"), Some(300), "{last}");
    assert_eq!(counter(last, "otlp_out", "failed"), Some(300), "{last}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("otap-df: 300 records were lost")),
        "{lines:?}"
    );
}

#[test]
fn out_of_file_descriptors_the_receiver_backs_off_logs_rarely_and_recovers() {
    use std::io::{Read, Write};
    let temp = TempDir::new("emfile");
    let dir = temp.dir();
    let port = free_port();
    let config = receiver_to_noop(dir, port, 1);
    // The process may hold 64 descriptors: 100 connections run it out.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec '{}' run --progress-interval 0.2 '{}'",
            env!("CARGO_BIN_EXE_otap-df"),
            config.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh starts");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let held: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    // Long enough for many failed accepts if the loop spun (it did millions a second).
    std::thread::sleep(std::time::Duration::from_secs(2));
    drop(held);
    // Descriptors come back as the receiver sees its connections close: a request gets in.
    let body = otap_df::nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "t", 1);
    let mut answered = String::new();
    while !answered.starts_with("HTTP/1.1 200") {
        assert!(
            std::time::Instant::now() < deadline + std::time::Duration::from_secs(10),
            "no recovery: {answered}"
        );
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = write!(
            stream,
            "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.bytes().len()
        );
        let _ = stream.write_all(body.bytes());
        answered.clear();
        let _ = stream.read_to_string(&mut answered);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("ends");
    let lines = reader.join().expect("stderr lines");
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let warnings = lines.iter().filter(|l| l.contains("accept failed")).count();
    // At most one warning a second (plus one at the edges) over about two seconds.
    assert!(
        (1..=4).contains(&warnings),
        "{warnings} warnings: {lines:?}"
    );
    let last = final_line(&lines);
    assert!(
        counter(last, "otlp_in", "connections.accept_errors").is_some_and(|n| n >= 1),
        "{last}"
    );
    assert_eq!(counter(last, "otlp_in", "accepted"), Some(1), "{last}");
}

#[test]
fn memory_kv_is_one_store_for_all_cores_so_dedup_sees_duplicates_across_cores() {
    let temp = TempDir::new("dedup-cores");
    let dir = temp.dir();
    let port = free_port();
    let out = dir.join("out.bin");
    let yaml = |per_core: &str| {
        format!(
            "version: otap_df/v1
engine: {{ cores: 2 }}
groups:
  g:
    pipelines:
      p:
        extensions:
          seen: {{ type: extension:memory_kv{per_core} }}
        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: seen }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: otlp_in, to: dedup }}
          - {{ from: dedup, to: out }}
",
            out.display()
        )
    };
    let config = dir.join("dedup.yaml");
    // `per_core: true` is the opt-out, and says what it is.
    std::fs::write(&config, yaml(", config: { per_core: true }")).expect("write config");
    let validated = otap_df(&["validate", config.to_str().expect("utf-8")]);
    assert!(
        text(&validated.stdout).contains("extension:memory_kv  [local, one per core (2)]"),
        "{}",
        text(&validated.stdout)
    );
    std::fs::write(&config, yaml("")).expect("write config");
    let validated = otap_df(&["validate", config.to_str().expect("utf-8")]);
    assert!(
        text(&validated.stdout).contains("extension:memory_kv  [shared, one for all cores]"),
        "{}",
        text(&validated.stdout)
    );
    let mut run = RunningBinary::start(&config);
    run.wait_for("both receivers listening", |_| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The same request 20 times, each on a new connection: the kernel spreads them over
    // both cores' listeners.
    for _ in 0..20 {
        assert_eq!(post_logs(port, 10), 200);
    }
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    let last = final_line(&lines);
    assert_eq!(counter(last, "dedup", "dropped"), Some(190), "{last}");
    let written: u64 = (0..2)
        .map(|core| otap_df::nodes::payload_file::core_path(&out, core))
        .filter(|path| path.exists())
        .flat_map(|path| otap_df::nodes::read_payloads(&path).expect("payload file"))
        .map(|payload| payload.records())
        .sum();
    assert_eq!(written, 10, "{last}");
}

#[test]
fn a_second_process_on_the_same_address_fails_to_start_whatever_the_cores() {
    let temp = TempDir::new("second-bind");
    let dir = temp.dir();
    let port = free_port();
    let config = receiver_to_noop(dir, port, 2);
    let mut first = RunningBinary::start(&config);
    first.wait_for("the receivers listening", |line| {
        line.contains("OTLP/HTTP receiver listening")
    });
    let second = otap_df(&["run", "--quiet", config.to_str().expect("utf-8")]);
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on `127.0.0.1:{port}`"))
            && stderr.contains("Address already in use"),
        "{stderr}"
    );
    // The first one still has the address to itself.
    for _ in 0..10 {
        assert_eq!(post_logs(port, 2), 200);
    }
    first.signal("-TERM");
    let (lines, code) = first.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(counter(final_line(&lines), "otlp_in", "accepted"), Some(10));
}

/// `receiver:otlp_http` on `port` → `exporter:noop`, on `cores` cores, written into `dir`.
fn receiver_to_noop(dir: &Path, port: u16, cores: usize) -> PathBuf {
    let config = dir.join("receiver.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
engine: {{ cores: {cores} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          out: {{ type: exporter:noop }}
        connections:
          - {{ from: otlp_in, to: out }}
"
        ),
    )
    .expect("write config");
    config
}

#[test]
fn an_empty_file_path_and_a_token_in_the_host_header_are_configuration_errors() {
    let temp = TempDir::new("config-checks");
    let dir = temp.dir();
    let config = dir.join("bad.yaml");
    std::fs::write(
        &config,
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          tokens: { type: extension:bearer_auth, config: { token: t1, header: Host } }
        nodes:
          gen: { type: receiver:generator, config: { count: 1 } }
          out: { type: exporter:file, config: { path: '' } }
          up: { type: exporter:otlp_http, config: { endpoint: 'http://127.0.0.1:4318' }, capabilities: { bearer_token_provider: tokens } }
        connections:
          - { from: gen, to: out }
          - { from: gen, to: up }
",
    )
    .expect("write config");
    let output = otap_df(&["validate", config.to_str().expect("utf-8")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "at `groups.g.pipelines.p.extensions.tokens.config.header`: `Host` frames or routes \
             the HTTP message and cannot carry a token"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "at `groups.g.pipelines.p.nodes.out.config.path`: `path` is empty; name the file to write"
        ),
        "{stderr}"
    );
}

/// A finite pipeline whose configuration draws a warning (an extension nothing binds), so
/// that `run` writes a log line besides its final summary.
fn warned_config(dir: &TempDir) -> PathBuf {
    let config = dir.path("warned.yaml");
    std::fs::write(
        &config,
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          spare: { type: extension:memory_kv }
        nodes:
          gen: { type: receiver:generator, config: { batch_size: 2, count: 5 } }
          out: { type: exporter:noop }
        connections:
          - { from: gen, to: out }
",
    )
    .unwrap();
    config
}

#[test]
fn run_writes_plain_lines_off_a_terminal_with_no_progress_and_one_final_line() {
    let dir = TempDir::new("cli-plain-logs");
    let config = warned_config(&dir);
    let output = otap_df(&["run", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        !output.stderr.contains(&0x1b),
        "no escape byte in redirected logs: {:?}",
        text(&output.stderr)
    );
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("`spare`")),
        "{stderr}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("progress:")),
        "{stderr}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("final: ")).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn run_with_json_logs_writes_one_json_object_per_line_summaries_included() {
    let dir = TempDir::new("cli-json-logs");
    let config = warned_config(&dir);
    let output = otap_df(&[
        "run",
        "--log-format",
        "json",
        "--progress",
        "--progress-interval",
        "0.1",
        config.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "WARN"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("`spare`"))),
        "{stderr}"
    );
    let last = events.last().expect("events");
    assert_eq!(last["fields"]["kind"], "final", "{stderr}");
    assert_eq!(
        last["fields"]["summary"],
        "gen in=10 out=10 | out in=10 out=10"
    );
    assert!(
        events.iter().all(|e| e["timestamp"].is_string()),
        "{stderr}"
    );
}

#[test]
fn run_with_json_logs_reports_a_bad_configuration_as_json_errors() {
    let dir = TempDir::new("cli-json-errors");
    let config = dir.path("bad.yaml");
    std::fs::write(&config, "version: otap_df/v1\ngroups: {}\nextra: 1\n").unwrap();
    let output = otap_df(&["run", "--log-format", "json", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let event: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| {
        panic!("one JSON error event ({e}): {stderr}");
    });
    assert_eq!(event["level"], "ERROR");
    assert!(
        event["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3:1: at `extra`: unknown field `extra`")),
        "{stderr}"
    );
}

/// A base configuration with a secret, for the layered-configuration tests.
fn layered_base(dir: &TempDir) -> PathBuf {
    let base = dir.path("base.yaml");
    std::fs::write(
        &base,
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          auth: { type: extension:bearer_auth, config: { token: s3cret-value } }
          store: { type: extension:redis_kv_not_here_but_memory, config: {} }
        nodes:
          gen: { type: receiver:generator, config: { batch_size: 2, count: 5 } }
          out: { type: exporter:noop }
        connections:
          - { from: gen, to: out }
",
    )
    .unwrap();
    base
}

#[test]
fn several_files_merge_in_order_and_each_error_names_its_file() {
    let dir = TempDir::new("cli-layers");
    let base = layered_base(&dir);
    // The second file fixes the first one's unknown type and breaks a value of its own.
    let over = dir.path("over.yaml");
    std::fs::write(
        &over,
        "groups:
  g:
    pipelines:
      p:
        extensions:
          store: { type: extension:memory_kv }
        nodes:
          gen: { config: { batch_size: 0 } }
",
    )
    .unwrap();
    let (base, over) = (base.to_str().unwrap(), over.to_str().unwrap());
    let output = otap_df(&["validate", base, "--config", over]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "1 error in {base}, {over}\n  {over}:8:28: at `groups.g.pipelines.p.nodes.gen.config.batch_size`: `batch_size` must be between 1 and 1000000 records\n"
        )
    );
    // Fixed by an override, applied after every file.
    let output = otap_df(&[
        "validate",
        base,
        "--config",
        over,
        "--set",
        "groups.g.pipelines.p.nodes.gen.config.batch_size=3",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with(&format!(
            "{base}, {over}, --set groups.g.pipelines.p.nodes.gen.config.batch_size=3: valid (1 core)\n"
        )),
        "{}",
        text(&output.stdout)
    );
    // An override's own error names the override.
    let output = otap_df(&[
        "validate",
        base,
        "--config",
        over,
        "--set",
        "groups.g.pipelines.p.nodes.gen.config.batch_size=many",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(
            "  `--set groups.g.pipelines.p.nodes.gen.config.batch_size=many`: at `groups.g.pipelines.p.nodes.gen.config.batch_size`: invalid type: string \"many\""
        ),
        "{}",
        text(&output.stderr)
    );
    let output = otap_df(&["validate", base, "--set", "engine.cores"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "otap-df: `--set engine.cores`: expected PATH=VALUE, e.g. `--set engine.cores=2`\n"
    );
}

#[test]
fn a_configuration_can_come_from_standard_input() {
    use std::io::Write as _;
    let dir = TempDir::new("cli-stdin");
    let base = std::fs::read_to_string(layered_base(&dir))
        .unwrap()
        .replace("redis_kv_not_here_but_memory", "memory_kv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(base.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("<stdin>: valid (1 core)\n"));
    let output = otap_df(&["validate"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "otap-df: no configuration: give a file (`otap-df run config.yaml`), `--config FILE`, or `-` to read standard input\n"
    );
}

#[test]
fn print_config_shows_the_merged_configuration_with_secrets_redacted() {
    let dir = TempDir::new("cli-print-config");
    let base = layered_base(&dir);
    let base = base.to_str().unwrap();
    let output = otap_df(&[
        "print-config",
        base,
        "--set",
        "groups.g.pipelines.p.extensions.store.type=extension:memory_kv",
        "--set",
        "engine.cores=2",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains("s3cret-value"), "{stdout}");
    let shown: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stdout).expect("YAML");
    assert_eq!(shown["engine"]["cores"], 2);
    let extensions = &shown["groups"]["g"]["pipelines"]["p"]["extensions"];
    assert_eq!(extensions["auth"]["config"]["token"], "<redacted>");
    assert_eq!(extensions["store"]["type"], "extension:memory_kv");
    // A configuration that would not run is not printed: its errors are.
    let output = otap_df(&["print-config", base]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output.stderr).contains("unknown extension type `redis_kv_not_here_but_memory`"),
        "{}",
        text(&output.stderr)
    );
}

/// A pipeline and `engine:` block `engine` for the admin endpoint tests.
fn with_engine(engine: &str) -> String {
    format!(
        "version: otap_df/v1
engine:
{engine}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:4318' }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
    )
}

#[test]
fn validate_warns_of_an_admin_endpoint_reachable_beyond_this_machine_and_how_to_narrow_it() {
    let dir = TempDir::new("cli-admin-warn");
    for (engine, warning) in [
        (
            "  admin: { listen: '0.0.0.0:8888' }",
            ":3:12: at `engine.admin.listen`: the admin endpoint listens on 0.0.0.0:8888, beyond this machine: anyone who reaches \
             it can read its status and metrics and reload the configuration; keep it on \
             loopback (the default, `127.0.0.1:8888`), or bind a token",
        ),
        (
            "  admin:\n    listen: '10.0.0.5:8888'\n    capabilities: { bearer_token_authorizer: admins }\n  extensions:\n    admins: { type: extension:bearer_auth, config: { tokens: [t] } }",
            ":4:5: at `engine.admin.listen`: the admin endpoint listens on 10.0.0.5:8888, \
             beyond this machine: anyone who \
             reaches it can read its status and metrics (a reload needs the token); keep it on \
             loopback, or set `require_token_for: all`",
        ),
    ] {
        let config = dir.path("admin.yaml");
        std::fs::write(&config, with_engine(engine)).unwrap();
        let output = otap_df(&["validate", &config.display().to_string()]);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(stdout.contains(warning), "{stdout}");
    }
    // On loopback (the default when `listen` is left out), or guarded entirely: no warning.
    for engine in [
        "  admin: {}",
        "  admin:\n    listen: '0.0.0.0:8888'\n    require_token_for: all\n    capabilities: { bearer_token_authorizer: admins }\n  extensions:\n    admins: { type: extension:bearer_auth, config: { tokens: [t] } }",
    ] {
        let config = dir.path("admin.yaml");
        std::fs::write(&config, with_engine(engine)).unwrap();
        let output = otap_df(&["validate", &config.display().to_string()]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(
            !text(&output.stdout).contains("warning"),
            "{}",
            text(&output.stdout)
        );
    }
}

#[test]
fn an_admin_binding_that_cannot_hold_is_an_error_where_it_is_written() {
    for (engine, error) in [
        (
            "  admin:\n    capabilities: { bearer_token_authorizer: admin }\n  extensions:\n    admins: { type: extension:bearer_auth, config: { tokens: [t] } }",
            ":4:21: at `engine.admin.capabilities.bearer_token_authorizer`: the admin endpoint \
             binds `bearer_token_authorizer` to extension `admin`, which `engine.extensions` does \
             not declare (the admin endpoint binds engine extensions only); engine extensions: \
             `admins` (did you mean `admins`?)",
        ),
        (
            "  admin:\n    capabilities: { key_value_store: store }\n  extensions:\n    store: { type: extension:memory_kv }",
            "at `engine.admin.capabilities.key_value_store`: the admin endpoint binds only \
             `bearer_token_authorizer` (the extension that decides on its token), not \
             `key_value_store`",
        ),
        (
            "  admin:\n    capabilities: { bearer_token_authorizer: store }\n  extensions:\n    store: { type: extension:memory_kv }",
            "extension `store` (type `memory_kv`) does not provide `bearer_token_authorizer`; it \
             provides: `key_value_store`",
        ),
        (
            "  admin: { max_connections: 0 }",
            "at `engine.admin.max_connections`: `max_connections` must be between 1 and 4096",
        ),
        (
            "  admin: { header_read_timeout: 1ms }",
            "at `engine.admin.header_read_timeout`: `header_read_timeout` must be between 100ms \
             and 10m",
        ),
        (
            "  admin: { require_token_for: everything }",
            "unknown variant `everything`, expected `mutating` or `all`",
        ),
    ] {
        let (_, stderr) = validate_refuses("admin.yaml", with_engine(engine));
        assert!(stderr.contains(error), "{engine}\n{stderr}");
    }
}
