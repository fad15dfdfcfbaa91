//! Shared and local extensions log their lifecycle alike: one start routine serves both.
//! A test binary of its own, as it installs the process-wide log capture.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::time::Duration;

use otap_df_core::resolve::load_with_env;
use otap_df_core::runtime::{Engine, RunOptions};
use otap_df_tests::logs::capture_all;
use otap_df_tests::recording;

#[test]
fn an_unclaimed_extension_is_logged_the_same_whether_shared_or_local() {
    let logs = capture_all();
    for (id, extension_type) in [
        ("spare_shared", "recorder"),
        ("spare_local", "local_recorder"),
    ] {
        let text = format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          {id}: {{ type: extension:{extension_type}, config: {{ log: unclaimed-logs, behaviour: ready }} }}
        nodes:
          source: {{ type: receiver:recording_source, config: {{ log: unclaimed-logs, count: 1 }} }}
          sink:
            type: exporter:recording_sink
            config: {{ log: unclaimed-logs, ignore_store: true }}
            capabilities: {{ key_value_store: {id} }}
        connections:
          - {{ from: source, to: sink }}
"
        );
        let resolved =
            load_with_env(&text, "logs.yaml", &recording::registry(), &|_| None).expect("valid");
        Engine::new(
            resolved,
            RunOptions {
                shutdown_timeout: Duration::from_secs(5),
                ..otap_df_tests::engine::one_core_options()
            },
        )
        .run()
        .expect("a clean run");
    }
    let text = logs.text();
    let line = |id: &str| {
        text.lines()
            .find(|line| {
                line.contains("no node claimed") && line.contains(&format!("extension={id}"))
            })
            .unwrap_or_else(|| panic!("nothing logged for `{id}`:\n{text}"))
            .split_once(" WARN ")
            .map(|(_, rest)| rest.to_owned())
            .unwrap()
    };
    assert_eq!(
        line("spare_shared"),
        "otap_df_core::runtime::extensions: no node claimed the extension; not starting it pipeline=g/p extension=spare_shared core=None"
    );
    assert_eq!(
        line("spare_local"),
        "otap_df_core::runtime::extensions: no node claimed the extension; not starting it pipeline=g/p extension=spare_local core=Some(0)"
    );
}
