//! The sweep's targets: their names, what each is measured against, and the configuration
//! each server runs (the engine's, the Collector's, the Collector's with the bridge).

use std::path::{Path, PathBuf};

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "ceiling",
    "receiver",
    "receiver+auth",
    "receiver+wasm-auth",
    "receiver+jwt",
    "gateway",
    "gateway+auth",
    "gateway+jwt",
    "gateway+jwt+tenant-header",
    "gateway+durable+auth",
    "gateway-slow-upstream",
    "otelcol-gateway+auth",
    "otelcol-gateway-blocking+auth",
    "grpc-ceiling",
    "grpc-tonic-ceiling",
    "grpc-receiver",
    "grpc-receiver+auth",
    "otelcol-grpc-receiver",
    "grpc-gateway",
    "grpc-gateway+auth",
    "grpc-gateway+durable+auth",
    "otelcol-grpc-gateway",
    "otelcol-grpc-gateway-blocking",
    "bridge-baseline",
    "bridge-dedup",
];

/// Whether `target` speaks OTLP/gRPC (its load is calls over HTTP/2 connections).
pub(crate) fn grpc(target: &str) -> bool {
    target.starts_with("grpc-") || target.starts_with("otelcol-grpc")
}

/// What `target` is measured against: its protocol's ceiling; for the Collector with the
/// bridge, the same Collector pipeline without our component (`bridge-baseline`).
pub(crate) fn ceiling_of(target: &str) -> &'static str {
    if target.starts_with("bridge-") {
        "bridge-baseline"
    } else if grpc(target) {
        "grpc-ceiling"
    } else {
        "ceiling"
    }
}

/// How many bearer tokens the `+auth` targets accept (the client sends the last).
pub(crate) const CALLER_TOKENS: usize = 10;

/// The `i`th token the `+auth` targets accept.
pub(crate) fn caller_token(i: usize) -> String {
    format!("caller-{i:02}-{}", "x".repeat(48))
}

/// The engine configuration of `target` listening on `port` (`upstream`: the gateway's); a
/// `+durable` gateway queues in an `extension:disk_queue` in `queues`.
pub(crate) fn engine_config(target: &str, port: u16, upstream: u16, queues: &Path) -> String {
    let tokens: Vec<String> = (0..CALLER_TOKENS).map(caller_token).collect();
    let auth = target.ends_with("+auth");
    let jwt = target.contains("+jwt");
    let (extensions, binding) = if jwt {
        // Checked by `jwt_available` before the target runs.
        let issuer = crate::jwt::issuer()
            .map(|i| i.jwks_url.as_str())
            .unwrap_or_default();
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:oidc_auth\n            config: {{ issuer: '{}', jwks_url: '{issuer}', audience: otap-df, algorithms: [ES256], attributes: {{ tenant: tenant }} }}\n",
                crate::jwt::ISSUER
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else if target == "receiver+wasm-auth" {
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:wasm\n            config: {{ module: '{}', provides: [bearer_token_authorizer], compile_cache: null }}\n",
                wasm_authorizer().display()
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else if auth {
        (
            format!(
                "        extensions:\n          callers:\n            type: extension:bearer_auth\n            config: {{ tokens: [{}] }}\n          own:\n            type: extension:bearer_auth\n            config: {{ token: gateway-{} }}\n",
                tokens.join(", "),
                "y".repeat(48)
            ),
            "            capabilities: { bearer_token_authorizer: callers }\n".to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    let durable = target.contains("+durable");
    let extensions = if durable {
        let spool = format!(
            "          spool:\n            type: extension:disk_queue\n            config: {{ directory: '{}' }}\n",
            queues.display()
        );
        if extensions.is_empty() {
            format!("        extensions:\n{spool}")
        } else {
            format!("{extensions}{spool}")
        }
    } else {
        extensions
    };
    let (receiver, exporter_type) = if grpc(target) {
        ("otlp_grpc", "otlp_grpc")
    } else {
        ("otlp_http", "otlp_http")
    };
    let exporter = if target.starts_with("gateway") || target.starts_with("grpc-gateway") {
        let provider = match (auth, durable) {
            (true, true) => {
                "            capabilities: { bearer_token_provider: own, durable_queue: spool }\n"
            }
            (true, false) => "            capabilities: { bearer_token_provider: own }\n",
            (false, true) => "            capabilities: { durable_queue: spool }\n",
            (false, false) => "",
        };
        let headers = if target.ends_with("+tenant-header") {
            ", headers_from_identity: { X-Scope-OrgID: tenant }"
        } else {
            ""
        };
        format!(
            "          out:\n            type: exporter:{exporter_type}\n            config: {{ endpoint: 'http://127.0.0.1:{upstream}', compression: none{headers} }}\n{provider}"
        )
    } else {
        "          out:\n            type: exporter:noop\n".to_owned()
    };
    format!(
        "version: otap_df/v1\nengine:\n  cores: 1\ngroups:\n  load:\n    pipelines:\n      main:\n{extensions}        nodes:\n          ingest:\n            type: receiver:{receiver}\n            config: {{ listen: '127.0.0.1:{port}' }}\n{binding}{exporter}        connections:\n          - {{ from: ingest, to: out }}\n"
    )
}

/// The WebAssembly authorizer of `receiver+wasm-auth`: the wasm extension's WAT fixture,
/// which accepts [`WASM_TOKEN`] (an engine built with `--features extension-wasm` runs it).
fn wasm_authorizer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../extensions/wasm/tests/guests/authorizer.wat")
}

/// Whether `engine` was built with the component type `name` (`extension:oidc_auth`): its
/// `components` lists it before the types it names as not compiled in.
pub(crate) fn engine_has(engine: &Path, name: &str) -> bool {
    std::process::Command::new(engine)
        .arg("components")
        .output()
        .is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .take_while(|line| !line.starts_with("not compiled in"))
                .any(|line| line.starts_with(&format!("  {name}  ")))
        })
}

/// The token `receiver+wasm-auth`'s client sends.
pub(crate) const WASM_TOKEN: &str = "alpha-token";

/// The Collector exporter's `sending_queue` override: with `blocking`, a full queue makes the
/// receiver wait (`block_on_overflow`); else nothing (the exporter's defaults).
fn sending_queue(blocking: bool) -> &'static str {
    if blocking {
        "\n    sending_queue:\n      block_on_overflow: true"
    } else {
        ""
    }
}

/// The Collector's configuration for `otelcol-gateway+auth`, the same job as our
/// `gateway+auth`: OTLP/HTTP in on `port` checking the caller's bearer token
/// (`bearertokenauth`), OTLP/HTTP out to `upstream` with a token of its own, uncompressed.
/// The exporter keeps the Collector's defaults otherwise (a sending queue of 1 000 requests
/// drained by 10 consumers, retries on; a full queue rejects), or with `blocking` a full queue
/// makes the receiver wait (`block_on_overflow`: backpressure, as our receiver does).
fn otelcol_config(port: u16, upstream: u16, blocking: bool) -> String {
    let queue = sending_queue(blocking);
    format!(
        "extensions:
  bearertokenauth/in:
    token: {caller}
  bearertokenauth/out:
    token: gateway-{own}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
        auth:
          authenticator: bearertokenauth/in
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:{upstream}
    compression: none{queue}
    auth:
      authenticator: bearertokenauth/out
service:
  extensions: [bearertokenauth/in, bearertokenauth/out]
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
",
        caller = caller_token(CALLER_TOKENS - 1),
        own = "y".repeat(48),
    )
}

/// The configuration of the Collector with the bridge for `bridge-baseline` (OTLP/HTTP in on
/// `port`, every request's data handed to the `nop` exporter) and, with `dedup`, for
/// `bridge-dedup` (the same with our dedup processor, on `memory_kv`, in between).
fn bridge_config(port: u16, dedup: bool) -> String {
    let (processors, used) = if dedup {
        (
            "processors:
  otapdf/dedup:
    extensions:
      seen: { type: extension:memory_kv }
    nodes:
      dedup: { type: processor:dedup, config: { ttl: 1m }, capabilities: { key_value_store: seen } }
",
            "otapdf/dedup",
        )
    } else {
        ("", "")
    };
    format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
{processors}exporters:
  nop:
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], processors: [{used}], exporters: [nop] }}
"
    )
}

/// The Collector's configuration for `otelcol-grpc-gateway`, the same job as our
/// `grpc-gateway`: OTLP/gRPC in on `port`, OTLP/gRPC out to `upstream`, uncompressed, with its
/// exporter's defaults otherwise (a sending queue drained by 10 consumers, retries on); with
/// `blocking`, a full queue blocks the receiver's call instead of refusing it (backpressure,
/// as ours applies it). No tokens: gRPC sends per-call credentials only over TLS.
fn otelcol_grpc_config(port: u16, upstream: u16, blocking: bool) -> String {
    let queue = sending_queue(blocking);
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  otlp:
    endpoint: 127.0.0.1:{upstream}
    compression: none{queue}
    tls: {{ insecure: true }}
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"
    )
}

/// The Collector's configuration for `otelcol-grpc-receiver`, the same job as our
/// `grpc-receiver`: OTLP/gRPC in on `port`, every call's data handed to the `nop` exporter.
fn otelcol_grpc_receiver_config(port: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  nop:
service:
  telemetry:
    logs: {{ level: warn }}
    metrics: {{ level: none }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [nop] }}
"
    )
}

/// For a target the Collector serves: its binary (`otelcol`, or `bridge` for the Collector
/// with the bridge) and its configuration.
pub(crate) fn collector_target<'a>(
    otelcol: Option<&'a Path>,
    bridge: Option<&'a Path>,
    target: &str,
    port: u16,
    upstream_port: u16,
) -> Option<(&'a Path, String)> {
    if target.starts_with("bridge-") {
        return Some((bridge?, bridge_config(port, target == "bridge-dedup")));
    }
    if !target.starts_with("otelcol") {
        return None;
    }
    let text = if target == "otelcol-grpc-receiver" {
        otelcol_grpc_receiver_config(port)
    } else if grpc(target) {
        otelcol_grpc_config(port, upstream_port, target.contains("blocking"))
    } else {
        otelcol_config(port, upstream_port, target.contains("blocking"))
    };
    Some((otelcol?, text))
}
