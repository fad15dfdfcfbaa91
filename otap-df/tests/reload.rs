//! Live reconfiguration through the real binary: SIGHUP and `POST /reload` re-read the
//! configuration file, validate it completely and apply it while clients keep sending: in
//! place (a `bearer_auth`'s tokens) or with a new instance (an option the running one cannot
//! take); an invalid file or a change that needs a restart leaves the running configuration
//! as it was, and says why.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use otap_df_tests::temp::TempDir;
use support::binary::{RunningBinary, counter, final_line, records_out};
use support::{free_port, get, post, reload, wait_ready};

/// A receiver on `otlp` guarded by an engine-level `bearer_auth` accepting `tokens`, into a
/// noop exporter; `header` is the token's header; the admin endpoint on `admin`.
fn write_config(path: &Path, admin: u16, otlp: u16, tokens: &str, header: &str) {
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
  extensions:
    callers: {{ type: extension:bearer_auth, config: {{ tokens: [{tokens}], header: {header} }} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}' }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        ),
    )
    .unwrap();
}

/// One OTLP/HTTP logs request of 5 records with `token`: the status.
fn send(otlp: u16, token: &str) -> u16 {
    send_in(otlp, "authorization", token)
}

/// One OTLP/HTTP logs request of 5 records with `token` in header `header`: the status.
fn send_in(otlp: u16, header: &str, token: &str) -> u16 {
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    let bearer = format!("Bearer {token}");
    let headers = [
        ("content-type", "application/x-protobuf"),
        (header, bearer.as_str()),
    ];
    post(otlp, "/v1/logs", &headers, logs.bytes().clone())
        .status
        .as_u16()
}

/// A client that keeps sending with `token` until stopped: the status of every request.
struct Sender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<u16>>,
}

impl Sender {
    fn start(otlp: u16, token: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (stopping, counting) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                statuses.push(send(otlp, token));
                counting.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        });
        Self { stop, sent, thread }
    }

    /// Stops it once it has answers for two requests more than it had when asked (a bounded
    /// wait: a slow first connection must not end the test with one request sent): it kept
    /// sending across what the test did before, and none was refused.
    fn stop_with_no_refusal(self) {
        let target = self.sent.load(Ordering::Relaxed) + 2;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.sent.load(Ordering::Relaxed) < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the client stopped getting answers"
            );
            std::thread::yield_now();
        }
        self.stop.store(true, Ordering::Relaxed);
        let statuses = self.thread.join().unwrap();
        assert!(statuses.len() > 1, "the client kept sending: {statuses:?}");
        assert!(
            statuses.iter().all(|&status| status == 200),
            "no request refused because of the swap: {:?}",
            statuses.iter().filter(|&&s| s != 200).collect::<Vec<_>>()
        );
    }
}

struct Setup {
    _dir: TempDir,
    config: PathBuf,
    admin: u16,
    otlp: u16,
    run: RunningBinary,
}

fn start(name: &str) -> Setup {
    let dir = TempDir::new(name);
    let config = dir.path("reload.yaml");
    let (admin, otlp) = (free_port(), free_port());
    write_config(&config, admin, otlp, "old-token", "Authorization");
    let run = RunningBinary::start(&config);
    wait_ready(admin);
    Setup {
        _dir: dir,
        config,
        admin,
        otlp,
        run,
    }
}

/// Ends the run with SIGTERM: every accepted record was delivered.
fn finish(run: RunningBinary) {
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(records_out(last, "in"), records_out(last, "out"), "{last}");
}

#[test]
fn sighup_applies_a_new_accepted_token_while_clients_keep_sending_without_a_refusal() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        mut run,
    } = start("reload-sighup");
    assert_eq!(send(otlp, "new-token"), 401, "not accepted yet");
    let sender = Sender::start(otlp, "old-token");
    write_config(
        &config,
        admin,
        otlp,
        "old-token, new-token",
        "Authorization",
    );
    run.signal("-HUP");
    run.wait_for("the reload applied", |line| {
        line.contains("reload: applied to extension `callers` of the engine")
    });
    assert_eq!(send(otlp, "new-token"), 200, "accepted without a restart");
    sender.stop_with_no_refusal();
    // A token taken out is refused from then on.
    write_config(&config, admin, otlp, "new-token", "Authorization");
    assert_eq!(
        reload(admin),
        (
            200,
            serde_json::json!({ "result": "applied", "updated": ["extension `callers` of the engine"] })
        )
    );
    assert_eq!(send(otlp, "old-token"), 401);
    assert_eq!(send(otlp, "new-token"), 200);
    finish(run);
}

#[test]
fn an_invalid_new_configuration_leaves_the_running_one_and_says_where_it_is_wrong() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        mut run,
    } = start("reload-invalid");
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, valid.replace("tokens: [", "tokenz: [")).unwrap();
    let (status, answer) = reload(admin);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "invalid");
    let errors = answer["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| {
            let e = e.as_str().unwrap();
            e.contains(":5:")
                && e.contains("engine.extensions.callers.config")
                && e.contains("unknown field `tokenz`")
        }),
        "{answer}"
    );
    // By signal too: logged, and the run goes on with the old tokens.
    run.signal("-HUP");
    run.wait_for("the invalid reload logged", |line| {
        line.contains("reload: the configuration was not applied, the running one stays")
    });
    assert_eq!(send(otlp, "old-token"), 200);
    assert_eq!(get(admin, "/readyz").status, 200);
    finish(run);
}

#[test]
fn a_changed_pipeline_is_replaced_while_clients_keep_sending_and_the_old_one_drains() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        run,
    } = start("reload-replace");
    let sender = Sender::start(otlp, "old-token");
    // Another exporter: the pipeline is rebuilt; its receiver keeps the bound socket.
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, valid.replace("exporter:noop", "exporter:debug")).unwrap();
    let (status, answer) = reload(admin);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "result": "applied", "replaced": ["pipeline `g/p`"] })
    );
    // The new version serves: the status shows its exporter.
    let status: serde_json::Value = serde_json::from_slice(&get(admin, "/status").body).unwrap();
    assert_eq!(status["pipelines"][0]["nodes"][1]["type"], "exporter:debug");
    assert_eq!(send(otlp, "old-token"), 200);
    sender.stop_with_no_refusal();
    // Every record accepted by either version was delivered (the final line sums both).
    finish(run);
}

#[test]
fn a_reload_to_a_configuration_without_a_pipeline_is_refused_and_everything_keeps_running() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        run,
    } = start("reload-empty");
    std::fs::write(
        &config,
        format!("version: otap_df/v1\nengine:\n  admin: {{ listen: '127.0.0.1:{admin}' }}\ngroups: {{}}\n"),
    )
    .unwrap();
    let (status, answer) = reload(admin);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "invalid");
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{answer}");
    assert!(
        errors[1].as_str().unwrap().ends_with(
            ":4:1: at `groups`: the configuration has no pipeline, so the engine would have \
             nothing to run; add one under `groups.<group>.pipelines` (to stop a running \
             engine, send it SIGTERM)"
        ),
        "{answer}"
    );
    // The running pipeline still serves, and the engine can still be reloaded.
    assert_eq!(send(otlp, "old-token"), 200);
    write_config(&config, admin, otlp, "old-token", "Authorization");
    assert_eq!(
        reload(admin),
        (200, serde_json::json!({ "result": "unchanged" }))
    );
    finish(run);
}

#[test]
fn a_change_that_needs_a_restart_is_refused_as_a_whole_with_its_reasons() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        run,
    } = start("reload-restart");
    // A new token and another number of cores in one change: nothing is applied.
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        valid
            .replace("tokens: [old-token]", "tokens: [old-token, new-token]")
            .replace("engine:\n", "engine:\n  cores: 2\n"),
    )
    .unwrap();
    let (status, answer) = reload(admin);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "result": "needs_restart", "reasons": ["`engine.cores` changed"] })
    );
    assert_eq!(send(otlp, "new-token"), 401, "nothing applied");
    // The same file again: unchanged.
    write_config(&config, admin, otlp, "old-token", "Authorization");
    assert_eq!(
        reload(admin),
        (200, serde_json::json!({ "result": "unchanged" }))
    );
    finish(run);
}

#[test]
fn an_option_the_running_instance_cannot_take_gets_a_new_instance_while_clients_keep_sending() {
    let Setup {
        _dir,
        config,
        admin,
        otlp,
        run,
    } = start("reload-new-instance");
    let sender = Sender::start(otlp, "old-token");
    // `reload_interval` is fixed at start: the engine's `callers` gets a new instance, ready
    // before the pipeline that binds it is replaced; the client sees no refusal.
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        valid.replace(
            "header: Authorization",
            "header: Authorization, reload_interval: 5s",
        ),
    )
    .unwrap();
    let replaced = serde_json::json!({
        "result": "applied",
        "replaced": ["extension `callers` of the engine", "pipeline `g/p`"]
    });
    assert_eq!(reload(admin), (200, replaced.clone()));
    assert_eq!(send(otlp, "old-token"), 200);
    sender.stop_with_no_refusal();
    // Another header: the instance refuses it in place, so a new one serves it.
    write_config(&config, admin, otlp, "old-token, new-token", "X-Token");
    assert_eq!(reload(admin), (200, replaced));
    assert_eq!(send_in(otlp, "x-token", "new-token"), 200);
    assert_eq!(
        send(otlp, "new-token"),
        401,
        "the old header no longer counts"
    );
    assert_eq!(get(admin, "/readyz").status, 200);
    finish(run);
}

/// Two pipelines behind receivers on `files` and `dead`: one into `exporter:file` writing
/// `out`, one into an exporter whose upstream refuses connections, dead-lettering into
/// `dead_letters`; `version` goes into both receivers' config, so that each new value
/// replaces both pipelines.
fn write_payload_file_config(
    path: &Path,
    admin: u16,
    (files, dead): (u16, u16),
    (out, dead_letters): (&Path, &Path),
    version: usize,
) {
    let closed = free_port();
    let receiver = |port: u16| {
        format!(
            "{{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}', max_connections: {} }} }}",
            100 + version
        )
    };
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
groups:
  g:
    pipelines:
      files:
        nodes:
          in: {}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections: [ {{ from: in, to: out }} ]
      dead:
        nodes:
          in: {}
          up: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{closed}', retry: {{ enabled: false }}, dead_letter_file: '{}' }} }}
        connections: [ {{ from: in, to: up }} ]
",
            receiver(files),
            out.display(),
            receiver(dead),
            dead_letters.display(),
        ),
    )
    .unwrap();
}

#[test]
fn payload_files_read_back_exactly_whatever_reloads_replaced_their_writers() {
    let dir = TempDir::new("reload-payload-files");
    let config = dir.path("reload.yaml");
    let (out, dead_letters) = (dir.path("out.bin"), dir.path("dead.bin"));
    let (admin, files, dead) = (free_port(), free_port(), free_port());
    let write = |version| {
        write_payload_file_config(
            &config,
            admin,
            (files, dead),
            (&out, &dead_letters),
            version,
        );
    };
    write(0);
    let run = RunningBinary::start(&config);
    wait_ready(admin);
    let replaced = serde_json::json!({
        "result": "applied",
        "replaced": ["pipeline `g/files`", "pipeline `g/dead`"]
    });
    // Versions that open both files before anything is written to them, then versions that
    // each write some payloads while the previous one drains.
    for version in 1..=3 {
        write(version);
        assert_eq!(reload(admin), (200, replaced.clone()), "reload {version}");
    }
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    let headers = [("content-type", "application/x-protobuf")];
    for version in 4..24 {
        for port in [files, dead] {
            let answer = post(port, "/v1/logs", &headers, logs.bytes().clone());
            assert_eq!(answer.status, 200, "request before reload {version}");
        }
        write(version);
        assert_eq!(reload(admin), (200, replaced.clone()), "reload {version}");
    }
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(records_out(last, "g/files/out"), Some(100), "{last}");
    assert_eq!(
        counter(last, "g/dead/up", "dead_lettered"),
        Some(100),
        "{last}"
    );
    for file in [&out, &dead_letters] {
        let payloads = otap_df::nodes::read_payloads(file)
            .unwrap_or_else(|e| panic!("{} reads back: {e}", file.display()));
        assert_eq!(payloads.len(), 20, "{}", file.display());
        assert!(payloads.iter().all(|p| p.bytes() == logs.bytes()));
    }
}
