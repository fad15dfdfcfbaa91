//! The real `otap-df` binary on real configuration files.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::path::Path;
use std::process::{Command, Output};

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
    dedup_store  extension:memory_kv  [local, one per core (1)]
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
  {path}:7:20: at `{p}.extensions.store.type`: unknown extension type `memroy_kv`; registered extension types: `bearer_auth`, `memory_kv` (did you mean `memory_kv`?)
  {path}:8:17: at `{p}.extensions.az.type`: extension type `azure_auth` is not compiled in: enable cargo feature `extension-azure-auth`
  {path}:10:54: at `{p}.nodes.gen.config.batch_sise`: unknown field `batch_sise`; valid fields: `signal`, `batch_size`, `count`, `rate`, `duplicate_ratio`, `encoding` (did you mean `batch_size`?)
  {path}:14:26: at `{p}.connections[0].to`: unknown node `dedpu`; nodes of this pipeline: `gen`, `dedup`, `out` (did you mean `dedup`?)
"
        )
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
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
    assert!(stdout.contains("  processor:dedup  drops batches already seen within a TTL, using a key/value store\n      accepts: key_value_store (required)\n"), "{stdout}");
    assert!(
        stdout.ends_with(
            "not compiled in:
  extension:azure_auth  enable cargo feature `extension-azure-auth`
  extension:redis_kv  enable cargo feature `extension-redis-kv`
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
            let path = otap_df::nodes::file::core_path(&dir.join(format!("out-{cores}.bin")), core);
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

/// The `out=` count of node `node` in a progress or final line.
fn records_out(line: &str, node: &str) -> Option<u64> {
    let part = line
        .split(" | ")
        .map(|part| {
            part.trim_start_matches("progress: ")
                .trim_start_matches("final: ")
        })
        .find(|part| part.starts_with(&format!("{node} ")))?;
    part.split(' ')
        .find_map(|field| field.strip_prefix("out="))
        .and_then(|n| n.parse().ok())
}

#[test]
fn sigterm_mid_run_shuts_down_gracefully_and_loses_nothing_accepted() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = std::env::temp_dir().join(format!("otap-df-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("out.bin");
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_otap-df"))
        .args(["run", "--progress-interval", "0.1"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the otap-df binary starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // Wait until records flow (the generator never finishes by itself).
    let mut seen = Vec::new();
    for line in stderr.by_ref() {
        let line = line.expect("stderr line");
        seen.push(line.clone());
        if line.starts_with("progress:") && records_out(&line, "gen").is_some_and(|n| n > 0) {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.starts_with("progress:")),
        "no progress before the process ended: {seen:?}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let rest: Vec<String> = stderr.map(|l| l.expect("stderr line")).collect();
    let status = child.wait().expect("the process ends");
    assert_eq!(status.code(), Some(0), "stderr: {seen:?} {rest:?}");
    let last = rest
        .iter()
        .find(|line| line.starts_with("final: "))
        .unwrap_or_else(|| panic!("no final line: {rest:?}"));
    let sent = records_out(last, "gen").expect("gen count");
    let exported = records_out(last, "out").expect("out count");
    let in_file: u64 = otap_df::nodes::read_payloads(&out)
        .expect("payload file")
        .iter()
        .map(|payload| payload.records())
        .sum();
    assert!(sent > 0);
    assert_eq!((exported, in_file), (sent, sent), "{last}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
