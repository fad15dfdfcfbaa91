//! A multi-tenant gateway in a running engine: `receiver:otlp_http` behind `oidc_auth`
//! (tokens of a real OIDC issuer, the published `oauth2-mock-server`), each tenant's records
//! forwarded with its own `X-Scope-OrgID` to an upstream that checks it, one tenant's also
//! routed to a second upstream by `processor:identity_filter`; callers without a tenant
//! refused with 403, bad tokens with 401. Then the same gateway whose exporter gets its own
//! token from the issuer through `oauth2_client`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use otap_df_core::data::Signal;
use otap_df_core::registry::Registry;
use otap_df_tests::engine;
use otap_df_tests::http::post_status;
use otap_df_tests::oidc_server::{self, OidcServer};
use otap_df_tests::ports::free_port;

fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df_extension_oauth2::register(&mut registry);
    registry.finish().expect("registry")
}

/// What an upstream saw: records by `X-Scope-OrgID` (`-` when absent), and the bearer
/// tokens it was sent.
#[derive(Default)]
struct Seen {
    records: BTreeMap<String, usize>,
    tokens: Vec<String>,
}

/// An OTLP/HTTP upstream on 127.0.0.1 (on a runtime of its own, returned) that counts the
/// records of each tenant header.
fn upstream() -> (tokio::runtime::Runtime, String, Arc<Mutex<Seen>>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let tenant = request
                                .headers()
                                .get("x-scope-orgid")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned();
                            let token = request
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let records =
                                otap_df_nodes::otlp::decode_with_prost(Signal::Logs, &body)
                                    .unwrap()
                                    .records;
                            let mut seen = record.lock().unwrap();
                            *seen.records.entry(tenant).or_default() += records;
                            if !token.is_empty() {
                                seen.tokens.push(token);
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(200)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (runtime, format!("http://{addr}"), seen)
}

fn server(test: &str) -> Option<OidcServer> {
    oidc_server::require(
        test,
        r#"{"clients":{"gateway":{"secret":"gateway-secret"}},"audience":"otap-df"}"#,
    )
}

/// The gateway: tenants' data in, each forwarded with its tenant header to `all`, acme's also
/// to `acme`. `exporter_auth` is more of the main exporter's node (its capabilities).
fn gateway(
    server: &OidcServer,
    port: u16,
    all: &str,
    acme: &str,
    extensions: &str,
    exporter_auth: &str,
) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          oidc:
            type: extension:oidc_auth
            config: {{ issuer: '{issuer}', audience: otap-df, attributes: {{ tenant: tenant }} }}
{extensions}
        nodes:
          in:
            type: receiver:otlp_http
            config:
              listen: 127.0.0.1:{port}
              permissions: {{ logs: {{ tenant: [acme, globex] }} }}
            capabilities: {{ bearer_token_authorizer: oidc }}
          out:
            type: exporter:otlp_http
            config: {{ endpoint: '{all}', compression: none, headers_from_identity: {{ X-Scope-OrgID: tenant }} }}
{exporter_auth}
          only_acme: {{ type: processor:identity_filter, config: {{ match: {{ tenant: [acme] }} }} }}
          acme_out:
            type: exporter:otlp_http
            config: {{ endpoint: '{acme}', compression: none }}
        connections:
          - {{ from: in, to: [out, only_acme] }}
          - {{ from: only_acme, to: acme_out }}
",
        issuer = server.issuer(),
    )
}

fn send(port: u16, token: &str, records: usize) -> u16 {
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, records, "t", 1);
    post_status(
        port,
        "/v1/logs",
        &[
            ("content-type", "application/x-protobuf"),
            ("authorization", &format!("Bearer {token}")),
        ],
        body.bytes(),
    )
}

/// Waits (bounded) until `seen`'s records are `expected`.
fn wait_for(seen: &Mutex<Seen>, expected: &[(&str, usize)]) {
    let expected: BTreeMap<String, usize> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = seen.lock().unwrap().records.clone();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upstream saw {now:?}, expected {expected:?}"
        );
        // Sampling interval: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn each_tenant_is_forwarded_with_its_header_and_callers_without_one_are_forbidden() {
    let Some(server) = server("two_tenant_gateway") else {
        return;
    };
    let (_all_runtime, all, seen) = upstream();
    let (_acme_runtime, acme, acme_seen) = upstream();
    let port = free_port().unwrap();
    let yaml = gateway(&server, port, &all, &acme, "", "");
    let started = engine::start(engine::one_core(engine::resolve(&yaml, &registry())));
    assert!(
        started.wait_running(Duration::from_secs(30)),
        "the gateway runs"
    );

    let token = |claims: &str| server.mint("rs-1", claims, 600);
    let acme_token = token(r#"{"sub":"svc-a","aud":"otap-df","tenant":"acme"}"#);
    let globex_token = token(r#"{"sub":"svc-g","aud":"otap-df","tenant":"globex"}"#);
    let no_tenant = token(r#"{"sub":"svc-x","aud":"otap-df"}"#);
    let other_tenant = token(r#"{"sub":"svc-i","aud":"otap-df","tenant":"initech"}"#);
    let expired = server.mint(
        "rs-1",
        r#"{"sub":"svc-a","aud":"otap-df","tenant":"acme"}"#,
        -600,
    );

    for _ in 0..3 {
        assert_eq!(send(port, &acme_token, 7), 200);
        assert_eq!(send(port, &globex_token, 5), 200);
    }
    assert_eq!(send(port, &no_tenant, 3), 403);
    assert_eq!(send(port, &other_tenant, 3), 403);
    assert_eq!(send(port, &expired, 3), 401);
    assert_eq!(send(port, "not-a-jwt", 3), 401);

    wait_for(&seen, &[("acme", 21), ("globex", 15)]);
    wait_for(&acme_seen, &[("-", 21)]);
    let telemetry = started.telemetry.clone();
    started.stop().expect("clean stop");
    let refused = engine::totals(&telemetry, "in");
    assert_eq!(engine::named(&refused, "refused.auth_forbidden"), 2);
    assert_eq!(engine::named(&refused, "refused.auth_expired"), 1);
    assert_eq!(engine::named(&refused, "refused.auth_invalid"), 1);
    let filtered = engine::totals(&telemetry, "only_acme");
    assert_eq!(
        filtered.counts.records_dropped, 15,
        "globex's records dropped by the filter"
    );
}

#[test]
fn the_gateway_sends_upstream_with_its_own_client_credentials_token() {
    let Some(server) = server("gateway_client_credentials") else {
        return;
    };
    let (_all_runtime, all, seen) = upstream();
    let (_acme_runtime, acme, _) = upstream();
    let port = free_port().unwrap();
    let client = format!(
        "          idp:
            type: extension:oauth2_client
            config: {{ token_url: '{}', client_id: gateway, client_secret: gateway-secret, scopes: [telemetry.write] }}",
        server.token_url()
    );
    let yaml = gateway(
        &server,
        port,
        &all,
        &acme,
        &client,
        "            capabilities: { bearer_token_provider: idp }",
    );
    let started = engine::start(engine::one_core(engine::resolve(&yaml, &registry())));
    assert!(
        started.wait_running(Duration::from_secs(30)),
        "the gateway runs"
    );
    let globex = server.mint(
        "rs-1",
        r#"{"sub":"svc-g","aud":"otap-df","tenant":"globex"}"#,
        600,
    );
    assert_eq!(send(port, &globex, 4), 200);
    wait_for(&seen, &[("globex", 4)]);
    started.stop().expect("clean stop");
    let tokens = seen.lock().unwrap().tokens.clone();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let token = tokens[0].strip_prefix("Bearer ").expect("a bearer token");
    // The issuer's token for the gateway itself, not the sender's.
    assert_ne!(token, globex);
    let requests: String = server.requests();
    assert!(requests.contains(r#""client_id":"gateway""#), "{requests}");
    assert!(
        requests.contains(r#""scope":"telemetry.write""#),
        "{requests}"
    );
}

#[test]
fn the_readme_multi_tenant_gateway_validates() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README");
    let section = readme
        .split("## A multi-tenant gateway")
        .nth(1)
        .expect("the README's multi-tenant gateway section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("its YAML block");
    let env = |name: &str| (name == "GATEWAY_CLIENT_SECRET").then(|| "s3cret".to_owned());
    let resolved = otap_df_core::resolve::load_with_env(block, "README.md", &registry(), &env)
        .unwrap_or_else(|errors| panic!("the README's gateway does not validate: {errors}"));
    drop(resolved);
}
