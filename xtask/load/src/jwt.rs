//! The `+jwt` targets' issuer: a P-256 key made at start, its JWKS served on loopback (a
//! minimal HTTP/1.1 answer, the same to every request), and the one token the load's
//! client sends, signed with it (tenant `acme`, valid for a day).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use otap_df_extension_oauth2::jwt::SigningKey;

/// What `oidc_auth` checks the token against.
pub(crate) const ISSUER: &str = "https://issuer.load.example";

/// The issuer: its key set's URL and the client's token.
pub(crate) struct Issuer {
    pub(crate) jwks_url: String,
    pub(crate) token: String,
}

/// The issuer, started on first use.
pub(crate) fn issuer() -> Result<&'static Issuer, String> {
    static ISSUER_: OnceLock<Result<Issuer, String>> = OnceLock::new();
    ISSUER_.get_or_init(start).as_ref().map_err(Clone::clone)
}

fn start() -> Result<Issuer, String> {
    let random = ring::rand::SystemRandom::new();
    let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &random,
    )
    .map_err(|_| "cannot make a P-256 key".to_owned())?;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    let key = SigningKey::from_pem(pem.as_bytes(), None)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "otap-df", "sub": "load-client", "tenant": "acme",
        "iat": now, "exp": now + 86_400,
    });
    let token = key.sign(Some("load"), &claims)?;
    let document = serde_json::json!({ "keys": [key.public_jwk(Some("load"))] }).to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{document}",
        document.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    Ok(Issuer {
        jwks_url: format!("http://127.0.0.1:{port}/jwks"),
        token,
    })
}
