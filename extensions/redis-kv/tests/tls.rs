//! `extension:redis_kv` over TLS (`rediss://`) against a real `redis-server` with certificates
//! from a throwaway CA: server verification with `tls.ca_file`, mutual TLS with
//! `tls.cert_file` / `tls.key_file`, and the errors when either side is not trusted.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::sync::Arc;

use otap_df_core::capability::{KvError, shared};
use otap_df_core::extension::{ErrorKind, ExtensionContext, ExtensionError};
use otap_df_extension_redis_kv::connect;
use otap_df_extension_redis_kv::{REDIS_KV, RedisKv, RedisKvError};
use otap_df_tests::redis_server::{self, RedisServer};
use otap_df_tests::tls::TestPki;

mod support;
use support::{config, runtime};

/// A store on `server`'s TLS port with the given `tls:` block.
fn store(server: &RedisServer, id: &str, tls: &str) -> Result<RedisKv, ExtensionError> {
    let context = ExtensionContext::new(&REDIS_KV, id, "g", "p", None);
    connect(
        &context,
        &config(&format!(
            "{{ url: '{}', call_timeout: 2s, tls: {tls} }}",
            server.tls_url()
        )),
    )
}

fn pki() -> TestPki {
    TestPki::generate().expect("test certificates")
}

fn ca(pki: &TestPki) -> String {
    format!("{{ ca_file: '{}' }}", pki.ca_cert().display())
}

fn mutual(pki: &TestPki) -> String {
    format!(
        "{{ ca_file: '{}', cert_file: '{}', key_file: '{}' }}",
        pki.ca_cert().display(),
        pki.client_cert().display(),
        pki.client_key().display()
    )
}

#[test]
fn over_tls_with_the_servers_ca_redis_kv_passes_the_suite() {
    let pki = pki();
    let Some(server) = redis_server::require_tls("tls suite", &pki, false) else {
        return;
    };
    otap_df_tests::key_value_suite::run_shared("redis_kv over TLS", || {
        Arc::new(store(&server, "tls", &ca(&pki)).expect("store")) as Arc<dyn shared::KeyValueStore>
    });
}

/// `get` on `store` must fail with a transient error naming the TLS reason.
fn handshake_fails(store: &RedisKv, reason: &str) {
    let error = runtime()
        .block_on(shared::KeyValueStore::get(store, b"k"))
        .expect_err("the handshake fails");
    let KvError::Unavailable { message, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(error.is_transient());
    assert!(message.contains(reason), "{message}");
}

#[test]
fn mutual_tls_needs_the_client_certificate_and_a_trusted_server() {
    let pki = pki();
    let Some(server) = redis_server::require_tls("mutual tls", &pki, true) else {
        return;
    };
    let with_certificate = store(&server, "mtls", &mutual(&pki)).expect("store");
    runtime().block_on(async {
        use shared::KeyValueStore as _;
        with_certificate.set(b"k", b"v", None).await.unwrap();
        assert_eq!(
            with_certificate.get(b"k").await.unwrap(),
            Some(b"v".to_vec())
        );
    });
    let without = store(&server, "no-cert", &ca(&pki)).expect("store");
    handshake_fails(&without, "CertificateRequired");
    let other = TestPki::generate().expect("another CA");
    let untrusting = store(&server, "other-ca", &ca(&other)).expect("store");
    handshake_fails(&untrusting, "invalid peer certificate: UnknownIssuer");
}

#[test]
fn unreadable_or_wrong_tls_files_fail_at_creation_naming_the_option_and_file() {
    let pki = pki();
    let Some(server) = redis_server::require_tls("tls files", &pki, false) else {
        return;
    };
    // The crate's typed error, its message as users see it.
    let message = |tls: &str| match store(&server, "files", tls) {
        Err(ExtensionError::Source {
            extension,
            source,
            kind,
        }) => {
            assert_eq!(extension, "files");
            assert_eq!(kind, ErrorKind::Misconfigured);
            assert!(
                source.get().downcast_ref::<RedisKvError>().is_some(),
                "{source:?}"
            );
            source.to_string()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        message("{ ca_file: /nonexistent/ca.pem }"),
        "cannot read `tls.ca_file` `/nonexistent/ca.pem`: entity not found"
    );
    let key = pki.client_key().display().to_string();
    assert_eq!(
        message(&format!("{{ ca_file: '{key}' }}")),
        format!("`tls.ca_file` `{key}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")
    );
    let cert = pki.client_cert().display().to_string();
    let swapped = message(&format!("{{ cert_file: '{cert}', key_file: '{cert}' }}"));
    assert!(
        swapped.starts_with("cannot use the `tls` files: ") && swapped.contains("private key"),
        "{swapped}"
    );
}
