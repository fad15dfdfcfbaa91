//! The third-party path end to end: a binary made of the unchanged facade and a crate that
//! depends on `otap-df-core` only lists the crate's extension and runs a pipeline bound to it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::process::{Command, Output};

fn collector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acme-collector"))
        .args(args)
        .output()
        .expect("the acme-collector binary runs")
}

#[test]
fn components_lists_the_third_party_extension() {
    let output = collector(&["components"]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "  extension:acme_kv  third-party example: a local key/value store\n      provides: key_value_store  (local)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("      provides: key_value_store  (local)\n      from: acme-otap-kv\n"),
        "{stdout}"
    );
}

#[test]
fn the_distribution_owns_its_name_and_version() {
    let version = collector(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("acme-collector {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = collector(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.starts_with("Acme's telemetry collector: otap-df with extension:acme_kv\n\nUsage: acme-collector <COMMAND>"),
        "{help}"
    );
    let missing = collector(&["validate", "no/such.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("acme-collector: cannot read `no/such.yaml`: "),
        "{stderr}"
    );
}

#[test]
fn a_pipeline_deduplicates_through_the_third_party_store() {
    let dir = std::env::temp_dir().join(format!("acme-collector-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("out.bin");
    let config = dir.join("acme.yaml");
    std::fs::write(
        &config,
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {{ type: extension:acme_kv, config: {{ default_ttl: 10m }} }}
        nodes:
          gen: {{ type: receiver:generator, config: {{ batch_size: 5, count: 200, duplicate_ratio: 0.25 }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: gen, to: dedup }}
          - {{ from: dedup, to: out }}
",
            out.display()
        ),
    )
    .expect("write config");
    let config = config.display().to_string();
    let validated = collector(&["validate", &config]);
    assert_eq!(validated.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&validated.stdout)
            .contains("store  extension:acme_kv  [local, one per core (1)]"),
        "{}",
        String::from_utf8_lossy(&validated.stdout)
    );
    let output = collector(&["run", &config]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("final: gen in=1000 out=1000 | dedup in=1000 out=750 dropped=250 | out in=750 out=750 | store=passive"),
        "{stderr}"
    );
    let batches = otap_df::nodes::read_payloads(&out).expect("payload file");
    assert_eq!(batches.len(), 150);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
