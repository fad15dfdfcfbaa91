//! `oidc_auth`'s decision per request, with the issuer's keys held (no fetch): a token seen
//! before on this core (`remembered`: what a sender that reuses its token costs, the usual
//! case) and a token checked in full (`verified`: signature and claims, what its first
//! request costs), RS256 (2048-bit RSA) and ES256 (P-256) apart.
//! `cargo bench -p otap-df-extension-oauth2 --bench jwt`.
//!
//! The RSA key comes from `openssl genpkey` (Node's crypto when there is no `openssl`).

#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use otap_df_core::capability::{AuthzDecision, shared};
use otap_df_core::secret::Credential;
use otap_df_extension_oauth2::jwt::{Algorithm, KeySet, SigningKey};
use otap_df_extension_oauth2::{OidcAuth, OidcAuthConfig};
use ring::signature::EcdsaKeyPair;

const ISSUER: &str = "https://issuer.example";

/// A 2048-bit RSA key, PEM PKCS #8.
fn rsa_pem() -> Vec<u8> {
    let openssl = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output();
    if let Some(output) = openssl.ok().filter(|o| o.status.success()) {
        return output.stdout;
    }
    let node = std::process::Command::new("node")
        .arg("-e")
        .arg(
            "process.stdout.write(require('crypto').generateKeyPairSync('rsa', \
             {modulusLength: 2048}).privateKey.export({type: 'pkcs8', format: 'pem'}))",
        )
        .output()
        .expect("neither openssl nor node can make the RSA key this benchmark needs");
    assert!(node.status.success(), "node could not make an RSA key");
    node.stdout
}

/// A P-256 key, PEM PKCS #8.
fn ec_pem() -> Vec<u8> {
    let random = ring::rand::SystemRandom::new();
    let der =
        EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random)
            .expect("a P-256 key");
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// An authorizer holding `keys`, remembering `cache_size` tokens per core.
fn authorizer(keys: &[(&SigningKey, &str)], cache_size: usize) -> OidcAuth {
    let config = OidcAuthConfig::new(ISSUER, ["otap-df"])
        .with_algorithms([Algorithm::RS256, Algorithm::ES256])
        .with_attribute("tenant", "tenant")
        .with_cache_size(cache_size);
    let auth = OidcAuth::new("bench", &config).expect("authorizer");
    let jwks: Vec<_> = keys
        .iter()
        .map(|(key, kid)| key.public_jwk(Some(kid)))
        .collect();
    let document = serde_json::json!({ "keys": jwks }).to_string();
    auth.set_keys(KeySet::parse(document.as_bytes()).expect("key set"));
    auth
}

/// A token of `sub` for tenant `acme`, valid for an hour, signed by `key` (`kid`).
fn token(key: &SigningKey, kid: &str, sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "otap-df", "sub": sub, "tenant": "acme",
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    key.sign(Some(kid), &claims).expect("signed")
}

fn decide(auth: &OidcAuth, token: &str) {
    let decision = shared::BearerTokenAuthorizer::authorize(auth, Credential::new(token));
    assert!(
        matches!(decision, Ok(AuthzDecision::Allow { .. })),
        "{decision:?}"
    );
}

fn jwt(c: &mut Criterion) {
    let rsa = SigningKey::from_pem(&rsa_pem(), None).expect("RSA key");
    let ec = SigningKey::from_pem(&ec_pem(), None).expect("EC key");
    let keys = [(&rsa, "rs"), (&ec, "es")];
    let mut group = c.benchmark_group("oidc_authorize");
    for (name, key, kid) in [("RS256", &rsa, "rs"), ("ES256", &ec, "es")] {
        let remembering = authorizer(&keys, 4096);
        let one = token(key, kid, "svc-a");
        decide(&remembering, &one);
        group.bench_function(format!("{name}/remembered"), |b| {
            b.iter(|| decide(&remembering, black_box(&one)))
        });
        // One token remembered per core and two presented in turn: each is checked in full.
        let forgetting = authorizer(&keys, 1);
        let two = [one.clone(), token(key, kid, "svc-b")];
        let mut next = 0;
        group.bench_function(format!("{name}/verified"), |b| {
            b.iter(|| {
                next ^= 1;
                decide(&forgetting, black_box(&two[next]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, jwt);
criterion_main!(benches);
