//! `method: client_secret` and `method: workload_identity` end to end: the real
//! `azure_identity` credentials against a loopback HTTPS Entra ID token endpoint, trusted
//! through `tls.ca_file` (a throwaway CA) and reached through `authority_host`. No network
//! beyond loopback. Each test runs in a child process whose environment has no proxy or Azure
//! variable of the machine (as the other suites of this crate).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use otap_df_core::capability::shared;
use otap_df_tests::tls::TestPki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{SCOPE, TempDir, expect_child, run_child, running};

/// One request the endpoint answered: its path and its form fields.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    form: BTreeMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form.get(name).map(String::as_str)
    }
}

/// A token asked for now (`fresh_token`), as its value.
fn fresh_value(auth: &support::Running) -> String {
    auth.block_on(shared::BearerTokenProvider::fresh_token(
        auth.auth.tokens().as_ref(),
    ))
    .expect("a fresh token")
    .secret()
    .expose()
    .to_owned()
}

/// What the endpoint answers next.
#[derive(Clone)]
enum Answer {
    /// A token numbered by the requests so far, valid for an hour.
    Token,
    /// The same, valid for a minute.
    ShortToken,
    /// An OAuth error body with this HTTP status, error code and description.
    Error(u16, &'static str, &'static str),
}

/// An Entra ID token endpoint (`POST /{tenant}/oauth2/v2.0/token`) over HTTPS on 127.0.0.1,
/// with the server certificate of `pki`, on a runtime of its own.
struct Entra {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
    _runtime: tokio::runtime::Runtime,
}

impl Entra {
    fn start(pki: &TestPki) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.server_cert())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.server_key()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Answer::Token));
        let (seen_, answer_) = (seen.clone(), answer.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen, answer) = (acceptor.clone(), seen_.clone(), answer_.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let (seen, answer) = (seen.clone(), answer.clone());
                        async move { Ok::<_, Infallible>(reply(request, &seen, &answer).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            answer,
            _runtime: runtime,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer_next(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

async fn reply(
    request: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    answer: &Mutex<Answer>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let form = form_urlencoded::parse(&body).into_owned().collect();
    let number = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen { path, form });
        seen.len()
    };
    let answer = answer.lock().unwrap().clone();
    let (status, body) = match answer {
        Answer::Token | Answer::ShortToken => {
            let lifetime = if matches!(answer, Answer::Token) {
                3600
            } else {
                60
            };
            (
                200,
                format!(
                    r#"{{"token_type":"Bearer","expires_in":{lifetime},"ext_expires_in":{lifetime},"access_token":"entra-{number}"}}"#
                ),
            )
        }
        Answer::Error(status, error, description) => (
            status,
            format!(r#"{{"error":"{error}","error_description":"{description}"}}"#),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn client_secret_config(entra: &Entra, pki: &TestPki, secret_file: &std::path::Path) -> String {
    format!(
        "{{ scope: '{SCOPE}', method: client_secret, tenant_id: tenant-a, client_id: app-1, \
         client_secret_file: '{}', authority_host: 'https://localhost:{}', \
         tls: {{ ca_file: '{}', system_roots: false }}, request_timeout: 5s, \
         refresh: {{ min_interval: 10ms }}, retry: {{ initial_interval: 100ms, max_interval: 1s }} }}",
        secret_file.display(),
        entra.addr.port(),
        pki.ca_cert().display(),
    )
}

#[test]
fn a_client_secret_is_exchanged_for_tokens_and_a_rotated_secret_is_sent_next_time() {
    run_child(
        "a_client_secret_is_exchanged_for_tokens_and_a_rotated_secret_is_sent_next_time_child",
        &[],
    );
}

#[test]
#[ignore = "run by `a_client_secret_is_exchanged_for_tokens_and_a_rotated_secret_is_sent_next_time` in a child process"]
fn a_client_secret_is_exchanged_for_tokens_and_a_rotated_secret_is_sent_next_time_child() {
    expect_child(
        "a_client_secret_is_exchanged_for_tokens_and_a_rotated_secret_is_sent_next_time_child",
    );
    // Every event of every crate at TRACE, the HTTP client's included.
    let captured = otap_df_tests::logs::capture_all();
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    let dir = TempDir::new("azure-client-secret");
    let secret_file = dir.path("secret");
    std::fs::write(&secret_file, "s3cret-one\n").unwrap();
    let auth = running(&client_secret_config(&entra, &pki, &secret_file));
    assert_eq!(auth.current_value(), "entra-1");

    std::fs::write(&secret_file, "s3cret-two").unwrap();
    assert_eq!(fresh_value(&auth), "entra-2");

    let seen = entra.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (request, secret) in seen.iter().zip(["s3cret-one", "s3cret-two"]) {
        assert_eq!(request.path, "/tenant-a/oauth2/v2.0/token");
        assert_eq!(request.field("grant_type"), Some("client_credentials"));
        assert_eq!(request.field("client_id"), Some("app-1"));
        assert_eq!(request.field("client_secret"), Some(secret));
        assert_eq!(request.field("scope"), Some(SCOPE));
    }
    let logs = captured.text();
    assert!(logs.contains("token received"), "the logs were captured");
    for secret in ["s3cret-one", "s3cret-two", "entra-1", "entra-2"] {
        assert!(!logs.contains(secret), "`{secret}` appears in the logs");
    }
}

#[test]
fn an_inline_client_secret_is_sent_as_configured() {
    run_child("an_inline_client_secret_is_sent_as_configured_child", &[]);
}

#[test]
#[ignore = "run by `an_inline_client_secret_is_sent_as_configured` in a child process"]
fn an_inline_client_secret_is_sent_as_configured_child() {
    expect_child("an_inline_client_secret_is_sent_as_configured_child");
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    let auth = running(&format!(
        "{{ scope: '{SCOPE}', method: client_secret, tenant_id: tenant-b, client_id: app-2, \
         client_secret: inline-s3cret, authority_host: 'https://127.0.0.1:{}', \
         tls: {{ ca_file: '{}' }}, request_timeout: 5s }}",
        entra.addr.port(),
        pki.ca_cert().display(),
    ));
    assert_eq!(auth.current_value(), "entra-1");
    let seen = entra.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/tenant-b/oauth2/v2.0/token");
    assert_eq!(seen[0].field("client_secret"), Some("inline-s3cret"));
}

/// Entra's answer to a wrong client secret.
const INVALID_CLIENT: Answer = Answer::Error(
    401,
    "invalid_client",
    "AADSTS7000215: Invalid client secret provided.",
);
/// Entra's answer to a scope the application may not ask for.
const INVALID_SCOPE: Answer = Answer::Error(
    400,
    "invalid_scope",
    "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
);

/// The extension's degraded reason once it is `expected` (within 20 s), asserting on the way
/// that the secret is never part of it.
fn degraded_until(auth: &support::Running, expected: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(why) = auth.handle.degraded() {
            assert!(!why.contains("s3cret"), "the secret is not echoed: {why}");
            if expected(&why) {
                return why;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such degraded report within 20s (last: {:?})",
            auth.handle.degraded()
        );
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn oauth_errors_are_reported_in_the_degraded_status_without_the_secret_and_retried() {
    run_child(
        "oauth_errors_are_reported_in_the_degraded_status_without_the_secret_and_retried_child",
        &[],
    );
}

#[test]
#[ignore = "run by `oauth_errors_are_reported_in_the_degraded_status_without_the_secret_and_retried` in a child process"]
fn oauth_errors_are_reported_in_the_degraded_status_without_the_secret_and_retried_child() {
    expect_child(
        "oauth_errors_are_reported_in_the_degraded_status_without_the_secret_and_retried_child",
    );
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    entra.answer_next(INVALID_CLIENT);
    let dir = TempDir::new("azure-client-secret-error");
    let secret_file = dir.path("secret");
    std::fs::write(&secret_file, "s3cret-rejected").unwrap();
    let auth = support::start(&client_secret_config(&entra, &pki, &secret_file));

    let why = degraded_until(&auth, |why| why.contains("AADSTS7000215"));
    assert!(
        why.starts_with("token request failed (misconfigured; "),
        "{why}"
    );
    assert!(auth.current().is_none(), "no token was issued");

    // The loop keeps retrying on its backoff schedule (as for managed identity); each
    // failure's own reason is reported, and the count of failures in a row grows.
    entra.answer_next(INVALID_SCOPE);
    let why = degraded_until(&auth, |why| why.contains("AADSTS70011"));
    assert!(
        !why.contains("(1 in a row"),
        "a later failure in a row: {why}"
    );
    assert!(auth.current().is_none(), "no token was issued");

    // Once the endpoint issues a token again, the next retry takes it: ready, healthy.
    let mut subscription = auth.subscribe();
    entra.answer_next(Answer::Token);
    let token = auth.next(&mut subscription);
    let seen = entra.seen();
    // The token names the request that got it: the last one (no request after it, as it is
    // valid for an hour).
    assert_eq!(token.secret().expose(), format!("entra-{}", seen.len()));
    assert_eq!(auth.current_value(), format!("entra-{}", seen.len()));
    // The loop reports its health right after it stores the token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Some(why) = auth.handle.degraded() {
        assert!(
            std::time::Instant::now() < deadline,
            "still degraded 20s after a token: {why}"
        );
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen.len() > 2, "retried: {} requests", seen.len());
    assert!(
        seen.iter()
            .all(|seen| seen.field("client_secret") == Some("s3cret-rejected")),
        "every retry carried the secret of the moment"
    );
}

#[test]
fn without_the_test_ca_the_endpoint_is_not_trusted() {
    run_child("without_the_test_ca_the_endpoint_is_not_trusted_child", &[]);
}

#[test]
#[ignore = "run by `without_the_test_ca_the_endpoint_is_not_trusted` in a child process"]
fn without_the_test_ca_the_endpoint_is_not_trusted_child() {
    expect_child("without_the_test_ca_the_endpoint_is_not_trusted_child");
    let pki = TestPki::generate().unwrap();
    let other = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    let dir = TempDir::new("azure-client-secret-untrusted");
    let secret_file = dir.path("secret");
    std::fs::write(&secret_file, "s3cret").unwrap();
    // Trusting another CA only: the handshake fails, no form is ever sent.
    let auth = support::start(&client_secret_config(&entra, &other, &secret_file));
    let error = auth
        .block_on(shared::BearerTokenProvider::fresh_token(
            auth.auth.tokens().as_ref(),
        ))
        .map(|_| ())
        .expect_err("untrusted");
    assert!(!error.to_string().contains("s3cret"), "{error}");
    assert!(entra.seen().is_empty());
}

#[test]
fn a_workload_identity_sends_the_federated_token_of_the_moment() {
    run_child(
        "a_workload_identity_sends_the_federated_token_of_the_moment_child",
        &[],
    );
}

#[test]
#[ignore = "run by `a_workload_identity_sends_the_federated_token_of_the_moment` in a child process"]
fn a_workload_identity_sends_the_federated_token_of_the_moment_child() {
    expect_child("a_workload_identity_sends_the_federated_token_of_the_moment_child");
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    let dir = TempDir::new("azure-workload-identity");
    let token_file = dir.path("federated-token");
    std::fs::write(&token_file, "assertion-one").unwrap();
    let auth = running(&format!(
        "{{ scope: '{SCOPE}', method: workload_identity, tenant_id: tenant-w, client_id: app-w, \
         token_file: '{}', authority_host: 'https://localhost:{}', \
         tls: {{ ca_file: '{}', system_roots: false }}, request_timeout: 5s, \
         refresh: {{ min_interval: 10ms }}, retry: {{ initial_interval: 100ms, max_interval: 1s }} }}",
        token_file.display(),
        entra.addr.port(),
        pki.ca_cert().display(),
    ));
    assert_eq!(auth.current_value(), "entra-1");
    // Kubernetes rotates the projected token; the next request carries the new one.
    std::fs::write(&token_file, "assertion-two").unwrap();
    assert_eq!(fresh_value(&auth), "entra-2");
    let seen = entra.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (request, assertion) in seen.iter().zip(["assertion-one", "assertion-two"]) {
        assert_eq!(request.path, "/tenant-w/oauth2/v2.0/token");
        assert_eq!(request.field("client_id"), Some("app-w"));
        assert_eq!(request.field("client_assertion"), Some(assertion));
        assert_eq!(
            request
                .form
                .get("client_assertion_type")
                .map(String::as_str),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(request.field("scope"), Some(SCOPE));
    }
}

#[test]
fn an_entra_token_is_renewed_on_schedule() {
    run_child("an_entra_token_is_renewed_on_schedule_child", &[]);
}

#[test]
#[ignore = "run by `an_entra_token_is_renewed_on_schedule` in a child process"]
fn an_entra_token_is_renewed_on_schedule_child() {
    expect_child("an_entra_token_is_renewed_on_schedule_child");
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    entra.answer_next(Answer::ShortToken);
    // A minute-long token renewed at 1 % of its lifetime: the refresh loop's schedule, as
    // for a managed identity.
    let auth = running(&format!(
        "{{ scope: '{SCOPE}', method: client_secret, tenant_id: t, client_id: c, \
         client_secret: s, authority_host: 'https://localhost:{}', \
         tls: {{ ca_file: '{}' }}, request_timeout: 5s, \
         refresh: {{ lifetime_fraction: 0.01, before_expiry: 31s, min_interval: 10ms }} }}",
        entra.addr.port(),
        pki.ca_cert().display(),
    ));
    let mut updates = auth.subscribe();
    let first = auth.next(&mut updates);
    assert_eq!(first.secret().expose(), "entra-1");
    let renewed = auth.next(&mut updates);
    assert_eq!(renewed.secret().expose(), "entra-2");
}

#[test]
fn an_unreadable_ca_file_fails_the_start_with_a_typed_error_naming_it() {
    let error = otap_df_extension_azure_auth::AzureAuth::new(
        "entra",
        &support::config(&format!(
            "{{ scope: '{SCOPE}', method: client_secret, tenant_id: t, client_id: c, \
             client_secret: s, tls: {{ ca_file: /nonexistent/ca.pem }} }}"
        )),
    )
    .map(|_| ())
    .expect_err("no such file");
    let otap_df_core::extension::ExtensionError::Source {
        extension, source, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(extension, "entra");
    assert_eq!(
        error.kind(),
        otap_df_core::extension::ErrorKind::Misconfigured
    );
    assert!(!error.retry_can_help());
    let typed = source
        .get()
        .downcast_ref::<otap_df_extension_azure_auth::AzureAuthError>()
        .expect("the crate's error");
    assert!(
        matches!(typed, otap_df_extension_azure_auth::AzureAuthError::Unreadable { option, .. } if *option == "tls.ca_file"),
        "{typed:?}"
    );
    assert!(
        error.to_string().starts_with(
            "extension `entra` failed: cannot read `tls.ca_file` `/nonexistent/ca.pem`: "
        ),
        "{error}"
    );
}

#[test]
fn an_updated_configuration_takes_effect_with_a_token_requested_at_once() {
    run_child(
        "an_updated_configuration_takes_effect_with_a_token_requested_at_once_child",
        &[],
    );
}

#[test]
#[ignore = "run by `an_updated_configuration_takes_effect_with_a_token_requested_at_once` in a child process"]
fn an_updated_configuration_takes_effect_with_a_token_requested_at_once_child() {
    expect_child("an_updated_configuration_takes_effect_with_a_token_requested_at_once_child");
    let pki = TestPki::generate().unwrap();
    let entra = Entra::start(&pki);
    let dir = TempDir::new("azure-client-secret-update");
    let secret_file = dir.path("secret");
    std::fs::write(&secret_file, "s3cret-one").unwrap();
    let before = client_secret_config(&entra, &pki, &secret_file);
    let auth = running(&before);
    assert_eq!(auth.current_value(), "entra-1");
    let mut subscription = auth.subscribe();
    assert_eq!(auth.next(&mut subscription).secret().expose(), "entra-1");

    // Another application and scope (a reload): the token valid for an hour is not waited
    // for; the next one comes from the new settings, and the old one is served meanwhile.
    let after = before
        .replace("client_id: app-1", "client_id: app-2")
        .replace(SCOPE, "https://other.example/.default");
    auth.auth.update(&support::config(&after)).expect("taken");
    assert_eq!(auth.next(&mut subscription).secret().expose(), "entra-2");
    let seen = entra.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].field("client_id"), Some("app-2"));
    assert_eq!(
        seen[1].field("scope"),
        Some("https://other.example/.default")
    );

    // One that cannot be resolved is refused, and the running settings stay.
    let broken = after.replace(&pki.ca_cert().display().to_string(), "/nonexistent/ca.pem");
    let error = auth.auth.update(&support::config(&broken)).unwrap_err();
    assert!(error.to_string().contains("tls.ca_file"), "{error}");
    assert_eq!(fresh_value(&auth), "entra-3");
    assert_eq!(entra.seen()[2].field("client_id"), Some("app-2"));
}
