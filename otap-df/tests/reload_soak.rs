//! Memory and threads over thousands of reloads, through the real binary: after a warm-up of
//! 500 reloads, 2,000 reloads that each replace the pipeline (its receiver and its own
//! extension get new instances) and a burst of 300 SIGHUPs leave the resident memory within
//! 1 MB and the thread count as they were. Linux only: it reads `/proc/<pid>/status`.

#![cfg(target_os = "linux")]
#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::path::Path;

use otap_df_tests::temp::TempDir;
use support::binary::{RunningBinary, final_line};
use support::{free_port, post, wait_ready};

/// A receiver guarded by the pipeline's own `bearer_auth` into a noop exporter; `version`
/// goes into the receiver's config, so that each new value replaces the pipeline.
fn write_config(path: &Path, admin: u16, otlp: u16, version: usize) {
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
groups:
  g:
    pipelines:
      p:
        extensions:
          callers: {{ type: extension:bearer_auth, config: {{ tokens: [soak-token] }} }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}', admission_timeout: {}ms }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
",
            1000 + version % 50_000
        ),
    )
    .unwrap();
}

/// `VmRSS` in KiB and `Threads` of process `pid`.
fn footprint(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("Threads:"))
}

/// Writes version `version` and reloads it: the pipeline is replaced.
fn replace(config: &Path, admin: u16, otlp: u16, version: usize) {
    write_config(config, admin, otlp, version);
    let answer = post(admin, "/reload", &[], Vec::new());
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        (answer.status.as_u16(), body),
        (
            200,
            serde_json::json!({ "result": "applied", "replaced": ["pipeline `g/p`"] })
        ),
        "reload {version}"
    );
}

/// One logs request with the accepted token: its status.
fn send(otlp: u16) -> u16 {
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("authorization", "Bearer soak-token"),
    ];
    post(otlp, "/v1/logs", &headers, logs.bytes().clone())
        .status
        .as_u16()
}

#[test]
fn two_thousand_replacing_reloads_and_a_burst_of_sighups_leave_memory_and_threads_flat() {
    let dir = TempDir::new("reload-soak");
    let config = dir.path("soak.yaml");
    let (admin, otlp) = (free_port(), free_port());
    write_config(&config, admin, otlp, 0);
    let mut run = RunningBinary::start(&config);
    // Thousands of reloads log more than a pipe holds.
    run.drain_in_background();
    wait_ready(admin);
    let pid = run.id();
    // Warm-up: the allocator's arenas and every lazily made structure reach their size
    // (measured: resident memory settles within the first 500 reloads).
    let mut version = 0;
    for _ in 0..500 {
        version += 1;
        replace(&config, admin, otlp, version);
    }
    assert_eq!(send(otlp), 200);
    let before = footprint(pid);
    for round in 0..2_000 {
        version += 1;
        replace(&config, admin, otlp, version);
        if round % 500 == 0 {
            assert_eq!(send(otlp), 200, "serving after reload {version}");
        }
    }
    // 300 signals: reloads run one at a time on one thread, a burst costs one more reload.
    for _ in 0..300 {
        run.signal("-HUP");
    }
    // Served after the signals' reload: the burst is over when it answers.
    let answer = post(admin, "/reload", &[], Vec::new());
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(send(otlp), 200);
    let after = footprint(pid);
    assert_eq!(
        after.1, before.1,
        "threads: before {before:?}, after {after:?}"
    );
    assert!(
        after.0 <= before.0 + 1024,
        "resident memory grew by more than 1 MB over 2,000 reloads: {} KiB -> {} KiB",
        before.0,
        after.0
    );
    run.signal("-TERM");
    let (lines, code) = run.finish();
    let last = final_line(&lines);
    assert_eq!(code, Some(0), "{last}");
    // Six requests of 5 records: one after the warm-up, four during the reloads, one at the
    // end; every version counted.
    assert!(last.starts_with("final: in in=30 out=30"), "{last}");
}
