//! What the tests share: the OAuth2/OIDC server, keys, and the extensions running with their
//! tasks as the engine runs them.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::capability::shared;
use otap_df_core::extension::ExtensionHandle;
use otap_df_core::refresh::Refresher;
use otap_df_core::secret::BearerToken;
use otap_df_extension_oauth2::jwt::SigningKey;
use otap_df_extension_oauth2::{
    KeyFetcher, OAuth2Client, OAuth2ClientConfig, OidcAuth, OidcAuthConfig,
};
use otap_df_tests::oidc_server::{self, OidcServer};
use otap_df_tests::task::TaskRuntime;

/// How long a wait for an outcome may take before the test fails. It bounds a wait, it is
/// not a measurement.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A server with clients `a` (secret `secret-a`, tenant `acme`) and `b` (secret `secret-b`,
/// tenant `globex`), issuing tokens for audience `otap-df` by default; `None` when the test
/// is skipped.
pub fn server(test: &str) -> Option<OidcServer> {
    server_with(test, "")
}

/// [`server`] with more clients (JSON members of `clients`, after a comma).
pub fn server_with(test: &str, more_clients: &str) -> Option<OidcServer> {
    let more = if more_clients.is_empty() {
        String::new()
    } else {
        format!(",{more_clients}")
    };
    oidc_server::require(
        test,
        &format!(
            r#"{{"clients":{{"a":{{"secret":"secret-a","tenant":"acme"}},"b":{{"secret":"secret-b","tenant":"globex"}}{more}}},"audience":"otap-df"}}"#
        ),
    )
}

/// An extension instance with its task running on a runtime of its own.
pub struct Running<T> {
    pub instance: Arc<T>,
    pub handle: ExtensionHandle,
    pub runtime: TaskRuntime,
}

impl<T> Running<T> {
    /// Waits (bounded) until ready; panics with the degraded status otherwise.
    pub fn ready(mut self) -> Self {
        let ready = self
            .runtime
            .block_on(async { tokio::time::timeout(DEADLINE, self.handle.wait_ready()).await });
        assert_eq!(
            ready,
            Ok(true),
            "not ready within {DEADLINE:?}: {:?}",
            self.handle.degraded()
        );
        self
    }

    /// The degraded status once `until` holds of it (bounded).
    pub fn degraded_until(&self, until: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(why) = self.handle.degraded().filter(|why| until(why)) {
                return why;
            }
            assert!(
                Instant::now() < deadline,
                "no such degraded status within {DEADLINE:?}; last: {:?}",
                self.handle.degraded()
            );
            // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `oauth2_client` from its YAML block.
pub fn client(yaml: &str) -> Running<OAuth2Client> {
    let config = otap_df_tests::config::decode(yaml, OAuth2ClientConfig::decode);
    let instance = Arc::new(OAuth2Client::new("idp", &config).expect("extension"));
    let (runtime, handle) = TaskRuntime::spawn(Box::new(Refresher::new(instance.tokens().clone())));
    Running {
        instance,
        handle,
        runtime,
    }
}

impl Running<OAuth2Client> {
    /// The provider.
    pub fn provider(&self) -> Arc<dyn shared::BearerTokenProvider> {
        self.instance.tokens().clone()
    }

    /// The token served now.
    pub fn current(&self) -> Option<BearerToken> {
        self.provider().current_token()
    }
}

/// `oidc_auth` from its YAML block.
pub fn oidc(yaml: &str) -> Running<OidcAuth> {
    let config = otap_df_tests::config::decode(yaml, OidcAuthConfig::decode);
    let instance = Arc::new(OidcAuth::new("oidc", &config).expect("extension"));
    let (runtime, handle) = TaskRuntime::spawn(Box::new(KeyFetcher::new(instance.clone())));
    Running {
        instance,
        handle,
        runtime,
    }
}

/// A PEM PKCS #8 private key made by Node's crypto: `rsa` (2048 bits) or `ec` (P-256).
pub fn node_key(kind: &str) -> String {
    let options = if kind == "rsa" {
        "{modulusLength: 2048}"
    } else {
        "{namedCurve: 'P-256'}"
    };
    let output = std::process::Command::new("node")
        .arg("-e")
        .arg(format!(
            "const {{generateKeyPairSync}} = require('crypto'); \
             process.stdout.write(generateKeyPairSync('{kind}', {options}).privateKey\
             .export({{type: 'pkcs8', format: 'pem'}}))"
        ))
        .output()
        .expect("node runs");
    assert!(output.status.success(), "node could not make a key");
    String::from_utf8(output.stdout).expect("PEM")
}

/// The public JWK of a PEM private key.
pub fn public_jwk(pem: &str) -> String {
    SigningKey::from_pem(pem.as_bytes(), None)
        .expect("usable key")
        .public_jwk(None)
        .to_string()
}
